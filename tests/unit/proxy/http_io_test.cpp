#include "proxy/http_io.hpp"

#include <boost/beast/http/message.hpp>
#include <catch2/catch.hpp>

#include <cstring>

namespace http = boost::beast::http;

// Beast keeps fields of one name together, in their order; order across names does not matter
// in HTTP.
TEST_CASE("request headers go out with every duplicate, in order", "[http_io]") {
    http::request_header<> h;
    h.method(http::verb::post);
    h.target("/sandboxes/abc/toolbox/proxy/3000/a%2Fb?x=%20");
    h.version(11);
    h.insert(http::field::host, "runner:3000");
    h.insert("Cookie", "a=1");
    h.insert("X-Custom", "v");
    h.insert("Cookie", "b=2");
    std::string out;
    edge::proxy::append_header(out, h);
    CHECK(out == "POST /sandboxes/abc/toolbox/proxy/3000/a%2Fb?x=%20 HTTP/1.1\r\n"
                 "Host: runner:3000\r\nCookie: a=1\r\nCookie: b=2\r\nX-Custom: v\r\n\r\n");
}

TEST_CASE("response status lines keep the runner's reason, or use the standard one", "[http_io]") {
    http::response_header<> h;
    h.result(404);
    h.reason("Nope");
    h.version(11);
    h.insert(http::field::content_length, "0");
    std::string out;
    edge::proxy::append_header(out, h);
    CHECK(out == "HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n");

    http::response_header<> plain;
    plain.result(204);
    plain.version(11);
    out.clear();
    edge::proxy::append_header(out, plain);
    CHECK(out == "HTTP/1.1 204 No Content\r\n\r\n");
}

TEST_CASE("a header is parsed from what the buffer holds, and asks for more otherwise",
          "[http_io]") {
    boost::beast::flat_buffer buf;
    auto put = [&](std::string_view s) {
        auto b = buf.prepare(s.size());
        std::memcpy(b.data(), s.data(), s.size());
        buf.commit(s.size());
    };
    http::response_parser<http::buffer_body> p;
    put("HTTP/1.1 200 OK\r\nContent-Len");
    CHECK(edge::proxy::parse_header_now(buf, p) == http::error::need_more);
    put("gth: 5\r\n\r\nhel");
    CHECK_FALSE(edge::proxy::parse_header_now(buf, p));
    REQUIRE(p.is_header_done());

    char body[16];
    p.get().body().data = body;
    p.get().body().size = sizeof body;
    bool progressed = false;
    CHECK_FALSE(edge::proxy::parse_body_now(buf, p, progressed));
    CHECK(progressed);
    CHECK(sizeof body - p.get().body().size == 3);
    CHECK_FALSE(p.is_done());
}
