#include "proxy/http_io.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/string_body.hpp>

namespace edge::proxy {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

namespace {
constexpr std::size_t read_size = 16 * 1024;
}

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
        return beast::error::timeout;
    return ec;
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

namespace {
using namespace std::string_view_literals;

void append_fields(std::string& out, const http::fields& f) {
    for (const auto& field : f) {
        auto name = field.name_string();
        auto value = field.value();
        out.append(name.data(), name.size());
        out.append(": "sv);
        out.append(value.data(), value.size());
        out.append("\r\n"sv);
    }
    out.append("\r\n"sv);
}
} // namespace

void append_header(std::string& out, const http::request_header<>& h) {
    out.append(h.method_string());
    out.push_back(' ');
    out.append(h.target());
    out.append(h.version() == 10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
    append_fields(out, h);
}

void append_header(std::string& out, const http::response_header<>& h) {
    out.append(h.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
    char code[4] = {static_cast<char>('0' + h.result_int() / 100 % 10),
                    static_cast<char>('0' + h.result_int() / 10 % 10),
                    static_cast<char>('0' + h.result_int() % 10), ' '};
    out.append(code, 4);
    auto reason = h.reason();
    out.append(reason.empty() ? http::obsolete_reason(h.result()) : reason);
    out.append("\r\n");
    append_fields(out, h);
}

template <bool is_request>
error_code parse_header_now(beast::flat_buffer& buf, http::basic_parser<is_request>& p) {
    if (buf.size() == 0)
        return http::error::need_more;
    error_code ec;
    auto used = p.put(buf.data(), ec);
    buf.consume(used);
    if (!ec && !p.is_header_done())
        return http::error::need_more;
    return ec;
}

template <bool is_request>
error_code parse_body_now(beast::flat_buffer& buf, http::parser<is_request, http::buffer_body>& p,
                          bool& progressed) {
    progressed = p.is_done();
    if (progressed || buf.size() == 0)
        return {};
    error_code ec;
    auto used = p.put(buf.data(), ec);
    buf.consume(used);
    if (ec == http::error::need_buffer) {
        progressed = true; // the body buffer is full
        return {};
    }
    if (ec && ec != http::error::need_more)
        return ec;
    progressed = used > 0 || p.is_done();
    return {};
}

template error_code parse_header_now<true>(beast::flat_buffer&, http::basic_parser<true>&);
template error_code parse_header_now<false>(beast::flat_buffer&, http::basic_parser<false>&);
template error_code parse_body_now<true>(beast::flat_buffer&,
                                         http::parser<true, http::buffer_body>&, bool&);
template error_code parse_body_now<false>(beast::flat_buffer&,
                                          http::parser<false, http::buffer_body>&, bool&);

template <bool is_request>
awaitable<error_code> read_header(timed_socket& s, beast::flat_buffer& buf,
                                  http::basic_parser<is_request>& p) {
    for (;;) {
        if (buf.size() > 0) {
            error_code ec;
            auto used = p.put(buf.data(), ec);
            buf.consume(used);
            if (!ec && p.is_header_done())
                co_return error_code{};
            if (ec && ec != http::error::need_more)
                co_return ec;
        }
        auto [ec, n] = co_await s.sock.async_read_some(buf.prepare(read_size), use_nothrow);
        if (ec == asio::error::eof) {
            if (!p.got_some() && buf.size() == 0)
                co_return http::error::end_of_stream;
            co_return http::error::partial_message;
        }
        if (ec)
            co_return s.result(ec);
        buf.commit(n);
    }
}

template <bool is_request>
awaitable<error_code> read_body_some(timed_socket& s, beast::flat_buffer& buf,
                                     http::parser<is_request, http::buffer_body>& p) {
    for (;;) {
        if (p.is_done())
            co_return error_code{};
        if (buf.size() > 0) {
            error_code ec;
            auto used = p.put(buf.data(), ec);
            buf.consume(used);
            if (ec == http::error::need_buffer)
                co_return error_code{}; // the body buffer is full
            if (ec && ec != http::error::need_more)
                co_return ec;
            if (used > 0 || p.is_done())
                co_return error_code{};
        }
        auto [ec, n] = co_await s.sock.async_read_some(buf.prepare(read_size), use_nothrow);
        if (ec == asio::error::eof) {
            error_code eof_ec;
            p.put_eof(eof_ec); // fine for a body that ends with the connection
            co_return eof_ec;
        }
        if (ec)
            co_return s.result(ec);
        buf.commit(n);
    }
}

template <bool is_request, class Body>
awaitable<error_code> write_ready(timed_socket& s, http::serializer<is_request, Body>& sr,
                                  std::vector<asio::const_buffer>& bufs) {
    while (!sr.is_done()) {
        error_code ec;
        bufs.clear();
        sr.next(ec, [&](error_code&, const auto& buffers) {
            for (auto b : beast::buffers_range_ref(buffers))
                bufs.push_back(b);
        });
        if (ec == http::error::need_buffer)
            co_return error_code{};
        if (ec)
            co_return ec;
        auto n = asio::buffer_size(bufs);
        if (auto wec = co_await write_all(s, bufs))
            co_return wec;
        sr.consume(n);
    }
    co_return error_code{};
}

template awaitable<error_code> read_header<true>(timed_socket&, beast::flat_buffer&,
                                                 http::basic_parser<true>&);
template awaitable<error_code> read_header<false>(timed_socket&, beast::flat_buffer&,
                                                  http::basic_parser<false>&);
template awaitable<error_code> read_body_some<true>(timed_socket&, beast::flat_buffer&,
                                                    http::parser<true, http::buffer_body>&);
template awaitable<error_code> read_body_some<false>(timed_socket&, beast::flat_buffer&,
                                                     http::parser<false, http::buffer_body>&);
template awaitable<error_code>
write_ready<true, http::buffer_body>(timed_socket&, http::serializer<true, http::buffer_body>&,
                                     std::vector<asio::const_buffer>&);
template awaitable<error_code>
write_ready<false, http::buffer_body>(timed_socket&, http::serializer<false, http::buffer_body>&,
                                      std::vector<asio::const_buffer>&);
template awaitable<error_code>
write_ready<false, http::string_body>(timed_socket&, http::serializer<false, http::string_body>&,
                                      std::vector<asio::const_buffer>&);

} // namespace edge::proxy
