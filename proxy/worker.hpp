#pragma once
// Everything one worker thread's HTTP sessions share: the config snapshot, the route source
// (cache in front of Redis/API), the idle upstream connections, a resolver. Owned by the app,
// outlives every session on its worker; touched only from that worker's thread.
#include "common/tcp_pool.hpp"
#include "conf/config.hpp"
#include "routing/route.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <memory>

namespace edge::proxy {

struct worker_context {
    worker_context(boost::asio::any_io_executor ex, std::shared_ptr<const conf::config> c,
                   routing::route_source &r)
        : cfg(std::move(c)), routes(r), upstream_pool(tcp_pool::options{}), resolver(ex) {}

    std::shared_ptr<const conf::config> cfg;
    routing::route_source &routes;
    tcp_pool upstream_pool;
    boost::asio::ip::tcp::resolver resolver;
};

} // namespace edge::proxy
