#include "proxy/h2_session.hpp"

#include "proxy/exchange.hpp"
#include "proxy/http_io.hpp"
#include "proxy/http_metrics.hpp"
#include "proxy/websocket_frames.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <map>
#include <memory>

namespace edge::proxy {
namespace {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;
using namespace std::string_view_literals;
using h1::body_kind;
using namespace boost::asio::experimental::awaitable_operators;

constexpr auto idle_timeout = 70s; // a connection without open streams
constexpr auto io_timeout = 70s;   // a write that makes no progress
constexpr std::size_t read_room = 16 * 1024;
// Flow control: what a client may send ahead of what reached the runner.
constexpr std::int32_t stream_window = 256 * 1024;
constexpr std::int32_t connection_window = 1024 * 1024;
constexpr std::uint32_t max_concurrent_streams = 128;
constexpr std::uint32_t max_header_list = 64 * 1024;
// Response data held for a client that has not taken it yet: the runner is read no further.
constexpr std::size_t response_high_water = 64 * 1024;
constexpr std::size_t write_batch = 64 * 1024;

// A wake-up for one waiting coroutine on this thread; a notify with nobody waiting is kept for
// the next wait.
class notifier {
  public:
    explicit notifier(const asio::any_io_executor& ex)
        : timer_(ex, asio::steady_timer::time_point::max()) {}
    awaitable<void> wait() {
        if (!pending_) {
            timer_.expires_at(asio::steady_timer::time_point::max());
            co_await timer_.async_wait(use_nothrow);
        }
        pending_ = false;
    }
    void notify() {
        pending_ = true;
        timer_.cancel();
    }

  private:
    asio::steady_timer timer_;
    bool pending_ = false;
};

class connection;

enum class pump_result { done, client_gone, upstream_failed, framing };

class stream final : public exchange {
  public:
    stream(connection& c, std::int32_t id);
    ~stream() override;

    // Headers as received (the request head is built from them once complete).
    bool add_header(std::string_view name, std::string_view value);
    // A field of the request's trailer section (HEADERS after DATA).
    bool add_trailer(std::string_view name, std::string_view value);
    void request_data(const std::uint8_t* data, std::size_t len);
    void request_ended() {
        end_stream_in_ = true;
        in_event_.notify();
    }
    // nghttp2 closed the stream (answered, reset, or the connection ends).
    void closed(std::uint32_t code);
    awaitable<void> run();
    // nghttp2's data source: the response body as the runner delivers it.
    ssize_t read_response(std::uint8_t* buf, std::size_t length, std::uint32_t* flags);

    const std::int32_t id;
    bool end_stream_at_headers = false;
    bool started = false;
    bool coroutine_done = false;
    bool is_closed = false;

  private:
    awaitable<bool> send_local(unsigned status, std::string_view content_type,
                               std::string_view body, std::span<const h1::field> extra,
                               bool keep_allowed) override;
    std::string_view protocol() const override { return "h2"; }
    awaitable<bool> forward_to(std::shared_ptr<const routing::runner_route> route,
                               std::string_view id,
                               std::span<const std::string_view> tail) override;
    // Builds req_ from the received fields; an error message when the request is unusable.
    std::string_view build_request();
    // Submits the response head: `status` and `fields` (lowercased for HTTP/2), with a body
    // to come from `down_` unless `bodyless`.
    void submit_head(unsigned status, std::span<const std::array<std::string_view, 4>> fields,
                     bool bodyless);
    // Client → runner: the request body (or a WebSocket's client side), framed as `framing`.
    awaitable<pump_result> pump_up(timed_socket& up, body_kind framing);
    // Runner → client: the response body in `st` from `up`, what `buf` holds first.
    // (`up` may be null when `buf` holds the whole body.)
    awaitable<pump_result> pump_down(timed_socket* up, byte_buffer& buf, body_kind kind,
                                     std::uint64_t length);
    void down_append(std::string_view d);
    void finish_response();
    // The runner's trailer fields that may pass, as the response's final HEADERS (END_STREAM).
    void submit_trailers();
    // The drain deadline nears: a WebSocket tunnel ends with a close frame (1001) each way.
    void go_away();

    connection& conn_;
    // The request as received.
    std::string method_, path_, authority_, scheme_, protocol_;
    std::vector<std::pair<std::string, std::string>> fields_;
    std::string cookie_;
    std::string ws_key_;
    std::size_t header_bytes_ = 0;
    std::string trailers_in_;  // the request's trailer section, `name: value` CRLF lines
    std::string trailers_out_; // the runner's that pass, for the client (same form)
    std::string chunk_end_;    // the last chunk and trailer section toward the runner
    // Request data received and not yet forwarded; what is being written to the runner.
    byte_buffer body_in_, body_out_;
    bool end_stream_in_ = false;
    notifier in_event_;
    // Response data for the client, taken by nghttp2 as the window allows.
    byte_buffer down_;
    bool down_eof_ = false;
    bool response_submitted_ = false;
    notifier out_event_;
    std::uint32_t reset_code_ = 0;
    std::optional<timed_socket> upstream_;
    bool tunnel_ = false;
    bool going_away_ = false;
    bool runner_closed_ = false; // a tunnel's runner side ended: the client side is dropped
    ws_frame_tracker up_frames_, down_frames_;
    h1::head res_;
    std::string head_out_;
    std::vector<asio::const_buffer> bufs_;
    char chunk_line_[24];
};

class connection {
  public:
    connection(timed_socket& c, worker_context& w, std::string_view ip)
        : client(c), ctx(w), client_ip(ip), writer_event_(c.sock.get_executor()),
          done_event_(c.sock.get_executor()) {}
    ~connection() {
        streams_.clear();
        if (ng)
            nghttp2_session_del(ng);
    }
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    awaitable<void> run(std::string_view preread);
    void wake_writer() { writer_event_.notify(); }
    bool closing() const { return closing_; }

