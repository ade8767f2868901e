#include "proxy/header_rewrite.hpp"

#include <boost/beast/http/fields.hpp>
#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace http = boost::beast::http;
using edge::proxy::forward_context;

namespace {
std::vector<std::string> values(const http::fields& f, std::string_view name) {
    std::vector<std::string> out;
    for (auto& fld : f)
        if (boost::beast::iequals(fld.name_string(), name))
            out.emplace_back(fld.value());
    return out;
}

const forward_context ctx{"3000-abc.proxy.example.com", "10.0.0.7", "https", "runner-1:3000",
                          "runner-key"};
} // namespace

TEST_CASE("the runner gets exactly its own credential", "[headers]") {
    http::fields f;
    f.insert("X-Daytona-Authorization", "Bearer client-forged");
    f.insert("x-daytona-authorization", "Bearer second");
    edge::proxy::rewrite_request(f, ctx);
    CHECK(values(f, "X-Daytona-Authorization") == std::vector<std::string>{"Bearer runner-key"});
}

TEST_CASE("forwarding headers are set and appended", "[headers]") {
    http::fields f;
    f.insert(http::field::host, "3000-abc.proxy.example.com");
    f.insert("X-Forwarded-For", "1.1.1.1");
    f.insert("X-Forwarded-Host", "evil.example");
    f.insert("X-Forwarded-Proto", "gopher");
    f.insert("X-Forwarded-For", "2.2.2.2");
    edge::proxy::rewrite_request(f, ctx);
    CHECK(values(f, "X-Forwarded-For") == std::vector<std::string>{"1.1.1.1, 2.2.2.2, 10.0.0.7"});
    CHECK(values(f, "X-Forwarded-Host") == std::vector<std::string>{"3000-abc.proxy.example.com"});
    CHECK(values(f, "X-Forwarded-Proto") == std::vector<std::string>{"https"});
    CHECK(values(f, "Host") == std::vector<std::string>{"runner-1:3000"});
}

TEST_CASE("hop-by-hop and Daytona's private headers are removed, the rest kept", "[headers]") {
    http::fields f;
    f.insert(http::field::connection, "keep-alive, X-Secret-Hop");
    f.insert("X-Secret-Hop", "1");
    f.insert(http::field::keep_alive, "timeout=5");
    f.insert("Proxy-Authorization", "Basic x");
    f.insert("Proxy-Connection", "keep-alive");
    f.insert(http::field::te, "gzip");
    f.insert(http::field::trailer, "X-Checksum");
    f.insert(http::field::upgrade, "h2c");
    f.insert("X-Daytona-Preview-Token", "tok");
    f.insert("X-Daytona-Disable-CORS", "true");
    f.insert(http::field::cookie, "a=1");
    f.insert(http::field::cookie, "b=2");
    f.insert(http::field::authorization, "Bearer user");
    f.insert("X-App", "kept");
    edge::proxy::rewrite_request(f, ctx);
    for (auto name :
         {"Connection", "X-Secret-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection",
          "TE", "Trailer", "Upgrade", "X-Daytona-Preview-Token", "X-Daytona-Disable-CORS"}) {
        CAPTURE(name);
        CHECK(values(f, name).empty());
    }
    CHECK(values(f, "Cookie") == std::vector<std::string>{"a=1", "b=2"});
    // Authorization did not authenticate this request (public sandbox): it is the app's.
    CHECK(values(f, "Authorization") == std::vector<std::string>{"Bearer user"});
    CHECK(values(f, "X-App") == std::vector<std::string>{"kept"});
}

TEST_CASE("TE: trailers survives on requests", "[headers]") {
    http::fields f;
    f.insert(http::field::te, "gzip, trailers");
    edge::proxy::rewrite_request(f, ctx);
    CHECK(values(f, "TE") == std::vector<std::string>{"trailers"});
}

TEST_CASE("responses keep duplicates and lose hop-by-hop fields", "[headers]") {
    http::fields f;
    f.insert(http::field::set_cookie, "a=1");
    f.insert(http::field::connection, "close");
    f.insert(http::field::set_cookie, "b=2");
    f.insert(http::field::keep_alive, "timeout=5");
    f.insert(http::field::upgrade, "websocket");
    edge::proxy::rewrite_response(f);
    CHECK(values(f, "Set-Cookie") == std::vector<std::string>{"a=1", "b=2"});
    CHECK(values(f, "Connection").empty());
    CHECK(values(f, "Keep-Alive").empty());
    CHECK(values(f, "Upgrade").empty());
}

TEST_CASE("a Connection header cannot remove Host", "[headers]") {
    http::fields f;
    f.insert(http::field::host, "3000-abc.proxy.example.com");
    f.insert(http::field::connection, "Host, X-Forwarded-Host");
    edge::proxy::rewrite_request(f, ctx);
    CHECK(values(f, "X-Forwarded-Host") == std::vector<std::string>{"3000-abc.proxy.example.com"});
    CHECK(values(f, "Host") == std::vector<std::string>{"runner-1:3000"});
}
