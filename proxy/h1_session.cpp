#include "proxy/h1_session.hpp"

#include "proxy/error_response.hpp"
#include "proxy/header_rewrite.hpp"
#include "proxy/http_io.hpp"
#include "routing/host.hpp"
#include "routing/redis/redis_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/system/result.hpp>
#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <optional>

namespace edge::proxy {
namespace {
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;

constexpr auto idle_timeout = 70s;   // waiting for the next request on a kept-alive connection
constexpr auto header_timeout = 10s; // from the first byte of a request to the end of its header
constexpr auto io_timeout = 70s; // a body read from the client or any write that makes no progress
constexpr std::size_t header_limit = 64 * 1024;
constexpr std::size_t relay_buffer_size = worker_context::relay_buffer_size;

bool is_reserved_port(std::uint16_t port) {
    return port == 22222 || port == 2280 || port == 33333;
}

using request_parser = http::request_parser<http::buffer_body>;
using response_parser = http::response_parser<http::buffer_body>;

// What went wrong while moving a message from one side to the other.
enum class relay_failure { none, read, write };

// Scratch space a session reuses for every message it relays.
struct relay_scratch {
    std::string header;
    std::vector<boost::asio::const_buffer> bufs;
    char chunk_line[20];
};

// Writes the header of `p`'s message to `out`, then moves its body from `in` to `out` as it
// arrives (one read, one write, no batching: a server-sent event is flushed when it arrives),
// chunk-framed when the outgoing header says chunked. The header goes out with the first piece
// of body when that is already at hand, so a small message costs one write; otherwise at once,
// as a stream may not send its body for a while. `read_timeout` bounds each read (none for
// runner responses, which may stream forever).
template <bool is_request>
awaitable<relay_failure> relay(timed_socket& in, beast::flat_buffer& in_buf,
                               http::parser<is_request, http::buffer_body>& p, timed_socket& out,
                               std::optional<std::chrono::seconds> read_timeout, char* scratch,
                               relay_scratch& rs) {
    namespace asio = boost::asio;
    auto& msg = p.get();
    const bool chunked = msg.chunked();
    rs.header.clear();
    append_header(rs.header, msg.base());
    bool header_sent = false;
    // Most writes fit the socket buffer at once: no coroutine for those.
    auto sent_now = [&] {
        out.expires_after(io_timeout);
        return write_now(out, rs.bufs);
    };
    if (p.is_done()) { // no body at all (HEAD, 204, 304, a bodyless request)
        rs.bufs.assign({asio::buffer(rs.header)});
        if (!sent_now() && co_await write_all(out, rs.bufs))
            co_return relay_failure::write;
        co_return relay_failure::none;
    }
    p.eager(true);
    auto& body = msg.body();
    for (;;) {
        if (!header_sent && in_buf.size() == 0) {
            rs.bufs.assign({asio::buffer(rs.header)});
            header_sent = true;
            if (!sent_now() && co_await write_all(out, rs.bufs))
                co_return relay_failure::write;
        }
        body.data = scratch;
        body.size = relay_buffer_size;
        if (read_timeout)
            in.expires_after(*read_timeout);
        else
            in.expires_never();
        bool progressed = false;
        auto rec = parse_body_now(in_buf, p, progressed);
        if (!rec && !progressed)
            rec = co_await read_body_some(in, in_buf, p);
        if (rec)
            co_return relay_failure::read;
        const std::size_t got = relay_buffer_size - body.size;
        const bool last = p.is_done();
        rs.bufs.clear();
        if (!header_sent) {
            rs.bufs.push_back(asio::buffer(rs.header));
            header_sent = true;
        }
        if (got > 0) {
            if (chunked) {
                int n = std::snprintf(rs.chunk_line, sizeof rs.chunk_line, "%zx\r\n", got);
                rs.bufs.push_back(asio::buffer(rs.chunk_line, static_cast<std::size_t>(n)));
                rs.bufs.push_back(asio::buffer(scratch, got));
                rs.bufs.push_back(asio::buffer("\r\n", 2));
            } else {
                rs.bufs.push_back(asio::buffer(scratch, got));
            }
        }
        if (last && chunked)
            rs.bufs.push_back(asio::buffer("0\r\n\r\n", 5));
        if (!rs.bufs.empty() && !sent_now() && co_await write_all(out, rs.bufs))
            co_return relay_failure::write;
        if (last)
            co_return relay_failure::none;
    }
}

class session {
  public:
    session(tcp::socket s, worker_context& ctx) : client_(ctx.watch, std::move(s)), ctx_(ctx) {
        ++ctx_.sessions;
        error_code ec;
        auto ep = client_.sock.remote_endpoint(ec);
        client_ip_ = ec ? "unknown" : ep.address().to_string();
        client_.sock.set_option(tcp::no_delay(true), ec);
        client_.sock.non_blocking(true, ec); // for write_all's first, plain write
    }