    timed_socket& client;
    worker_context& ctx;
    std::string_view client_ip;
    nghttp2_session* ng = nullptr;
    // The configuration snapshot of this connection's streams (kept across reloads).
    std::shared_ptr<const conf::config> cfg = ctx.cfg;

  private:
    bool setup();
    // Feeds bytes to nghttp2, then starts the streams whose request head is complete.
    bool receive(std::string_view bytes);
    awaitable<void> writer();
    awaitable<void> run_stream(stream* s);
    void arm_read_deadline();
    void drain();
    void erase_if_finished(stream* s);

    static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* self);
    static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                         std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                         std::uint8_t flags, void* self);
    static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* self);
    static int on_data_chunk(nghttp2_session*, std::uint8_t flags, std::int32_t stream_id,
                             const std::uint8_t* data, std::size_t len, void* self);
    static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code,
                               void* self);

    std::map<std::int32_t, std::unique_ptr<stream>> streams_;
    std::vector<stream*> to_start_;
    notifier writer_event_;
    notifier done_event_;
    std::string out_;
    std::vector<asio::const_buffer> bufs_;
    std::size_t running_ = 0; // stream coroutines and the writer
    bool closing_ = false;   // the connection is over: the reader and writer stop
    bool finishing_ = false; // the reader is done: the writer flushes, then stops
    bool failed_ = false;    // the socket or nghttp2 failed: nothing more is written
    bool draining_ = false;
    bool final_goaway_ = false;
    bool writing_ = false;
};

stream* stream_of(nghttp2_session* ng, std::int32_t id) {
    return static_cast<stream*>(nghttp2_session_get_stream_user_data(ng, id));
}

// --- the stream ---

stream::stream(connection& c, std::int32_t stream_id)
    : exchange(c.ctx, c.cfg), id(stream_id), conn_(c), in_event_(c.client.sock.get_executor()),
      out_event_(c.client.sock.get_executor()) {
    client_ip_ = c.client_ip;
    exchange_metrics().stream_opened();
}

stream::~stream() { exchange_metrics().stream_closed(); }

bool stream::add_header(std::string_view name, std::string_view value) {
    header_bytes_ += name.size() + value.size() + 32;
    if (header_bytes_ > max_header_list)
        return false;
    if (!name.empty() && name.front() == ':') {
        if (name == ":method"sv)
            method_ = value;
        else if (name == ":path"sv)
            path_ = value;
        else if (name == ":authority"sv)
            authority_ = value;
        else if (name == ":scheme"sv)
            scheme_ = value;
        else if (name == ":protocol"sv)
            protocol_ = value;
        return true;
    }
    if (name == "cookie"sv) { // HTTP/2 splits cookies; HTTP/1.1 wants one field (RFC 9113 §8.2.3)
        if (!cookie_.empty())
            cookie_.append("; "sv);
        cookie_.append(value);
        return true;
    }
    fields_.emplace_back(name, value);
    return true;
}

bool stream::add_trailer(std::string_view name, std::string_view value) {
    header_bytes_ += name.size() + value.size() + 32;
    if (header_bytes_ > max_header_list)
        return false;
    trailers_in_.append(name).append(": "sv).append(value).append("\r\n"sv);
    return true;
}

void stream::request_data(const std::uint8_t* data, std::size_t len) {
    if (coroutine_done || reset_code_ != 0) {
        // Nobody forwards it (answered already): the window opens at once.
        nghttp2_session_consume(conn_.ng, id, len);
        return;
    }
    auto room = body_in_.prepare(len);
    std::memcpy(room.data(), data, len);
    body_in_.commit(len);
    in_event_.notify();
}

void stream::closed(std::uint32_t code) {
    is_closed = true;
    if (!down_eof_ || code != 0)
        reset_code_ = code == 0 ? std::uint32_t{NGHTTP2_CANCEL} : code;
    in_event_.notify();
    out_event_.notify();
    if (upstream_) {
        error_code ignored;
        upstream_->sock.cancel(ignored); // a runner read or write in progress ends now
    }
}

