#include "auth/cors.hpp"
#include "auth/preview_warning.hpp"

#include <catch2/catch.hpp>

using namespace edge::auth;
using pairs = pair_header_lookup::pairs;

namespace {
request_view view(const header_lookup& h, std::string_view method = "GET") {
    request_view v;
    v.method = method;
    v.host = "3000-abc.proxy.example.com";
    v.target = "/page?a=%40";
    v.id = "abc";
    v.base_host = "proxy.example.com";
    v.port = 3000;
    v.headers = &h;
    return v;
}

std::string field(const response& r, std::string_view name) {
    for (auto& [k, v] : r.headers)
        if (iequals(k, name))
            return v;
    return "<none>";
}

std::string field(const std::vector<std::pair<std::string, std::string>>& f,
                  std::string_view name) {
    std::string out = "<none>";
    int n = 0;
    for (auto& [k, v] : f)
        if (iequals(k, name)) {
            out = v;
            ++n;
        }
    return n > 1 ? "<duplicate>" : out;
}

constexpr const char* chrome =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 "
    "Safari/537.36";
} // namespace

TEST_CASE("a foreign-origin preflight is answered by the proxy", "[auth][cors]") {
    pairs p{{"Origin", "https://app.example.org"},
            {"Access-Control-Request-Method", "PUT"},
            {"Access-Control-Request-Headers", "x-a, content-type"}};
    pair_header_lookup h(p);
    auto r = cors_preflight(view(h, "OPTIONS"), "http");
    REQUIRE(r);
    CHECK(r->status == 204);
    CHECK(field(*r, "Access-Control-Allow-Origin") == "https://app.example.org");
    CHECK(field(*r, "Access-Control-Allow-Credentials") == "true");
    CHECK(field(*r, "Access-Control-Allow-Methods") == "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS");
    CHECK(field(*r, "Access-Control-Allow-Headers") == "x-a, content-type");
    CHECK(field(*r, "Access-Control-Max-Age") == "43200");
    CHECK(field(*r, "Vary") ==
          "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");

    SECTION("not a preflight: a plain OPTIONS, same origin, disabled, no Origin") {
        pairs plain{{"Origin", "https://app.example.org"}};
        pair_header_lookup hp(plain);
        CHECK_FALSE(cors_preflight(view(hp, "OPTIONS"), "http"));
        pairs same{{"Origin", "http://3000-abc.proxy.example.com"},
                   {"Access-Control-Request-Method", "PUT"}};
        pair_header_lookup hs(same);
        CHECK_FALSE(cors_preflight(view(hs, "OPTIONS"), "http"));
        auto disabled = p;
        disabled.emplace_back("X-Daytona-Disable-CORS", "true");
        pair_header_lookup hd(disabled);
        CHECK_FALSE(cors_preflight(view(hd, "OPTIONS"), "http"));
        CHECK_FALSE(cors_preflight(view(h, "GET"), "http"));
    }
}

TEST_CASE("CORS headers are added without duplicating the app's", "[auth][cors]") {
    pairs p{{"Origin", "https://app.example.org"}};
    pair_header_lookup h(p);
    auto v = view(h);
    std::vector<std::pair<std::string, std::string>> out;

    SECTION("the app set nothing") {
        pairs none;
        cors_response_headers(v, "http", pair_header_lookup(none), out);
        CHECK(field(out, "Access-Control-Allow-Origin") == "https://app.example.org");
        CHECK(field(out, "Access-Control-Allow-Credentials") == "true");
        CHECK(field(out, "Vary") == "Origin");
    }
    SECTION("the app answered CORS itself (Daytona issue #3308)") {
        pairs app{{"Access-Control-Allow-Origin", "*"}};
        cors_response_headers(v, "http", pair_header_lookup(app), out);
        CHECK(out.empty());
    }
    SECTION("the app set credentials and Vary only") {
        pairs app{{"access-control-allow-credentials", "true"}, {"Vary", "Accept-Encoding, Origin"}};
        cors_response_headers(v, "http", pair_header_lookup(app), out);
        CHECK(field(out, "Access-Control-Allow-Origin") == "https://app.example.org");
        CHECK(field(out, "Access-Control-Allow-Credentials") == "<none>");
        CHECK(field(out, "Vary") == "<none>");
    }
    SECTION("disabled by the client") {
        pairs d{{"Origin", "https://app.example.org"}, {"X-Daytona-Disable-CORS", "true"}};
        pair_header_lookup hd(d);
        pairs none;
        cors_response_headers(view(hd), "http", pair_header_lookup(none), out);
        CHECK(out.empty());
    }
    SECTION("same origin") {
        pairs s{{"Origin", "https://3000-abc.proxy.example.com"}};
        pair_header_lookup hs(s);
        pairs none;
        cors_response_headers(view(hs), "https", pair_header_lookup(none), out);
        CHECK(out.empty());
    }
}

