#pragma once
// One client HTTP/1.1 connection: reads requests one after another (keep-alive), answers the
// base host itself, and forwards preview requests to the sandbox's runner, streaming both bodies
// with a fixed buffer. Lives on one worker; owned by the coroutine that runs it.
#include "common/async.hpp"
#include "proxy/worker.hpp"

#include <boost/asio/ip/tcp.hpp>

namespace edge::proxy {

// Serves the connection until it closes. Never throws.
awaitable<void> serve_h1(boost::asio::ip::tcp::socket socket, worker_context& ctx);

} // namespace edge::proxy