std::string_view stream::build_request() {
    req_.clear();
    if (method_ == "CONNECT"sv) {
        if (protocol_.empty())
            return "CONNECT tunnels are not supported";
        if (protocol_ != "websocket"sv)
            return "only the websocket protocol is supported with extended CONNECT";
        // RFC 8441: toward the runner, an HTTP/1.1 upgrade with a key of our own.
        unsigned char raw[16];
        RAND_bytes(raw, sizeof raw);
        unsigned char encoded[25];
        int n = EVP_EncodeBlock(encoded, raw, sizeof raw);
        ws_key_.assign(reinterpret_cast<const char*>(encoded), static_cast<std::size_t>(n));
        req_.method = "GET"sv;
        req_.upgrade_websocket = true;
    } else {
        req_.method = method_;
    }
    req_.target = path_;
    req_.version = 11;
    req_.keep_alive = true;
    for (const auto& [name, value] : fields_) {
        // Sec-WebSocket-Key, Version and friends of an extended CONNECT are ours to set.
        if (req_.upgrade_websocket && (name == "sec-websocket-key"sv || name == "upgrade"sv))
            continue;
        req_.fields.push_back({name, value});
        if (name == "host"sv && authority_.empty())
            req_.host = value;
    }
    if (!cookie_.empty())
        req_.fields.push_back({"cookie"sv, cookie_});
    if (req_.upgrade_websocket) {
        req_.fields.push_back({"sec-websocket-key"sv, ws_key_});
        if (h1::find(req_, "sec-websocket-version").empty())
            req_.fields.push_back({"sec-websocket-version"sv, "13"sv});
    }
    if (!authority_.empty())
        req_.host = authority_;
    if (req_.host.empty())
        return "the request has no :authority";
    if (req_.upgrade_websocket || end_stream_at_headers) {
        req_.body = body_kind::none;
    } else if (auto cl = h1::find(req_, "content-length");
               !cl.empty() && h1::find(req_, "trailer").empty()) {
        std::uint64_t n = 0;
        auto [p, ec] = std::from_chars(cl.data(), cl.data() + cl.size(), n);
        if (ec != std::errc() || p != cl.data() + cl.size())
            return "invalid content-length";
        req_.body = n == 0 ? body_kind::none : body_kind::length;
        req_.content_length = n;
    } else {
        req_.body = body_kind::chunked; // length unknown: chunked toward the runner
    }
    if (auto expect = h1::find(req_, "expect"); !expect.empty())
        req_.expect_unknown = !h1::iequals(expect, "100-continue");
    return {};
}

awaitable<void> stream::run() {
    if (auto problem = build_request(); !problem.empty()) {
        begin_exchange();
        reset_decision();
        const std::string message(problem);
        const unsigned status = method_ == "CONNECT"sv ? 501 : 400;
        co_await reply_error(status, message);
        end_exchange();
        co_return;
    }
    begin_exchange();
    co_await dispatch();
    end_exchange();
}

void stream::submit_head(unsigned status,
                         std::span<const std::array<std::string_view, 4>> fields, bool bodyless) {
    // Names lowercased (HTTP/2 requires it), values joined; one allocation for all of it.
    std::size_t total = 3;
    for (const auto& f : fields)
        total += f[0].size() + f[1].size() + f[2].size() + f[3].size();
    std::string store;
    store.reserve(total);
    std::vector<nghttp2_nv> nv;
    nv.reserve(fields.size() + 1);
    char digits[4];
    std::snprintf(digits, sizeof digits, "%03u", status % 1000);
    store.append(digits, 3);
    auto bytes = [&](std::size_t at) {
        return reinterpret_cast<std::uint8_t*>(store.data() + at);
    };
    nv.push_back({reinterpret_cast<std::uint8_t*>(const_cast<char*>(":status")), bytes(0), 7, 3,
                  NGHTTP2_NV_FLAG_NONE});
    for (const auto& f : fields) {
        const std::size_t name_at = store.size();
        h1::append_lower(store, f[0]);
        const std::size_t value_at = store.size();
        store.append(f[1]).append(f[2]).append(f[3]);
        nv.push_back({bytes(name_at), bytes(value_at), value_at - name_at,
                      store.size() - value_at, NGHTTP2_NV_FLAG_NONE});
    }
    nghttp2_data_provider provider{};
    provider.source.ptr = this;
    provider.read_callback = [](nghttp2_session*, std::int32_t, std::uint8_t* buf,
                                std::size_t length, std::uint32_t* flags,
                                nghttp2_data_source* source, void*) -> ssize_t {
        return static_cast<stream*>(source->ptr)->read_response(buf, length, flags);
    };
    response_submitted_ = true;
    if (bodyless)
        down_eof_ = true;
    nghttp2_submit_response(conn_.ng, id, nv.data(), nv.size(), bodyless ? nullptr : &provider);
    conn_.wake_writer();
}

ssize_t stream::read_response(std::uint8_t* buf, std::size_t length, std::uint32_t* flags) {
    auto d = down_.data();
    const std::size_t n = std::min(length, d.size());
    if (n > 0) {
        std::memcpy(buf, d.data(), n);
        down_.consume(n);
        if (tunnel_)
            down_.trim();
        out_event_.notify();
    }
    if (down_.empty() && down_eof_) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (!trailers_out_.empty()) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            submit_trailers();
        }
        if (!end_stream_in_) // the request body is of no more use (RFC 9113 §8.1)
            nghttp2_submit_rst_stream(conn_.ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR);
        return static_cast<ssize_t>(n);
    }
    if (n == 0)
        return NGHTTP2_ERR_DEFERRED;
    return static_cast<ssize_t>(n);
}

