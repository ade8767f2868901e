#include "auth/preview_auth.hpp"

#include "auth/query.hpp"
#include "common/metrics.hpp"
#include "routing/host.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json.hpp>
#include <spdlog/spdlog.h>

namespace edge::auth {
namespace json = boost::json;
using clock = std::chrono::steady_clock;

std::string_view to_string(auth_method m) noexcept {
    switch (m) {
    case auth_method::public_sandbox: return "public";
    case auth_method::bearer: return "bearer";
    case auth_method::preview_token_header: return "preview-token-header";
    case auth_method::query_key: return "query-key";
    case auth_method::cookie: return "cookie";
    case auth_method::signed_url: return "signed-url";
    }
    return "?";
}

authorizer_options authorizer_options::from(const conf::config& c) {
    authorizer_options o;
    o.proxy_protocol = c.proxy_protocol;
    o.cookies.secure = c.proxy_protocol == "https";
    o.cookies.cookie_domain = c.cookie_domain;
    return o;
}

std::string_view bearer_token(const header_lookup& h) {
    auto v = h.first("Authorization");
    if (!v || v->size() < 7 || !iequals(v->substr(0, 7), "Bearer "))
        return {};
    auto t = v->substr(7);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t'))
        t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t'))
        t.remove_suffix(1);
    return t;
}

authorizer::authorizer(control_plane_client& api, auth_shared& shared,
                       routing::redis::client* redis, authorizer_options o)
    : api_(api), shared_(shared), redis_(redis), opts_(std::move(o)) {}

bool authorizer::needs_auth(const request_view& v) noexcept {
    return v.mode == request_mode::toolbox || !v.sandbox_public || is_reserved_port(v.port);
}

namespace {
// edgegate_auth_decisions_total{method,outcome}: every decision made (by ready() or
// authorize()) is counted once, where it is built.
struct decision_metrics {
    static constexpr int methods = 6;
    metrics::counter allowed[methods];
    metrics::counter denied, login_redirect, unavailable;
    decision_metrics() {
        auto& r = metrics::global();
        constexpr auto name = "edgegate_auth_decisions_total";
        constexpr auto help = "Preview access decisions by credential method and outcome "
                              "(method none: no credential was accepted)";
        for (int i = 0; i < methods; ++i)
            allowed[i] = r.counter(name, help,
                                   {{"method", to_string(static_cast<auth_method>(i))},
                                    {"outcome", "allowed"}});
        denied = r.counter(name, help, {{"method", "none"}, {"outcome", "denied"}});
        login_redirect = r.counter(name, help, {{"method", "none"}, {"outcome", "login_redirect"}});
        unavailable = r.counter(name, help, {{"method", "none"}, {"outcome", "unavailable"}});
    }
};
decision_metrics& decisions() {
    static decision_metrics m;
    return m;
}

decision allow(auth_method m) {
    decisions().allowed[static_cast<int>(m)].inc();
    decision d;
    d.what = decision::kind::allow;
    d.method = m;
    return d;
}

std::string_view preview_token_header(const header_lookup& h) {
    auto v = h.first("X-Daytona-Preview-Token");
    return v ? *v : std::string_view{};
}

constexpr std::string_view how_to_authenticate =
    "provide a preview access token (X-Daytona-Preview-Token header, DAYTONA_SANDBOX_AUTH_KEY "
    "query parameter or the sandbox's auth cookie) or an API key or JWT (Authorization: Bearer)";
} // namespace

std::optional<decision> authorizer::cookie_decision(const request_view& v) const {
    if (!v.headers)
        return std::nullopt;
    const auto name = sandbox_cookie_name(v.id);
    auto keys = shared_.proxy_keys.keys();
    const auto now = unix_now();
    std::optional<decision> out;
    for_each_cookie(*v.headers, name, [&](std::string_view value) {
        auto payload = verify_value(*keys, name, value, now);
        if (!payload)
            return false;
        // The MAC binds the cookie's name: a payload other than the host's id means the name
        // is a signed preview token we resolved ourselves, as "{sandbox id}:{port}". Daytona
        // validated the token for that port only, so the cookie opens that port only (not, say,
        // the web terminal on 22222).
        if (*payload == v.id) {
            out = allow(auth_method::cookie);
            return true;
        }
        const auto colon = payload->rfind(':');
        if (colon == std::string::npos || payload->substr(colon + 1) != std::to_string(v.port))
            return false;
        out = allow(auth_method::signed_url);
        out->signed_sandbox_id = payload->substr(0, colon);
        return true;
    });
    return out;
}

std::optional<decision> authorizer::ready(const request_view& v) {
    if (!needs_auth(v))
        return allow(auth_method::public_sandbox);
    if (!v.headers)
        return std::nullopt;
    const auto now = clock::now();
    auto& cache = shared_.cache;
    // Each credential present must be decided by the cache, in order: a later credential may
    // only win when the earlier ones are known to be invalid.
    if (auto t = bearer_token(*v.headers); !t.empty()) {
        auto f = cache.lookup(check_key(check_kind::bearer, v.id, t), false, now);
        if (f.s == decision_cache::state::allowed) {
            auto d = allow(auth_method::bearer);
            d.strip_authorization = true;
            return d;
        }
        if (f.s != decision_cache::state::denied)
            return std::nullopt;
    }
    if (auto t = preview_token_header(*v.headers); !t.empty()) {
        auto f = cache.lookup(check_key(check_kind::preview_token, v.id, t), false, now);
        if (f.s == decision_cache::state::allowed)
            return allow(auth_method::preview_token_header);
        if (f.s != decision_cache::state::denied)
            return std::nullopt;
    }
    if (v.target.find('?') != std::string_view::npos) {
        if (auto t = query_param(v.target, auth_key_param)) {
            auto f = cache.lookup(check_key(check_kind::preview_token, v.id, *t), false, now);
            if (f.s == decision_cache::state::allowed) {
                auto d = allow(auth_method::query_key);
                d.target = remove_query_param(v.target, auth_key_param);
                return d;
            }
            if (f.s != decision_cache::state::denied)
                return std::nullopt;
        }
    }
    if (auto d = cookie_decision(v))
        return d;
    return std::nullopt;
}

awaitable<decision> authorizer::authorize(const request_view& v) {
    if (!needs_auth(v))
        co_return allow(auth_method::public_sandbox);
    static const pair_header_lookup::pairs no_pairs;
    static const pair_header_lookup no_headers(no_pairs);
    const header_lookup& h = v.headers ? *v.headers : no_headers;
    std::vector<std::string> failures;
    std::string unavailable;
    auto note = [&](const check_outcome& o, const char* what) {
        if (o.r == check_outcome::result::denied)
            failures.push_back(std::string(what) + " is invalid");
        else if (unavailable.empty())
            unavailable = std::string(what) + ": " + o.detail;
    };
    const std::string id(v.id);
    const std::string ip(v.client_ip);
    const std::string tp(v.traceparent);

    if (auto t = bearer_token(h); !t.empty()) {
        auto o = co_await check(check_kind::bearer, id, std::string(t), 0, ip, tp);
        if (o.r == check_outcome::result::allowed) {
            auto d = allow(auth_method::bearer);
            d.strip_authorization = true;
            co_return d;
        }
        note(o, "Bearer token");
    }
    if (auto t = preview_token_header(h); !t.empty()) {
        auto o = co_await check(check_kind::preview_token, id, std::string(t), 0, ip, tp);
        if (o.r == check_outcome::result::allowed)
            co_return allow(auth_method::preview_token_header);
        note(o, "X-Daytona-Preview-Token");
    }
    if (auto t = query_param(v.target, auth_key_param)) {
        auto o = co_await check(check_kind::preview_token, id, std::move(*t), 0, ip, tp);
        if (o.r == check_outcome::result::allowed) {
            auto d = allow(auth_method::query_key);
            d.target = remove_query_param(v.target, auth_key_param);
            co_return d;
        }
        note(o, "DAYTONA_SANDBOX_AUTH_KEY query parameter");
    }
    if (auto d = cookie_decision(v))
        co_return std::move(*d);
    if (v.mode == request_mode::preview) {
        auto o = co_await check(check_kind::signed_url, id, id, v.port, ip, tp);
        if (o.r == check_outcome::result::allowed) {
            auto d = allow(auth_method::signed_url);
            d.signed_sandbox_id = o.sandbox_id;
            const auto name = sandbox_cookie_name(v.id);
            d.set_cookies.push_back(set_cookie(
                name,
                sign_value(shared_.proxy_keys.key(), name,
                           o.sandbox_id + ":" + std::to_string(v.port),
                           unix_now() + sandbox_cookie_ttl.count()),
                cookie_domain(opts_.cookies, v.base_host), sandbox_cookie_ttl,
                opts_.cookies.secure));
            co_return d;
        }
        // A denied signed-URL check is the normal answer for a plain sandbox id: not a failure
        // worth naming. An unavailable one is.
        if (o.r == check_outcome::result::unavailable && unavailable.empty())
            unavailable = "signed preview URL: " + o.detail;
    }
    co_return fail(v, failures, unavailable);
}

decision authorizer::fail(const request_view& v, const std::vector<std::string>& failures,
                          const std::string& unavailable) const {
    decision d;
    d.what = decision::kind::respond;
    auto& r = d.resp;
    if (!unavailable.empty()) {
        decisions().unavailable.inc();
        ++shared_.unavailable;
        r.status = 503;
        r.headers.emplace_back("Retry-After", "5");
        r.message = "authentication is unavailable: " + unavailable;
        return d;
    }
    std::string msg;
    if (failures.empty()) {
        msg = "missing authentication: ";
    } else {
        msg = "authentication failed: ";
        for (auto& f : failures)
            msg.append(f).append("; ");
    }
    msg.append(how_to_authenticate);

    const bool can_follow = v.mode == request_mode::preview && !v.websocket &&
                            v.method == "GET" && v.headers && accepts_html(*v.headers);
    if (can_follow) {
        switch (shared_.oidc.current()) {
        case oidc_store::status::ready: {
            login_options lo{opts_.proxy_protocol, opts_.cookies};
            r = login_redirect(*shared_.oidc.get(), v, shared_.proxy_keys.key(), lo);
            decisions().login_redirect.inc();
            return d;
        }
        case oidc_store::status::loading:
            decisions().unavailable.inc();
            r.status = 503;
            r.headers.emplace_back("Retry-After", "5");
            r.message = "login is not available yet (the OIDC settings are loading); " + msg;
            return d;
        case oidc_store::status::not_configured: break;
        }
    }
    decisions().denied.inc();
    r.status = 401;
    r.message = std::move(msg);
    return d;
}

awaitable<check_outcome> authorizer::check(check_kind kind, std::string sandbox,
                                           std::string credential, std::uint16_t port,
                                           std::string client_ip, std::string traceparent) {
    const auto key = check_key(kind, sandbox, credential, port);
    auto f = shared_.cache.lookup(key);
    if (f.s == decision_cache::state::allowed)
        co_return check_outcome{check_outcome::result::allowed, std::move(f.sandbox_id), {}};
    if (f.s == decision_cache::state::denied)
        co_return check_outcome{check_outcome::result::denied, {}, {}};

    const auto deadline = clock::now() + opts_.lookup_timeout;
    std::function<awaitable<check_outcome>()> work = [this, kind, key, sandbox, credential, port,
                                                      client_ip, traceparent]() {
        return fetch(kind, key, sandbox, credential, port, client_ip, traceparent);
    };
    auto r = co_await shared_.flights.run(hex(key), deadline, std::move(work));
    check_outcome out;
    if (r)
        out = std::move(*r);
    else
        out.detail = "the control plane did not answer within " +
                     std::to_string(opts_.lookup_timeout.count()) + " ms";
    if (out.r == check_outcome::result::unavailable) {
        // An outage: a valid answer we had recently still stands (bounded by stale_max).
        auto stale = shared_.cache.lookup(key, true);
        if (stale.s == decision_cache::state::stale_allowed) {
            ++shared_.stale_allows;
            co_return check_outcome{check_outcome::result::allowed, std::move(stale.sandbox_id),
                                    {}};
        }
    }
    co_return out;
}

namespace {
// {"value":true|false|"<sandbox id>","until":<unix seconds>}
std::optional<check_outcome> parse_shared(const std::string& text, std::int64_t& until) {
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object())
        return std::nullopt;
    auto& o = v.as_object();
    auto* val = o.if_contains("value");
    auto* u = o.if_contains("until");
    if (!val || !u || !u->is_int64())
        return std::nullopt;
    until = u->as_int64();
    if (val->is_bool())
        return check_outcome{val->as_bool() ? check_outcome::result::allowed
                                            : check_outcome::result::denied,
                             {}, {}};
    if (val->is_string() && routing::valid_id(val->as_string()))
        return check_outcome{check_outcome::result::allowed, std::string(val->as_string()), {}};
    return std::nullopt;
}
} // namespace

