#include "proxy/header_rewrite.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace edge::proxy;
using namespace std::string_view_literals;

namespace {
const forward_context ctx{"3000-abc.proxy.example.com", "10.0.0.7", "https", "runner-1:3000",
                          "runner-key"};

// The outgoing head for a client request made of `fields` (CRLF-separated lines).
struct rewritten {
    std::string wire;
    h1::head out;
};

rewritten forward(const std::string& fields, const forward_context& c = ctx,
                  std::string_view method_line = "GET /p?q=%2F HTTP/1.1") {
    static std::string in; // the parsed head points into it
    in = std::string(method_line) + "\r\n" + fields + "\r\n";
    h1::head req;
    REQUIRE(h1::parse_request(in, req).status == h1::parse_status::done);
    rewritten r;
    const std::string_view parts[] = {"/sandboxes/abc/toolbox/proxy/3000"sv, req.target};
    write_request_head(r.wire, req, parts, c);
    REQUIRE(h1::parse_request(r.wire, r.out).status == h1::parse_status::done);
    return r;
}

std::vector<std::string> values(const h1::head& h, std::string_view name) {
    std::vector<std::string> out;
    for (auto& f : h.fields)
        if (h1::iequals(f.name, name))
            out.emplace_back(f.value);
    return out;
}
} // namespace

TEST_CASE("the runner's request line keeps the client's bytes after the runner's prefix",
          "[headers]") {
    auto r = forward("Host: 3000-abc.proxy.example.com\r\n", ctx,
                     "POST /_next/static/(local)/%40topbar/%5B%5B...slug%5D%5D?a=%2F&c=d%20e HTTP/1.0");
    CHECK(r.wire.starts_with("POST /sandboxes/abc/toolbox/proxy/3000/_next/static/(local)/"
                             "%40topbar/%5B%5B...slug%5D%5D?a=%2F&c=d%20e HTTP/1.1\r\n"));
}

TEST_CASE("the runner gets exactly its own credential", "[headers]") {
    auto r = forward("X-Daytona-Authorization: Bearer client-forged\r\n"
                     "x-daytona-authorization: Bearer second\r\n");
    CHECK(values(r.out, "X-Daytona-Authorization") == std::vector<std::string>{"Bearer runner-key"});
}

TEST_CASE("forwarding headers are set and appended", "[headers]") {
    auto r = forward("Host: 3000-abc.proxy.example.com\r\nX-Forwarded-For: 1.1.1.1\r\n"
                     "X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: gopher\r\n"
                     "X-Forwarded-For: 2.2.2.2\r\n");
    CHECK(values(r.out, "X-Forwarded-For") ==
          std::vector<std::string>{"1.1.1.1, 2.2.2.2, 10.0.0.7"});
    CHECK(values(r.out, "X-Forwarded-Host") ==
          std::vector<std::string>{"3000-abc.proxy.example.com"});
    CHECK(values(r.out, "X-Forwarded-Proto") == std::vector<std::string>{"https"});
    CHECK(values(r.out, "Host") == std::vector<std::string>{"runner-1:3000"});
}

TEST_CASE("hop-by-hop and Daytona's private headers are removed, the rest kept", "[headers]") {
    auto r = forward("Connection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: 1\r\n"
                     "Keep-Alive: timeout=5\r\nProxy-Authorization: Basic x\r\n"
                     "Proxy-Connection: keep-alive\r\nTE: gzip\r\nTrailer: X-Checksum\r\n"
                     "Upgrade: h2c\r\nX-Daytona-Preview-Token: tok\r\n"
                     "X-Daytona-Disable-CORS: true\r\nCookie: a=1\r\nCookie: b=2\r\n"
                     "Authorization: Bearer user\r\nExpect: 100-continue\r\nX-App: kept\r\n");
    for (auto name : {"Connection", "X-Secret-Hop", "Keep-Alive", "Proxy-Authorization",
                      "Proxy-Connection", "TE", "Upgrade", "X-Daytona-Preview-Token",
                      "X-Daytona-Disable-CORS", "Expect"}) {
        CAPTURE(name);
        CHECK(values(r.out, name).empty());
    }
    CHECK(values(r.out, "Cookie") == std::vector<std::string>{"a=1", "b=2"});
    // Authorization did not authenticate this request (public sandbox): it is the app's.
    CHECK(values(r.out, "Authorization") == std::vector<std::string>{"Bearer user"});
    CHECK(values(r.out, "X-App") == std::vector<std::string>{"kept"});
    // The announcement of trailer fields, which pass end to end.
    CHECK(values(r.out, "Trailer") == std::vector<std::string>{"X-Checksum"});
}

TEST_CASE("a credential that authenticated the request is stripped on demand", "[headers]") {
    const std::string_view strip[] = {"authorization"};
    auto c = ctx;
    c.also_strip = strip;
    auto r = forward("Authorization: Bearer user\r\nX-App: kept\r\n", c);
    CHECK(values(r.out, "Authorization").empty());
    CHECK(values(r.out, "X-App") == std::vector<std::string>{"kept"});
}

TEST_CASE("TE: trailers survives on requests", "[headers]") {
    auto r = forward("TE: gzip, trailers\r\n");
    CHECK(values(r.out, "TE") == std::vector<std::string>{"trailers"});
}