TEST_CASE("the warning page is shown to browsers only, as the contract lists", "[auth][warning]") {
    pairs p{{"User-Agent", chrome}};
    pair_header_lookup h(p);
    auto v = view(h);
    CHECK(wants_preview_warning(v, true));
    CHECK_FALSE(wants_preview_warning(v, false));
    auto reserved = v;
    reserved.port = 22222;
    CHECK_FALSE(wants_preview_warning(reserved, true));
    auto ws = v;
    ws.websocket = true;
    CHECK_FALSE(wants_preview_warning(ws, true));
    auto toolbox = v;
    toolbox.mode = request_mode::toolbox;
    CHECK_FALSE(wants_preview_warning(toolbox, true));
    for (auto extra : {std::pair{"X-Daytona-Skip-Preview-Warning", "true"},
                       std::pair{"Cookie", "a=b; daytona-preview-page-accepted=true"}}) {
        auto q = p;
        q.emplace_back(extra.first, extra.second);
        pair_header_lookup hq(q);
        CHECK_FALSE(wants_preview_warning(view(hq), true));
    }
    for (auto ua : {"curl/8.5.0", "python-requests/2.31", "Go-http-client/1.1", ""}) {
        pairs q{{"User-Agent", ua}};
        pair_header_lookup hq(q);
        CHECK_FALSE(wants_preview_warning(view(hq), true));
    }
}

TEST_CASE("the warning page escapes the URL and forbids everything else", "[auth][warning]") {
    pairs p{{"User-Agent", chrome}};
    pair_header_lookup h(p);
    auto v = view(h);
    v.target = "/\"><script>alert(1)</script>";
    auto r = preview_warning_page(v, "https");
    CHECK(r.status == 200);
    CHECK(r.content_type == "text/html; charset=utf-8");
    CHECK(field(r, "Content-Security-Policy") ==
          "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'");
    CHECK(field(r, "X-Content-Type-Options") == "nosniff");
    CHECK(r.body.find("<script>") == std::string::npos);
    CHECK(r.body.find("&lt;script&gt;") != std::string::npos);
    CHECK(r.body.find("action=\"/accept-daytona-preview-warning?redirect=https%3A%2F%2F3000-abc."
                      "proxy.example.com%2F%22%3E%3Cscript%3E") != std::string::npos);
}

TEST_CASE("the accept endpoint redirects only to this host", "[auth][warning]") {
    const std::string host = "3000-abc.proxy.example.com";
    struct row {
        const char* redirect;
        const char* to;
    };
    // clang-format off
    const row rows[] = {
        {"/x?y=1", "/x?y=1"},
        {"/", "/"},
        {"https://3000-abc.proxy.example.com/page", "https://3000-abc.proxy.example.com/page"},
        {"http://3000-abc.proxy.example.com/", "http://3000-abc.proxy.example.com/"},
        {"https://evil.com/x", "/"},
        {"//evil.com/x", "/"},
        {"/\\evil.com", "/"},
        {"\\\\evil.com", "/"},
        {"https://3000-abc.proxy.example.com@evil.com/", "/"},
        {"https://evil.com@3000-abc.proxy.example.com/", "/"},
        {"javascript:alert(1)", "/"},
        {"data:text/html,<script>alert(1)</script>", "/"},
        {"/\t/evil.com", "/"},
        {"https://3000-abc.proxy.example.com.evil.com/", "/"},
        {"https://4000-abc.proxy.example.com/", "/"},
        {"evil.com", "/"},
        {"https://3000-abc.proxy.example.com:443.evil.com/", "/"},
        {"", "/"},
    };
    // clang-format on
    for (auto& r : rows) {
        INFO(r.redirect);
        CHECK(safe_redirect(r.redirect, host) == r.to);
    }

    pairs p;
    pair_header_lookup h(p);
    auto v = view(h, "POST");
    v.target = "/accept-daytona-preview-warning?redirect=%2F%2Fevil.com%2Fx";
    auto r = accept_preview_warning(v, "https");
    CHECK(r.status == 302);
    CHECK(field(r, "Location") == "/");
    CHECK(field(r, "Set-Cookie") ==
          "daytona-preview-page-accepted=true; Path=/; Max-Age=86400; HttpOnly; Secure; "
          "SameSite=None");
    v.target = "/accept-daytona-preview-warning?redirect=http%3A%2F%2F3000-abc.proxy.example.com"
               "%2Fa%3Fb%3D%2540";
    CHECK(field(accept_preview_warning(v, "http"), "Location") ==
          "http://3000-abc.proxy.example.com/a?b=%40");
}
