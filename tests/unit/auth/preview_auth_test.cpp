#include "auth/activity.hpp"
#include "auth/circuit_breaker.hpp"
#include "auth/preview_access.hpp"
#include "auth/preview_auth.hpp"

#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <fstream>
#include <unistd.h>
#include <catch2/catch.hpp>

using namespace edge::auth;
using namespace std::chrono_literals;
using pairs = pair_header_lookup::pairs;

namespace {
const std::string sid = "4be4ac5c-1048-423f-8460-37cc95c6a1af";
const std::string token = "ed08887e4a77970acaaea751159391a9";
const std::string user = "user-token-699866d4e82b52d924978391a5f5fd00";
const std::string key = "dtn_87a26998d243710d7f61cd6180235352a57ea4bf18d4ec805b2d9bc15ed654ec";

// An authorizer whose API is never reached: ready() works from the cache alone.
struct fixture {
    boost::asio::io_context io;
    edge::conf::url_parts api{"http", "127.0.0.1", 9, "/api"};
    control_plane_client client{io.get_executor(), api, {}};
    key_holder keys{"PROXY_API_KEY", key};
    auth_shared shared{keys};
    authorizer auth{client, shared, nullptr, authorizer_options{}};

    request_view view(const header_lookup& h, std::string target = "/") {
        target_ = std::move(target);
        request_view v;
        v.method = "GET";
        v.host = host_;
        v.target = target_;
        v.id = sid;
        v.base_host = "proxy.localhost:4000";
        v.port = 3000;
        v.headers = &h;
        return v;
    }
    std::string host_ = "3000-" + sid + ".proxy.localhost:4000";
    std::string target_;
};
} // namespace

TEST_CASE("public sandboxes need nothing, except on reserved ports and in toolbox mode",
          "[auth][preview]") {
    fixture f;
    pairs none;
    pair_header_lookup h(none);
    auto v = f.view(h);
    v.sandbox_public = true;
    auto d = f.auth.ready(v);
    REQUIRE(d);
    CHECK(d->allowed());
    CHECK(d->method == auth_method::public_sandbox);
    for (std::uint16_t port : {22222, 2280, 33333}) {
        v.port = port;
        CHECK(authorizer::needs_auth(v));
        CHECK_FALSE(f.auth.ready(v));
    }
    v.port = 3000;
    v.mode = request_mode::toolbox;
    CHECK(authorizer::needs_auth(v));
}

TEST_CASE("cached decisions decide without I/O, in Daytona's credential order",
          "[auth][preview]") {
    fixture f;
    auto& cache = f.shared.cache;

    SECTION("a valid preview token header") {
        cache.store(check_key(check_kind::preview_token, sid, token), true);
        pairs p{{"X-Daytona-Preview-Token", token}};
        pair_header_lookup h(p);
        auto d = f.auth.ready(f.view(h));
        REQUIRE(d);
        CHECK(d->method == auth_method::preview_token_header);
        CHECK_FALSE(d->strip_authorization);
        CHECK_FALSE(d->target);
        CHECK(d->sandbox_id(f.view(h)) == sid);
    }
    SECTION("a valid bearer is stripped") {
        cache.store(check_key(check_kind::bearer, sid, user), true);
        pairs p{{"Authorization", "Bearer " + user}};
        pair_header_lookup h(p);
        auto d = f.auth.ready(f.view(h));
        REQUIRE(d);
        CHECK(d->method == auth_method::bearer);
        CHECK(d->strip_authorization);
    }
    SECTION("an undecided bearer comes first: no shortcut to the token behind it") {
        cache.store(check_key(check_kind::preview_token, sid, token), true);
        pairs p{{"Authorization", "Bearer " + user}, {"X-Daytona-Preview-Token", token}};
        pair_header_lookup h(p);
        CHECK_FALSE(f.auth.ready(f.view(h)));
        // Once the bearer is known to be invalid, the token wins and Authorization is kept.
        cache.store(check_key(check_kind::bearer, sid, user), false);
        auto d = f.auth.ready(f.view(h));
        REQUIRE(d);
        CHECK(d->method == auth_method::preview_token_header);
        CHECK_FALSE(d->strip_authorization);
    }
    SECTION("the query key is removed from the target, other bytes kept") {
        cache.store(check_key(check_kind::preview_token, sid, token), true);
        pairs none;
        pair_header_lookup h(none);
        auto v = f.view(h, "/a%2Fb?x=%40&DAYTONA_SANDBOX_AUTH_KEY=" + token + "&y=(local)");
        auto d = f.auth.ready(v);
        REQUIRE(d);
        CHECK(d->method == auth_method::query_key);
        REQUIRE(d->target);
        CHECK(*d->target == "/a%2Fb?x=%40&y=(local)");
    }
    SECTION("a token valid for another sandbox is not valid here") {
        cache.store(check_key(check_kind::preview_token, "other-sandbox", token), true);
        pairs p{{"X-Daytona-Preview-Token", token}};
        pair_header_lookup h(p);
        CHECK_FALSE(f.auth.ready(f.view(h)));
    }
    SECTION("a cached invalid token and nothing else: the full path decides") {
        cache.store(check_key(check_kind::preview_token, sid, token), false);
        pairs p{{"X-Daytona-Preview-Token", token}};
        pair_header_lookup h(p);
        CHECK_FALSE(f.auth.ready(f.view(h)));
    }
}

