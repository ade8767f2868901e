#include "proxy/http_io.hpp"

#include "proxy/tls.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>

namespace edge::proxy {
namespace asio = boost::asio;
using boost::system::error_code;

void socket_watch::tick(std::chrono::steady_clock::time_point now) {
    ++ticks;
    std::vector<timed_socket*> idle_long;
    for (auto* s : sockets) {
        if (s->deadline <= now && !s->timed_out) {
            s->timed_out = true;
            error_code ignored;
            s->sock.cancel(ignored);
        }
        if (s->idle_hook && s->idle && ticks - s->idle_tick >= 2)
            idle_long.push_back(s);
    }
    // (After the loop: a hook may destroy sockets, though never one that has a hook.)
    for (auto* s : idle_long)
        std::exchange(s->idle_hook, nullptr)(s->idle_context);
}

void socket_watch::cancel_idle() {
    // (A copy: a drain hook may add or remove sockets.)
    std::vector<timed_socket*> all(sockets.begin(), sockets.end());
    for (auto* s : all) {
        if (!sockets.contains(s))
            continue;
        if (s->drain_hook) {
            s->drain_hook(s->drain_context);
        } else if (s->idle) {
            error_code ignored;
            s->sock.cancel(ignored);
        }
    }
}

void socket_watch::going_away() {
    std::vector<timed_socket*> all(sockets.begin(), sockets.end());
    for (auto* s : all) {
        if (!sockets.contains(s) || !s->going_away_hook)
            continue;
        auto hook = std::exchange(s->going_away_hook, nullptr);
        hook(s->going_away_context);
    }
}

error_code timed_socket::result(error_code ec) const {
    if (ec && timed_out)
        return boost::beast::error::timeout;
    return ec;
}

std::size_t read_now(timed_socket& s, asio::mutable_buffer b, error_code& ec) {
    if (s.tls)
        return tls_read_now(s, b, ec);
    return s.sock.read_some(b, ec);
}

awaitable<error_code> wait_readable(timed_socket& s) {
    if (s.tls && tls_pending(s))
        co_return error_code{};
    auto [ec] = co_await s.sock.async_wait(asio::ip::tcp::socket::wait_read, use_nothrow);
    co_return s.result(ec);
}

void shutdown_send(timed_socket& s) {
    if (!s.sock.is_open())
        return;
    if (s.tls)
        tls_close_notify(s);
    error_code ignored;
    s.sock.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

bool write_now(timed_socket& s, std::vector<asio::const_buffer>& bufs) {
    error_code ec;
    if (s.tls) {
        bool want_read = false;
        return tls_write_now(s, bufs, ec, want_read);
    }
    std::size_t n = s.sock.write_some(bufs, ec);
    // Drop what was written.
    auto it = bufs.begin();
    while (it != bufs.end() && n >= it->size()) {
        n -= it->size();
        ++it;
    }
    bufs.erase(bufs.begin(), it);
    if (!bufs.empty() && n > 0)
        bufs.front() += n;
    return bufs.empty();
}

awaitable<error_code> write_all(timed_socket& s, std::vector<asio::const_buffer>& bufs) {
    if (s.tls) {
        for (;;) {
            error_code ec;
            bool want_read = false;
            if (tls_write_now(s, bufs, ec, want_read))
                co_return error_code{};
            if (ec)
                co_return ec;
            const auto what = want_read ? asio::ip::tcp::socket::wait_read
                                        : asio::ip::tcp::socket::wait_write;
            auto [wec] = co_await s.sock.async_wait(what, use_nothrow);
            if (wec)
                co_return s.result(wec);
        }
    }
    if (write_now(s, bufs))
        co_return error_code{};
    auto [wec, written] = co_await asio::async_write(s.sock, bufs, use_nothrow);
    bufs.clear();
    co_return s.result(wec);
}

} // namespace edge::proxy