    ~session() { --ctx_.sessions; }
    session(const session&) = delete;
    session& operator=(const session&) = delete;

    awaitable<void> run() {
        while (!ctx_.draining && co_await serve_one()) {
        }
        error_code ec;
        client_.sock.shutdown(tcp::socket::shutdown_send, ec);
        client_.sock.close(ec);
    }

  private:
    // Serves one request; true when the connection stays open for the next.
    awaitable<bool> serve_one() {
        if (buf_.size() == 0) {
            client_.expires_after(idle_timeout);
            client_.idle = true;
            auto [ec, n] =
                co_await client_.sock.async_read_some(buf_.prepare(16 * 1024), use_nothrow);
            client_.idle = false;
            if (ec || ctx_.draining)
                co_return false;
            buf_.commit(n);
        }
        request_parser p;
        p.header_limit(header_limit);
        p.body_limit(boost::none); // bodies stream; their size is the runner's business
        client_.expires_after(header_timeout);
        auto ec = parse_header_now(buf_, p);
        if (ec == http::error::need_more)
            ec = co_await read_header(client_, buf_, p);
        if (ec) {
            if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
                ec == boost::asio::error::connection_reset)
                co_return false;
            unsigned status = ec == http::error::header_limit ? 431 : 400;
            co_await send_error(status, "malformed HTTP request: " + ec.message(), "/", "", false);
            co_return false;
        }

        auto& req = p.get();
        auto host = req[http::field::host];
        auto target = routing::parse_host(host);
        switch (target.kind) {
        case routing::host_kind::invalid:
            co_return co_await reply_error(p, 400, std::string(target.error));
        case routing::host_kind::base: co_return co_await serve_base(p);
        case routing::host_kind::preview: break;
        }
        co_return co_await serve_preview(p, target);
    }

    // Daytona's {"status":"ok","version":...}, plus the state of Redis when one is configured:
    // edgegate serves without Redis (from the API), so it is a detail, not a failure.
    std::string health_body() const {
        boost::json::object o;
        o["status"] = "ok";
        o["version"] = EDGE_VERSION;
        if (!ctx_.redis_clients.empty()) {
            // Connected only when every worker is: a request may land on any of them.
            auto worst = routing::redis::state::connected;
            std::string error;
            for (auto* c : ctx_.redis_clients) {
                auto state = c->current_state();
                if (state == routing::redis::state::connected)
                    continue;
                if (worst == routing::redis::state::connected ||
                    state == routing::redis::state::disconnected)
                    worst = state;
                if (error.empty())
                    error = c->last_error();
            }
            boost::json::object r;
            r["state"] = worst == routing::redis::state::connected    ? "connected"
                         : worst == routing::redis::state::connecting ? "connecting"
                                                                      : "disconnected";
            if (!error.empty())
                r["error"] = error;
            o["redis"] = std::move(r);
        }
        return boost::json::serialize(o);
    }

    awaitable<bool> serve_base(request_parser& p) {
        auto& req = p.get();
        auto path = req.target().substr(0, req.target().find('?'));
        if (path == "/health" &&
            (req.method() == http::verb::get || req.method() == http::verb::head))
            co_return co_await reply(p, 200, health_body());
        if (auto tb = routing::parse_toolbox_path(req.target()); tb && routing::valid_id(tb->id))
            co_return co_await reply_error(
                p, 401, "authentication required: toolbox requests need an API key or token");
        co_return co_await reply_error(p, 404, "no route for this path on the proxy's base host");
    }

