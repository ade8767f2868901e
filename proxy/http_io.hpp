#pragma once
// HTTP/1.1 I/O for the proxy's hot path, driven by hand: Beast's parser and serializer fed from
// and drained to raw sockets, one socket operation per step. Beast's composed operations and
// tcp_stream's per-operation timers cost more CPU than the rest of a small request; here a
// timeout is a deadline field that the worker's ticker checks (socket_watch).
#include "common/async.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/serializer.hpp>

#include <chrono>
#include <string>
#include <unordered_set>
#include <vector>

namespace edge::proxy {

struct timed_socket;

// Every socket of a worker with a deadline; the ticker cancels the overdue ones, and a drain
// closes the idle ones. One per worker, its thread only.
struct socket_watch {
    std::unordered_set<timed_socket*> sockets;
    // Cancels the operations of every socket past its deadline (marked timed_out).
    void tick(std::chrono::steady_clock::time_point now);
    // Cancels the sockets waiting for a next request.
    void cancel_idle();
};

// A socket whose operations are bounded by a deadline instead of a timer per operation.
// Registered with the worker's socket_watch for its whole life (hence not movable).
struct timed_socket {
    using clock = std::chrono::steady_clock;

    timed_socket(socket_watch& w, boost::asio::ip::tcp::socket s) : sock(std::move(s)), watch(w) {
        watch.sockets.insert(this);
    }
    ~timed_socket() { watch.sockets.erase(this); }
    timed_socket(const timed_socket&) = delete;
    timed_socket& operator=(const timed_socket&) = delete;

    void expires_after(clock::duration d) {
        deadline = clock::now() + d;
        timed_out = false;
    }
    void expires_never() {
        deadline = clock::time_point::max();
        timed_out = false;
    }
    // An operation's error, as the caller should see it: the ticker's cancel is a timeout.
    boost::system::error_code result(boost::system::error_code ec) const;

    boost::asio::ip::tcp::socket sock;
    socket_watch& watch;
    clock::time_point deadline = clock::time_point::max();
    bool timed_out = false;
    bool idle = false; // waiting for the next request on a kept-alive connection
};

// Reads into `buf` and parses until `p` has a whole header. end_of_stream when the peer closed
// before sending anything; beast::error::timeout past the deadline.
template <bool is_request>
awaitable<boost::system::error_code> read_header(timed_socket& s, boost::beast::flat_buffer& buf,
                                                 boost::beast::http::basic_parser<is_request>& p);

// The synchronous parts: parse what `buf` already holds. parse_header_now answers need_more
// when the header is not all there; parse_body_now sets `progressed` when it consumed anything
// (or the message is done). Only when they cannot go on is a read (a coroutine) needed.
template <bool is_request>
boost::system::error_code parse_header_now(boost::beast::flat_buffer& buf,
                                           boost::beast::http::basic_parser<is_request>& p);
template <bool is_request>
boost::system::error_code
parse_body_now(boost::beast::flat_buffer& buf,
               boost::beast::http::parser<is_request, boost::beast::http::buffer_body>& p,
               bool& progressed);

// Parses body bytes into `p`'s buffer_body (its data/size set by the caller): returns once some
// body or framing was consumed, the body buffer is full, or the message is done.
template <bool is_request>
awaitable<boost::system::error_code>
read_body_some(timed_socket& s, boost::beast::flat_buffer& buf,
               boost::beast::http::parser<is_request, boost::beast::http::buffer_body>& p);

// Writes what a Beast serializer can produce now, until it needs more body or is done (used
// for the answers edgegate makes itself; relayed messages are framed by the session).
// `bufs` is scratch space reused across calls.
template <bool is_request, class Body>
awaitable<boost::system::error_code>
write_ready(timed_socket& s, boost::beast::http::serializer<is_request, Body>& sr,
            std::vector<boost::asio::const_buffer>& bufs);

// Writes all of `bufs`: a plain non-blocking write first (most writes fit the socket buffer at
// once, and then no asynchronous operation is needed at all), then asynchronously for whatever
// did not fit. The socket must be in non-blocking mode. `bufs` is consumed (left with what was not
// written on error).
awaitable<boost::system::error_code> write_all(timed_socket& s,
                                               std::vector<boost::asio::const_buffer>& bufs);

// write_all's first step alone, for callers that avoid a coroutine when it is enough: true when
// everything was written; false leaves the rest in `bufs` (would-block or an error: call
// write_all, which reports the error).
bool write_now(timed_socket& s, std::vector<boost::asio::const_buffer>& bufs);

// The header of a message as it goes on the wire (start line, fields, empty line), appended to
// `out`. Beast's serializer does the same through layers of buffer adaptors that cost more than
// the rest of a small exchange.
void append_header(std::string& out, const boost::beast::http::request_header<>& h);
void append_header(std::string& out, const boost::beast::http::response_header<>& h);

} // namespace edge::proxy
