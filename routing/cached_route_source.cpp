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

awaitable<runner_lookup> cached_route_source::runner_for(std::string_view sandbox_id) {
    if (auto hit = cache_.find_runner(sandbox_id))
        co_return std::move(*hit);
    std::string key(sandbox_id); // the caller's view may not outlive the suspension below
    auto r = co_await next_.runner_for(key);
    cache_.store_runner(key, r);
    co_return r;
}

awaitable<public_lookup> cached_route_source::is_public(std::string_view id_or_token) {
    if (auto hit = cache_.find_public(id_or_token))
        co_return std::move(*hit);
    std::string key(id_or_token);
    auto r = co_await next_.is_public(key);
    cache_.store_public(key, r);
    co_return r;
}

} // namespace edge::routing