awaitable<check_outcome> authorizer::fetch(check_kind kind, digest key, std::string sandbox,
                                           std::string credential, std::uint16_t port,
                                           std::string client_ip, std::string traceparent) {
    const bool use_redis = redis_ && redis_->current_state() == routing::redis::state::connected;
    const std::string rkey = use_redis ? redis_check_key(key) : std::string();
    if (use_redis) {
        std::vector<std::string> cmd{"GET", rkey};
        auto got = co_await redis_->command(std::move(cmd));
        if (got && got->type == routing::redis::reply::kind::string) {
            std::int64_t until = 0;
            auto o = parse_shared(got->str, until);
            auto left = until - unix_now();
            if (o && left > 0) {
                ++shared_.redis_hits;
                shared_.cache.store_for(key, o->r == check_outcome::result::allowed, o->sandbox_id,
                                        std::chrono::seconds(left));
                co_return std::move(*o);
            }
        }
    }
    ++shared_.api_checks;
    auto out = co_await ask_api(kind, sandbox, credential, port, client_ip, traceparent);
    if (out.r == check_outcome::result::unavailable) {
        spdlog::warn("preview auth: {} check for sandbox {} unavailable: {}",
                     kind == check_kind::bearer          ? "bearer"
                     : kind == check_kind::preview_token ? "preview token"
                                                         : "signed URL",
                     routing::valid_id(sandbox) ? sandbox : "(invalid id)", out.detail);
        co_return out;
    }
    const bool ok = out.r == check_outcome::result::allowed;
    shared_.cache.store(key, ok, out.sandbox_id);
    if (use_redis) {
        const auto ttl = ok ? shared_.cache.opts().valid_ttl : shared_.cache.opts().invalid_ttl;
        json::object o;
        if (!out.sandbox_id.empty())
            o["value"] = out.sandbox_id;
        else
            o["value"] = ok;
        o["until"] = unix_now() + ttl.count();
        std::vector<std::string> cmd{"SET", rkey, json::serialize(o), "EX",
                                     std::to_string(ttl.count())};
        // The waiters need not wait for Redis.
        auto ex = co_await boost::asio::this_coro::executor;
        boost::asio::co_spawn(
            ex,
            [](routing::redis::client* c, std::vector<std::string> args) -> awaitable<void> {
                co_await c->command(std::move(args));
            }(redis_, std::move(cmd)),
            boost::asio::detached);
    }
    co_return out;
}

