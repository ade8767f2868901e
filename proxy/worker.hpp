#pragma once
// Everything one worker thread's HTTP sessions share: the config snapshot, the route source
// (cache in front of Redis/API), the idle upstream connections, a resolver. Owned by the app,
// outlives every session on its worker; touched only from that worker's thread.
#include "common/tcp_pool.hpp"
#include "conf/config.hpp"
#include "proxy/http_io.hpp"
#include "routing/route.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <memory>
#include <unordered_set>
#include <vector>

namespace edge::routing::redis {
class client;
}
namespace edge::auth {
struct access_worker;
class control_plane_client;
class key_holder;
}

namespace edge::proxy {

class tls_store;
class tls_client_context;

struct worker_context {
    worker_context(boost::asio::any_io_executor ex, std::shared_ptr<const conf::config> c,
                   routing::route_source& r)
        : cfg(std::move(c)), routes(r), upstream_pool(pool_options()), resolver(ex) {}

    static tcp_pool::options pool_options() {
        tcp_pool::options o;
        o.free_tls = [](void* ssl) { tls_free(static_cast<ssl_st*>(ssl)); };
        return o;
    }

    // Relay buffers, reused across exchanges: a fresh 64 KiB allocation per request costs more
    // than the rest of a small request's bookkeeping.
    static constexpr std::size_t relay_buffer_size = 64 * 1024;
    std::unique_ptr<char[]> take_buffer() {
        if (spare_buffers.empty())
            return std::make_unique_for_overwrite<char[]>(relay_buffer_size);
        auto b = std::move(spare_buffers.back());
        spare_buffers.pop_back();
        return b;
    }
    void give_back(std::unique_ptr<char[]> b) {
        if (b && spare_buffers.size() < 256)
            spare_buffers.push_back(std::move(b));
    }

    // Graceful stop: idle keep-alive connections are closed at once, busy ones after their
    // current exchange (with `Connection: close`). Call on this worker's thread.
    void begin_drain() {
        draining = true;
        watch.cancel_idle();
    }
    // The drain deadline nears: open WebSocket tunnels end with a close frame (1001) each way.
    void websockets_going_away() { watch.going_away(); }

    std::shared_ptr<const conf::config> cfg;
    routing::route_source& routes;
    // The TLS context store when ENABLE_TLS is on (process-wide, reloadable), else null.
    tls_store* tls = nullptr;
    // TLS toward runners whose proxyUrl is https (process-wide).
    const tls_client_context* runner_tls = nullptr;
    // Preview access (authorizer, OIDC login, activity) of this worker; null: every sandbox is
    // served as public (tests of the proxy alone).
    auth::access_worker* access = nullptr;
    // The control-plane client of this worker and the proxy API key (build-log routes).
    auth::control_plane_client* api = nullptr;
    const auth::key_holder* proxy_keys = nullptr;
    std::vector<std::unique_ptr<char[]>> spare_buffers;
    bool draining = false;
    // Every worker's Redis connection, when REDIS_HOST is set: /health reports the worst state.
    std::vector<const routing::redis::client*> redis_clients;
    // Every client and runner socket of this worker, with its deadline (see http_io.hpp).
    socket_watch watch;
    // Live client connections; read by the drain watcher on another thread.
    std::atomic<std::size_t> sessions{0};
    tcp_pool upstream_pool;
    boost::asio::ip::tcp::resolver resolver;
};

} // namespace edge::proxy