void stream::submit_trailers() {
    std::vector<nghttp2_nv> nv; // (nghttp2 copies the fields)
    h1::for_each_trailer(trailers_out_, [&](std::string_view name, std::string_view value) {
        nv.push_back({reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                      reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())),
                      name.size(), value.size(), NGHTTP2_NV_FLAG_NONE});
    });
    nghttp2_submit_trailer(conn_.ng, id, nv.data(), nv.size());
}

void stream::down_append(std::string_view d) {
    if (d.empty())
        return;
    rec_.bytes_out += d.size();
    auto room = down_.prepare(d.size());
    std::memcpy(room.data(), d.data(), d.size());
    down_.commit(d.size());
}

void stream::go_away() {
    going_away_ = true;
    in_event_.notify();
    if (upstream_ && !upstream_->writing) {
        error_code ignored;
        upstream_->sock.cancel(ignored);
    }
}

void stream::finish_response() {
    down_eof_ = true;
    if (!is_closed)
        nghttp2_session_resume_data(conn_.ng, id);
    conn_.wake_writer();
}

awaitable<bool> stream::send_local(unsigned status, std::string_view content_type,
                                   std::string_view body, std::span<const h1::field> extra,
                                   bool) {
    if (is_closed || response_submitted_)
        co_return false;
    std::vector<std::array<std::string_view, 4>> fields;
    fields.reserve(extra.size() + 2);
    if (!content_type.empty())
        fields.push_back({"content-type"sv, content_type, {}, {}});
    for (const auto& f : extra)
        fields.push_back({f.name, f.value, {}, {}});
    char length[24];
    auto [end, ec] = std::to_chars(length, length + sizeof length, body.size());
    fields.push_back(
        {"content-length"sv, std::string_view(length, static_cast<std::size_t>(end - length)),
         {}, {}});
    const bool bodyless = is_head_request() || body.empty();
    rec_.status = status;
    if (!bodyless)
        down_append(body); // (counted there)
    submit_head(status, fields, bodyless);
    if (!bodyless)
        finish_response();
    co_return false;
}

awaitable<pump_result> stream::pump_up(timed_socket& up, body_kind framing) {
    for (;;) {
        if (runner_closed_)
            co_return pump_result::done;
        if (tunnel_ && going_away_ && up_frames_.at_boundary()) {
            const std::string frame = ws_going_away_frame(true);
            bufs_.assign({asio::buffer(frame)});
            up.writing = true;
            up.expires_after(std::chrono::seconds(5));
            const bool ok = write_now(up, bufs_) || !co_await write_all(up, bufs_);
            up.writing = false;
            if (ok)
                shutdown_send(up);
            co_return pump_result::done;
        }
        if (body_in_.empty()) {
            if (reset_code_ != 0)
                co_return pump_result::client_gone;
            if (end_stream_in_) {
                if (framing == body_kind::chunked) {
                    chunk_end_.assign("0\r\n"sv);
                    h1::append_trailer_section(chunk_end_, trailers_in_);
                    bufs_.assign({asio::buffer(chunk_end_)});
                    up.expires_after(io_timeout);
                    if (!write_now(up, bufs_) && co_await write_all(up, bufs_))
                        co_return pump_result::upstream_failed;
                } else if (framing == body_kind::until_close) {
                    shutdown_send(up); // a WebSocket's client side ended
                }
                co_return pump_result::done;
            }
            co_await in_event_.wait();
            continue;
        }
        std::swap(body_in_, body_out_); // new data lands in the other buffer while writing
        auto d = body_out_.data();
        if (tunnel_)
            up_frames_.feed(d);
        bufs_.clear();
        if (framing == body_kind::chunked) {
            int n = std::snprintf(chunk_line_, sizeof chunk_line_, "%zx\r\n", d.size());
            bufs_.emplace_back(chunk_line_, static_cast<std::size_t>(n));
            bufs_.emplace_back(d.data(), d.size());
            bufs_.emplace_back("\r\n", 2);
        } else {
            bufs_.emplace_back(d.data(), d.size());
        }
        up.writing = true;
        up.expires_after(io_timeout);
        const bool ok = write_now(up, bufs_) || !co_await write_all(up, bufs_);
        up.writing = false;
        up.expires_never();
        if (!ok && runner_closed_)
            co_return pump_result::done;
        if (!ok)
            co_return reset_code_ != 0 ? pump_result::client_gone : pump_result::upstream_failed;
        rec_.bytes_in += d.size();
        if (!is_closed) {
            nghttp2_session_consume(conn_.ng, id, d.size());
            conn_.wake_writer();
        }
        body_out_.clear();
        if (tunnel_)
            body_out_.trim();
    }
}

