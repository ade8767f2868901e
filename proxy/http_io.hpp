#pragma once
// Socket plumbing for the proxy's hot path: deadlines checked by the worker's ticker instead of
// a timer per operation, a read buffer that parsed heads can point into, and writes that try a
// plain non-blocking write before any asynchronous operation.
#include "common/async.hpp"
#include "common/coarse_clock.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <tuple>
#include <string_view>
#include <unordered_set>
#include <vector>

struct ssl_st;

namespace edge::proxy {

struct timed_socket;
void tls_free(ssl_st* ssl); // proxy/tls.cpp

// Every socket of a worker with a deadline; the ticker cancels the overdue ones, and a drain
// closes the idle ones. One per worker, its thread only.
struct socket_watch {
    std::unordered_set<timed_socket*> sockets;
    std::uint64_t ticks = 0; // tick() calls so far
    // Cancels the operations of every socket past its deadline (marked timed_out), and calls
    // the idle hooks of the sockets idle since the tick before the last.
    void tick(std::chrono::steady_clock::time_point now);
    // Cancels the sockets waiting for a next request (or calls their drain hook).
    void cancel_idle();
    // Calls every going-away hook (once per socket that has one).
    void going_away();
};

// A socket whose operations are bounded by a deadline instead of a timer per operation.
// Registered with the worker's socket_watch for its whole life (hence not movable).
struct timed_socket {
    using clock = std::chrono::steady_clock;

    timed_socket(socket_watch& w, boost::asio::ip::tcp::socket s) : sock(std::move(s)), watch(w) {
        watch.sockets.insert(this);
    }
    ~timed_socket() {
        watch.sockets.erase(this);
        if (tls)
            tls_free(tls);
    }
    timed_socket(const timed_socket&) = delete;
    timed_socket& operator=(const timed_socket&) = delete;

    // (From the coarse clock: deadlines are checked every 250 ms.)
    void expires_after(clock::duration d) {
        deadline = coarse_now() + d;
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
    bool writing = false; // a tunnel direction is writing (its deadline is the write's)
    ssl_st* tls = nullptr; // set once a TLS handshake succeeded on this socket (owned)
    // Called at the start of a drain instead of cancelling an idle read (HTTP/2 connections
    // say GOAWAY first).
    void (*drain_hook)(void*) = nullptr;
    void* drain_context = nullptr;
    // Called when the drain deadline nears (WebSocket tunnels send their close frames).
    void (*going_away_hook)(void*) = nullptr;
    void* going_away_context = nullptr;
    // Called once by a tick when the socket has been idle since `idle_tick` for at least one
    // whole tick period (an idle client gives back the runner connection it kept).
    void (*idle_hook)(void*) = nullptr;
    void* idle_context = nullptr;
    std::uint64_t idle_tick = 0;
};

// Bytes read from a socket and not consumed yet, contiguous (a parsed head's views point into
// it until it is consumed). Grows on demand up to what the caller asks for.
class byte_buffer {
  public:
    std::string_view data() const { return {mem_.get() + lo_, hi_ - lo_}; }
    std::size_t size() const { return hi_ - lo_; }
    bool empty() const { return hi_ == lo_; }
    void consume(std::size_t n) {
        lo_ += n;
        if (lo_ == hi_)
            lo_ = hi_ = 0;
    }
    void clear() { lo_ = hi_ = 0; }
    // Room for at least `min` more bytes after the data (moved to the front, or grown).
    boost::asio::mutable_buffer prepare(std::size_t min) {
        if (cap_ - hi_ < min) {
            if (lo_ > 0 && cap_ - (hi_ - lo_) >= min) {
                std::memmove(mem_.get(), mem_.get() + lo_, hi_ - lo_);
            } else {
                std::size_t cap = std::max(cap_ * 2, (hi_ - lo_) + min);
                auto mem = std::make_unique_for_overwrite<char[]>(cap);
                if (hi_ > lo_)
                    std::memcpy(mem.get(), mem_.get() + lo_, hi_ - lo_);
                mem_ = std::move(mem);
                cap_ = cap;
            }
            hi_ -= lo_;
            lo_ = 0;
        }
        return {mem_.get() + hi_, cap_ - hi_};
    }
    void commit(std::size_t n) { hi_ += n; }
    std::size_t capacity() const { return cap_; }
    // Frees the memory of an empty buffer: an idle tunnel holds none.
    void trim() {
        if (empty())
            release(0);
    }
    // Takes `mem` (of `cap` bytes) as its memory; the buffer must be empty.
    void adopt(std::unique_ptr<char[]> mem, std::size_t cap) {
        mem_ = std::move(mem);
        cap_ = cap;
        lo_ = hi_ = 0;
    }
    // Gives up its memory (for a pool) when it still has `cap` bytes, and empties the buffer.
    std::unique_ptr<char[]> release(std::size_t cap) {
        std::unique_ptr<char[]> out;
        if (cap_ == cap)
            out = std::move(mem_);
        mem_.reset();
        cap_ = lo_ = hi_ = 0;
        return out;
    }

  private:
    std::unique_ptr<char[]> mem_;
    std::size_t cap_ = 0, lo_ = 0, hi_ = 0;
};

// Reads what is there, or waits for something (TLS decrypted when the socket has it). EOF is
// asio::error::eof; past the deadline, beast::error::timeout (through s.result()).
using read_result = std::tuple<boost::system::error_code, std::size_t>;
awaitable<read_result> tls_read_some(timed_socket& s, boost::asio::mutable_buffer b);
inline awaitable<read_result> read_some(timed_socket& s, boost::asio::mutable_buffer b) {
    if (s.tls)
        return tls_read_some(s, b);
    return s.sock.async_read_some(b, use_nothrow);
}

// Reads what is there without waiting: would_block when nothing is.
std::size_t read_now(timed_socket& s, boost::asio::mutable_buffer b,
                     boost::system::error_code& ec);

// Waits until `s` has something to read (at once when TLS holds decrypted bytes already).
awaitable<boost::system::error_code> wait_readable(timed_socket& s);

// Ends the sending side: TLS close_notify, then a TCP half-close.
void shutdown_send(timed_socket& s);

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

} // namespace edge::proxy