awaitable<check_outcome> authorizer::ask_api(check_kind kind, const std::string& sandbox,
                                             const std::string& credential, std::uint16_t port,
                                             const std::string& client_ip,
                                             const std::string& traceparent) {
    check_outcome out;
    if (!routing::valid_id(sandbox)) {
        out.r = check_outcome::result::denied;
        co_return out;
    }
    shared_.proxy_keys.check_file(); // a rotated key file is picked up before the call
    boost::system::result<api_response> r;
    control_plane_client::call_options co;
    if (!traceparent.empty())
        co.headers.emplace_back("traceparent", traceparent);
    if (kind == check_kind::bearer) {
        if (!client_ip.empty())
            co.headers.emplace_back("X-Forwarded-For", client_ip);
        std::string path = "/preview/" + sandbox + "/access";
        r = co_await api_.call(std::move(path), credential, "preview/access", std::move(co));
    } else if (kind == check_kind::preview_token) {
        std::string path = "/preview/" + sandbox + "/validate/" + query_escape(credential);
        r = co_await api_.call(std::move(path), shared_.proxy_keys.key(), "preview/validate",
                               std::move(co));
    } else {
        std::string path = "/preview/" + sandbox + "/" + std::to_string(port) + "/sandbox-id";
        co.expect_json = false;
        r = co_await api_.call(std::move(path), shared_.proxy_keys.key(), "preview/sandbox-id",
                               std::move(co));
    }
    if (!r) {
        out.detail = r.error().message();
        co_return out;
    }
    const auto status = r->status;
    if (status == 200) {
        if (kind == check_kind::signed_url) {
            std::string_view body = r->body;
            while (!body.empty() && (body.back() == '\n' || body.back() == ' ' ||
                                     body.back() == '\r'))
                body.remove_suffix(1);
            if (body.size() >= 2 && body.front() == '"' && body.back() == '"')
                body = body.substr(1, body.size() - 2);
            if (!routing::valid_id(body)) {
                out.detail = "the API's sandbox-id answer is not a sandbox id";
                co_return out;
            }
            out.sandbox_id = std::string(body);
        }
        out.r = check_outcome::result::allowed;
        co_return out;
    }
    // With the proxy's key, 401/403 means the API refused OUR key (rotated?), not the token.
    const bool our_key_refused = kind != check_kind::bearer && status == 401;
    if (status >= 400 && status < 500 && status != 408 && status != 429 && !our_key_refused) {
        out.r = check_outcome::result::denied;
        co_return out;
    }
    out.detail = our_key_refused ? "the API refused the proxy API key (" + std::to_string(status) +
                                       "); was it regenerated?"
                                 : "the API answered " + std::to_string(status);
    co_return out;
}

} // namespace edge::auth
