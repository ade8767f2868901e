#include "routing/cached_route_source.hpp"

#include "conf/config.hpp"

namespace edge::routing {

std::shared_ptr<const runner_route> make_route(const std::string& proxy_url, std::string api_key,
                                               std::string domain) {
    conf::url_parts u;
    if (!conf::parse_url(proxy_url, u))
        return nullptr;
    auto r = std::make_shared<runner_route>();
    r->scheme = u.scheme;
    r->host = u.host;
    r->port = u.port;
    r->base_path = u.path;
    r->api_key = std::move(api_key);
    r->host_port = u.host + ":" + std::to_string(u.port);
    r->domain = std::move(domain);
    return r;
}

std::string cached_route_source::ssh_key(std::string_view sandbox_id) {
    return "ssh:" + std::string(sandbox_id);
}

template <class T>
awaitable<T> cached_route_source::miss(single_flight<T>& flights, std::string key,
                                       std::optional<route_cache::hit<T>> cached,
                                       std::function<awaitable<T>()> work) {
    auto& st = stats();
    st.cache_misses.fetch_add(1, std::memory_order_relaxed);
    auto deadline =
        route_cache::clock::now() +
        (cached ? std::min(opts_.lookup_timeout, opts_.stale_wait) : opts_.lookup_timeout);
    auto answer = co_await flights.run(std::move(key), deadline, std::move(work));
    if (!answer) {
        st.lookup_timeouts.fetch_add(1, std::memory_order_relaxed);
        answer.emplace(); // unavailable
        answer->detail = "no answer from Redis or the control plane within " +
                         std::to_string(opts_.lookup_timeout.count()) + " ms";
    }
    if (answer->status == lookup_status::unavailable && cached) {
        st.stale_serves.fetch_add(1, std::memory_order_relaxed);
        co_return std::move(cached->value);
    }
    co_return std::move(*answer);
}

awaitable<runner_lookup> cached_route_source::runner_lookup_for(std::string key,
                                                                std::string sandbox_id, bool ssh) {
    auto cached = shared_.cache.find_runner(key);
    if (cached && cached->fresh) {
        stats().cache_hits.fetch_add(1, std::memory_order_relaxed);
        co_return std::move(cached->value);
    }
    // The work is a named object, not a temporary inside the co_await expression: g++ 12
    // destroys such temporaries twice.
    std::function<awaitable<runner_lookup>()> work = [this, key, sandbox_id,
                                                      ssh]() -> awaitable<runner_lookup> {
        // (No co_await inside ?: either, for the same reason.)
        runner_lookup r;
        if (ssh)
            r = co_await next_.ssh_runner_for(sandbox_id);
        else
            r = co_await next_.runner_for(sandbox_id);
        shared_.cache.store_runner(key, r);
        co_return r;
    };
    co_return co_await miss(shared_.runner_flights, key, std::move(cached), std::move(work));
}

awaitable<runner_lookup> cached_route_source::runner_for(std::string_view sandbox_id) {
    std::string id(sandbox_id);
    co_return co_await runner_lookup_for(id, id, false);
}

awaitable<runner_lookup> cached_route_source::ssh_runner_for(std::string_view sandbox_id) {
    co_return co_await runner_lookup_for(ssh_key(sandbox_id), std::string(sandbox_id), true);
}

awaitable<public_lookup> cached_route_source::is_public(std::string_view id_or_token) {
    std::string key(id_or_token);
    auto cached = shared_.cache.find_public(key);
    if (cached && cached->fresh) {
        stats().cache_hits.fetch_add(1, std::memory_order_relaxed);
        co_return std::move(cached->value);
    }
    std::function<awaitable<public_lookup>()> work = [this, key]() -> awaitable<public_lookup> {
        auto r = co_await next_.is_public(key);
        shared_.cache.store_public(key, r);
        co_return r;
    };
    co_return co_await miss(shared_.public_flights, key, std::move(cached), std::move(work));
}

std::optional<runner_lookup> cached_route_source::ready_runner(std::string_view sandbox_id) {
    auto hit = shared_.cache.find_runner(sandbox_id);
    if (!hit || !hit->fresh)
        return std::nullopt;
    stats().cache_hits.fetch_add(1, std::memory_order_relaxed);
    return std::move(hit->value);
}

std::optional<public_lookup> cached_route_source::ready_public(std::string_view id_or_token) {
    auto hit = shared_.cache.find_public(id_or_token);
    if (!hit || !hit->fresh)
        return std::nullopt;
    stats().cache_hits.fetch_add(1, std::memory_order_relaxed);
    return std::move(hit->value);
}

bool cached_route_source::ready_pair(std::string_view sandbox_id, runner_lookup& runner,
                                     public_lookup& pub) {
    if (!shared_.cache.find_fresh_pair(sandbox_id, runner, pub))
        return false;
    stats().cache_hits.fetch_add(2, std::memory_order_relaxed);
    return true;
}

void cached_route_source::invalidate(std::string_view sandbox_id) {
    stats().invalidations.fetch_add(1, std::memory_order_relaxed);
    shared_.cache.forget_runner(sandbox_id);
    next_.invalidate(sandbox_id);
}

} // namespace edge::routing
