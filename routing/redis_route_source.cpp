#include "routing/redis_route_source.hpp"

#include "routing/redis/redis_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>

namespace edge::routing {
namespace json = boost::json;

namespace {
std::optional<json::object> value_object(const std::string& text) {
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object())
        return std::nullopt;
    auto it = v.get_object().find("value");
    if (it == v.get_object().end() || !it->value().is_object())
        return std::nullopt;
    return it->value().get_object();
}

std::string field(const json::object& o, std::string_view key) {
    auto it = o.find(key);
    return it != o.end() && it->value().is_string() ? std::string(it->value().get_string()) : "";
}

std::string url_of(const runner_route& r) {
    return r.scheme + "://" + r.host_port + r.base_path;
}

awaitable<void> send_quietly(redis::client& c, std::vector<std::string> args) {
    auto r = co_await c.command(std::move(args));
    if (!r || r->type == redis::reply::kind::error)
        stats().redis_errors.fetch_add(1, std::memory_order_relaxed);
}
} // namespace

std::string runner_value(const runner_route& r) {
    json::object inner;
    inner["apiUrl"] = url_of(r);
    inner["apiKey"] = r.api_key;
    json::object outer;
    outer["value"] = std::move(inner);
    return json::serialize(outer);
}

std::string ssh_value(const runner_route& r) {
    json::object inner;
    inner["domain"] = r.domain;
    inner["proxyUrl"] = url_of(r);
    inner["apiKey"] = r.api_key;
    json::object outer;
    outer["value"] = std::move(inner);
    return json::serialize(outer);
}

runner_lookup parse_runner_value(const std::string& text) {
    auto o = value_object(text);
    if (!o)
        return {lookup_status::unavailable, nullptr, "unreadable route in Redis"};
    auto route = make_route(field(*o, "apiUrl"), field(*o, "apiKey"));
    if (!route)
        return {lookup_status::unavailable, nullptr, "unusable runner URL in Redis"};
    return {lookup_status::found, std::move(route), {}};
}

runner_lookup parse_ssh_value(const std::string& text) {
    auto o = value_object(text);
    if (!o || field(*o, "domain").empty())
        return {lookup_status::unavailable, nullptr, "unreadable SSH route in Redis"};
    auto route = make_route(field(*o, "proxyUrl"), field(*o, "apiKey"), field(*o, "domain"));
    if (!route) {
        auto r = std::make_shared<runner_route>();
        r->domain = field(*o, "domain");
        route = std::move(r);
    }
    return {lookup_status::found, std::move(route), {}};
}

std::optional<bool> parse_public_value(const std::string& text) {
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object())
        return std::nullopt;
    auto it = v.get_object().find("value");
    if (it == v.get_object().end() || !it->value().is_bool())
        return std::nullopt;
    return it->value().get_bool();
}

awaitable<std::optional<std::string>> redis_route_source::get(std::string key) {
    if (redis_.current_state() != redis::state::connected)
        co_return std::nullopt;
    // (A named vector: g++ 12 miscompiles braced lists of string literals inside co_await.)
    std::vector<std::string> args{"GET", std::move(key)};
    auto r = co_await redis_.command(std::move(args));
    if (!r || r->type == redis::reply::kind::error) {
        stats().redis_errors.fetch_add(1, std::memory_order_relaxed);
        co_return std::nullopt;
    }
    if (r->type != redis::reply::kind::string)
        co_return std::nullopt;
    co_return std::move(r->str);
}

void redis_route_source::set(std::string key, std::string value, int ttl_sec) {
    if (redis_.current_state() != redis::state::connected)
        return;
    // Written in the background: the request that fetched the route does not wait for Redis.
    boost::asio::co_spawn(ex_,
                          send_quietly(redis_, {"SET", std::move(key), std::move(value), "EX",
                                                std::to_string(ttl_sec)}),
                          boost::asio::detached);
}

awaitable<runner_lookup> redis_route_source::runner_for(std::string_view sandbox_id) {
    std::string id(sandbox_id);
    if (auto v = co_await get(std::string(runner_key_prefix) + id)) {
        auto r = parse_runner_value(*v);
        if (r.status == lookup_status::found) {
            stats().redis_hits.fetch_add(1, std::memory_order_relaxed);
            co_return r;
        }
    }
    auto r = co_await next_.runner_for(id);
    if (r.status == lookup_status::found)
        set(std::string(runner_key_prefix) + id, runner_value(*r.route), 120);
    co_return r;
}

awaitable<runner_lookup> redis_route_source::ssh_runner_for(std::string_view sandbox_id) {
    std::string id(sandbox_id);
    if (auto v = co_await get(std::string(ssh_key_prefix) + id)) {
        auto r = parse_ssh_value(*v);
        if (r.status == lookup_status::found) {
            stats().redis_hits.fetch_add(1, std::memory_order_relaxed);
            co_return r;
        }
    }
    auto r = co_await next_.ssh_runner_for(id);
    if (r.status == lookup_status::found && !r.route->domain.empty())
        set(std::string(ssh_key_prefix) + id, ssh_value(*r.route), 120);
    co_return r;
}

awaitable<public_lookup> redis_route_source::is_public(std::string_view id_or_token) {
    std::string id(id_or_token);
    if (auto v = co_await get(std::string(public_key_prefix) + id)) {
        if (auto p = parse_public_value(*v)) {
            stats().redis_hits.fetch_add(1, std::memory_order_relaxed);
            co_return public_lookup{lookup_status::found, *p, {}};
        }
    }
    auto r = co_await next_.is_public(id);
    if (r.status == lookup_status::found)
        set(std::string(public_key_prefix) + id,
            r.is_public ? R"({"value":true})" : R"({"value":false})", 3600);
    co_return r;
}

void redis_route_source::invalidate(std::string_view sandbox_id) {
    if (redis_.current_state() == redis::state::connected)
        boost::asio::co_spawn(
            ex_,
            send_quietly(redis_, {"DEL", std::string(runner_key_prefix) + std::string(sandbox_id)}),
            boost::asio::detached);
    next_.invalidate(sandbox_id);
}

} // namespace edge::routing
