#include "proxy/h1_session.hpp"

#include "proxy/error_response.hpp"
#include "proxy/exchange.hpp"
#include "proxy/h1_codec.hpp"
#include "proxy/h2_session.hpp"
#include "proxy/http_metrics.hpp"
#include "proxy/websocket_frames.hpp"
#include "proxy/header_rewrite.hpp"
#include "proxy/http_io.hpp"
#include "proxy/tls.hpp"
#include "routing/host.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cctype>
#include <charconv>
#include <span>
#include <cstdio>
#include <optional>

namespace edge::proxy {
namespace {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;
using namespace std::string_view_literals;
using h1::body_kind;
using namespace boost::asio::experimental::awaitable_operators;

constexpr auto idle_timeout = 70s;   // waiting for the next request on a kept-alive connection
constexpr auto header_timeout = 10s; // from the first byte of a request to the end of its header
constexpr auto io_timeout = 70s; // a body read from the client or any write that makes no progress
constexpr std::size_t read_room = 16 * 1024;
// Lingering close (as nginx's): after an answer that leaves a request body unread, what the
// client still sends is read and dropped for this long, up to this much, before the close (a
// close with unread bytes sends a reset, which can destroy the answer before the client read
// it).
constexpr auto linger_time = 5s;
constexpr std::size_t linger_bytes = 64 * 1024 * 1024;
constexpr std::size_t relay_buffer_size = worker_context::relay_buffer_size;


bool timed_out(const error_code& ec) {
    return ec == boost::beast::error::timeout;
}

// What went wrong while moving a body from one side to the other.
enum class relay_failure { none, read, write, framing, client_gone };

// A body on its way through: how it is delimited on each side, and how far it got.
struct body_state {
    body_kind in = body_kind::none;
    body_kind out = body_kind::none;
    std::uint64_t remaining = 0; // for `length`
    h1::chunked_decoder chunks;
    std::string trailer_out; // chunked to chunked: the trailer section passed on
    bool done = false;
    bool bad = false;

    void start(body_kind in_kind, std::uint64_t length, body_kind out_kind) {
        in = in_kind;
        out = out_kind;
        remaining = length;
        chunks.reset();
        done = in_kind == body_kind::none;
        bad = false;
    }
};

class session final : public exchange {
  public:
    session(tcp::socket s, worker_context& ctx)
        : exchange(ctx), client_(ctx.watch, std::move(s)) {
        ++ctx_.sessions;
        error_code ec;
        auto ep = client_.sock.remote_endpoint(ec);
        client_ip_storage_ = ec ? "unknown" : ep.address().to_string();
        client_ip_ = client_ip_storage_;
        client_.sock.set_option(tcp::no_delay(true), ec);
        client_.sock.non_blocking(true, ec); // for write_now's plain write
        exchange_metrics().connection_opened(http_protocol::h1);
    }

    ~session() {
        --ctx_.sessions;
        exchange_metrics().connection_closed(http_protocol::h1);
    }
    session(const session&) = delete;
    session& operator=(const session&) = delete;

    awaitable<void> run() {
        if (ctx_.tls && !co_await handshake())
            co_return;
        if (tls_chose_h2(client_)) {
            co_await as_h2({});
        } else {
            while (!ctx_.draining && co_await serve_one()) {
            }
        }
        give_back_held();
        shutdown_send(client_);
        if (linger_)
            co_await linger();
        error_code ec;
        client_.sock.close(ec);
    }

  private:
    // After the half-close: reads and drops what the client still sends (the rest of a request
    // body edgegate answered without reading), within linger_time and linger_bytes, until the
    // client closes too.
    awaitable<void> linger() {
        const auto until = std::chrono::steady_clock::now() + linger_time;
        std::size_t dropped = 0;
        while (dropped < linger_bytes) {
            const auto left = until - std::chrono::steady_clock::now();
            if (left <= std::chrono::steady_clock::duration::zero())
                break;
            client_.expires_after(left);
            in_.clear();
            auto [ec, n] = co_await read_some(client_, in_.prepare(read_room));
            if (ec)
                break;
            dropped += n;
        }
        in_.clear();
    }

    // The connection turns out to speak HTTP/2: served by an h2 session until it closes.
    awaitable<void> as_h2(std::string_view preread) {
        auto& m = exchange_metrics();
        m.connection_closed(http_protocol::h1);
        m.connection_opened(http_protocol::h2);
        co_await serve_h2(client_, preread, ctx_, client_ip_);
        m.connection_closed(http_protocol::h2);
        m.connection_opened(http_protocol::h1); // (the destructor counts it closed)
    }