TEST_CASE("the signed cookie authenticates its own sandbox only", "[auth][preview][cookie]") {
    fixture f;
    const auto name = sandbox_cookie_name(sid);
    const auto value = sign_value(key, name, sid, unix_now() + 3600);

    SECTION("valid") {
        pairs p{{"Cookie", "x=1; " + name + "=" + value}};
        pair_header_lookup h(p);
        auto d = f.auth.ready(f.view(h));
        REQUIRE(d);
        CHECK(d->method == auth_method::cookie);
        CHECK(d->signed_sandbox_id.empty());
    }
    SECTION("expired, or signed with an unknown key") {
        pairs p{{"Cookie", name + "=" + sign_value(key, name, sid, unix_now() - 1)},
                {"Cookie", name + "=" + sign_value("dtn_other", name, sid, unix_now() + 3600)}};
        pair_header_lookup h(p);
        CHECK_FALSE(f.auth.ready(f.view(h)));
    }
    SECTION("a cookie minted for another sandbox, renamed") {
        const auto other = sandbox_cookie_name("other");
        pairs p{{"Cookie", name + "=" + sign_value(key, other, "other", unix_now() + 3600)}};
        pair_header_lookup h(p);
        CHECK_FALSE(f.auth.ready(f.view(h)));
    }
    SECTION("a signed preview URL's cookie carries the real sandbox id") {
        const std::string signed_token = "sgn5c498709777340d5afa471862bd3f464";
        const auto tname = sandbox_cookie_name(signed_token);
        pairs p;
        pair_header_lookup h(p);
        auto v = f.view(h);
        v.id = signed_token;
        p.push_back({"Cookie", tname + "=" + sign_value(key, tname,
                                                        sid + ":" + std::to_string(v.port),
                                                        unix_now() + 3600)});
        auto d = f.auth.ready(v);
        REQUIRE(d);
        CHECK(d->method == auth_method::signed_url);
        CHECK(d->sandbox_id(v) == sid);
        // The token was validated for one port: its cookie opens no other (web terminal...).
        v.port = 22222;
        CHECK_FALSE(f.auth.ready(v));
    }
    SECTION("still valid after the key rotated") {
        char path[] = "/tmp/edgegate-key-XXXXXX";
        int fd = mkstemp(path);
        REQUIRE(fd >= 0);
        REQUIRE(::write(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size()));
        ::close(fd);
        key_holder rotating("PROXY_API_KEY", "", path, 0ms);
        auth_shared shared(rotating);
        authorizer a(f.client, shared, nullptr, authorizer_options{});
        std::ofstream(path) << "dtn_new_key";
        REQUIRE(rotating.reload() == key_holder::reload_result::changed);
        pairs p{{"Cookie", name + "=" + value}};
        pair_header_lookup h(p);
        auto d = a.ready(f.view(h));
        REQUIRE(d);
        CHECK(d->method == auth_method::cookie);
        std::remove(path);
    }
}

TEST_CASE("cache keys never hold the credential", "[auth][cache]") {
    auto k = check_key(check_kind::preview_token, sid, token);
    auto rk = redis_check_key(k);
    CHECK(rk.starts_with("edgegate:auth:"));
    CHECK(rk.size() == 14 + 64);
    CHECK(rk.find(token) == std::string::npos);
    CHECK(rk.find(sid) == std::string::npos);
    // Every input matters, and the encoding has no ambiguous joins.
    CHECK(check_key(check_kind::bearer, sid, token) != k);
    CHECK(check_key(check_kind::preview_token, "other", token) != k);
    CHECK(check_key(check_kind::preview_token, sid, token + "x") != k);
    CHECK(check_key(check_kind::signed_url, sid, sid, 3000) !=
          check_key(check_kind::signed_url, sid, sid, 3001));
    CHECK(check_key(check_kind::preview_token, "a|", "b") !=
          check_key(check_kind::preview_token, "a", "|b"));
}

