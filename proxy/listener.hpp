#pragma once
// Accepts HTTP connections on one worker. Every worker has its own acceptor on the same port
// (SO_REUSEPORT), so the kernel spreads connections and a connection never changes thread.
#include "common/async.hpp"
#include "proxy/worker.hpp"

#include <boost/asio/ip/tcp.hpp>

namespace edge::proxy {

// Opens, binds and listens; throws on failure (startup only).
boost::asio::ip::tcp::acceptor open_acceptor(boost::asio::any_io_executor ex,
                                             const boost::asio::ip::tcp::endpoint& ep);

// Enforces the deadlines of the worker's sockets: every 250 ms, the overdue ones are cancelled
// (their operations end as timeouts). Runs until the worker stops.
awaitable<void> watch_deadlines(worker_context& ctx);

// Accepts until the acceptor is closed, each connection served by its own coroutine.
awaitable<void> accept_loop(boost::asio::ip::tcp::acceptor& acceptor, worker_context& ctx);

} // namespace edge::proxy