awaitable<pump_result> stream::pump_down(timed_socket* up, byte_buffer& buf, body_kind kind,
                                         std::uint64_t length) {
    h1::chunked_decoder chunks;
    std::uint64_t remaining = length;
    for (;;) {
        // What the runner sent so far goes to the client's queue.
        bool done = false;
        switch (kind) {
        case body_kind::none: done = true; break;
        case body_kind::length: {
            auto n = static_cast<std::size_t>(
                std::min<std::uint64_t>(buf.size(), remaining));
            down_append(buf.data().substr(0, n));
            buf.consume(n);
            remaining -= n;
            done = remaining == 0;
            break;
        }
        case body_kind::chunked: {
            auto r = chunks.feed(buf.data(), [&](std::string_view d) { down_append(d); });
            buf.consume(r.used);
            if (r.bad)
                co_return pump_result::framing;
            done = r.done;
            if (done) // the fields that may pass, names lowercased (HTTP/2 requires it)
                h1::for_each_trailer(chunks.trailers(), [&](std::string_view n, std::string_view v) {
                    if (!h1::forwardable_trailer(n))
                        return;
                    h1::append_lower(trailers_out_, n);
                    trailers_out_.append(": "sv).append(v).append("\r\n"sv);
                });
            break;
        }
        case body_kind::until_close:
            if (tunnel_)
                down_frames_.feed(buf.data());
            down_append(buf.data());
            buf.clear();
            if (tunnel_)
                buf.trim();
            break;
        }
        if (!down_.empty() && !is_closed) {
            nghttp2_session_resume_data(conn_.ng, id);
            conn_.wake_writer();
        }
        if (done)
            co_return pump_result::done;
        if (tunnel_ && going_away_ && down_frames_.at_boundary()) {
            down_append(ws_going_away_frame(false));
            co_return pump_result::done;
        }
        // Backpressure: the runner is read no further while the client lags.
        while (down_.size() >= response_high_water && !is_closed)
            co_await out_event_.wait();
        if (is_closed)
            co_return pump_result::client_gone;
        if (!up)
            co_return pump_result::upstream_failed;
        up->expires_never(); // a response may stream forever
        error_code ec;
        std::size_t n = 0;
        if (tunnel_) {
            // An idle tunnel holds no read buffer: readiness first, then the read.
            ec = co_await wait_readable(*up);
            if (!ec) {
                n = read_now(*up, buf.prepare(read_room), ec);
                if (ec == asio::error::would_block || ec == asio::error::try_again)
                    continue;
            }
        } else {
            std::tie(ec, n) = co_await read_some(*up, buf.prepare(read_room));
        }
        buf.commit(n);
        if (ec) {
            if (is_closed)
                co_return pump_result::client_gone;
            if (tunnel_ && going_away_ && ec == asio::error::operation_aborted &&
                !up->timed_out) {
                continue; // the loop's top says it (after the runner's frame in progress)
            }
            if (tunnel_) {
                // The runner ended the tunnel (its app closed the WebSocket, died, or the
                // connection broke): what the client sends from here on is dropped, and the
                // stream ends now (after an end of file: END_STREAM after what is queued, then
                // RST_STREAM NO_ERROR; after an error: RST_STREAM CANCEL).
                runner_closed_ = true;
                in_event_.notify();
                if (up->writing) {
                    error_code ignored;
                    up->sock.cancel(ignored);
                }
                if (ec == asio::error::eof)
                    finish_response();
            }
            if (ec == asio::error::eof && kind == body_kind::until_close)
                co_return pump_result::done;
            co_return pump_result::upstream_failed;
        }
    }
}

