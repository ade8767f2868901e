#include "auth/cookies.hpp"
#include "auth/crypto.hpp"
#include "auth/oidc.hpp"
#include "auth/query.hpp"

#include <boost/url/parse.hpp>
#include <catch2/catch.hpp>

using namespace edge::auth;

TEST_CASE("PKCE S256 follows RFC 7636", "[auth][oidc]") {
    // RFC 7636 appendix B
    CHECK(pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") ==
          "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    auto a = make_pkce();
    auto b = make_pkce();
    CHECK(a.verifier.size() == 43);
    CHECK(a.verifier != b.verifier);
    CHECK(a.challenge == pkce_challenge(a.verifier));
}

TEST_CASE("the login state round-trips as Go's padded base64url JSON", "[auth][oidc]") {
    login_state s{"http://3000-abc.proxy.localhost:4000/x?y=1", "abc", "n0nce"};
    auto text = encode_state(s);
    CHECK(text.find_first_of("+/") == std::string::npos);
    CHECK(text.size() % 4 == 0);
    auto back = decode_state(text);
    REQUIRE(back);
    CHECK(back->return_to == s.return_to);
    CHECK(back->sandbox_id == "abc");
    CHECK(back->nonce == "n0nce");
    CHECK_FALSE(decode_state("not base64!"));
    CHECK_FALSE(decode_state(base64url_padded("[]")));
    CHECK_FALSE(decode_state(base64url_padded(R"({"returnTo":"x"})")));
}

TEST_CASE("the authorize URL carries the contract's parameters in Go's order", "[auth][oidc]") {
    oidc_settings s;
    s.authorization_endpoint = "http://127.0.0.1:5556/oidc/authorize";
    s.client_id = "daytona";
    s.audience = "daytona api";
    auto u = authorize_url(s, "http://proxy.localhost:4000/callback", "st=", "ch");
    CHECK(u == "http://127.0.0.1:5556/oidc/authorize?audience=daytona%20api&client_id=daytona"
               "&code_challenge=ch&code_challenge_method=S256"
               "&redirect_uri=http%3A%2F%2Fproxy.localhost%3A4000%2Fcallback"
               "&response_type=code&scope=openid+profile&state=st%3D");
    s.authorization_endpoint = "https://idp/authorize?tenant=1";
    s.audience.clear();
    CHECK(authorize_url(s, "r", "s", "c").starts_with("https://idp/authorize?tenant=1&client_id="));
}

TEST_CASE("the 307 to the login sets a signed, short pkce_verifier cookie", "[auth][oidc]") {
    oidc_settings s;
    s.authorization_endpoint = "http://idp.example/authorize";
    s.client_id = "daytona";
    s.audience = "daytona";
    pair_header_lookup::pairs p;
    pair_header_lookup h(p);
    request_view v;
    v.method = "GET";
    v.host = "3000-abc.proxy.example.com:4000";
    v.target = "/app?x=%40";
    v.id = "abc";
    v.base_host = "proxy.example.com:4000";
    v.port = 3000;
    v.headers = &h;
    login_options o{"https", cookie_policy{true, {}}};
    const std::string key = "dtn_key";
    auto r = login_redirect(s, v, key, o);
    CHECK(r.status == 307);
    std::string location, cookie;
    for (auto& [k, val] : r.headers) {
        if (k == "Location")
            location = val;
        if (k == "Set-Cookie")
            cookie = val;
    }
    auto u = boost::urls::parse_absolute_uri(location);
    REQUIRE(u);
    auto target = std::string(u->encoded_resource());
    CHECK(query_param(target, "redirect_uri") ==
          std::optional<std::string>("https://proxy.example.com:4000/callback"));
    CHECK(query_param(target, "code_challenge_method") == std::optional<std::string>("S256"));
    CHECK(query_param(target, "scope") == std::optional<std::string>("openid profile"));
    CHECK(query_param(target, "audience") == std::optional<std::string>("daytona"));
    auto st = decode_state(*query_param(target, "state"));
    REQUIRE(st);
    CHECK(st->return_to == "https://3000-abc.proxy.example.com:4000/app?x=%40");
    CHECK(st->sandbox_id == "abc");

    REQUIRE(cookie.starts_with("pkce_verifier=v1."));
    CHECK(cookie.find("; Domain=proxy.example.com;") != std::string::npos);
    CHECK(cookie.find("; Max-Age=300; HttpOnly; Secure; SameSite=Lax") != std::string::npos);
    auto value = cookie.substr(14, cookie.find(';') - 14);
    auto payload = verify_value(key_set{key, {}}, pkce_cookie, value, unix_now());
    REQUIRE(payload);
    auto tilde = payload->find('~');
    REQUIRE(tilde != std::string::npos);
    // The cookie's verifier is the one the challenge commits to, bound to the state's nonce.
    CHECK(pkce_challenge(payload->substr(0, tilde)) == *query_param(target, "code_challenge"));
    CHECK(payload->substr(tilde + 1) == st->nonce);
}

TEST_CASE("returnTo is followed only to this proxy's own hosts", "[auth][oidc]") {
    struct row {
        const char* url;
        bool ok;
    };
    // clang-format off
    const row rows[] = {
        {"http://3000-abc.proxy.example.com:4000/x", true},
        {"https://3000-abc.proxy.example.com:4000/", true},
        {"http://proxy.example.com:4000/", true},
        {"http://3000-ABC.Proxy.Example.com:4000/x?y", true},
        {"http://3000-abc.proxy.example.com/x", false},          // other port
        {"http://evil.com/", false},
        {"http://evilproxy.example.com:4000/", false},
        {"http://proxy.example.com:4000.evil.com/", false},
        {"http://user@3000-abc.proxy.example.com:4000/", false},
        {"http://proxy.example.com:4000@evil.com/", false},
        {"javascript:alert(1)", false},
        {"//3000-abc.proxy.example.com:4000/", false},
        {"/relative", false},
        {"ftp://proxy.example.com:4000/", false},
        {"data:text/html,x", false},
        {"http://3000-abc.proxy.example.com:4000\\@evil.com/", false},
    };
    // clang-format on
    for (auto& r : rows) {
        INFO(r.url);
        CHECK(same_site_return_to(r.url, "proxy.example.com:4000") == r.ok);
    }
}
