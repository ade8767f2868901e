// g++ 12 reports -Wmismatched-new-delete on large Asio coroutine frames (awaitable_frame_base's
// operator new takes the aligned path that its operator delete mirrors): a false positive.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "proxy/h1_session.hpp"

#include "auth/cors.hpp"
#include "auth/preview_access.hpp"
#include "auth/preview_warning.hpp"
#include "proxy/error_response.hpp"
#include "proxy/h1_codec.hpp"
#include "proxy/header_rewrite.hpp"
#include "proxy/http_io.hpp"
#include "proxy/tls.hpp"
#include "routing/host.hpp"
#include "routing/redis/redis_client.hpp"

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
constexpr std::size_t relay_buffer_size = worker_context::relay_buffer_size;


bool timed_out(const error_code& ec) {
    return ec == boost::beast::error::timeout;
}

// TCP keepalive on a tunneled socket: a peer that vanished (NAT drop, sleep) is found within
// about two minutes instead of never.
void keep_alive_probes(tcp::socket& s) {
    error_code ignored;
    s.set_option(asio::socket_base::keep_alive(true), ignored);
    const int idle = 60, interval = 10, count = 6;
    ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

bool idempotent(std::string_view method) {
    return method == "GET"sv || method == "HEAD"sv || method == "OPTIONS"sv ||
           method == "PUT"sv || method == "DELETE"sv || method == "TRACE"sv;
}

// What went wrong while moving a body from one side to the other.
enum class relay_failure { none, read, write, framing };

// A body on its way through: how it is delimited on each side, and how far it got.
struct body_state {
    body_kind in = body_kind::none;
    body_kind out = body_kind::none;
    std::uint64_t remaining = 0; // for `length`
    h1::chunked_decoder chunks;
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

// The auth module's read access to a parsed head's fields.
class h1_headers final : public auth::header_lookup {
  public:
    explicit h1_headers(const h1::head& h) : h_(h) {}
    std::optional<std::string_view> first(std::string_view name) const override {
        for (const auto& f : h_.fields)
            if (h1::iequals(f.name, name))
                return f.value;
        return std::nullopt;
    }

  protected:
    bool each_value(std::string_view name, void* ctx,
                    bool (*f)(void*, std::string_view)) const override {
        for (const auto& fld : h_.fields)
            if (h1::iequals(fld.name, name) && f(ctx, fld.value))
                return true;
        return false;
    }

  private:
    const h1::head& h_;
};

// A 64 KiB buffer borrowed from the worker's pool for one exchange.
struct leased_buffer {
    explicit leased_buffer(worker_context& c) : ctx(c) {
        buf.adopt(ctx.take_buffer(), relay_buffer_size);
    }
    ~leased_buffer() {
        if (auto mem = buf.release(relay_buffer_size))
            ctx.give_back(std::move(mem));
    }
    leased_buffer(const leased_buffer&) = delete;
    leased_buffer& operator=(const leased_buffer&) = delete;

    worker_context& ctx;
    byte_buffer buf;
};

class session {
  public:
    session(tcp::socket s, worker_context& ctx) : client_(ctx.watch, std::move(s)), ctx_(ctx) {
        ++ctx_.sessions;
        error_code ec;
        auto ep = client_.sock.remote_endpoint(ec);
        client_ip_ = ec ? "unknown" : ep.address().to_string();
        client_.sock.set_option(tcp::no_delay(true), ec);
        client_.sock.non_blocking(true, ec); // for write_now's plain write
    }

    ~session() { --ctx_.sessions; }
    session(const session&) = delete;
    session& operator=(const session&) = delete;

    awaitable<void> run() {
        if (ctx_.tls && !co_await handshake())
            co_return;
        while (!ctx_.draining && co_await serve_one()) {
        }
        shutdown_send(client_);
        error_code ec;
        client_.sock.close(ec);
    }

  private:
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
            auto [ec, n] = co_await read_some(client_, in_.prepare(read_room));
            in_.commit(n);
            client_.idle = false;
            if (ec || ctx_.draining)
                co_return false;
        }
        client_.expires_after(header_timeout);
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
        reset_decision();

        auto target = routing::parse_host(req_.host);
        if (target.kind == routing::host_kind::invalid)
            co_return co_await reply_error(400, std::string(target.error));
        if (req_.upgrade_websocket && req_.body != body_kind::none)
            co_return co_await reply_error(400, "a WebSocket upgrade request cannot carry a body");
        if (req_.expect_unknown)
            co_return co_await reply_error(417, "only Expect: 100-continue is supported");
        // The warning page's accept endpoint works on any host.
        if (ctx_.access && req_.method == "POST"sv &&
            req_.target.substr(0, req_.target.find('?')) == auth::accept_warning_path) {
            view_ = make_view(target, auth::request_mode::preview);
            co_return co_await reply_auth(
                auth::accept_preview_warning(view_, ctx_.cfg->proxy_protocol));
        }
        if (target.kind == routing::host_kind::base)
            co_return co_await serve_base();
        bool keep = co_await serve_preview(target);
        activity_.reset();
        co_return keep;
    }

    // The auth module's view of the current request (views into req_).
    auth::request_view make_view(const routing::host_target& t, auth::request_mode mode) {
        auth::request_view v;
        v.method = req_.method;
        v.host = req_.host;
        v.target = req_.target;
        v.id = t.id;
        v.base_host = mode == auth::request_mode::preview && !t.base_host.empty() ? t.base_host
                                                                                   : req_.host;
        v.port = t.port;
        v.mode = mode;
        v.websocket = req_.upgrade_websocket;
        v.client_ip = client_ip_;
        v.headers = &req_headers_;
        return v;
    }

    // Daytona's {"status":"ok","version":...}, plus the state of Redis when one is configured:
    // edgegate serves without Redis (from the API), so it is a detail, not a failure.
    std::string health_body() const {
        boost::json::object o;
        o["status"] = "ok";
        o["version"] = EDGE_VERSION;
        if (ctx_.access)
            o["oidc"] = oidc_state();
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

    bool is_head_request() const { return req_.method == "HEAD"sv; }

    // The OIDC settings' state: "ready", "loading" or "not configured".
    std::string_view oidc_state() const {
        if (!ctx_.access)
            return "not configured";
        switch (ctx_.access->auth.shared().oidc.current()) {
        case auth::oidc_store::status::ready: return "ready";
        case auth::oidc_store::status::loading: return "loading";
        case auth::oidc_store::status::not_configured: return "not configured";
        }
        return "loading";
    }

    awaitable<bool> serve_base() {
        auto path = req_.target.substr(0, req_.target.find('?'));
        if (path == "/health" && (req_.method == "GET"sv || is_head_request()))
            co_return co_await reply(200, health_body());
        if (path == "/ready" && (req_.method == "GET"sv || is_head_request())) {
            // Ready once the OIDC settings are known (or known to be absent): until then a
            // browser that needs the login cannot be sent to it.
            if (oidc_state() == "loading"sv)
                co_return co_await reply(
                    503,
                    R"json({"status":"not ready","reason":"the OIDC settings are not loaded yet (GET /api/config and discovery are retried)"})json",
                    "5");
            co_return co_await reply(200, R"({"status":"ready"})");
        }
        if (auto tb = routing::parse_toolbox_path(req_.target); tb && routing::valid_id(tb->id)) {
            bool keep = co_await serve_toolbox(*tb);
            activity_.reset();
            co_return keep;
        }
        if (req_.method == "GET"sv && path.ends_with("/build-logs")) {
            std::string_view rest = path.substr(0, path.size() - 11);
            for (std::string_view kind : {"/sandboxes/"sv, "/snapshots/"sv})
                if (rest.starts_with(kind) && routing::valid_id(rest.substr(kind.size())))
                    co_return co_await serve_build_logs(kind == "/snapshots/"sv,
                                                        rest.substr(kind.size()));
        }
        if (path == "/callback" && req_.method == "GET"sv && ctx_.access) {
            view_ = make_view(routing::host_target{}, auth::request_mode::toolbox);
            auto resp = co_await ctx_.access->login.callback(view_);
            co_return co_await reply_auth(resp);
        }
        co_return co_await reply_error(404, "no route for this path on the proxy's base host");
    }

    // /toolbox/{id}/{rest} on the base host: always authenticated, forwarded to
    // {runner}/sandboxes/{id}/toolbox{rest}, redirects kept under /toolbox/{id}.
    awaitable<bool> serve_toolbox(const routing::toolbox_target& tb) {
        routing::host_target t;
        t.kind = routing::host_kind::preview;
        t.id = tb.id;
        t.port = 2280;
        view_ = make_view(t, auth::request_mode::toolbox);
        if (!co_await decide())
            co_return co_await reply_auth(decision_.resp);
        const std::string_view id = decision_.sandbox_id(view_);
        auto found = ctx_.routes.ready_runner(id).value_or(routing::runner_lookup{});
        if (found.status == routing::lookup_status::unavailable)
            found = co_await ctx_.routes.runner_for(id);
        if (found.status == routing::lookup_status::not_found)
            co_return co_await reply_error(404, "sandbox " + std::string(id) + " not found");
        if (found.status != routing::lookup_status::found)
            co_return co_await reply_unavailable(found.detail);
        // The forwarded target: what follows /toolbox/{id} (the query-key rewrite applied).
        std::string_view target = decision_.target ? std::string_view(*decision_.target)
                                                   : req_.target;
        const std::size_t prefix = 9 + tb.id.size(); // "/toolbox/{id}"
        location_prefix_.assign("/toolbox/").append(tb.id);
        if (ctx_.access)
            activity_ = ctx_.access->activity.start(id, &req_headers_);
        co_return co_await forward(std::move(found.route), id, "/toolbox"sv,
                                   target.substr(std::min(prefix, target.size())));
    }

    // GET /sandboxes/{id}/build-logs and /snapshots/{id}/build-logs (contract §2): the user's
    // own bearer reads the sandbox or snapshot from the API (which also checks access), the
    // runner that built it streams the log from {apiUrl}/snapshots/logs?{query}&snapshotRef=.
    awaitable<bool> serve_build_logs(bool snapshot, std::string_view id) {
        if (!ctx_.api || !ctx_.proxy_keys)
            co_return co_await reply_error(404, "build logs are not served by this proxy");
        std::string user_token(auth::bearer_token(req_headers_));
        if (user_token.empty())
            co_return co_await reply_error(
                401, "authentication required: build logs need `Authorization: Bearer <API key "
                     "or token>`");
        // (Named values only inside co_await expressions: g++ 12 mishandles temporaries there.)
        const std::string path = (snapshot ? "/snapshots/" : "/sandbox/") + std::string(id);
        const std::string what = (snapshot ? "snapshot " : "sandbox ") + std::string(id);
        const std::string_view endpoint = snapshot ? "snapshots" : "sandbox";
        auto meta = co_await ctx_.api->get(path, user_token, endpoint);
        if (!meta)
            co_return co_await reply_unavailable("control plane unreachable: " +
                                                 meta.error().message());
        if (meta->status == 401 || meta->status == 403) {
            const unsigned status = meta->status;
            co_return co_await reply_error(status, "the token has no access to " + what);
        }
        if (meta->status == 404)
            co_return co_await reply_error(404, what + " not found");
        if (meta->status != 200)
            co_return co_await reply_unavailable("the control plane answered " +
                                                 std::to_string(meta->status));
        boost::system::error_code ec;
        auto doc = boost::json::parse(meta->body, ec);
        std::string ref, runner_id;
        if (!ec && doc.is_object()) {
            auto& o = doc.get_object();
            auto text = [](const boost::json::value* v) {
                return v && v->is_string() ? std::string(v->get_string()) : std::string();
            };
            if (snapshot) {
                ref = text(o.if_contains("ref"));
                runner_id = text(o.if_contains("initialRunnerId"));
            } else {
                if (auto bi = o.if_contains("buildInfo"); bi && bi->is_object())
                    ref = text(bi->get_object().if_contains("snapshotRef"));
                runner_id = text(o.if_contains("runnerId"));
            }
        }
        if (ref.empty() || runner_id.empty())
            co_return co_await reply_error(
                404, what + " has no build logs (no snapshot reference or runner)");
        auto runner = co_await ctx_.api->get("/runners/" + runner_id + "/full",
                                             ctx_.proxy_keys->key(), "runners/full");
        if (!runner || runner->status != 200)
            co_return co_await reply_unavailable(
                "cannot read runner " + runner_id + " from the control plane");
        auto rdoc = boost::json::parse(runner->body, ec);
        std::shared_ptr<const routing::runner_route> route;
        if (!ec && rdoc.is_object()) {
            auto& o = rdoc.get_object();
            auto api_url = o.if_contains("apiUrl");
            auto key = o.if_contains("apiKey");
            if (api_url && api_url->is_string() && key && key->is_string())
                route = routing::make_route(std::string(api_url->get_string()),
                                            std::string(key->get_string()), {});
        }
        if (!route)
            co_return co_await reply_unavailable("runner " + runner_id + " has no usable apiUrl");
        // The user's token is for the API, not for the runner.
        decision_.strip_authorization = true;
        location_prefix_.clear();
        build_ref_ = url_encode(ref);
        const auto query = req_.target.find('?');
        build_query_ = query == std::string_view::npos ? std::string_view("?"sv)
                                                        : req_.target.substr(query);
        const std::string_view tail[] = {"/snapshots/logs"sv, build_query_,
                                         build_query_.size() > 1 ? "&snapshotRef="sv
                                                                 : "snapshotRef="sv,
                                         build_ref_};
        co_return co_await forward_to(std::move(route), {}, tail);
    }

    static std::string url_encode(std::string_view s) {
        static constexpr char hex[] = "0123456789ABCDEF";
        std::string out;
        for (unsigned char c : s) {
            if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
                out.push_back(static_cast<char>(c));
            } else {
                out.push_back('%');
                out.push_back(hex[c >> 4]);
                out.push_back(hex[c & 15]);
            }
        }
        return out;
    }

    // The access decision for view_, into decision_; true when the request may go on.
    awaitable<bool> decide() {
        // No access module (tests of the proxy alone), or nothing to check (a public sandbox on
        // an ordinary port): allowed as is, without building a decision.
        if (!ctx_.access || !auth::authorizer::needs_auth(view_))
            co_return true;
        auto& authz = ctx_.access->auth;
        if (auto d = authz.ready(view_))
            decision_ = std::move(*d);
        else
            decision_ = co_await authz.authorize(view_);
        co_return decision_.allowed();
    }

    // "Allowed, nothing to change", reusing the members' storage (no allocation per request).
    void reset_decision() {
        decision_.what = auth::decision::kind::allow;
        decision_.method = auth::auth_method::public_sandbox;
        decision_.signed_sandbox_id.clear();
        decision_.target.reset();
        decision_.strip_authorization = false;
        decision_.set_cookies.clear();
    }

    // The fields edgegate adds to the runner's response: the decision's cookies and CORS.
    response_edits edits_for_response() {
        extra_fields_.clear();
        cors_fields_.clear();
        if (ctx_.access) {
            const auto& proto = ctx_.cfg->proxy_protocol;
            if (!auth::foreign_origin(view_, proto).empty()) {
                h1_headers upstream(res_);
                auth::cors_response_headers(view_, proto, upstream, cors_fields_);
            }
        }
        for (const auto& c : decision_.set_cookies)
            extra_fields_.push_back({"Set-Cookie"sv, c});
        for (const auto& [name, value] : cors_fields_)
            extra_fields_.push_back({name, value});
        return response_edits{extra_fields_, location_prefix_};
    }

    awaitable<bool> serve_preview(const routing::host_target& t) {
        if (ctx_.cfg->toolbox_only_mode && t.port != 2280)
            co_return co_await reply_error(404, "this proxy serves only the toolbox (port 2280)");
        if (req_.target.empty() || req_.target.front() != '/')
            co_return co_await reply_error(400, "the request target must be a path (origin-form)");
        const std::string_view id = t.id;
        routing::runner_lookup found;
        routing::public_lookup pub;
        // The usual case: both answers cached and fresh, one lookup, no coroutine.
        const bool ready = ctx_.routes.ready_pair(id, found, pub);
        if (!ready) {
            pub = ctx_.routes.ready_public(id).value_or(routing::public_lookup{});
            if (pub.status == routing::lookup_status::unavailable)
                pub = co_await ctx_.routes.is_public(id);
            if (pub.status == routing::lookup_status::unavailable)
                co_return co_await reply_unavailable(pub.detail);
        }
        view_ = make_view(t, auth::request_mode::preview);
        view_.sandbox_public = pub.status == routing::lookup_status::found && pub.is_public;
        const auto& proto = ctx_.cfg->proxy_protocol;
        if (ctx_.access) {
            if (auto pre = auth::cors_preflight(view_, proto))
                co_return co_await reply_auth(*pre);
            if (auth::wants_preview_warning(view_, ctx_.cfg->preview_warning_enabled))
                co_return co_await reply_auth(auth::preview_warning_page(view_, proto));
        }
        if (!co_await decide()) {
            // Neither a sandbox nor a valid signed preview link: say so, whatever auth thinks.
            if (pub.status == routing::lookup_status::not_found &&
                decision_.resp.status != 503)
                co_return co_await reply_error(404, "sandbox " + std::string(id) + " not found");
            co_return co_await reply_auth(decision_.resp);
        }
        // A signed preview URL names a token in the host: the runner is the real sandbox's.
        const std::string_view real_id = decision_.sandbox_id(view_);
        if (!ready || real_id != id) {
            found = ctx_.routes.ready_runner(real_id).value_or(routing::runner_lookup{});
            if (found.status == routing::lookup_status::unavailable)
                found = co_await ctx_.routes.runner_for(real_id);
        }
        if (found.status == routing::lookup_status::not_found)
            co_return co_await reply_error(404, "sandbox " + std::string(real_id) + " not found");
        if (found.status != routing::lookup_status::found)
            co_return co_await reply_unavailable(found.detail);

        location_prefix_.clear();
        if (ctx_.access)
            activity_ = ctx_.access->activity.start(real_id, &req_headers_);
        char port[24] = "/toolbox/proxy/";
        auto [end, ec] = std::to_chars(port + 15, port + sizeof port, t.port);
        std::string_view target = decision_.target ? std::string_view(*decision_.target)
                                                   : req_.target;
        co_return co_await forward(std::move(found.route), real_id,
                                   std::string_view(port, static_cast<std::size_t>(end - port)),
                                   target);
    }

    // Opens a new connection to the runner into `out`.
    awaitable<error_code> connect(const routing::runner_route& r,
                                  std::optional<timed_socket>& out) {
        out.reset();
        auto& s = out.emplace(ctx_.watch, tcp::socket(client_.sock.get_executor()));
        s.expires_after(std::chrono::seconds(ctx_.cfg->upstream_connect_timeout_sec));
        error_code ec;
        auto addr = asio::ip::make_address(
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
            std::tie(ec, ep) = co_await asio::async_connect(s.sock, eps, use_nothrow);
        }
        if (ec) {
            ec = s.result(ec);
            out.reset();
            co_return ec;
        }
        s.sock.set_option(tcp::no_delay(true), ec);
        s.sock.non_blocking(true, ec); // for write_now's plain write
        co_return error_code{};
    }

    // Writes bufs_ to `s`: a plain write, then a coroutine only for what did not fit.
    awaitable<bool> flush(timed_socket& s) {
        s.expires_after(io_timeout);
        if (write_now(s, bufs_))
            co_return true;
        co_return !co_await write_all(s, bufs_);
    }

    // Adds the part of `piece` that belongs to the body in `st` to bufs_, framed for the other
    // side; returns how many bytes of `piece` that was.
    std::size_t frame_piece(body_state& st, std::string_view piece) {
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
            if (st.out == body_kind::chunked) { // the framing passes as it came
                r = st.chunks.feed(piece, [](std::string_view) {});
                if (r.used > 0)
                    bufs_.emplace_back(piece.data(), r.used);
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
            auto [ec, n] = co_await read_some(in, buf.prepare(relay_buffer_size / 2));
            buf.commit(n);
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

    // Forwards the request to `route_ptr`'s runner at
    // {base}/sandboxes/{id}/toolbox/proxy/{port}{target} and relays the answer. When the runner
    // says it has no such sandbox (its 404 JSON), the route is invalidated everywhere and, for a
    // request without a body, resolved again and retried once.
    awaitable<bool> forward(std::shared_ptr<const routing::runner_route> route_ptr,
                            std::string_view id, std::string_view kind_path,
                            std::string_view target) {
        const std::string_view tail[] = {"/sandboxes/"sv, id, kind_path,
                                         target.empty() ? "/"sv : target};
        co_return co_await forward_to(std::move(route_ptr), id, tail);
    }

    // Forwards the request to {runner base path}{tail...}. `id` names the sandbox whose runner
    // this is (for the runner's "no such sandbox" / "not started" answers); empty for requests
    // that are not about one sandbox's runner route (build logs).
    awaitable<bool> forward_to(std::shared_ptr<const routing::runner_route> route_ptr,
                               std::string_view id, std::span<const std::string_view> tail) {
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
            if (route.scheme != "http")
                co_return co_await reply_error(502,
                                               "runner at " + route.host_port +
                                                   " uses https, which this build cannot reach yet",
                                               client_keep && bodyless);
            std::array<std::string_view, 8> parts{};
            parts[0] = route.base_path;
            std::copy_n(tail.begin(), std::min(tail.size(), parts.size() - 1), parts.begin() + 1);
            static constexpr std::string_view strip_authorization[] = {"authorization"};
            forward_context fc{req_.host, client_ip_,
                               ctx_.cfg->enable_tls ? "https"sv : "http"sv, route.host_port,
                               route.api_key};
            if (decision_.strip_authorization)
                fc.also_strip = strip_authorization;
            head_out_.clear();
            write_request_head(head_out_, req_,
                               std::span<const std::string_view>(parts.data(), 1 + tail.size()),
                               fc);

            // A pooled connection can turn out dead only on use; a bodyless request is retried
            // once on a fresh connection then. With a body, a peek in tcp_pool::take is the guard.
            for (int attempt = 0;; ++attempt) {
                bool reused = false;
                if (auto pooled =
                        ctx_.upstream_pool.take(route.host_port, !(replayable && attempt == 0))) {
                    upstream_.emplace(ctx_.watch, std::move(*pooled));
                    reused = true;
                } else if (auto ec = co_await connect(route, upstream_)) {
                    if (timed_out(ec))
                        co_return co_await reply_error(
                            504,
                            "runner at " + route.host_port +
                                " did not accept a connection within " +
                                std::to_string(ctx_.cfg->upstream_connect_timeout_sec) + " s",
                            client_keep && bodyless);
                    co_return co_await reply_error(
                        502, "runner at " + route.host_port + " is unreachable: " + ec.message(),
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
                    if (!co_await flush(*upstream_))
                        sent = relay_failure::write;
                } else {
                    body_lease.emplace(ctx_);
                    request_body_.start(req_.body, req_.content_length, req_.body);
                    sent = co_await relay_body(client_, pre, pre_used, body_lease->buf,
                                               request_body_, *upstream_, head_out_, io_timeout);
                    in_used_ = req_.size + pre_used;
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
                    std::chrono::seconds(ctx_.cfg->upstream_response_timeout_sec));
                error_code ec;
                h1::parse_result r{h1::parse_status::need_more, 0, {}};
                for (;;) {
                    r = h1::parse_response(up_buf.data(), res_, head_request);
                    if (r.status == h1::parse_status::done && res_.status < 200 &&
                        res_.status != 101) {
                        up_buf.consume(res_.size);
                        continue;
                    }
                    if (r.status != h1::parse_status::need_more)
                        break;
                    std::size_t n = 0;
                    std::tie(ec, n) = co_await upstream_->sock.async_read_some(
                        up_buf.prepare(read_room), use_nothrow);
                    up_buf.commit(n);
                    if (ec) {
                        ec = upstream_->result(ec);
                        break;
                    }
                }
                if (r.status == h1::parse_status::done)
                    break;
                if (r.status == h1::parse_status::bad)
                    co_return co_await reply_error(
                        502, "runner at " + route.host_port + " sent a malformed response: " +
                                 std::string(r.message),
                        false);
                if (timed_out(ec))
                    co_return co_await reply_error(
                        504,
                        "runner at " + route.host_port + " did not answer within " +
                            std::to_string(ctx_.cfg->upstream_response_timeout_sec) + " s",
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
                const std::size_t whole = res_.size + res_.content_length;
                while (up_buf.size() < whole) {
                    upstream_->expires_after(io_timeout);
                    auto [ec, n] = co_await upstream_->sock.async_read_some(
                        up_buf.prepare(read_room), use_nothrow);
                    up_buf.commit(n);
                    if (ec)
                        co_return false;
                }
                // prepare() may have moved the head: refresh res_'s views before using them.
                if (h1::parse_response(up_buf.data(), res_, head_request).status !=
                    h1::parse_status::done)
                    co_return false;
                if (res_.status == 400) {
                    auto said = runner_not_started(
                        up_buf.data().substr(res_.size, res_.content_length));
                    if (!said.empty()) {
                        if (upstream_keep && request_done && up_buf.size() == whole)
                            ctx_.upstream_pool.put(route.host_port, std::move(upstream_->sock));
                        upstream_.reset();
                        co_return co_await reply_error(
                            503, "sandbox " + std::string(id) + " is not started (runner: " +
                                     said + ")",
                            client_keep && request_done);
                    }
                } else if (runner_lacks_sandbox(
                               up_buf.data().substr(res_.size, res_.content_length))) {
                    spdlog::info("runner {} has no sandbox {}: route invalidated", route.host_port,
                                 id);
                    if (upstream_keep && request_done && up_buf.size() == whole)
                        ctx_.upstream_pool.put(route.host_port, std::move(upstream_->sock));
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
                    write_response_head(head_out_, res_, body_kind::length, client_keep,
                                        req_.version, edits_for_response());
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
            write_response_head(head_out_, res_, out, client_keep, req_.version,
                                edits_for_response());

            // A response whose whole body already arrived with its head goes out in one write,
            // without a relay coroutine.
            const bool whole = res_.body == body_kind::none ||
                               (res_.body == body_kind::length &&
                                up_buf.size() - res_.size >= res_.content_length);
            if (whole) {
                const std::size_t length =
                    res_.body == body_kind::length ? res_.content_length : 0;
                bufs_.assign({asio::buffer(head_out_),
                              asio::buffer(up_buf.data().substr(res_.size, length))});
                if (!co_await flush(client_))
                    co_return false;
                if (upstream_keep && request_done && up_buf.size() == res_.size + length)
                    ctx_.upstream_pool.put(route.host_port, std::move(upstream_->sock));
                upstream_.reset();
                co_return client_keep;
            }

            up_buf.consume(res_.size);
            response_body_.start(res_.body, res_.content_length, out);
            std::size_t unused = 0;
            auto got = co_await relay_body(*upstream_, {}, unused, up_buf, response_body_,
                                           client_, head_out_, std::nullopt);
            if (got != relay_failure::none) {
                if (got != relay_failure::write)
                    spdlog::debug("runner {} broke off a response body", route.host_port);
                upstream_.reset();
                co_return false; // a half-sent response can only end with the connection
            }
            if (upstream_keep && request_done && up_buf.empty())
                ctx_.upstream_pool.put(route.host_port, std::move(upstream_->sock));
            upstream_.reset();
            co_return client_keep;
        }
    }

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
        write_upgrade_response_head(head_out_, res_, edits_for_response());
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
        // An open tunnel holds no buffer while idle: each read borrows one from the pool.
        ctx_.give_back(up_buf.release(relay_buffer_size));
        in_.release(0);
        in_used_ = 0;
        keep_alive_probes(client_.sock);
        keep_alive_probes(upstream_->sock);
        tunnel_half_closed_ = false;
        auto up = pump(client_, *upstream_);
        auto down = pump(*upstream_, client_);
        co_await (std::move(up) && std::move(down));
        upstream_.reset();
        co_return false;
    }

    // One direction of a tunnel: waits until `from` is readable, then moves everything it has
    // to `to` (reading until it would block: the next wake-up needs new bytes). An end of stream
    // is passed on as a half-close; an error ends both directions (both sockets are shut down,
    // not closed: the session closes them, after TLS's close_notify, when both pumps are done).
    // Deadlines: none while both directions are open (TCP keepalive finds dead peers); a write
    // that makes no progress for io_timeout fails; once one direction has ended, the other
    // must see traffic within idle_timeout.
    awaitable<void> pump(timed_socket& from, timed_socket& to) {
        std::vector<asio::const_buffer> bufs;
        error_code ignored;
        for (;;) {
            if (!from.writing) {
                if (tunnel_half_closed_)
                    from.expires_after(idle_timeout);
                else
                    from.expires_never();
            }
            if (co_await wait_readable(from))
                break;
            auto mem = ctx_.take_buffer();
            error_code ec;
            bool ok = true;
            for (;;) {
                std::size_t n = read_now(from, asio::buffer(mem.get(), relay_buffer_size), ec);
                if (ec)
                    break;
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

    // A runner's own errors are small JSON documents with a Content-Length.
    static bool small_json(const h1::head& res) {
        return res.body == body_kind::length && res.content_length <= 4096 &&
               h1::find(res, "content-type").find("json") != std::string_view::npos;
    }

    // The runner's message when its JSON body says the sandbox is not started, else empty.
    static std::string runner_not_started(std::string_view body) {
        boost::system::error_code ec;
        auto v = boost::json::parse(body, ec);
        if (ec || !v.is_object())
            return {};
        auto& o = v.get_object();
        auto message = o.if_contains("message");
        auto code = o.if_contains("statusCode");
        if (!message || !message->is_string() || !code || !code->is_number() ||
            code->to_number<int>() != 400)
            return {};
        std::string_view m = message->get_string();
        if (m.find("not started") == std::string_view::npos &&
            m.find("not running") == std::string_view::npos)
            return {};
        return std::string(m);
    }

    static bool runner_lacks_sandbox(std::string_view body) {
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

    // Answers a request that was not forwarded. The connection stays open only when the whole
    // request has been read (no unread body would be taken for the next request).
    awaitable<bool> reply(unsigned status, std::string body, std::string_view retry_after = {},
                          bool keep_allowed = true) {
        const bool keep = keep_allowed && req_.keep_alive && req_.body == body_kind::none &&
                          !ctx_.draining;
        const h1::field extra[] = {{"Retry-After"sv, retry_after}};
        head_out_.clear();
        write_local_response(head_out_, status, "application/json"sv, body, keep,
                             is_head_request(),
                             retry_after.empty() ? std::span<const h1::field>{}
                                                 : std::span<const h1::field>(extra));
        bufs_.assign({asio::buffer(head_out_)});
        co_return co_await flush(client_) && keep;
    }

    // An answer the auth module made (401, 307 to the login, 204 preflight, warning page...).
    awaitable<bool> reply_auth(const auth::response& r) {
        const bool keep = req_.keep_alive && req_.body == body_kind::none && !ctx_.draining;
        std::string body;
        std::string_view content_type = r.content_type;
        if (r.body.empty() && !r.message.empty()) {
            body = error_body(r.status, r.message, req_.target, req_.method);
            content_type = "application/json"sv;
        } else {
            body = r.body;
        }
        extra_fields_.clear();
        for (const auto& [name, value] : r.headers)
            extra_fields_.push_back({name, value});
        head_out_.clear();
        write_local_response(head_out_, r.status, content_type, body, keep, is_head_request(),
                             extra_fields_);
        bufs_.assign({asio::buffer(head_out_)});
        co_return co_await flush(client_) && keep;
    }

    awaitable<bool> reply_error(unsigned status, std::string message, bool keep_allowed = true) {
        if (status >= 500)
            spdlog::warn("{} {}: {}", status, req_.method, message);
        auto body = error_body(status, message, req_.target, req_.method);
        co_return co_await reply(status, std::move(body), {}, keep_allowed);
    }

    awaitable<bool> reply_unavailable(const std::string& detail) {
        auto body = error_body(503, "sandbox route unavailable: " + detail, req_.target,
                               req_.method);
        spdlog::warn("503 {}: {}", req_.method, detail);
        co_return co_await reply(503, std::move(body), "5");
    }

    // Errors where the request cannot be trusted (malformed): always closes.
    awaitable<void> send_error(unsigned status, std::string message) {
        auto body = error_body(status, message, "/", "");
        head_out_.clear();
        write_local_response(head_out_, status, "application/json"sv, body, false, false);
        bufs_.assign({asio::buffer(head_out_)});
        co_await flush(client_);
    }

    timed_socket client_;
    worker_context& ctx_;
    byte_buffer in_;          // the client's bytes; req_ points into it
    std::size_t in_used_ = 0; // bytes of in_ the current exchange took
    std::string carry_;       // bytes read past a request body, for the next exchange
    h1::head req_;
    h1::head res_;
    h1_headers req_headers_{req_};
    auth::request_view view_;
    auth::decision decision_;
    auth::activity_tracker::handle activity_; // while an exchange with a sandbox lives
    std::string location_prefix_;             // toolbox: /toolbox/{id}
    std::string build_ref_;                   // build logs: the encoded snapshot reference
    std::string_view build_query_;            // build logs: the client's query (views req_)
    std::vector<std::pair<std::string, std::string>> cors_fields_;
    std::vector<h1::field> extra_fields_;
    std::optional<timed_socket> upstream_;
    body_state request_body_;
    body_state response_body_;
    std::string head_out_;                   // an outgoing head being written
    std::vector<asio::const_buffer> bufs_;   // scratch for gathered writes
    char chunk_line_[24];
    bool tunnel_half_closed_ = false; // a WebSocket tunnel with one direction ended
    std::string client_ip_;
};

} // namespace

awaitable<void> serve_h1(tcp::socket socket, worker_context& ctx) {
    session s(std::move(socket), ctx);
    co_await s.run();
}

} // namespace edge::proxy
