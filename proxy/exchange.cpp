#include "proxy/exchange.hpp"

#include "auth/cors.hpp"
#include "common/log.hpp"
#include "auth/preview_warning.hpp"
#include "proxy/error_response.hpp"
#include "proxy/http_metrics.hpp"
#include "proxy/tls.hpp"
#include "routing/redis/redis_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <random>

namespace edge::proxy {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace std::string_view_literals;

namespace {
std::string url_encode(std::string_view s) {
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

// Random lowercase hex digits for request ids and trace/span ids, n of them (a multiple of 16),
// from xorshift64*: fast and well spread; these ids are not secrets.
void random_hex(char* out, std::size_t n) {
    constexpr std::uint64_t ones = 0x0101010101010101ULL;
    // Eight nibbles, one per byte, as the digits '0'-'9', 'a'-'f'.
    auto digits = [](std::uint64_t nibbles) {
        const std::uint64_t letters = ((nibbles + ones * 6) >> 4) & ones; // nibbles from 10 up
        return nibbles + ones * '0' + letters * ('a' - '0' - 10);
    };
    thread_local std::uint64_t state = std::random_device{}() | 1;
    for (std::size_t i = 0; i < n; i += 16) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        const std::uint64_t bits = state * 0x2545F4914F6CDD1DULL;
        const std::uint64_t low = digits(bits & (ones * 0x0F));
        const std::uint64_t high = digits((bits >> 4) & (ones * 0x0F));
        std::memcpy(out + i, &low, 8);
        std::memcpy(out + i + 8, &high, 8);
    }
}

bool hex_digits(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    });
}

bool all_zero(std::string_view s) {
    return s.find_first_not_of('0') == std::string_view::npos;
}

// A client's X-Request-Id is kept when it is short and made of safe characters (it is logged).
bool sane_request_id(std::string_view id) {
    if (id.empty() || id.size() > 128)
        return false;
    return std::all_of(id.begin(), id.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
               c == ':' || c == '/' || c == '+' || c == '=';
    });
}

} // namespace

void exchange::begin_exchange() {
    rec_.start = std::chrono::steady_clock::now();
    rec_.upstream_seconds = -1;
    rec_.status = 0;
    rec_.bytes_in = rec_.bytes_out = 0;
    rec_.upstream.clear();
    rec_.websocket = false;
    if (auto id = h1::find(req_, "x-request-id"); sane_request_id(id)) {
        request_id_.assign(id);
    } else {
        request_id_.resize(32);
        random_hex(request_id_.data(), 32);
    }
    // traceparent: 00-<trace id, 32 hex>-<parent id, 16 hex>-<flags, 2 hex>. The client's trace
    // goes on with a span of ours as the parent; without one, a new trace starts.
    std::string_view tp = h1::find(req_, "traceparent");
    const bool valid = tp.size() >= 55 && tp.substr(0, 3) == "00-" && tp[35] == '-' &&
                       tp[52] == '-' && hex_digits(tp.substr(3, 32)) &&
                       hex_digits(tp.substr(36, 16)) && hex_digits(tp.substr(53, 2)) &&
                       !all_zero(tp.substr(3, 32)) && !all_zero(tp.substr(36, 16)) &&
                       (tp.size() == 55 || tp[55] == '-');
    std::memcpy(traceparent_, "00-", 3);
    if (valid)
        std::memcpy(traceparent_ + 3, tp.data() + 3, 32);
    else
        random_hex(traceparent_ + 3, 32);
    traceparent_[35] = '-';
    random_hex(traceparent_ + 36, 16);
    traceparent_[52] = '-';
    if (valid)
        std::memcpy(traceparent_ + 53, tp.data() + 53, 2);
    else
        std::memcpy(traceparent_ + 53, "00", 2);
    traceparent_size_ = 55;
}

void exchange::upstream_started(const routing::runner_route& r) {
    rec_.upstream.assign(r.host_port);
    rec_.upstream_start = std::chrono::steady_clock::now();
}