    // The TLS handshake, within the time allowed for a request header.
    awaitable<bool> handshake() {
        auto tls = ctx_.tls->current();
        client_.expires_after(header_timeout);
        auto ec = co_await tls_accept(client_, *tls);
        if (ec) {
            spdlog::debug("TLS handshake with {} failed: {}", client_ip_, ec.message());
            error_code ignored;
            client_.sock.close(ignored);
            co_return false;
        }
        co_return true;
    }

    // Serves one request; true when the connection stays open for the next.
    awaitable<bool> serve_one() {
        // What the previous exchange used of the client's bytes goes; what it read past its
        // body (a pipelined request) comes back in front.
        in_.consume(in_used_);
        in_used_ = 0;
        if (!carry_.empty()) {
            auto room = in_.prepare(carry_.size());
            std::memcpy(room.data(), carry_.data(), carry_.size());
            in_.commit(carry_.size());
            carry_.clear();
        }
        if (in_.empty()) {
            client_.expires_after(idle_timeout);
            client_.idle = true;
            if (held_) {
                client_.idle_tick = ctx_.watch.ticks;
                client_.idle_hook = &session::on_idle;
                client_.idle_context = this;
            }
            auto [ec, n] = co_await read_some(client_, in_.prepare(read_room));
            in_.commit(n);
            client_.idle = false;
            if (ec || ctx_.draining)
                co_return false;
        }
        client_.expires_after(header_timeout);
        if (first_request_) {
            // h2c with prior knowledge: the connection starts with HTTP/2's preface.
            first_request_ = false;
            while (in_.size() < h2_preface.size() && h2_preface.starts_with(in_.data())) {
                auto [ec, n] = co_await read_some(client_, in_.prepare(read_room));
                in_.commit(n);
                if (ec)
                    co_return false;
            }
            if (in_.data().starts_with(h2_preface)) {
                co_await as_h2(in_.data());
                co_return false;
            }
        }
        for (;;) {
            auto r = h1::parse_request(in_.data(), req_);
            if (r.status == h1::parse_status::done)
                break;
            if (r.status == h1::parse_status::bad) {
                co_await send_error(r.http_status, "malformed HTTP request: " + std::string(r.message));
                co_return false;
            }
            // Read until a new line ends: a head sent a byte at a time is parsed once per line,
            // not once per byte.
            for (;;) {
                const std::size_t before = in_.size();
                auto [ec, n] = co_await read_some(client_, in_.prepare(read_room));
                in_.commit(n);
                if (ec)
                    co_return false; // closed, reset or timed out mid-header: nobody to answer
                if (in_.data().substr(before).find('\n') != std::string_view::npos ||
                    in_.size() >= h1::max_head_size)
                    break;
            }
        }
        in_used_ = req_.size;
        body_unread_ = req_.body != body_kind::none;
        begin_exchange();
        const bool keep = co_await dispatch();
        end_exchange();
        co_return keep;
    }

    std::string_view protocol() const override { return "h1"; }

    // An answer edgegate makes itself. The connection stays open only when the whole request
    // has been read (no unread body would be taken for the next request).
    awaitable<bool> send_local(unsigned status, std::string_view content_type,
                               std::string_view body, std::span<const h1::field> extra,
                               bool keep_allowed) override {
        const bool keep = keep_allowed && req_.keep_alive && req_.body == body_kind::none &&
                          !ctx_.draining;
        linger_ |= body_unread_;
        rec_.status = status;
        if (!is_head_request())
            rec_.bytes_out += body.size();
        head_out_.clear();
        write_local_response(head_out_, status, content_type, body, keep, is_head_request(),
                             extra);
        bufs_.assign({asio::buffer(head_out_)});
        co_return co_await flush(client_) && keep;
    }

    // Writes bufs_ to `s`: a plain write, then a coroutine only for what did not fit.
    awaitable<bool> flush(timed_socket& s) {
        if (write_now(s, bufs_))
            co_return true;
        co_return co_await flush_rest(s);
    }

    // Writes what a plain write (write_now) left of bufs_, with a deadline (one is needed only
    // while waiting). The hot path calls write_now itself and this only when needed: most
    // writes complete at once, and flush's coroutine frame costs more than the write's code.
    awaitable<bool> flush_rest(timed_socket& s) {
        s.expires_after(io_timeout);
        co_return !co_await write_all(s, bufs_);
    }