awaitable<bool> stream::forward_to(std::shared_ptr<const routing::runner_route> route_ptr,
                                   std::string_view sandbox_id,
                                   std::span<const std::string_view> tail) {
    const bool head_request = is_head_request();
    const bool bodyless = req_.body == body_kind::none;
    const bool replayable = bodyless && idempotent(req_.method);
    leased_buffer lease(ctx_);
    byte_buffer& up_buf = lease.buf;

    for (int reroute = 0;; ++reroute) {
        const auto& route = *route_ptr;
        std::array<std::string_view, 8> parts{};
        parts[0] = route.base_path;
        std::copy_n(tail.begin(), std::min(tail.size(), parts.size() - 1), parts.begin() + 1);
        static constexpr std::string_view strip_authorization[] = {"authorization"};
        forward_context fc{req_.host, client_ip_, conn_.client.tls ? "https"sv : "http"sv,
                           route.host_port, route.api_key};
        if (decision_.strip_authorization)
            fc.also_strip = strip_authorization;
        fc.request_id = request_id();
        fc.traceparent = traceparent();
        upstream_started(route);
        head_out_.clear();
        write_request_head(head_out_, req_,
                           std::span<const std::string_view>(parts.data(), 1 + tail.size()), fc);

        h1::parse_result r{h1::parse_status::need_more, 0, {}};
        error_code ec;
        for (int attempt = 0;; ++attempt) {
            bool reused = false;
            std::string detail;
            if (take_pooled(ctx_, route, !(replayable && attempt == 0), upstream_)) {
                reused = true;
            } else if (auto cec = co_await connect_runner(ctx_, route, upstream_, detail,
                                                              cfg_->upstream_connect_timeout_sec)) {
                if (is_closed)
                    co_return false;
                if (cec == boost::beast::error::timeout)
                    co_return co_await reply_error(
                        504, "runner at " + route.host_port +
                                 " did not accept a connection within " +
                                 std::to_string(cfg_->upstream_connect_timeout_sec) + " s");
                // (Built first: g++ 12 mishandles a ?: of strings inside co_await.)
                if (detail.empty())
                    detail = cec.message();
                std::string message =
                    "runner at " + route.host_port + " is unreachable: " + detail;
                co_return co_await reply_error(502, std::move(message));
            }
            if (is_closed)
                co_return false;
            up_buf.clear();
            bufs_.assign({asio::buffer(head_out_)});
            upstream_->expires_after(io_timeout);
            bool sent = write_now(*upstream_, bufs_) || !co_await write_all(*upstream_, bufs_);
            if (sent && !bodyless) {
                auto p = co_await pump_up(*upstream_, req_.body);
                if (p == pump_result::client_gone) {
                    upstream_.reset();
                    co_return false; // reset by the client: the runner's request is cancelled
                }
                sent = p == pump_result::done;
            }
            if (!sent && reused && replayable && attempt == 0)
                continue;
            upstream_->expires_after(std::chrono::seconds(cfg_->upstream_response_timeout_sec));
            r = co_await read_response_head(*upstream_, up_buf, res_, head_request, ec);
            if (is_closed) {
                upstream_.reset();
                co_return false;
            }
            if (r.status == h1::parse_status::done) {
                upstream_answered();
                break;
            }
            if (r.status == h1::parse_status::bad)
                co_return co_await reply_error(502, "runner at " + route.host_port +
                                                        " sent a malformed response: " +
                                                        std::string(r.message));
            if (ec == boost::beast::error::timeout)
                co_return co_await reply_error(
                    504, "runner at " + route.host_port + " did not answer within " +
                             std::to_string(cfg_->upstream_response_timeout_sec) + " s");
            if (reused && replayable && attempt == 0 && up_buf.empty())
                continue;
            co_return co_await reply_error(502, "runner at " + route.host_port +
                                                    " closed the connection without an answer: " +
                                                    ec.message());
        }

        if (res_.status == 101) {
            const bool valid = req_.upgrade_websocket && res_.upgrade_websocket &&
                               h1::find(res_, "sec-websocket-accept") == websocket_accept(ws_key_);
            if (!valid) {
                upstream_.reset();
                std::string message = "runner at " + route.host_port;
                message += req_.upgrade_websocket
                               ? " answered the WebSocket upgrade with an invalid handshake"
                               : " switched protocols without an upgrade request";
                co_return co_await reply_error(502, std::move(message));
            }
            // RFC 8441: the stream is the tunnel; 200 says it is open.
            struct collect final : response_field_sink {
                std::vector<std::array<std::string_view, 4>> out;
                void field(std::string_view n, std::string_view a, std::string_view b,
                           std::string_view c) override {
                    if (!h1::iequals(n, "sec-websocket-accept"))
                        out.push_back({n, a, b, c});
                }
            } fields;
            visit_response_fields(res_, edits_for_response(res_), fields);
            submit_head(200, fields.out, false);
            rec_.status = 200;
            rec_.websocket = true;
            up_buf.consume(res_.size);
            // What the runner sent after its 101 goes to the client; the relay buffer goes
            // back to the pool (an idle tunnel holds no buffer).
            if (!up_buf.empty()) {
                down_frames_.feed(up_buf.data());
                down_append(up_buf.data());
                up_buf.clear();
            }
            lease.give_back();
            keep_alive_probes(upstream_->sock);
            auto& up = *upstream_;
            tunnel_ = true;
            up.going_away_hook = [](void* self) { static_cast<stream*>(self)->go_away(); };
            up.going_away_context = this;
            exchange_metrics().websocket_opened(http_protocol::h2);
            auto [a, b] = co_await (pump_up(up, body_kind::until_close) &&
                                    pump_down(&up, up_buf, body_kind::until_close, 0));
            exchange_metrics().websocket_closed(http_protocol::h2);
            if (b == pump_result::done)
                finish_response();
            else if (!is_closed)
                nghttp2_submit_rst_stream(conn_.ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
            (void)a;
            conn_.wake_writer();
            upstream_.reset();
            co_return false;
        }

        const bool upstream_keep = res_.keep_alive && res_.body != body_kind::until_close;
        if (!sandbox_id.empty() && ((res_.status == 404 && reroute == 0) || res_.status == 400) &&
            small_json(res_)) {
            std::string said;
            auto verdict = co_await read_runner_error(*upstream_, up_buf, res_, head_request, said);
            if (verdict == runner_verdict::broken) {
                upstream_.reset();
                co_return co_await reply_error(502, "runner at " + route.host_port +
                                                        " broke off its answer");
            }
            const bool whole = up_buf.size() == res_.size + res_.content_length;
            if (verdict == runner_verdict::not_started) {
                if (upstream_keep && whole)
                    pool_upstream(ctx_, route, upstream_);
                upstream_.reset();
                co_return co_await reply_error(503, "sandbox " + std::string(sandbox_id) +
                                                        " is not started (runner: " + said + ")");
            }
            if (verdict == runner_verdict::lacks_sandbox) {
                spdlog::info("runner {} has no sandbox {}: route invalidated", route.host_port,
                             sandbox_id);
                ctx_.routes.invalidate(sandbox_id);
                if (bodyless) {
                    if (upstream_keep && whole)
                        pool_upstream(ctx_, route, upstream_);
                    upstream_.reset();
                    auto again = co_await ctx_.routes.runner_for(sandbox_id);
                    if (again.status == routing::lookup_status::found) {
                        route_ptr = std::move(again.route);
                        continue;
                    }
                    if (again.status == routing::lookup_status::not_found)
                        co_return co_await reply_error(
                            404, "sandbox " + std::string(sandbox_id) + " not found");
                }
                // Otherwise the runner's own answer goes to the client, below (whole in up_buf).
            }
        }

        // The response head, then its body as it arrives.
        struct collect final : response_field_sink {
            std::vector<std::array<std::string_view, 4>> out;
            void field(std::string_view n, std::string_view a, std::string_view b,
                       std::string_view c) override {
                out.push_back({n, a, b, c});
            }
        } fields;
        visit_response_fields(res_, edits_for_response(res_), fields);
        char length[24];
        const bool bodyless_response = res_.body == body_kind::none;
        if (res_.body == body_kind::length ||
            (bodyless_response && res_.status >= 200 && res_.status != 204)) {
            std::string_view cl = h1::find(res_, "content-length");
            if (res_.body == body_kind::length) {
                auto [end, e] = std::to_chars(length, length + sizeof length, res_.content_length);
                cl = std::string_view(length, static_cast<std::size_t>(end - length));
            }
            if (!cl.empty())
                fields.out.push_back({"content-length"sv, cl, {}, {}});
        }
        up_buf.consume(res_.size);
        rec_.status = res_.status;
        submit_head(res_.status, fields.out, bodyless_response);
        if (bodyless_response) {
            if (upstream_ && upstream_keep && up_buf.empty())
                pool_upstream(ctx_, route, upstream_);
            upstream_.reset();
            co_return false;
        }
        auto got = co_await pump_down(upstream_ ? &*upstream_ : nullptr, up_buf, res_.body,
                                       res_.content_length);
        if (got == pump_result::done) {
            finish_response();
            if (upstream_ && upstream_keep && up_buf.empty())
                pool_upstream(ctx_, route, upstream_);
            upstream_.reset();
        } else {
            if (got != pump_result::client_gone)
                spdlog::debug("runner {} broke off a response body", route.host_port);
            if (!is_closed) // a half-sent response can only end with a reset
                nghttp2_submit_rst_stream(conn_.ng, NGHTTP2_FLAG_NONE, id,
                                          NGHTTP2_INTERNAL_ERROR);
            conn_.wake_writer();
        }
        upstream_.reset();
        co_return false;
    }
}

// --- the connection ---

bool connection::setup() {
    nghttp2_session_callbacks* cbs = nullptr;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return false;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option* opt = nullptr;
    nghttp2_option_new(&opt);
    // The window opens as bytes reach the runner, not as they arrive.
    nghttp2_option_set_no_auto_window_update(opt, 1);
#ifdef EDGE_HAVE_NGHTTP2_RESET_LIMIT
    // Rapid Reset (CVE-2023-44487): at most a burst of 1000 resets, then 33 a second.
    nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
#endif
#ifdef EDGE_HAVE_NGHTTP2_MAX_CONTINUATIONS
    // CONTINUATION flood (CVE-2024-27316): a header block in at most 8 frames.
    nghttp2_option_set_max_continuations(opt, 8);
#endif
    const int rv = nghttp2_session_server_new2(&ng, cbs, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
        return false;
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<std::uint32_t>(stream_window)},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, max_header_list},
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
    };
    nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, settings, std::size(settings));
    nghttp2_session_set_local_window_size(ng, NGHTTP2_FLAG_NONE, 0, connection_window);
    return true;
}