void exchange::upstream_answered() {
    rec_.upstream_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - rec_.upstream_start)
            .count();
}

http_metrics& exchange_metrics() {
    thread_local http_metrics m; // per worker thread (its label handles are made lazily)
    return m;
}

void exchange::end_exchange() {
    const auto now = std::chrono::steady_clock::now();
    const auto duration = now - rec_.start;
    const double seconds = std::chrono::duration<double>(duration).count();
    const auto proto = rec_.websocket ? http_protocol::ws
                       : protocol() == "h2" ? http_protocol::h2
                                           : http_protocol::h1;
    http_metrics::exchange e;
    e.protocol = proto;
    e.method = req_.method;
    e.status = rec_.status;
    e.duration = std::chrono::duration_cast<std::chrono::nanoseconds>(duration);
    if (rec_.upstream_seconds >= 0)
        e.upstream_duration = std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::duration<double>(rec_.upstream_seconds));
    e.bytes_in = rec_.bytes_in;
    e.bytes_out = rec_.bytes_out;
    exchange_metrics().done(e);
    if (!log::events_enabled())
        return;
    // Never the query (it may hold a credential), a token-bearing host (a signed preview URL)
    // or a header value: the sandbox id is the real one the decision resolved.
    const std::string_view sandbox = view_.id.empty() ? std::string_view{}
                                                      : decision_.sandbox_id(view_);
    const std::string_view path = req_.target.substr(0, req_.target.find('?'));
    const bool on_sandbox = !sandbox.empty();
    static constexpr std::string_view protocol_names[] = {"h1", "h2", "ws"};
    log::access({{"protocol", protocol_names[static_cast<unsigned>(proto)]},
                 {"method", req_.method},
                 {"path", path},
                 on_sandbox ? log::field("sandbox", sandbox) : log::field::null("sandbox"),
                 on_sandbox ? log::field("port", view_.port) : log::field::null("port"),
                 {"status", rec_.status},
                 {"bytes_in", rec_.bytes_in},
                 {"bytes_out", rec_.bytes_out},
                 {"duration_ms", seconds * 1000},
                 rec_.upstream_seconds >= 0
                     ? log::field("upstream_ms", rec_.upstream_seconds * 1000)
                     : log::field::null("upstream_ms"),
                 rec_.upstream.empty() ? log::field::null("runner")
                                       : log::field("runner", rec_.upstream),
                 {"auth", on_sandbox ? auth::to_string(decision_.method) : std::string_view{}},
                 {"client", client_ip_},
                 {"request_id", request_id_},
                 {"trace_id", std::string_view(traceparent_ + 3, 32)}});
}

std::optional<std::string_view> head_fields::first(std::string_view name) const {
    for (const auto& f : h_.fields)
        if (h1::iequals(f.name, name))
            return f.value;
    return std::nullopt;
}

bool head_fields::each_value(std::string_view name, void* ctx,
                             bool (*f)(void*, std::string_view)) const {
    for (const auto& fld : h_.fields)
        if (h1::iequals(fld.name, name) && f(ctx, fld.value))
            return true;
    return false;
}

awaitable<bool> exchange::dispatch() {
    reset_decision();
    view_ = auth::request_view{};
    const auto target = routing::parse_host(req_.host);
    if (target.kind == routing::host_kind::invalid)
        co_return co_await reply_error(400, std::string(target.error));
    if (req_.upgrade_websocket && req_.body != h1::body_kind::none)
        co_return co_await reply_error(400, "a WebSocket upgrade request cannot carry a body");
    if (req_.expect_unknown)
        co_return co_await reply_error(417, "only Expect: 100-continue is supported");
    // The warning page's accept endpoint works on any host.
    if (ctx_.access && req_.method == "POST"sv &&
        req_.target.substr(0, req_.target.find('?')) == auth::accept_warning_path) {
        view_ = make_view(target, auth::request_mode::preview);
        co_return co_await reply_auth(
            auth::accept_preview_warning(view_, cfg_->proxy_protocol));
    }
    if (target.kind == routing::host_kind::base)
        co_return co_await serve_base();
    bool keep = co_await serve_preview(target);
    activity_.reset();
    co_return keep;
}

