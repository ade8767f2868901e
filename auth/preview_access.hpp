#pragma once
// Wiring for app/main.cpp: everything preview access needs, built from the config. One
// access_process per process (thread-safe parts), one access_worker per worker thread.
//
//   edge::auth::access_process access(*cfg);              // throws on an unreadable key file
//   api_opts.breaker = access.breaker;                    // every worker's API client
//   per worker i:
//     w.api_routes = make_unique<api_route_source>(*w.api, access.proxy_keys);
//     w.access = make_unique<access_worker>(ex, *cfg, access, *w.api, w.redis.get());
//     w.access->activity.run();
//   worker 0: co_spawn(ex0, load_oidc(*w0.api, *cfg, access.shared.oidc), detached);
//   SIGHUP:   access.reload_keys();
#include "auth/activity.hpp"
#include "auth/circuit_breaker.hpp"
#include "auth/key_holder.hpp"
#include "auth/oidc.hpp"
#include "auth/preview_auth.hpp"
#include "conf/config.hpp"

#include <memory>

namespace edge::auth {

struct access_process {
    explicit access_process(const conf::config& c);
    // Re-reads PROXY_API_KEY_FILE and SSH_GATEWAY_API_KEY_FILE (SIGHUP). Logs what changed.
    void reload_keys();

    key_holder proxy_keys;
    key_holder ssh_keys;
    std::shared_ptr<circuit_breaker> breaker;
    auth_shared shared;
    activity_shared activity;
};

struct access_worker {
    access_worker(boost::asio::any_io_executor ex, const conf::config& c, access_process& p,
                  control_plane_client& api, routing::redis::client* redis);
    authorizer auth;
    oidc_login login;
    activity_tracker activity;
};

} // namespace edge::auth