int connection::on_begin_headers(nghttp2_session* ng, const nghttp2_frame* frame, void* self) {
    auto& c = *static_cast<connection*>(self);
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    auto s = std::make_unique<stream>(c, frame->hd.stream_id);
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, s.get());
    c.streams_.emplace(frame->hd.stream_id, std::move(s));
    return 0;
}

int connection::on_header(nghttp2_session* ng, const nghttp2_frame* frame,
                          const std::uint8_t* name, std::size_t namelen,
                          const std::uint8_t* value, std::size_t valuelen, std::uint8_t,
                          void*) {
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    auto* s = stream_of(ng, frame->hd.stream_id);
    if (!s)
        return 0;
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    // A HEADERS frame after the request's: its trailer section (nghttp2 checked it).
    const bool ok = frame->headers.cat == NGHTTP2_HCAT_REQUEST ? s->add_header(n, v)
                                                               : s->add_trailer(n, v);
    if (!ok)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; // header list too large: stream reset
    return 0;
}

int connection::on_frame_recv(nghttp2_session* ng, const nghttp2_frame* frame, void* self) {
    auto& c = *static_cast<connection*>(self);
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
        auto* s = stream_of(ng, frame->hd.stream_id);
        if (!s)
            break;
        const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST && !s->started) {
            s->started = true;
            s->end_stream_at_headers = end;
            if (end)
                s->request_ended();
            c.to_start_.push_back(s);
        } else if (end) {
            s->request_ended(); // after trailers
        }
        break;
    }
    case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
            if (auto* s = stream_of(ng, frame->hd.stream_id))
                s->request_ended();
        break;
    case NGHTTP2_PING:
        // The round trip after the shutdown notice is over: the final GOAWAY names the last
        // stream that will be served.
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) && c.draining_ && !c.final_goaway_) {
            c.final_goaway_ = true;
            nghttp2_submit_goaway(ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(ng),
                                  NGHTTP2_NO_ERROR, nullptr, 0);
        }
        break;
    default: break;
    }
    return 0;
}