// The auth module's view of the current request (views into req_).
auth::request_view exchange::make_view(const routing::host_target& t, auth::request_mode mode) {
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
    v.traceparent = traceparent();
    v.headers = &req_headers_;
    return v;
}

// Daytona's {"status":"ok","version":...}, plus the state of Redis when one is configured:
// edgegate serves without Redis (from the API), so it is a detail, not a failure.
std::string exchange::health_body() const {
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

// The OIDC settings' state: "ready", "loading" or "not configured".
std::string_view exchange::oidc_state() const {
    if (!ctx_.access)
        return "not configured";
    switch (ctx_.access->auth.shared().oidc.current()) {
    case auth::oidc_store::status::ready: return "ready";
    case auth::oidc_store::status::loading: return "loading";
    case auth::oidc_store::status::not_configured: return "not configured";
    }
    return "loading";
}

awaitable<bool> exchange::serve_base() {
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
awaitable<bool> exchange::serve_toolbox(const routing::toolbox_target& tb) {
    routing::host_target t;
    t.kind = routing::host_kind::preview;
    t.id = tb.id;
    t.port = 2280;
    view_ = make_view(t, auth::request_mode::toolbox);
    std::optional<bool> allowed = decide_now();
    if (!allowed)
        allowed = co_await decide();
    if (!*allowed)
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
awaitable<bool> exchange::serve_build_logs(bool snapshot, std::string_view id) {
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


std::optional<bool> exchange::decide_now() {
    // No access module (tests of the proxy alone), or nothing to check (a public sandbox on
    // an ordinary port): allowed as is, without building a decision.
    if (!ctx_.access || !auth::authorizer::needs_auth(view_))
        return true;
    auto d = ctx_.access->auth.ready(view_);
    if (!d)
        return std::nullopt;
    decision_ = std::move(*d);
    return decision_.allowed();
}

// The access decision decide_now() could not make at once, into decision_.
awaitable<bool> exchange::decide() {
    decision_ = co_await ctx_.access->auth.authorize(view_);
    co_return decision_.allowed();
}

// "Allowed, nothing to change", reusing the members' storage (no allocation per request).
void exchange::reset_decision() {
    decision_.what = auth::decision::kind::allow;
    decision_.method = auth::auth_method::public_sandbox;
    decision_.signed_sandbox_id.clear();
    decision_.target.reset();
    decision_.strip_authorization = false;
    decision_.set_cookies.clear();
}

// The fields edgegate adds to the runner's response: the decision's cookies and CORS.
response_edits exchange::edits_for_response(const h1::head& upstream_head) {
    extra_fields_.clear();
    cors_fields_.clear();
    if (ctx_.access) {
        const auto& proto = cfg_->proxy_protocol;
        if (!auth::foreign_origin(view_, proto).empty()) {
            head_fields upstream(upstream_head);
            auth::cors_response_headers(view_, proto, upstream, cors_fields_);
        }
    }
    for (const auto& c : decision_.set_cookies)
        extra_fields_.push_back({"Set-Cookie"sv, c});
    for (const auto& [name, value] : cors_fields_)
        extra_fields_.push_back({name, value});
    return response_edits{extra_fields_, location_prefix_};
}

awaitable<bool> exchange::serve_preview(const routing::host_target& t) {
    if (cfg_->toolbox_only_mode && t.port != 2280)
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
    const auto& proto = cfg_->proxy_protocol;
    if (ctx_.access) {
        if (auto pre = auth::cors_preflight(view_, proto))
            co_return co_await reply_auth(*pre);
        if (auth::wants_preview_warning(view_, cfg_->preview_warning_enabled))
            co_return co_await reply_auth(auth::preview_warning_page(view_, proto));
    }
    std::optional<bool> allowed = decide_now();
    if (!allowed)
        allowed = co_await decide();
    if (!*allowed) {
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


awaitable<bool> exchange::forward(std::shared_ptr<const routing::runner_route> route_ptr,
                                  std::string_view id, std::string_view kind_path,
                                  std::string_view target) {
    // (Not a coroutine, one frame less per request: the tail is kept in the exchange while
    // forward_to, awaited by the caller, uses it.)
    forward_tail_ = {"/sandboxes/"sv, id, kind_path, target.empty() ? "/"sv : target};
    return forward_to(std::move(route_ptr), id, forward_tail_);
}

awaitable<bool> exchange::reply(unsigned status, std::string body, std::string_view retry_after,
                                bool keep_allowed) {
    const h1::field extra[] = {{"Retry-After"sv, retry_after}};
    co_return co_await send_local(status, "application/json"sv, body,
                                  retry_after.empty() ? std::span<const h1::field>{}
                                                      : std::span<const h1::field>(extra),
                                  keep_allowed);
}

awaitable<bool> exchange::reply_auth(const auth::response& r) {
    std::string body;
    std::string_view content_type = r.content_type;
    if (r.body.empty() && !r.message.empty()) {
        body = error_body(r.status, r.message, req_.target, req_.method, request_id_);
        content_type = "application/json"sv;
    } else {
        body = r.body;
    }
    extra_fields_.clear();
    for (const auto& [name, value] : r.headers)
        extra_fields_.push_back({name, value});
    co_return co_await send_local(r.status, content_type, body, extra_fields_, true);
}

awaitable<bool> exchange::reply_error(unsigned status, std::string message, bool keep_allowed) {
    if (status >= 500)
        spdlog::warn("{} {}: {}", status, req_.method, message);
    auto body = error_body(status, message, req_.target, req_.method, request_id_);
    co_return co_await reply(status, std::move(body), {}, keep_allowed);
}

awaitable<bool> exchange::reply_unavailable(const std::string& detail) {
    auto body = error_body(503, "sandbox route unavailable: " + detail, req_.target, req_.method,
                           request_id_);
    spdlog::warn("503 {}: {}", req_.method, detail);
    co_return co_await reply(503, std::move(body), "5");
}

bool idempotent(std::string_view method) {
    return method == "GET"sv || method == "HEAD"sv || method == "OPTIONS"sv ||
           method == "PUT"sv || method == "DELETE"sv || method == "TRACE"sv;
}

bool small_json(const h1::head& res) {
    return res.body == h1::body_kind::length && res.content_length <= 4096 &&
           h1::find(res, "content-type").find("json") != std::string_view::npos;
}

std::string runner_not_started(std::string_view body) {
    error_code ec;
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

bool runner_lacks_sandbox(std::string_view body) {
    error_code ec;
    auto v = boost::json::parse(body, ec);
    if (ec || !v.is_object())
        return false;
    auto& o = v.get_object();
    auto message = o.if_contains("message");
    auto code = o.if_contains("statusCode");
    return message && message->is_string() && code && code->is_number() &&
           code->to_number<int>() == 404 &&
           std::string_view(message->get_string()).find("not found") != std::string_view::npos &&
           std::string_view(message->get_string()).find("andbox") != std::string_view::npos;
}

std::string_view pool_key(const routing::runner_route& r, std::string& scratch) {
    if (r.scheme != "https")
        return r.host_port;
    scratch.assign("https://").append(r.host_port);
    return scratch;
}

bool take_pooled(worker_context& ctx, const routing::runner_route& r, bool check_open,
                 std::optional<timed_socket>& out) {
    std::string scratch;
    auto pooled = ctx.upstream_pool.take(pool_key(r, scratch), check_open);
    if (!pooled)
        return false;
    out.emplace(ctx.watch, std::move(pooled->socket));
    out->tls = static_cast<ssl_st*>(pooled->tls);
    return true;
}

void pool_upstream(worker_context& ctx, const routing::runner_route& r,
                   std::optional<timed_socket>& up) {
    std::string scratch;
    ctx.upstream_pool.put(pool_key(r, scratch), std::move(up->sock), std::exchange(up->tls, nullptr));
    up.reset();
}

awaitable<error_code> connect_runner(worker_context& ctx, const routing::runner_route& r,
                                     std::optional<timed_socket>& out, std::string& detail,
                                     unsigned connect_timeout_sec) {
    out.reset();
    auto& s = out.emplace(ctx.watch, tcp::socket(ctx.resolver.get_executor()));
    s.expires_after(std::chrono::seconds(connect_timeout_sec));
    error_code ec;
    auto addr = asio::ip::make_address(
        r.host.front() == '[' ? r.host.substr(1, r.host.size() - 2) : r.host, ec);
    if (!ec) {
        std::tie(ec) = co_await s.sock.async_connect(tcp::endpoint(addr, r.port), use_nothrow);
    } else {
        auto [rec, eps] =
            co_await ctx.resolver.async_resolve(r.host, std::to_string(r.port), use_nothrow);
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
    if (r.scheme == "https") {
        if (!ctx.runner_tls) {
            out.reset();
            detail = "TLS toward runners is not set up";
            co_return asio::error::operation_not_supported;
        }
        ec = co_await tls_connect(s, *ctx.runner_tls, r.host, detail);
        if (ec) {
            ec = s.result(ec);
            out.reset();
            co_return ec;
        }
    }
    co_return error_code{};
}

awaitable<h1::parse_result> read_response_head(timed_socket& up, byte_buffer& buf, h1::head& res,
                                               bool head_request, error_code& ec) {
    h1::parse_result r{h1::parse_status::need_more, 0, {}};
    for (;;) {
        r = h1::parse_response(buf.data(), res, head_request);
        if (r.status == h1::parse_status::done && res.status < 200 && res.status != 101) {
            buf.consume(res.size);
            continue;
        }
        if (r.status != h1::parse_status::need_more)
            co_return r;
        // The runner has rarely answered the instant its request is written: a read tried now
        // would find nothing and cost a system call (and waiting for readiness costs an
        // epoll_ctl). Other connections' ready work goes first, then the read, which by then
        // usually finds the answer.
        if (buf.size() == 0 && !up.tls)
            co_await asio::post(co_await asio::this_coro::executor, use_nothrow);
        auto [rec, n] = co_await read_some(up, buf.prepare(16 * 1024));
        buf.commit(n);
        if (rec) {
            ec = up.result(rec);
            co_return r;
        }
    }
}

awaitable<runner_verdict> read_runner_error(timed_socket& up, byte_buffer& buf, h1::head& res,
                                            bool head_request, std::string& said) {
    const std::size_t whole = res.size + res.content_length;
    while (buf.size() < whole) {
        up.expires_after(std::chrono::seconds(70));
        auto [ec, n] = co_await read_some(up, buf.prepare(16 * 1024));
        buf.commit(n);
        if (ec)
            co_return runner_verdict::broken;
    }
    // prepare() may have moved the head: refresh res's views before using them.
    if (h1::parse_response(buf.data(), res, head_request).status != h1::parse_status::done)
        co_return runner_verdict::broken;
    const auto body = buf.data().substr(res.size, res.content_length);
    if (res.status == 400) {
        said = runner_not_started(body);
        co_return said.empty() ? runner_verdict::other : runner_verdict::not_started;
    }
    co_return runner_lacks_sandbox(body) ? runner_verdict::lacks_sandbox : runner_verdict::other;
}

void keep_alive_probes(tcp::socket& s) {
    error_code ignored;
    s.set_option(asio::socket_base::keep_alive(true), ignored);
    const int idle = 60, interval = 10, count = 6;
    ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

} // namespace edge::proxy