    awaitable<bool> serve_preview(request_parser& p, const routing::host_target& t) {
        auto& req = p.get();
        if (ctx_.cfg->toolbox_only_mode && t.port != 2280)
            co_return co_await reply_error(p, 404,
                                           "this proxy serves only the toolbox (port 2280)");
        if (req.target().empty() || req.target().front() != '/')
            co_return co_await reply_error(p, 400,
                                           "the request target must be a path (origin-form)");
        std::string id(t.id);
        routing::runner_lookup found;
        routing::public_lookup pub;
        // The usual case: both answers cached and fresh, one lookup, no coroutine.
        const bool ready = ctx_.routes.ready_pair(id, found, pub);
        if (!ready)
            found = ctx_.routes.ready_runner(id).value_or(routing::runner_lookup{});
        if (!ready && found.status == routing::lookup_status::unavailable)
            found = co_await ctx_.routes.runner_for(id);
        if (found.status == routing::lookup_status::not_found)
            co_return co_await reply_error(p, 404, "sandbox " + id + " not found");
        if (found.status != routing::lookup_status::found)
            co_return co_await reply_unavailable(p, found.detail);
        if (is_reserved_port(t.port))
            co_return co_await reply_error(p, 401,
                                           "authentication required: port " +
                                               std::to_string(t.port) +
                                               " always needs a preview token or API key");
        if (!ready)
            pub = ctx_.routes.ready_public(id).value_or(routing::public_lookup{});
        if (pub.status == routing::lookup_status::unavailable)
            pub = co_await ctx_.routes.is_public(id);
        if (pub.status == routing::lookup_status::unavailable)
            co_return co_await reply_unavailable(p, pub.detail);
        if (!pub.is_public)
            co_return co_await reply_error(
                p, 401, "authentication required: sandbox " + id + " is private");

        std::string suffix;
        suffix.reserve(24 + req.target().size());
        suffix.append("/toolbox/proxy/").append(std::to_string(t.port));
        auto target_offset = suffix.size();
        suffix.append(req.target());
        co_return co_await forward(p, found.route, id, suffix, target_offset);
    }

    // Opens a new connection to the runner into `out`.
    awaitable<error_code> connect(const routing::runner_route& r,
                                  std::optional<timed_socket>& out) {
        out.reset();
        auto& s = out.emplace(ctx_.watch, tcp::socket(client_.sock.get_executor()));
        s.expires_after(std::chrono::seconds(ctx_.cfg->upstream_connect_timeout_sec));
        error_code ec;
        auto addr = boost::asio::ip::make_address(
            r.host.front() == '[' ? r.host.substr(1, r.host.size() - 2) : r.host, ec);
        if (!ec) {
            std::tie(ec) = co_await s.sock.async_connect(tcp::endpoint(addr, r.port), use_nothrow);
        } else {
            auto [rec, eps] =
                co_await ctx_.resolver.async_resolve(r.host, std::to_string(r.port), use_nothrow);
            if (rec) {
                out.reset();
                co_return rec;
            }
            tcp::endpoint ep;
            std::tie(ec, ep) = co_await boost::asio::async_connect(s.sock, eps, use_nothrow);
        }
        if (ec) {
            ec = s.result(ec);
            out.reset();
            co_return ec;
        }
        s.sock.set_option(tcp::no_delay(true), ec);
        s.sock.non_blocking(true, ec); // for write_all's first, plain write
        co_return error_code{};
    }