int connection::on_data_chunk(nghttp2_session* ng, std::uint8_t, std::int32_t stream_id,
                              const std::uint8_t* data, std::size_t len, void*) {
    if (auto* s = stream_of(ng, stream_id))
        s->request_data(data, len);
    else
        nghttp2_session_consume(ng, stream_id, len);
    return 0;
}

int connection::on_stream_close(nghttp2_session* ng, std::int32_t stream_id,
                                std::uint32_t error_code, void* self) {
    auto& c = *static_cast<connection*>(self);
    auto* s = stream_of(ng, stream_id);
    if (!s)
        return 0;
    nghttp2_session_set_stream_user_data(ng, stream_id, nullptr);
    s->closed(error_code);
    c.erase_if_finished(s);
    return 0;
}

void connection::erase_if_finished(stream* s) {
    if (s->is_closed && (s->coroutine_done || !s->started)) {
        std::erase(to_start_, s);
        streams_.erase(s->id);
    }
}

bool connection::receive(std::string_view bytes) {
    const auto rv = nghttp2_session_mem_recv(
        ng, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    if (rv < 0) {
        spdlog::debug("HTTP/2 connection from {} failed: {}", client_ip, nghttp2_strerror(int(rv)));
        return false;
    }
    auto starting = std::move(to_start_);
    to_start_.clear();
    for (auto* s : starting) {
        ++running_;
        asio::co_spawn(client.sock.get_executor(), run_stream(s), asio::detached);
    }
    wake_writer();
    return true;
}

awaitable<void> connection::run_stream(stream* s) {
    co_await s->run();
    s->coroutine_done = true;
    if (!s->is_closed && !closing_)
        wake_writer();
    erase_if_finished(s);
    --running_;
    done_event_.notify();
}

void connection::arm_read_deadline() {
    const bool idle = streams_.empty();
    client.idle = idle;
    if (writing_)
        return; // the write's deadline holds
    if (idle)
        client.expires_after(idle_timeout);
    else
        client.expires_never(); // streams may be long polls; TCP keepalive finds dead peers
}

awaitable<void> connection::writer() {
    for (;;) {
        while (!failed_ && nghttp2_session_want_write(ng)) {
            out_.clear();
            while (out_.size() < write_batch) {
                const std::uint8_t* data = nullptr;
                const auto n = nghttp2_session_mem_send(ng, &data);
                if (n < 0) {
                    failed_ = true;
                    break;
                }
                if (n == 0)
                    break;
                out_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
            }
            if (out_.empty())
                break;
            bufs_.assign({asio::buffer(out_)});
            writing_ = true;
            client.writing = true;
            client.expires_after(io_timeout);
            const bool ok = write_now(client, bufs_) || !co_await write_all(client, bufs_);
            client.writing = false;
            writing_ = false;
            if (!ok)
                failed_ = true;
            else if (!closing_)
                arm_read_deadline();
        }
        if (failed_ || closing_ || finishing_ ||
            (!nghttp2_session_want_read(ng) && !nghttp2_session_want_write(ng)))
            break;
        co_await writer_event_.wait();
    }
    // Done (the session is over, or the socket failed): the reader stops too.
    closing_ = true;
    error_code ignored;
    client.sock.cancel(ignored);
    --running_;
    done_event_.notify();
}

void connection::drain() {
    if (draining_ || closing_)
        return;
    draining_ = true;
    if (streams_.empty()) {
        // Nothing in flight: the final GOAWAY at once.
        final_goaway_ = true;
        nghttp2_session_terminate_session(ng, NGHTTP2_NO_ERROR);
    } else {
        // A shutdown notice, then the final GOAWAY one round trip later (on the PING's ack).
        nghttp2_submit_shutdown_notice(ng);
        nghttp2_submit_ping(ng, NGHTTP2_FLAG_NONE, nullptr);
    }
    wake_writer();
}

awaitable<void> connection::run(std::string_view preread) {
    if (!setup())
        co_return;
    keep_alive_probes(client.sock);
    client.drain_hook = [](void* self) { static_cast<connection*>(self)->drain(); };
    client.drain_context = this;
    ++running_;
    asio::co_spawn(client.sock.get_executor(), writer(), asio::detached);
    bool ok = preread.empty() || receive(preread);
    if (ctx.draining)
        drain();
    std::vector<char> buf(read_room);
    while (ok && !closing_) {
        arm_read_deadline();
        auto [ec, n] = co_await read_some(client, asio::buffer(buf));
        client.idle = false;
        if (ec || closing_)
            break;
        ok = receive({buf.data(), n});
    }
    // The end: what nghttp2 still has to say (a GOAWAY) is written unless the socket failed;
    // every stream stops, its runner connection closed.
    client.drain_hook = nullptr;
    if (!ok && !failed_)
        wake_writer();
    for (auto& [id, s] : streams_)
        s->closed(NGHTTP2_CANCEL);
    finishing_ = true;
    wake_writer();
    while (running_ > 0)
        co_await done_event_.wait();
}

} // namespace

awaitable<void> serve_h2(timed_socket& client, std::string_view preread, worker_context& ctx,
                         std::string_view client_ip) {
    connection c(client, ctx, client_ip);
    co_await c.run(preread);
}

} // namespace edge::proxy
