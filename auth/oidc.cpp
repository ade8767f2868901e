#include "auth/oidc.hpp"

#include "auth/crypto.hpp"
#include "auth/query.hpp"
#include "routing/host.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <spdlog/spdlog.h>

namespace edge::auth {
namespace json = boost::json;
using boost::system::error_code;

std::shared_ptr<const oidc_settings> oidc_store::get() const {
    std::lock_guard lock(mutex_);
    return settings_;
}

void oidc_store::set(oidc_settings s) {
    {
        std::lock_guard lock(mutex_);
        settings_ = std::make_shared<const oidc_settings>(std::move(s));
    }
    status_.store(status::ready, std::memory_order_release);
}

namespace {
std::string json_string(const json::value* v) {
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::string trim_slash(std::string s) {
    while (!s.empty() && s.back() == '/')
        s.pop_back();
    return s;
}

// Replaces a leading `from` (the public issuer) with `to` (the private one), as Daytona does
// for the token endpoint.
std::string rebase(const std::string& url, const std::string& from, const std::string& to) {
    if (!from.empty() && url.starts_with(from))
        return to + url.substr(from.size());
    return url;
}

// One try at everything that is missing; true when `out` is complete. `not_configured` is set
// when the API has no OIDC issuer at all.
awaitable<bool> try_load(control_plane_client& api, boost::asio::any_io_executor ex,
                         oidc_settings& out, bool& not_configured, std::string& why) {
    if (out.issuer.empty() || out.client_id.empty()) {
        auto r = co_await api.get("/config", "", "config");
        if (!r) {
            why = "GET /api/config: " + r.error().message();
            co_return false;
        }
        if (r->status != 200) {
            why = "GET /api/config answered " + std::to_string(r->status);
            co_return false;
        }
        error_code ec;
        auto v = json::parse(r->body, ec);
        const json::object* o = !ec && v.is_object() ? &v.as_object() : nullptr;
        const json::value* oidc = o ? o->if_contains("oidc") : nullptr;
        if (!oidc || !oidc->is_object()) {
            not_configured = true;
            why = "GET /api/config has no oidc settings";
            co_return false;
        }
        auto& oo = oidc->as_object();
        if (out.issuer.empty())
            out.issuer = trim_slash(json_string(oo.if_contains("issuer")));
        if (out.client_id.empty())
            out.client_id = json_string(oo.if_contains("clientId"));
        if (out.audience.empty())
            out.audience = json_string(oo.if_contains("audience"));
        if (out.issuer.empty()) {
            not_configured = true;
            why = "GET /api/config has no oidc.issuer";
            co_return false;
        }
    }
    conf::url_parts issuer;
    if (!conf::parse_url(out.issuer, issuer)) {
        why = "the OIDC issuer is not an http(s) URL";
        co_return false;
    }
    control_plane_client::options o;
    o.timeout = std::chrono::seconds(10);
    o.tries = 1;
    control_plane_client idp(ex, issuer, o);
    auto r = co_await idp.get("/.well-known/openid-configuration", "", "oidc discovery");
    if (!r || r->status != 200) {
        why = "OIDC discovery: " + (r ? "answered " + std::to_string(r->status)
                                      : r.error().message());
        co_return false;
    }
    error_code ec;
    auto v = json::parse(r->body, ec);
    if (ec || !v.is_object()) {
        why = "OIDC discovery: not a JSON object";
        co_return false;
    }
    auto& d = v.as_object();
    out.authorization_endpoint = json_string(d.if_contains("authorization_endpoint"));
    out.token_endpoint = rebase(json_string(d.if_contains("token_endpoint")),
                                trim_slash(out.public_issuer), out.issuer);
    if (out.authorization_endpoint.empty() || out.token_endpoint.empty()) {
        why = "OIDC discovery: no authorization_endpoint or token_endpoint";
        co_return false;
    }
    co_return true;
}
} // namespace

awaitable<void> load_oidc(control_plane_client& api, const conf::config& cfg, oidc_store& store,
                          std::chrono::milliseconds first_retry) {
    auto ex = co_await boost::asio::this_coro::executor;
    oidc_settings s;
    s.issuer = trim_slash(cfg.oidc_domain);
    s.public_issuer = trim_slash(cfg.oidc_public_domain);
    s.client_id = cfg.oidc_client_id;
    s.client_secret = cfg.oidc_client_secret;
    s.audience = cfg.oidc_audience;
    auto delay = first_retry;
    for (int attempt = 1;; ++attempt) {
        bool not_configured = false;
        std::string why;
        oidc_settings work = s;
        if (co_await try_load(api, ex, work, not_configured, why)) {
            spdlog::info("OIDC login ready (issuer {})", work.issuer);
            store.set(std::move(work));
            co_return;
        }
        if (not_configured) {
            spdlog::warn("OIDC login disabled: {}", why);
            store.set_not_configured();
            co_return;
        }
        spdlog::warn("OIDC settings not loaded yet (try {}): {}; retrying in {} ms", attempt, why,
                     delay.count());
        boost::asio::steady_timer t(ex, delay);
        co_await t.async_wait(use_nothrow);
        delay = std::min<std::chrono::milliseconds>(delay * 2, std::chrono::seconds(30));
    }
}

pkce_pair make_pkce() {
    pkce_pair p;
    p.verifier = base64url(random_bytes(32));
    p.challenge = pkce_challenge(p.verifier);
    return p;
}

std::string pkce_challenge(std::string_view verifier) {
    auto d = sha256(verifier);
    return base64url(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

std::string encode_state(const login_state& s) {
    json::object o;
    o["returnTo"] = s.return_to;
    o["sandboxId"] = s.sandbox_id;
    o["state"] = s.nonce;
    return base64url_padded(json::serialize(o));
}

std::optional<login_state> decode_state(std::string_view text) {
    auto raw = base64url_decode(text);
    if (!raw)
        return std::nullopt;
    error_code ec;
    auto v = json::parse(*raw, ec);
    if (ec || !v.is_object())
        return std::nullopt;
    auto& o = v.as_object();
    login_state s{json_string(o.if_contains("returnTo")), json_string(o.if_contains("sandboxId")),
                  json_string(o.if_contains("state"))};
    if (s.return_to.empty() || s.sandbox_id.empty())
        return std::nullopt;
    return s;
}

std::string authorize_url(const oidc_settings& s, std::string_view redirect_uri,
                          std::string_view state, std::string_view challenge) {
    std::string u = s.authorization_endpoint;
    u.push_back(u.find('?') == std::string::npos ? '?' : '&');
    if (!s.audience.empty())
        u.append("audience=").append(query_escape(s.audience)).push_back('&');
    u.append("client_id=").append(query_escape(s.client_id));
    u.append("&code_challenge=").append(challenge);
    u.append("&code_challenge_method=S256");
    u.append("&redirect_uri=").append(query_escape(redirect_uri));
    u.append("&response_type=code");
    u.append("&scope=openid+profile");
    u.append("&state=").append(query_escape(state));
    return u;
}

bool same_site_return_to(std::string_view return_to, std::string_view callback_host) {
    auto r = boost::urls::parse_absolute_uri(return_to);
    if (!r || callback_host.empty())
        return false;
    if (r->scheme() != "http" && r->scheme() != "https")
        return false;
    if (!r->has_authority() || r->has_userinfo() || r->encoded_host().empty())
        return false;
    if (return_to.find('\\') != std::string_view::npos)
        return false;
    // Boost.URL reads "host:4000.evil.com/" as port 4000 and path ".evil.com/"; browsers do not.
    if (auto path = r->encoded_path(); !path.empty() && path.front() != '/')
        return false;
    std::string host(r->encoded_host_and_port());
    for (auto& c : host)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    std::string base(callback_host);
    for (auto& c : base)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return host == base || (host.size() > base.size() + 1 && host.ends_with(base) &&
                            host[host.size() - base.size() - 1] == '.');
}

response login_redirect(const oidc_settings& s, const request_view& v, std::string_view key,
                        const login_options& o) {
    auto pkce = make_pkce();
    login_state st;
    st.return_to = o.proxy_protocol + "://" + std::string(v.host) + std::string(v.target);
    st.sandbox_id = std::string(v.id);
    st.nonce = base64url(random_bytes(32));
    const std::string redirect_uri = o.proxy_protocol + "://" + std::string(v.base_host) + "/callback";
    const std::string payload = pkce.verifier + "~" + st.nonce;
    const auto cookie_value =
        sign_value(key, pkce_cookie, payload, unix_now() + pkce_cookie_ttl.count());

    response r;
    r.status = 307;
    r.headers.emplace_back("Location",
                           authorize_url(s, redirect_uri, encode_state(st), pkce.challenge));
    r.headers.emplace_back("Set-Cookie",
                           set_cookie(pkce_cookie, cookie_value,
                                      cookie_domain(o.cookies, v.base_host), pkce_cookie_ttl,
                                      o.cookies.secure));
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
}

oidc_login::oidc_login(boost::asio::any_io_executor ex, control_plane_client& api,
                       const oidc_store& store, const key_holder& proxy_keys, login_options o,
                       std::chrono::milliseconds timeout)
    : ex_(std::move(ex)), api_(api), store_(store), keys_(proxy_keys), opts_(std::move(o)),
      timeout_(timeout) {}

oidc_login::~oidc_login() = default;

control_plane_client& oidc_login::token_client(const std::string& endpoint, std::string& path) {
    conf::url_parts u;
    conf::parse_url(endpoint, u); // checked by the caller
    path = u.path.empty() ? "/" : u.path;
    u.path.clear();
    auto base = u.scheme + "://" + u.host + ":" + std::to_string(u.port);
    if (!token_client_ || base != token_base_) {
        control_plane_client::options o;
        o.timeout = timeout_;
        o.tries = 1; // a code is single-use: never sent twice
        token_client_ = std::make_unique<control_plane_client>(ex_, u, o);
        token_base_ = base;
    }
    return *token_client_;
}

namespace {
response fail(unsigned status, std::string message) {
    response r;
    r.status = status;
    r.message = std::move(message);
    return r;
}

std::string form_field(std::string_view name, std::string_view value) {
    std::string f(name);
    f.push_back('=');
    f.append(query_escape(value));
    return f;
}
} // namespace

awaitable<response> oidc_login::callback(const request_view& v) {
    if (auto err = query_param(v.target, "error")) {
        auto desc = query_param(v.target, "error_description");
        co_return fail(401, "login failed: " + (desc ? *desc : *err));
    }
    auto code = query_param(v.target, "code");
    if (!code)
        co_return fail(400, "no code in callback");
    auto state_text = query_param(v.target, "state");
    if (!state_text)
        co_return fail(400, "no state in callback");
    auto st = decode_state(*state_text);
    if (!st)
        co_return fail(400, "the login state is not valid");
    if (!routing::valid_id(st->sandbox_id))
        co_return fail(400, "the login state names no valid sandbox");
    if (!same_site_return_to(st->return_to, v.host))
        co_return fail(400, "returnTo is not a URL of this proxy");

    auto cookie = v.headers ? find_cookie(*v.headers, pkce_cookie) : std::nullopt;
    if (!cookie)
        co_return fail(400, "authentication state verification failed: no pkce_verifier "
                            "cookie (start the login again)");
    auto payload = verify_value(*keys_.keys(), pkce_cookie, *cookie, unix_now());
    auto tilde = payload ? payload->find('~') : std::string::npos;
    if (tilde == std::string::npos || payload->substr(tilde + 1) != st->nonce)
        co_return fail(400, "authentication state verification failed (start the login again)");
    const std::string verifier = payload->substr(0, tilde);

    auto settings = store_.get();
    if (!settings)
        co_return fail(503, "login is not available yet: the OIDC settings are still loading");
    conf::url_parts check;
    if (!conf::parse_url(settings->token_endpoint, check))
        co_return fail(502, "the OIDC token endpoint is not a usable URL");

    std::string body = form_field("grant_type", "authorization_code");
    body.append("&").append(form_field("code", *code));
    body.append("&").append(
        form_field("redirect_uri", opts_.proxy_protocol + "://" + std::string(v.host) + "/callback"));
    body.append("&").append(form_field("client_id", settings->client_id));
    if (!settings->client_secret.empty())
        body.append("&").append(form_field("client_secret", settings->client_secret));
    body.append("&").append(form_field("code_verifier", verifier));

    std::string path;
    auto& idp = token_client(settings->token_endpoint, path);
    control_plane_client::call_options co;
    co.method = "POST";
    co.content_type = "application/x-www-form-urlencoded";
    co.body = std::move(body);
    co.tries = 1;
    auto tok = co_await idp.call(path, "", "oidc token", std::move(co));
    if (!tok)
        co_return fail(502, "the identity provider did not answer: " + tok.error().message());
    if (tok->status >= 500)
        co_return fail(502, "the identity provider failed (" + std::to_string(tok->status) + ")");
    if (tok->status != 200)
        co_return fail(401, "the identity provider refused the login code (" +
                                std::to_string(tok->status) + ")");
    error_code ec;
    auto tv = json::parse(tok->body, ec);
    std::string access_token;
    if (!ec && tv.is_object())
        access_token = json_string(tv.as_object().if_contains("access_token"));
    if (access_token.empty())
        co_return fail(502, "the identity provider's answer has no access_token");

    // Named locals: g++ 12 mishandles temporaries inside co_await expressions.
    std::string access_path = "/preview/" + st->sandbox_id + "/access";
    auto acc = co_await api_.get(access_path, access_token, "preview/access");
    if (!acc)
        co_return fail(503, "cannot check access to the sandbox: " + acc.error().message());
    if (acc->status >= 500 || acc->status == 408 || acc->status == 429)
        co_return fail(503, "cannot check access to the sandbox: the API answered " +
                                std::to_string(acc->status));
    if (acc->status != 200)
        co_return fail(403, "your account has no access to sandbox " + st->sandbox_id);

    const auto domain = cookie_domain(opts_.cookies, v.host);
    const auto name = sandbox_cookie_name(st->sandbox_id);
    response r;
    r.status = 302;
    r.headers.emplace_back("Location", st->return_to);
    r.headers.emplace_back("Set-Cookie", set_cookie(pkce_cookie, "", domain,
                                                    std::chrono::seconds(0), opts_.cookies.secure));
    r.headers.emplace_back(
        "Set-Cookie",
        set_cookie(name,
                   sign_value(keys_.key(), name, st->sandbox_id,
                              unix_now() + sandbox_cookie_ttl.count()),
                   domain, sandbox_cookie_ttl, opts_.cookies.secure));
    r.headers.emplace_back("Cache-Control", "no-store");
    co_return r;
}

} // namespace edge::auth