TEST_CASE("decision cache: valid 2 min, invalid 5 s, stale only on request", "[auth][cache]") {
    decision_cache c;
    const auto t0 = decision_cache::clock::now();
    auto good = check_key(check_kind::preview_token, sid, "good");
    auto bad = check_key(check_kind::preview_token, sid, "bad");
    c.store(good, true, {}, t0);
    c.store(bad, false, {}, t0);
    CHECK(c.lookup(good, false, t0 + 119s).s == decision_cache::state::allowed);
    CHECK(c.fresh_allowed(good, t0 + 119s));
    CHECK(c.lookup(good, false, t0 + 120s).s == decision_cache::state::none);
    CHECK(c.lookup(good, true, t0 + 120s).s == decision_cache::state::stale_allowed);
    CHECK(c.lookup(good, true, t0 + 420s).s == decision_cache::state::none);
    CHECK(c.lookup(bad, false, t0 + 4s).s == decision_cache::state::denied);
    CHECK(c.lookup(bad, false, t0 + 5s).s == decision_cache::state::none);
    CHECK(c.lookup(bad, true, t0 + 5s).s == decision_cache::state::none); // never stale-denied
}

TEST_CASE("decision cache stays within its bound", "[auth][cache]") {
    decision_cache::options o;
    o.max_entries = 100;
    decision_cache c(o);
    for (int i = 0; i < 1000; ++i)
        c.store(check_key(check_kind::preview_token, sid, std::to_string(i)), true);
    CHECK(c.size() <= 100);
    CHECK(c.evictions() >= 900);
}

TEST_CASE("the circuit breaker opens, rejects, probes and closes", "[auth][breaker]") {
    circuit_breaker b({3, 50ms});
    for (int i = 0; i < 2; ++i) {
        REQUIRE(b.allow());
        b.on_failure();
    }
    CHECK_FALSE(b.is_open());
    REQUIRE(b.allow());
    b.on_failure();
    CHECK(b.is_open());
    CHECK_FALSE(b.allow());
    CHECK(b.rejected() == 1);
    SECTION("after the pause one probe goes; its failure reopens") {
        auto until = std::chrono::steady_clock::now() + 2s;
        while (b.is_open() && std::chrono::steady_clock::now() < until) {
        }
        REQUIRE_FALSE(b.is_open());
        CHECK(b.allow());
        CHECK_FALSE(b.allow()); // only one probe at a time
        b.on_failure();
        CHECK(b.is_open());
    }
    SECTION("a successful probe closes it") {
        auto until = std::chrono::steady_clock::now() + 2s;
        while (b.is_open() && std::chrono::steady_clock::now() < until) {
        }
        REQUIRE(b.allow());
        b.on_success();
        CHECK(b.allow());
        CHECK(b.allow());
    }
    CHECK(make_error_code(control_plane_errc::circuit_open).message().find("circuit breaker") !=
          std::string::npos);
}

TEST_CASE("access_process builds from the config and reloads its key files on demand",
          "[auth][keys]") {
    char path[] = "/tmp/edgegate-key-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    ::close(fd);
    std::ofstream(path) << key << "\n";
    edge::conf::config c;
    c.proxy_api_key_file = path;
    c.proxy_protocol = "https";
    c.cookie_domain = ".example.com";
    access_process p(c);
    CHECK(p.proxy_keys.key() == key);
    CHECK(p.ssh_keys.key().empty());
    CHECK(p.breaker);
    std::ofstream(path) << "dtn_rotated\n";
    p.reload_keys();
    CHECK(p.proxy_keys.key() == "dtn_rotated");
    CHECK(p.proxy_keys.keys()->previous == key);
    auto o = authorizer_options::from(c);
    CHECK(o.cookies.secure);
    CHECK(o.cookies.cookie_domain == ".example.com");
    std::remove(path);
}

TEST_CASE("last-activity is claimed once per 45 s per sandbox in a process", "[auth][activity]") {
    activity_shared s;
    const auto t0 = activity_shared::clock::now();
    CHECK(s.claim(sid, t0));
    CHECK_FALSE(s.claim(sid, t0 + 44s));
    CHECK(s.claim("other", t0 + 1s));
    CHECK(s.claim(sid, t0 + 45s));
    CHECK_FALSE(s.claim(sid, t0 + 46s));
    CHECK(activity_redis_key(sid) == "proxy:sandbox-last-activity-update:" + sid);
}