    // Forwards the request to `route`'s runner at {base}/sandboxes/{id}{suffix} (the client's
    // target is suffix[target_offset..]) and relays the
    // answer. When the runner says it has no such sandbox (its 404 JSON), the route is
    // invalidated everywhere and, for a request without a body, resolved again and retried once.
    awaitable<bool> forward(request_parser& p,
                            std::shared_ptr<const routing::runner_route> route_ptr,
                            const std::string& id, const std::string& suffix,
                            std::size_t target_offset) {
        auto& req = p.get();
        // The client's target ends the suffix: no copy of it is needed for error bodies.
        const std::string_view original_target = std::string_view(suffix).substr(target_offset);
        // Valid until rewrite_request replaces Host (it copies it into X-Forwarded-Host first).
        const std::string_view original_host = req[http::field::host];
        const auto method = req.method();
        const std::string method_name(req.method_string());
        const unsigned client_version = req.version();
        bool client_keep = req.keep_alive();
        const bool expect_continue = beast::iequals(req[http::field::expect], "100-continue");

        rewrite_request(req.base(), forward_context{original_host, client_ip_,
                                                    ctx_.cfg->enable_tls ? "https" : "http",
                                                    route_ptr->host_port, route_ptr->api_key});
        req.erase(http::field::expect);
        req.version(11);
        req.keep_alive(true);

        struct buffer_lease {
            worker_context& ctx;
            std::unique_ptr<char[]> buf = ctx.take_buffer();
            ~buffer_lease() { ctx.give_back(std::move(buf)); }
        } lease{ctx_};
        char* scratch = lease.buf.get();
        const bool bodyless = p.is_done();
        std::optional<timed_socket> upstream;
        beast::flat_buffer upstream_buf;
        std::optional<response_parser> rp;
        bool sent_continue = false;

        for (int reroute = 0;; ++reroute) {
            const auto& route = *route_ptr;
            if (route.scheme != "http")
                co_return co_await reply_error(p, 502,
                                               "runner at " + route.host_port +
                                                   " uses https, which this build cannot reach yet",
                                               client_keep && bodyless, original_target,
                                               method_name);
            std::string upstream_target;
            upstream_target.reserve(route.base_path.size() + id.size() + 11 + suffix.size());
            upstream_target.append(route.base_path).append("/sandboxes/").append(id).append(suffix);
            req.target(upstream_target);
            if (reroute > 0) {
                req.set(http::field::host, route.host_port);
                req.set("X-Daytona-Authorization", "Bearer " + route.api_key);
            }

            // A pooled connection can turn out dead only on use; a bodyless request is retried once
            // on a fresh connection then. With a body, a peek in tcp_pool::take is the guard.
            for (int attempt = 0;; ++attempt) {
                bool reused = false;
                if (auto pooled =
                        ctx_.upstream_pool.take(route.host_port, !(bodyless && attempt == 0))) {
                    upstream.emplace(ctx_.watch, std::move(*pooled));
                    reused = true;
                } else if (auto ec = co_await connect(route, upstream)) {
                    if (ec == beast::error::timeout)
                        co_return co_await reply_error(
                            p, 504,
                            "runner at " + route.host_port +
                                " did not accept a connection within " +
                                std::to_string(ctx_.cfg->upstream_connect_timeout_sec) + " s",
                            client_keep && bodyless, original_target, method_name);
                    co_return co_await reply_error(
                        p, 502, "runner at " + route.host_port + " is unreachable: " + ec.message(),
                        client_keep && bodyless, original_target, method_name);
                }
                upstream_buf.clear();

                if (expect_continue && !p.is_done() && !sent_continue) {
                    sent_continue = true;
                    static constexpr std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
                    client_.expires_after(io_timeout);
                    auto [ec, n] = co_await boost::asio::async_write(
                        client_.sock, boost::asio::buffer(cont.data(), cont.size()), use_nothrow);
                    if (ec)
                        co_return false;
                }

                relay_failure sent = relay_failure::none;
                if (p.is_done()) {
                    // No body (most requests): the header alone, without a relay coroutine.
                    relay_.header.clear();
                    append_header(relay_.header, req.base());
                    relay_.bufs.assign({boost::asio::buffer(relay_.header)});
                    upstream->expires_after(io_timeout);
                    if (!write_now(*upstream, relay_.bufs) &&
                        co_await write_all(*upstream, relay_.bufs))
                        sent = relay_failure::write;
                } else {
                    sent = co_await relay(client_, buf_, p, *upstream, io_timeout, scratch, relay_);
                }
                if (sent == relay_failure::read)
                    co_return false; // the client went away or stalled mid-body: nothing to answer
                if (sent == relay_failure::write && reused && bodyless && attempt == 0)
                    continue;
                if (sent == relay_failure::write) {
                    // The runner may have answered early (e.g. 413) and closed; try to read it.
                    client_keep = false;
                }

                rp.emplace();
                rp->body_limit(boost::none);
                if (method == http::verb::head)
                    rp->skip(true);
                upstream->expires_after(
                    std::chrono::seconds(ctx_.cfg->upstream_response_timeout_sec));
                auto ec = co_await read_header(*upstream, upstream_buf, *rp);
                // Interim answers (100 Continue and friends) are ours to give, not the runner's.
                while (!ec && rp->get().result_int() >= 100 && rp->get().result_int() < 200 &&
                       rp->get().result_int() != 101) {
                    rp.emplace();
                    rp->body_limit(boost::none);
                    if (method == http::verb::head)
                        rp->skip(true);
                    ec = co_await read_header(*upstream, upstream_buf, *rp);
                }
                if (!ec)
                    break;
                if (ec == beast::error::timeout)
                    co_return co_await reply_error(
                        p, 504,
                        "runner at " + route.host_port + " did not answer within " +
                            std::to_string(ctx_.cfg->upstream_response_timeout_sec) + " s",
                        false, original_target, method_name);
                if (reused && bodyless && attempt == 0 && upstream_buf.size() == 0)
                    continue;
                co_return co_await reply_error(
                    p, 502,
                    "runner at " + route.host_port +
                        " closed the connection without an answer: " + ec.message(),
                    false, original_target, method_name);
            }

            auto& res = rp->get();
            const bool upstream_keep = res.keep_alive();
            const unsigned status = res.result_int();

            if (status == 404 && reroute == 0 && !rp->is_done() && small_json(res)) {
                std::string small;
                if (!co_await read_small_body(*upstream, upstream_buf, *rp, scratch, small))
                    co_return false;
                if (upstream_keep && upstream_buf.size() == 0)
                    ctx_.upstream_pool.put(route.host_port, std::move(upstream->sock));
                if (runner_lacks_sandbox(small)) {
                    spdlog::info("runner {} has no sandbox {}: route invalidated", route.host_port,
                                 id);
                    ctx_.routes.invalidate(id);
                    if (bodyless) {
                        auto again = co_await ctx_.routes.runner_for(id);
                        if (again.status == routing::lookup_status::found) {
                            route_ptr = again.route;
                            continue;
                        }
                        if (again.status == routing::lookup_status::not_found)
                            co_return co_await reply_error(p, 404, "sandbox " + id + " not found",
                                                           client_keep, original_target,
                                                           method_name);
                    }
                }
                finish_response_header(res, client_version, method, client_keep);
                http::response<http::string_body> out{std::move(res.base()), std::move(small)};
                client_.expires_after(io_timeout);
                http::serializer<false, http::string_body> out_sr{out};
                auto wec = co_await write_ready(client_, out_sr, wbufs_);
                co_return !wec && client_keep && p.is_done();
            }

            finish_response_header(res, client_version, method, client_keep);

            // A response whose whole body (Content-Length) already arrived with its header is
            // sent in one write, without a relay coroutine.
            auto length = rp->content_length();
            if (rp->is_done() || (length && *length <= relay_buffer_size &&
                                  upstream_buf.size() >= *length && !res.chunked())) {
                std::size_t got = 0;
                if (!rp->is_done()) {
                    auto& body = res.body();
                    body.data = scratch;
                    body.size = relay_buffer_size;
                    rp->eager(true);
                    bool progressed = false;
                    if (parse_body_now(upstream_buf, *rp, progressed) || !rp->is_done())
                        co_return false;
                    got = relay_buffer_size - body.size;
                }
                relay_.header.clear();
                append_header(relay_.header, res.base());
                relay_.bufs.assign({boost::asio::buffer(relay_.header)});
                if (got > 0)
                    relay_.bufs.push_back(boost::asio::buffer(scratch, got));
                client_.expires_after(io_timeout);
                if (!write_now(client_, relay_.bufs) && co_await write_all(client_, relay_.bufs))
                    co_return false;
                if (upstream_keep && p.is_done() && upstream_buf.size() == 0)
                    ctx_.upstream_pool.put(route.host_port, std::move(upstream->sock));
                co_return client_keep&& p.is_done();
            }

            auto got = co_await relay(*upstream, upstream_buf, *rp, client_, std::nullopt, scratch,
                                      relay_);
            if (got != relay_failure::none) {
                if (got == relay_failure::read)
                    spdlog::debug("runner {} broke off a response body", route.host_port);
                co_return false; // a half-sent response can only end with the connection
            }
            if (upstream_keep && rp->is_done() && p.is_done() && upstream_buf.size() == 0)
                ctx_.upstream_pool.put(route.host_port, std::move(upstream->sock));
            co_return client_keep&& p.is_done();
        }
    }

