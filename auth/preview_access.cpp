#include "auth/preview_access.hpp"

namespace edge::auth {
namespace {
decision_cache::options cache_options(const conf::config& c) {
    decision_cache::options o;
    o.max_entries = c.auth_cache_max_entries;
    o.stale_max = std::chrono::seconds(c.route_stale_max_sec);
    return o;
}

authorizer_options auth_options(const conf::config& c) {
    auto o = authorizer_options::from(c);
    o.lookup_timeout = std::chrono::milliseconds(c.auth_lookup_timeout_ms);
    return o;
}
} // namespace

access_process::access_process(const conf::config& c)
    : proxy_keys("PROXY_API_KEY", c.proxy_api_key, c.proxy_api_key_file),
      ssh_keys("SSH_GATEWAY_API_KEY", c.ssh_gateway_api_key, c.ssh_gateway_api_key_file),
      breaker(std::make_shared<circuit_breaker>()), shared(proxy_keys, cache_options(c)) {}

void access_process::reload_keys() {
    proxy_keys.reload();
    ssh_keys.reload();
}

access_worker::access_worker(boost::asio::any_io_executor ex, const conf::config& c,
                             access_process& p, control_plane_client& api,
                             routing::redis::client* redis)
    : auth(api, p.shared, redis, auth_options(c)),
      login(ex, api, p.shared.oidc, p.proxy_keys,
            login_options{c.proxy_protocol, authorizer_options::from(c).cookies}),
      activity(ex, api, p.proxy_keys, p.activity, redis) {}

} // namespace edge::auth