    // Adds the part of `piece` that belongs to the body in `st` to bufs_, framed for the other
    // side; returns how many bytes of `piece` that was.
    std::size_t frame_piece(body_state& st, std::string_view piece) {
        const std::size_t used = frame_piece_uncounted(st, piece);
        (&st == &request_body_ ? rec_.bytes_in : rec_.bytes_out) += used;
        return used;
    }

    std::size_t frame_piece_uncounted(body_state& st, std::string_view piece) {
        switch (st.in) {
        case body_kind::none: st.done = true; return 0;
        case body_kind::length: {
            auto n = static_cast<std::size_t>(std::min<std::uint64_t>(piece.size(), st.remaining));
            if (n > 0)
                bufs_.emplace_back(piece.data(), n);
            st.remaining -= n;
            st.done = st.remaining == 0;
            return n;
        }
        case body_kind::chunked: {
            h1::chunked_decoder::result r;
            if (st.out == body_kind::chunked) {
                // The framing passes as it came up to the trailer section, which is passed
                // on without the fields that must not be trailers.
                r = st.chunks.feed(piece, [](std::string_view) {});
                if (r.before_trailers > 0)
                    bufs_.emplace_back(piece.data(), r.before_trailers);
                if (r.done) {
                    st.trailer_out.clear();
                    h1::append_trailer_section(st.trailer_out, st.chunks.trailers());
                    bufs_.emplace_back(st.trailer_out.data(), st.trailer_out.size());
                }
            } else {
                r = st.chunks.feed(piece,
                                   [&](std::string_view d) { bufs_.emplace_back(d.data(), d.size()); });
            }
            st.done = r.done;
            st.bad = r.bad;
            return r.used;
        }
        case body_kind::until_close:
            if (piece.empty())
                return 0;
            if (st.out == body_kind::chunked) {
                int n = std::snprintf(chunk_line_, sizeof chunk_line_, "%zx\r\n", piece.size());
                bufs_.emplace_back(chunk_line_, static_cast<std::size_t>(n));
                bufs_.emplace_back(piece.data(), piece.size());
                bufs_.emplace_back("\r\n", 2);
            } else {
                bufs_.emplace_back(piece.data(), piece.size());
            }
            return piece.size();
        }
        return 0;
    }

    // Moves the body described by `st` from `in` to `out`: first what is in `pre` (bytes read
    // before, not in `buf`; `pre_used` tells how many were body), then what `buf` holds, then
    // what `in` sends, one read then one write (no batching: a server-sent event is flushed
    // when it arrives). `head` goes out first, with the first piece when that is at hand.
    // Bytes past the end of the body stay in `buf`. `read_timeout` bounds each read (none for
    // runner responses, which may stream forever).
    awaitable<relay_failure> relay_body(timed_socket& in, std::string_view pre,
                                        std::size_t& pre_used, byte_buffer& buf, body_state& st,
                                        timed_socket& out, std::string_view head,
                                        std::optional<std::chrono::seconds> read_timeout) {
        bufs_.clear();
        if (!head.empty())
            bufs_.emplace_back(head.data(), head.size());
        bool watch_client = &out == &client_;
        pre_used = 0;
        if (!pre.empty() && !st.done) {
            pre_used = frame_piece(st, pre);
            if (st.bad)
                co_return relay_failure::framing;
        }
        if (!st.done && !buf.empty()) {
            if (!bufs_.empty() && !co_await flush(out))
                co_return relay_failure::write;
            bufs_.clear();
            buf.consume(frame_piece(st, buf.data()));
            if (st.bad)
                co_return relay_failure::framing;
        }
        for (;;) {
            if (!bufs_.empty() && !co_await flush(out))
                co_return relay_failure::write;
            bufs_.clear();
            if (st.done)
                co_return relay_failure::none;
            if (read_timeout)
                in.expires_after(*read_timeout);
            else
                in.expires_never();
            error_code ec;
            if (watch_client) {
                // A response: while the runner is silent, a client that leaves is noticed.
                buf.commit(read_now(in, buf.prepare(relay_buffer_size / 2), ec));
                if (ec == asio::error::would_block || ec == asio::error::try_again) {
                    if (co_await client_left(in, watch_client))
                        co_return relay_failure::client_gone;
                    continue;
                }
            } else {
                auto [rec, n] = co_await read_some(in, buf.prepare(relay_buffer_size / 2));
                buf.commit(n);
                ec = rec;
            }
            if (ec) {
                if (ec == asio::error::eof && st.in == body_kind::until_close) {
                    st.done = true;
                    if (st.out == body_kind::chunked)
                        bufs_.emplace_back("0\r\n\r\n", 5);
                    continue;
                }
                co_return relay_failure::read;
            }
            buf.consume(frame_piece(st, buf.data()));
            if (st.bad)
                co_return relay_failure::framing;
        }
    }

