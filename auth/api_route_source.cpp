#include "auth/api_route_source.hpp"

#include <boost/json.hpp>

namespace edge::auth {
using routing::lookup_status;

namespace {
std::string string_field(const boost::json::object& o, std::string_view key) {
    auto it = o.find(key);
    if (it == o.end() || !it->value().is_string())
        return {};
    return std::string(it->value().get_string());
}

std::string unexpected(std::string_view call, unsigned status) {
    if (status == 401 || status == 403)
        return std::string(call) + ": the control plane rejected the proxy API key (" +
               std::to_string(status) + "); check PROXY_API_KEY";
    return std::string(call) + ": the control plane answered " + std::to_string(status);
}
} // namespace

routing::runner_lookup parse_runner(const std::string& body) {
    boost::system::error_code ec;
    auto v = boost::json::parse(body, ec);
    if (ec || !v.is_object())
        return {lookup_status::unavailable, nullptr, "runners/by-sandbox: the answer is not JSON"};
    auto& o = v.get_object();
    auto url = string_field(o, "proxyUrl");
    if (url.empty())
        url = string_field(o, "apiUrl");
    auto route = routing::make_route(url, string_field(o, "apiKey"), string_field(o, "domain"));
    if (!route)
        return {lookup_status::unavailable, nullptr,
                "runners/by-sandbox: the runner has no usable proxyUrl or apiUrl"};
    return {lookup_status::found, std::move(route), {}};
}

awaitable<routing::runner_lookup> api_route_source::runner_for(std::string_view sandbox_id) {
    routing::stats().api_lookups.fetch_add(1, std::memory_order_relaxed);
    auto r = co_await api_.get("/runners/by-sandbox/" + std::string(sandbox_id), key(),
                               "runners/by-sandbox");
    if (!r)
        co_return routing::runner_lookup{lookup_status::unavailable, nullptr,
                                         "control plane unreachable: " + r.error().message()};
    if (r->status == 200)
        co_return parse_runner(r->body);
    if (r->status == 404)
        co_return routing::runner_lookup{lookup_status::not_found, nullptr, {}};
    co_return routing::runner_lookup{lookup_status::unavailable, nullptr,
                                     unexpected("runners/by-sandbox", r->status)};
}

awaitable<routing::public_lookup> api_route_source::is_public(std::string_view id_or_token) {
    routing::stats().api_lookups.fetch_add(1, std::memory_order_relaxed);
    auto r = co_await api_.get("/preview/" + std::string(id_or_token) + "/public", key(),
                               "preview/public");
    if (!r)
        co_return routing::public_lookup{lookup_status::unavailable, false,
                                         "control plane unreachable: " + r.error().message()};
    auto status = r->status;
    if (status == 200) {
        boost::system::error_code ec;
        auto v = boost::json::parse(r->body, ec);
        co_return routing::public_lookup{
            lookup_status::found, !ec && v.is_bool() && v.get_bool(), {}};
    }
    if (status == 404)
        co_return routing::public_lookup{lookup_status::not_found, false, {}};
    // Daytona's rule: any other 4xx but 408/429 means "not public".
    if (status >= 400 && status < 500 && status != 408 && status != 429 && status != 401)
        co_return routing::public_lookup{lookup_status::found, false, {}};
    co_return routing::public_lookup{lookup_status::unavailable, false,
                                     unexpected("preview/public", status)};
}

} // namespace edge::auth
