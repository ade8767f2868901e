#include "proxy/listener.hpp"

#include "proxy/h1_session.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <spdlog/spdlog.h>

#include <sys/socket.h>

namespace edge::proxy {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

tcp::acceptor open_acceptor(asio::any_io_executor ex, const tcp::endpoint& ep) {
    tcp::acceptor a(ex);
    a.open(ep.protocol());
    a.set_option(tcp::acceptor::reuse_address(true));
    a.set_option(asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true));
    a.bind(ep);
    a.listen(asio::socket_base::max_listen_connections);
    return a;
}

awaitable<void> watch_deadlines(worker_context& ctx) {
    asio::steady_timer t(co_await asio::this_coro::executor);
    for (;;) {
        t.expires_after(std::chrono::milliseconds(250));
        if (auto [ec] = co_await t.async_wait(use_nothrow); ec)
            co_return;
        ctx.watch.tick(std::chrono::steady_clock::now());
    }
}

awaitable<void> accept_loop(tcp::acceptor& acceptor, worker_context& ctx) {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
        if (ec == asio::error::operation_aborted || !acceptor.is_open())
            co_return;
        if (ec) {
            // Out of file descriptors and the like: say so, back off a little, keep serving.
            spdlog::error("accept failed: {}", ec.message());
            asio::steady_timer t(acceptor.get_executor(), std::chrono::milliseconds(100));
            co_await t.async_wait(use_nothrow);
            continue;
        }
        asio::co_spawn(acceptor.get_executor(), serve_h1(std::move(socket), ctx), asio::detached);
    }
}

} // namespace edge::proxy