    // Waits until the runner `up` has something to say, watching the client meanwhile: true
    // when the client left (end of stream or an error, seen with a peek). Bytes from the client
    // (a pipelined request, TLS records) are not consumed and end the watch (`watch` false):
    // such a client is noticed at the next write, as before.
    awaitable<bool> client_left(timed_socket& up, bool& watch) {
        client_.expires_never(); // (a response may stream forever; writes set their deadline)
        for (;;) {
            auto which = co_await (wait_readable(up) || wait_readable(client_));
            if (which.index() == 0)
                co_return false;
            if (std::get<1>(which)) { // the wait failed (cancelled): the runner alone
                watch = false;
                co_return false;
            }
            char c;
            const auto r = ::recv(client_.sock.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                co_return true;
            if (r < 0 && errno == EINTR)
                continue;
            watch = false; // bytes, or readable for TLS alone: not an end of stream
            co_return false;
        }
    }

    // Forwards the request to {runner base path}{tail...}. `id` names the sandbox whose runner
    // this is (for the runner's "no such sandbox" / "not started" answers); empty for requests
    // that are not about one sandbox's runner route (build logs).
    awaitable<bool> forward_to(std::shared_ptr<const routing::runner_route> route_ptr,
                               std::string_view id,
                               std::span<const std::string_view> tail) override {
        bool client_keep = req_.keep_alive;
        const bool head_request = is_head_request();
        const bool bodyless = req_.body == body_kind::none;
        // A request may be sent again on a fresh connection when a pooled one turns out dead
        // only if it has no body and repeating it is harmless (RFC 9110 §9.2.2).
        const bool replayable = bodyless && idempotent(req_.method);
        const std::string_view pre = in_.data().substr(req_.size);
        std::size_t pre_used = 0;
        bool sent_continue = false;
        leased_buffer upstream_lease(ctx_);
        byte_buffer& up_buf = upstream_lease.buf;
        std::optional<leased_buffer> body_lease; // the request body's reads, past `pre`

        for (int reroute = 0;; ++reroute) {
            const auto& route = *route_ptr;
            std::array<std::string_view, 8> parts{};
            parts[0] = route.base_path;
            std::copy_n(tail.begin(), std::min(tail.size(), parts.size() - 1), parts.begin() + 1);
            static constexpr std::string_view strip_authorization[] = {"authorization"};
            forward_context fc{req_.host, client_ip_,
                               cfg_->enable_tls ? "https"sv : "http"sv, route.host_port,
                               route.api_key};
            if (decision_.strip_authorization)
                fc.also_strip = strip_authorization;
            fc.request_id = request_id();
            fc.traceparent = traceparent();
            upstream_started(route);
            head_out_.clear();
            write_request_head(head_out_, req_,
                               std::span<const std::string_view>(parts.data(), 1 + tail.size()),
                               fc);

            // A pooled connection can turn out dead only on use; a bodyless request is retried
            // once on a fresh connection then. With a body, a peek in tcp_pool::take is the guard.
            for (int attempt = 0;; ++attempt) {
                bool reused = false;
                std::string detail;
                const bool check_open = !(replayable && attempt == 0);
                if (reuse_held(route_ptr, check_open) ||
                    take_pooled(ctx_, route, check_open, upstream_)) {
                    reused = true;
                } else if (auto ec = co_await connect_runner(ctx_, route, upstream_, detail,
                                                             cfg_->upstream_connect_timeout_sec)) {
                    if (timed_out(ec))
                        co_return co_await reply_error(
                            504,
                            "runner at " + route.host_port +
                                " did not accept a connection within " +
                                std::to_string(cfg_->upstream_connect_timeout_sec) + " s",
                            client_keep && bodyless);
                    // (Built first: g++ 12 mishandles a ?: of strings inside co_await.)
                    if (detail.empty())
                        detail = ec.message();
                    std::string message =
                        "runner at " + route.host_port + " is unreachable: " + detail;
                    co_return co_await reply_error(502, std::move(message),
                                                   client_keep && bodyless);
                }
                up_buf.clear();

                if (req_.expect_continue && req_.version >= 11 && !bodyless && !sent_continue) {
                    sent_continue = true;
                    bufs_.assign({asio::buffer("HTTP/1.1 100 Continue\r\n\r\n"sv)});
                    if (!co_await flush(client_))
                        co_return false;
                }

                relay_failure sent = relay_failure::none;
                if (bodyless) {
                    // No body (most requests): the head alone, without a relay coroutine.
                    bufs_.assign({asio::buffer(head_out_)});
                    if (!write_now(*upstream_, bufs_) && !co_await flush_rest(*upstream_))
                        sent = relay_failure::write;
                } else {
                    body_lease.emplace(ctx_);
                    request_body_.start(req_.body, req_.content_length, req_.body);
                    sent = co_await relay_body(client_, pre, pre_used, body_lease->buf,
                                               request_body_, *upstream_, head_out_, io_timeout);
                    in_used_ = req_.size + pre_used;
                    body_unread_ = !request_body_.done;
                    // Bytes past the body (a pipelined request) are the next exchange's.
                    carry_.assign(body_lease->buf.data());
                }
                if (sent == relay_failure::read)
                    co_return false; // the client went away or stalled mid-body: nothing to answer
                if (sent == relay_failure::framing) {
                    co_await send_error(400, "malformed chunked request body");
                    co_return false;
                }
                if (sent == relay_failure::write && reused && replayable && attempt == 0)
                    continue;
                if (sent == relay_failure::write) {
                    // The runner may have answered early (e.g. 413) and closed; try to read it.
                    client_keep = false;
                }

                // The response head; interim answers (100 Continue and friends) are ours to
                // give, not the runner's.
                upstream_->expires_after(
                    std::chrono::seconds(cfg_->upstream_response_timeout_sec));
                error_code ec;
                auto r = co_await read_response_head(*upstream_, up_buf, res_, head_request, ec);
                if (r.status == h1::parse_status::done) {
                    upstream_answered();
                    break;
                }
                if (r.status == h1::parse_status::bad)
                    co_return co_await reply_error(
                        502, "runner at " + route.host_port + " sent a malformed response: " +
                                 std::string(r.message),
                        false);
                if (timed_out(ec))
                    co_return co_await reply_error(
                        504,
                        "runner at " + route.host_port + " did not answer within " +
                            std::to_string(cfg_->upstream_response_timeout_sec) + " s",
                        false);
                if (reused && replayable && attempt == 0 && up_buf.empty())
                    continue;
                co_return co_await reply_error(
                    502,
                    "runner at " + route.host_port +
                        " closed the connection without an answer: " + ec.message(),
                    false);
            }

            if (res_.status == 101)
                co_return co_await switch_to_websocket(route, up_buf);

            const bool upstream_keep = res_.keep_alive && res_.body != body_kind::until_close;
            const bool request_done = bodyless || request_body_.done;

            // The runner's own "no such sandbox": re-resolve once.
            // The runner's own small JSON errors: "no such sandbox" (404, re-resolved once) and
            // "sandbox not started" (400, answered as 503 saying so: the request was fine).
            if (!id.empty() && ((res_.status == 404 && reroute == 0) || res_.status == 400) &&
                small_json(res_)) {
                std::string said;
                auto verdict =
                    co_await read_runner_error(*upstream_, up_buf, res_, head_request, said);
                if (verdict == runner_verdict::broken)
                    co_return false;
                const std::size_t whole = res_.size + res_.content_length;
                if (verdict == runner_verdict::not_started) {
                    if (upstream_keep && request_done && up_buf.size() == whole)
                        pool_upstream(ctx_, route, upstream_);
                    upstream_.reset();
                    co_return co_await reply_error(
                        503,
                        "sandbox " + std::string(id) + " is not started (runner: " + said + ")",
                        client_keep && request_done);
                } else if (verdict == runner_verdict::lacks_sandbox) {
                    spdlog::info("runner {} has no sandbox {}: route invalidated", route.host_port,
                                 id);
                    if (upstream_keep && request_done && up_buf.size() == whole)
                        pool_upstream(ctx_, route, upstream_);
                    upstream_.reset();
                    ctx_.routes.invalidate(id);
                    if (bodyless) {
                        auto again = co_await ctx_.routes.runner_for(id);
                        if (again.status == routing::lookup_status::found) {
                            route_ptr = std::move(again.route);
                            continue;
                        }
                        if (again.status == routing::lookup_status::not_found)
                            co_return co_await reply_error(
                                404, "sandbox " + std::string(id) + " not found", client_keep);
                    }
                    // Otherwise the runner's own answer goes to the client, below.
                    upstream_.reset();
                    head_out_.clear();
                    client_keep = client_keep && request_done && !ctx_.draining;
                    rec_.status = res_.status;
                    rec_.bytes_out += res_.content_length;
                    write_response_head(head_out_, res_, body_kind::length, client_keep,
                                        req_.version, edits_for_response(res_));
                    bufs_.assign({asio::buffer(head_out_),
                                  asio::buffer(up_buf.data().substr(res_.size,
                                                                    res_.content_length))});
                    co_return co_await flush(client_) && client_keep;
                }
            }

            // The framing toward the client.
            body_kind out = res_.body;
            if ((res_.body == body_kind::chunked || res_.body == body_kind::until_close) &&
                req_.version < 11) {
                out = body_kind::until_close;
                client_keep = false;
            } else if (res_.body == body_kind::until_close) {
                out = body_kind::chunked; // re-framed for a keep-alive client
            }
            client_keep = client_keep && request_done && !ctx_.draining;
            head_out_.clear();
            rec_.status = res_.status;
            write_response_head(head_out_, res_, out, client_keep, req_.version,
                                edits_for_response(res_));

            // A response whose whole body already arrived with its head goes out in one write,
            // without a relay coroutine.
            const bool whole = res_.body == body_kind::none ||
                               (res_.body == body_kind::length &&
                                up_buf.size() - res_.size >= res_.content_length);
            if (whole) {
                const std::size_t length =
                    res_.body == body_kind::length ? res_.content_length : 0;
                rec_.bytes_out += length;
                bufs_.assign({asio::buffer(head_out_),
                              asio::buffer(up_buf.data().substr(res_.size, length))});
                if (!write_now(client_, bufs_) && !co_await flush_rest(client_))
                    co_return false;
                if (upstream_keep && request_done && up_buf.size() == res_.size + length)
                    keep_upstream(route_ptr, client_keep);
                else
                    upstream_.reset();
                co_return client_keep;
            }

            up_buf.consume(res_.size);
            response_body_.start(res_.body, res_.content_length, out);
            std::size_t unused = 0;
            auto got = co_await relay_body(*upstream_, {}, unused, up_buf, response_body_,
                                           client_, head_out_, std::nullopt);
            if (got == relay_failure::client_gone) {
                // The runner's request is cancelled: its connection closes (never pooled).
                spdlog::info("client {} left during a response from runner {} (request {}): "
                             "runner connection closed",
                             client_ip_, route.host_port, request_id());
                upstream_.reset();
                co_return false;
            }
            if (got != relay_failure::none) {
                if (got != relay_failure::write)
                    spdlog::debug("runner {} broke off a response body", route.host_port);
                upstream_.reset();
                co_return false; // a half-sent response can only end with the connection
            }
            if (upstream_keep && request_done && up_buf.empty())
                keep_upstream(route_ptr, client_keep);
            else
                upstream_.reset();
            co_return client_keep;
        }
    }

    // The runner connection of a clean exchange stays with this client for its next request,
    // which saves a trip through the pool per request. It goes back to the pool when the next
    // request is for another runner, when the client has been idle for a tick period of the
    // socket watch (a quarter to half a second: idle clients do not hold runner connections),
    // and when the client connection ends.
    void keep_upstream(const std::shared_ptr<const routing::runner_route>& route,
                       bool client_stays) {
        if (!client_stays) {
            pool_upstream(ctx_, *route, upstream_);
            return;
        }
        upstream_->expires_never();
        if (held_route_ != route) // (usually the same route again: no reference count change)
            held_route_ = route;
        held_ = true;
    }

    // The kept runner connection, when it leads to `route`'s runner and (with `check_open`, as
    // tcp_pool::take) the runner has not closed it.
    bool reuse_held(const std::shared_ptr<const routing::runner_route>& route, bool check_open) {
        if (!held_)
            return false;
        held_ = false;
        client_.idle_hook = nullptr;
        std::string held_scratch, scratch;
        if (held_route_ != route &&
            pool_key(*held_route_, held_scratch) != pool_key(*route, scratch)) {
            pool_upstream(ctx_, *held_route_, upstream_);
            return false;
        }
        if (check_open && !tcp_pool::looks_open(upstream_->sock)) {
            upstream_.reset();
            return false;
        }
        return true;
    }

    void give_back_held() {
        if (!held_)
            return;
        held_ = false;
        client_.idle_hook = nullptr;
        pool_upstream(ctx_, *held_route_, upstream_);
    }

    static void on_idle(void* self) { static_cast<session*>(self)->give_back_held(); }

    // The runner answered 101: when it accepted the client's WebSocket upgrade properly (RFC
    // 6455 §4.2.2), the client gets the 101 and the two connections are tunneled until both
    // sides are done; anything else is a bad answer and nothing is tunneled.
    awaitable<bool> switch_to_websocket(const routing::runner_route& route, byte_buffer& up_buf) {
        const bool valid =
            req_.upgrade_websocket && res_.upgrade_websocket &&
            h1::find(res_, "sec-websocket-accept") ==
                websocket_accept(h1::find(req_, "sec-websocket-key"));
        if (!valid) {
            upstream_.reset();
            // (Built first: g++ 12 mishandles temporaries of a ?: inside a co_await expression.)
            std::string message = "runner at " + route.host_port;
            message += req_.upgrade_websocket
                           ? " answered the WebSocket upgrade with an invalid handshake"
                           : " switched protocols without an upgrade request";
            co_return co_await reply_error(502, std::move(message), false);
        }
        head_out_.clear();
        write_upgrade_response_head(head_out_, res_, edits_for_response(res_));
        rec_.status = 101;
        rec_.websocket = true;
        // What either side sent past its head already belongs to the tunnel.
        bufs_.assign({asio::buffer(head_out_), asio::buffer(up_buf.data().substr(res_.size))});
        if (!co_await flush(client_))
            co_return false;
        auto early = in_.data().substr(req_.size);
        if (!early.empty()) {
            bufs_.assign({asio::buffer(early)});
            if (!co_await flush(*upstream_))
                co_return false;
        }
        // An open tunnel holds no buffer while idle: each read borrows one from the pool. What
        // the access line needs of the head (views into in_) is copied first.
        keep_head_for_log();
        ctx_.give_back(up_buf.release(relay_buffer_size));
        in_.release(0);
        in_used_ = 0;
        keep_alive_probes(client_.sock);
        keep_alive_probes(upstream_->sock);
        tunnel_half_closed_ = false;
        going_away_ = false;
        up_frames_ = {};
        down_frames_ = {};
        client_.going_away_hook = [](void* self) { static_cast<session*>(self)->go_away(); };
        client_.going_away_context = this;
        auto up = pump(client_, *upstream_);
        auto down = pump(*upstream_, client_);
        exchange_metrics().websocket_opened(http_protocol::h1);
        co_await (std::move(up) && std::move(down));
        exchange_metrics().websocket_closed(http_protocol::h1);
        client_.going_away_hook = nullptr;
        upstream_.reset();
        co_return false;
    }

    // Copies the request's method, target and host (and the sandbox id within the host) out of
    // the read buffer, which a tunnel gives up; the fields are dropped.
    void keep_head_for_log() {
        const char* host_at = req_.host.data();
        const bool id_in_host = !view_.id.empty() && view_.id.data() >= host_at &&
                                view_.id.data() + view_.id.size() <= host_at + req_.host.size();
        const std::size_t id_offset = id_in_host ? static_cast<std::size_t>(view_.id.data() - host_at) : 0;
        kept_head_.assign(req_.method).append(req_.target).append(req_.host);
        const std::string_view all = kept_head_;
        const std::size_t m = req_.method.size(), t = req_.target.size();
        req_.method = all.substr(0, m);
        req_.target = all.substr(m, t);
        req_.host = all.substr(m + t);
        if (id_in_host)
            view_.id = req_.host.substr(id_offset, view_.id.size());
        else
            view_.id = {};
        req_.fields.clear();
    }

    // The drain deadline nears: each direction of the tunnel ends with a close frame (1001) at
    // its next frame boundary. Waits for readability are cancelled so the pumps see it now (a
    // pump that is writing sees it when its write is done).
    void go_away() {
        going_away_ = true;
        error_code ignored;
        for (timed_socket* s : {&client_, upstream_ ? &*upstream_ : nullptr})
            if (s && !s->writing)
                s->sock.cancel(ignored);
    }

    // Ends one direction of a tunnel: the close frame to `to`, a half-close, then whatever
    // `from` still sends (its own close frame) is read and dropped until it closes.
    awaitable<void> say_going_away(timed_socket& from, timed_socket& to) {
        const std::string frame = ws_going_away_frame(&to == &*upstream_);
        std::vector<asio::const_buffer> bufs{asio::buffer(frame)};
        to.writing = true;
        to.expires_after(std::chrono::seconds(5));
        const bool ok = write_now(to, bufs) || !co_await write_all(to, bufs);
        to.writing = false;
        if (ok)
            shutdown_send(to);
        char sink[4096];
        from.expires_after(std::chrono::seconds(5));
        while (ok) {
            auto [ec, n] = co_await read_some(from, asio::buffer(sink));
            if (ec)
                break;
        }
    }

    // One direction of a tunnel: waits until `from` is readable, then moves everything it has
    // to `to` (reading until it would block: the next wake-up needs new bytes). An end of stream
    // is passed on as a half-close; an error ends both directions (both sockets are shut down,
    // not closed: the session closes them, after TLS's close_notify, when both pumps are done).
    // Deadlines: none while both directions are open (TCP keepalive finds dead peers); a write
    // that makes no progress for io_timeout fails; once one direction has ended, the other
    // must see traffic within idle_timeout.
    awaitable<void> pump(timed_socket& from, timed_socket& to) {
        std::uint64_t& moved = &from == &client_ ? rec_.bytes_in : rec_.bytes_out;
        ws_frame_tracker& frames = &from == &client_ ? up_frames_ : down_frames_;
        std::vector<asio::const_buffer> bufs;
        error_code ignored;
        for (;;) {
            if (going_away_ && frames.at_boundary()) {
                co_await say_going_away(from, to);
                co_return;
            }
            if (!from.writing) {
                if (tunnel_half_closed_)
                    from.expires_after(idle_timeout);
                else
                    from.expires_never();
            }
            if (auto wec = co_await wait_readable(from)) {
                if (going_away_ && wec == asio::error::operation_aborted && !from.timed_out)
                    continue;
                break;
            }
            auto mem = ctx_.take_buffer();
            error_code ec;
            bool ok = true;
            for (;;) {
                std::size_t n = read_now(from, asio::buffer(mem.get(), relay_buffer_size), ec);
                if (ec)
                    break;
                moved += n;
                frames.feed({mem.get(), n});
                bufs.assign({asio::buffer(mem.get(), n)});
                to.writing = true;
                to.expires_after(io_timeout);
                ok = write_now(to, bufs) || !co_await write_all(to, bufs);
                to.writing = false;
                to.expires_never();
                if (!ok)
                    break;
            }
            ctx_.give_back(std::move(mem));
            if (!ok)
                break;
            if (ec == asio::error::would_block || ec == asio::error::try_again)
                continue;
            if (ec == asio::error::eof) {
                shutdown_send(to);
                tunnel_half_closed_ = true;
                if (!to.writing)
                    to.expires_after(idle_timeout); // the other direction must go on or end
                co_return;
            }
            break;
        }
        from.sock.shutdown(tcp::socket::shutdown_both, ignored);
        to.sock.shutdown(tcp::socket::shutdown_both, ignored);
        from.sock.cancel(ignored);
        to.sock.cancel(ignored);
    }

    // Errors where the request cannot be trusted (malformed): always closes.
    awaitable<void> send_error(unsigned status, std::string message) {
        linger_ = true; // what follows the malformed bytes is not read
        auto body = error_body(status, message, "/", "");
        head_out_.clear();
        write_local_response(head_out_, status, "application/json"sv, body, false, false);
        bufs_.assign({asio::buffer(head_out_)});
        co_await flush(client_);
    }

    std::string client_ip_storage_; // the base's client_ip_ views it
    timed_socket client_;
    byte_buffer in_;          // the client's bytes; req_ points into it
    std::size_t in_used_ = 0; // bytes of in_ the current exchange took
    std::string carry_;       // bytes read past a request body, for the next exchange
    h1::head res_;
    std::optional<timed_socket> upstream_;
    bool held_ = false; // upstream_ is kept from the previous exchange (keep_upstream)
    std::shared_ptr<const routing::runner_route> held_route_; // the route it was kept for
    body_state request_body_;
    body_state response_body_;
    std::string head_out_;                   // an outgoing head being written
    std::vector<asio::const_buffer> bufs_;   // scratch for gathered writes
    char chunk_line_[24];
    bool tunnel_half_closed_ = false; // a WebSocket tunnel with one direction ended
    bool going_away_ = false;         // the drain deadline nears: close the tunnel politely
    std::string kept_head_;           // a tunnel's method, target and host (see keep_head_for_log)
    ws_frame_tracker up_frames_, down_frames_; // frame boundaries of each tunnel direction
    bool first_request_ = true;
    bool body_unread_ = false; // the current request's body is not (all) read
    bool linger_ = false;      // the connection ends with a lingering close
};

} // namespace

awaitable<void> serve_h1(tcp::socket socket, worker_context& ctx) {
    session s(std::move(socket), ctx);
    co_await s.run();
}

} // namespace edge::proxy
