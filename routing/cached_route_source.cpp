#include "routing/cached_route_source.hpp"

#include "conf/config.hpp"

namespace edge::routing {

std::shared_ptr<const runner_route> make_route(const std::string& proxy_url, std::string api_key) {
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
    return r;
}

template <class T>
void cached_route_source::store(table<T>& t, std::string_view key, T value,
                                std::chrono::seconds ttl) {
    auto now = opts_.now();
    if (t.size() >= opts_.max_entries) {
        std::erase_if(t, [&](const auto& kv) { return kv.second.expires <= now; });
        if (t.size() >= opts_.max_entries)
            t.erase(t.begin());
    }
    auto it = t.find(key);
    if (it == t.end())
        t.emplace(std::string(key), entry<T>{std::move(value), now + ttl});
    else
        it->second = entry<T>{std::move(value), now + ttl};
}

awaitable<runner_lookup> cached_route_source::runner_for(std::string_view sandbox_id) {
    if (auto it = runners_.find(sandbox_id); it != runners_.end()) {
        if (it->second.expires > opts_.now())
            co_return it->second.value;
        runners_.erase(it);
    }
    std::string key(sandbox_id); // the view may not outlive the suspension below
    auto r = co_await next_.runner_for(key);
    if (r.status == lookup_status::found)
        store(runners_, key, r, opts_.runner_ttl);
    else if (r.status == lookup_status::not_found)
        store(runners_, key, r, opts_.negative_ttl);
    co_return r;
}

awaitable<public_lookup> cached_route_source::is_public(std::string_view id_or_token) {
    if (auto it = publics_.find(id_or_token); it != publics_.end()) {
        if (it->second.expires > opts_.now())
            co_return it->second.value;
        publics_.erase(it);
    }
    std::string key(id_or_token);
    auto r = co_await next_.is_public(key);
    if (r.status == lookup_status::found)
        store(publics_, key, r, opts_.public_ttl);
    else if (r.status == lookup_status::not_found)
        store(publics_, key, r, opts_.negative_ttl);
    co_return r;
}

void cached_route_source::forget(std::string_view sandbox_id) {
    if (auto it = runners_.find(sandbox_id); it != runners_.end())
        runners_.erase(it);
    if (auto it = publics_.find(sandbox_id); it != publics_.end())
        publics_.erase(it);
}

} // namespace edge::routing