TEST_CASE("request framing is the proxy's, not the client's", "[headers]") {
    auto chunked = forward("Transfer-Encoding: chunked\r\n", ctx, "POST / HTTP/1.1");
    CHECK(values(chunked.out, "Transfer-Encoding") == std::vector<std::string>{"chunked"});
    CHECK(chunked.out.body == h1::body_kind::chunked);
    auto length = forward("Content-Length: 42\r\n", ctx, "POST / HTTP/1.1");
    CHECK(values(length.out, "Content-Length") == std::vector<std::string>{"42"});
    auto empty = forward("Content-Length: 0\r\n", ctx, "POST / HTTP/1.1");
    CHECK(values(empty.out, "Content-Length") == std::vector<std::string>{"0"});
    auto none = forward("X-A: 1\r\n");
    CHECK(values(none.out, "Content-Length").empty());
    CHECK(values(none.out, "Transfer-Encoding").empty());
}

TEST_CASE("a Connection header cannot remove Host", "[headers]") {
    auto r = forward("Host: 3000-abc.proxy.example.com\r\nConnection: Host, X-Forwarded-Host\r\n");
    CHECK(values(r.out, "X-Forwarded-Host") ==
          std::vector<std::string>{"3000-abc.proxy.example.com"});
    CHECK(values(r.out, "Host") == std::vector<std::string>{"runner-1:3000"});
}

namespace {
h1::head respond(const std::string& head_text, h1::body_kind body, bool keep, unsigned version,
                 std::string& wire, bool head_request = false) {
    static std::string in;
    in = head_text;
    h1::head res;
    REQUIRE(h1::parse_response(in, res, head_request).status == h1::parse_status::done);
    wire.clear();
    write_response_head(wire, res, body, keep, version);
    h1::head out;
    REQUIRE(h1::parse_response(wire, out, head_request).status == h1::parse_status::done);
    return out;
}
} // namespace

TEST_CASE("responses keep duplicates and lose hop-by-hop fields", "[headers]") {
    std::string wire;
    auto out = respond("HTTP/1.1 200 Fine\r\nSet-Cookie: a=1\r\nConnection: close\r\n"
                       "Set-Cookie: b=2\r\nKeep-Alive: timeout=5\r\nUpgrade: websocket\r\n"
                       "Content-Length: 3\r\n\r\n",
                       h1::body_kind::length, true, 11, wire);
    CHECK(values(out, "Set-Cookie") == std::vector<std::string>{"a=1", "b=2"});
    CHECK(values(out, "Keep-Alive").empty());
    CHECK(values(out, "Upgrade").empty());
    CHECK(values(out, "Connection").empty());
    CHECK(values(out, "Content-Length") == std::vector<std::string>{"3"});
    CHECK(out.reason == "Fine");
}

TEST_CASE("response framing and Connection are set for the client", "[headers]") {
    std::string wire;
    auto rechunked =
        respond("HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n", h1::body_kind::chunked, true, 11, wire);
    CHECK(values(rechunked, "Transfer-Encoding") == std::vector<std::string>{"chunked"});
    auto closing = respond("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                           h1::body_kind::until_close, false, 10, wire);
    CHECK(values(closing, "Transfer-Encoding").empty());
    CHECK(values(closing, "Connection") == std::vector<std::string>{"close"});
    auto old_keep = respond("HTTP/1.1 204 No Content\r\n\r\n", h1::body_kind::none, true, 10, wire);
    CHECK(values(old_keep, "Connection") == std::vector<std::string>{"keep-alive"});
    auto head = respond("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", h1::body_kind::none,
                        true, 11, wire, true);
    CHECK(values(head, "Content-Length") == std::vector<std::string>{"99"});
}

TEST_CASE("local answers carry their length and Connection", "[headers]") {
    std::string wire;
    const h1::field extra[] = {{"Retry-After", "5"}};
    write_local_response(wire, 503, "application/json", "{}", false, false, extra);
    CHECK(wire == "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                  "Retry-After: 5\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
    wire.clear();
    write_local_response(wire, 200, "application/json", "{}", true, true);
    CHECK(wire == "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n");
}

TEST_CASE("heads of any size are written whole, after what the string held", "[headers]") {
    // The writer grows the string ahead and cuts it at the end: fields of every size around
    // its growth steps, many fields, and a string that already holds something.
    for (std::size_t size : {0, 1, 200, 511, 512, 513, 1000, 5000, 40000}) {
        const std::string big(size, 'v');
        std::string fields = "Host: 3000-abc.proxy.example.com\r\nX-Big: " + big + "\r\n";
        for (int i = 0; i < 40; ++i)
            fields += "X-Field-" + std::to_string(i) + ": " + std::to_string(i) + "\r\n";
        auto r = forward(fields);
        CHECK(values(r.out, "X-Big") == std::vector<std::string>{big});
        CHECK(values(r.out, "X-Field-39") == std::vector<std::string>{"39"});
        CHECK(r.out.size == r.wire.size());

        std::string wire = "before";
        static std::string in;
        in = "HTTP/1.1 200 OK\r\nX-Big: " + big + "\r\nContent-Length: 3\r\n\r\n";
        h1::head res;
        REQUIRE(h1::parse_response(in, res, false).status == h1::parse_status::done);
        write_response_head(wire, res, h1::body_kind::length, true, 11);
        CHECK(wire == "beforeHTTP/1.1 200 OK\r\nX-Big: " + big + "\r\nContent-Length: 3\r\n\r\n");
    }
}