    // Response header toward the client: hop-by-hop fields out, framing fit for the client's
    // HTTP version, Connection as the client (and a drain) allow.
    void finish_response_header(http::response<http::buffer_body>& res, unsigned client_version,
                                http::verb method, bool& client_keep) {
        const unsigned status = res.result_int();
        const bool upstream_chunked = res.chunked();
        rewrite_response(res);
        const bool has_body = method != http::verb::head && status != 204 && status != 304 &&
                              !(status >= 100 && status < 200);
        if (has_body && !res.has_content_length() && !upstream_chunked) {
            // The runner ends this body by closing: re-frame it for a keep-alive client.
            if (client_version >= 11)
                res.chunked(true);
            else
                client_keep = false;
        } else if (client_version < 11 && upstream_chunked) {
            res.chunked(false);
            client_keep = false;
        }
        res.version(11);
        client_keep = client_keep && !ctx_.draining;
        res.keep_alive(client_keep);
    }

    // A runner's own errors are small JSON documents with a Content-Length.
    static bool small_json(const http::response<http::buffer_body>& res) {
        // (payload_size() knows nothing of a buffer_body's length: read the field.)
        auto field = res[http::field::content_length];
        std::size_t length = 0;
        auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), length);
        return !field.empty() && ec == std::errc{} && end == field.data() + field.size() &&
               length <= 4096 &&
               res[http::field::content_type].find("json") != std::string_view::npos;
    }

    static bool runner_lacks_sandbox(const std::string& body) {
        boost::system::error_code ec;
        auto v = boost::json::parse(body, ec);
        if (ec || !v.is_object())
            return false;
        auto& o = v.get_object();
        auto message = o.if_contains("message");
        auto code = o.if_contains("statusCode");
        return message && message->is_string() && code && code->is_number() &&
               code->to_number<int>() == 404 &&
               std::string_view(message->get_string()).find("not found") !=
                   std::string_view::npos &&
               std::string_view(message->get_string()).find("andbox") != std::string_view::npos;
    }

    // Reads the rest of a small body (known to be at most 4 KiB) into `out`.
    static awaitable<bool> read_small_body(timed_socket& in, beast::flat_buffer& in_buf,
                                           response_parser& rp, char* scratch, std::string& out) {
        while (!rp.is_done()) {
            auto& body = rp.get().body();
            body.data = scratch;
            body.size = relay_buffer_size;
            in.expires_after(io_timeout);
            if (co_await read_body_some(in, in_buf, rp))
                co_return false;
            out.append(scratch, relay_buffer_size - body.size);
        }
        co_return true;
    }

    // Answers a request that was not forwarded. The connection stays open only when the whole
    // request has been read (no unread body would be taken for the next request).
    awaitable<bool> reply(request_parser& p, unsigned status, std::string body,
                          std::string_view retry_after = {}) {
        auto& req = p.get();
        bool keep = req.keep_alive() && p.is_done() && !ctx_.draining;
        http::response<http::string_body> res{static_cast<http::status>(status), 11};
        res.set(http::field::content_type, "application/json");
        if (!retry_after.empty())
            res.set(http::field::retry_after, retry_after);
        res.body() = std::move(body);
        res.keep_alive(keep);
        res.prepare_payload();
        if (req.method() == http::verb::head)
            res.body().clear(); // Content-Length stays: HEAD describes the GET answer
        client_.expires_after(io_timeout);
        http::serializer<false, http::string_body> sr{res};
        auto ec = co_await write_ready(client_, sr, wbufs_);
        co_return keep && !ec;
    }

    awaitable<bool> reply_error(request_parser& p, unsigned status, std::string message,
                                std::optional<bool> keep_override = std::nullopt,
                                std::string_view target = {}, std::string_view method = {}) {
        auto& req = p.get();
        if (target.empty())
            target = req.target();
        if (method.empty())
            method = req.method_string();
        if (status >= 500)
            spdlog::warn("{} {}: {}", status, method, message);
        auto body = error_body(status, message, target, method);
        bool keep = co_await reply(p, status, std::move(body));
        co_return keep&& keep_override.value_or(true);
    }

    awaitable<bool> reply_unavailable(request_parser& p, const std::string& detail) {
        auto& req = p.get();
        auto body = error_body(503, "sandbox route unavailable: " + detail, req.target(),
                               req.method_string());
        spdlog::warn("503 {}: {}", req.method_string(), detail);
        co_return co_await reply(p, 503, std::move(body), "5");
    }

    // Errors found before a parser exists (malformed request): always closes.
    awaitable<void> send_error(unsigned status, std::string message, std::string_view target,
                               std::string_view method, bool keep) {
        http::response<http::string_body> res{static_cast<http::status>(status), 11};
        res.set(http::field::content_type, "application/json");
        res.body() = error_body(status, message, target, method);
        res.keep_alive(keep);
        res.prepare_payload();
        client_.expires_after(io_timeout);
        http::serializer<false, http::string_body> sr{res};
        co_await write_ready(client_, sr, wbufs_);
    }

    timed_socket client_;
    worker_context& ctx_;
    std::vector<boost::asio::const_buffer> wbufs_; // scratch for gathered writes
    relay_scratch relay_;
    beast::flat_buffer buf_;
    std::string client_ip_;
};

} // namespace

awaitable<void> serve_h1(tcp::socket socket, worker_context& ctx) {
    session s(std::move(socket), ctx);
    co_await s.run();
}

} // namespace edge::proxy
