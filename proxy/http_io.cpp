#include "proxy/http_io.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>

namespace edge::proxy {
namespace asio = boost::asio;
using boost::system::error_code;

void socket_watch::tick(std::chrono::steady_clock::time_point now) {
    for (auto* s : sockets) {
        if (s->deadline <= now && !s->timed_out) {
            s->timed_out = true;
            error_code ignored;
            s->sock.cancel(ignored);
        }
    }
}

void socket_watch::cancel_idle() {
    for (auto* s : sockets) {
        if (s->idle) {
            error_code ignored;
            s->sock.cancel(ignored);
        }
    }
}

error_code timed_socket::result(error_code ec) const {
    if (ec && timed_out)
        return boost::beast::error::timeout;
    return ec;
}

awaitable<error_code> read_some(timed_socket& s, byte_buffer& buf, std::size_t min_room) {
    auto [ec, n] = co_await s.sock.async_read_some(buf.prepare(min_room), use_nothrow);
    buf.commit(n);
    co_return s.result(ec);
}

bool write_now(timed_socket& s, std::vector<asio::const_buffer>& bufs) {
    error_code ec;
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
    if (write_now(s, bufs))
        co_return error_code{};
    auto [wec, written] = co_await asio::async_write(s.sock, bufs, use_nothrow);
    bufs.clear();
    co_return s.result(wec);
}

} // namespace edge::proxy
