#include "proxy/h1_codec.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace edge::proxy::h1;

TEST_CASE("a request head is parsed in place", "[h1]") {
    std::string in = "POST /a%2Fb?x=%20 HTTP/1.1\r\nHost: 3000-abc.example.com\r\n"
                     "Content-Length: 5\r\nX-Multi: a\r\nx-multi:  b \r\n\r\nhello";
    head h;
    auto r = parse_request(in, h);
    REQUIRE(r.status == parse_status::done);
    CHECK(h.method == "POST");
    CHECK(h.target == "/a%2Fb?x=%20");
    CHECK(h.version == 11);
    CHECK(h.host == "3000-abc.example.com");
    CHECK(h.body == body_kind::length);
    CHECK(h.content_length == 5);
    CHECK(h.keep_alive);
    CHECK(in.substr(h.size) == "hello");
    REQUIRE(h.fields.size() == 4);
    CHECK(h.fields[3].name == "x-multi");
    CHECK(h.fields[3].value == "b");
}

TEST_CASE("a control byte anywhere in a long value or target is refused", "[h1]") {
    // Values and targets are checked eight bytes at a time: every position of a bad byte
    // within and across those words, and the allowed ones (tab, obs-text) next to them.
    const std::string value(40, 'v');
    const std::string target = "/" + std::string(39, 't');
    for (std::size_t at = 0; at < value.size(); ++at) {
        for (char bad : {'\x00', '\x01', '\x1f', '\x7f', '\n'}) {
            std::string v = value;
            v[at] = bad;
            head h;
            auto r = parse_request("GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + v + "\r\n\r\n", h);
            CHECK(r.status == parse_status::bad);
            std::string t = target;
            t[at == 0 ? 1 : at] = bad;
            r = parse_request("GET " + t + " HTTP/1.1\r\nHost: a\r\n\r\n", h);
            CHECK(r.status == parse_status::bad);
        }
        for (char fine : {'\t', '\x80', '\xff', '~', ' '}) {
            std::string v = value;
            v[at] = fine;
            head h;
            // (The head points into its input: the input outlives it.)
            const std::string in = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + v + "\r\n\r\n";
            auto r = parse_request(in, h);
            REQUIRE(r.status == parse_status::done);
            // (Whitespace at either end is not part of the value.)
            std::string_view want = v;
            while (!want.empty() && (want.front() == ' ' || want.front() == '\t'))
                want.remove_prefix(1);
            while (!want.empty() && (want.back() == ' ' || want.back() == '\t'))
                want.remove_suffix(1);
            CHECK(find(h, "x-long") == want);
        }
    }
}

TEST_CASE("case-insensitive comparisons agree with a byte loop at every size and position",
          "[h1]") {
    // iequals and lower_equals compare words of eight or four bytes (overlapping at the end):
    // every byte value at every position of names from 0 to 24 bytes, against a byte loop.
    auto lower = [](unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : int(c); };
    auto by_bytes = [&](std::string_view a, std::string_view b) {
        if (a.size() != b.size())
            return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (lower(static_cast<unsigned char>(a[i])) != lower(static_cast<unsigned char>(b[i])))
                return false;
        return true;
    };
    const std::string_view letters = "x-forwarded-for-0123456789";
    for (std::size_t n = 0; n <= 24; ++n) {
        const std::string known(letters.substr(0, n));
        for (std::size_t at = 0; at < n; ++at) {
            for (int c = 0; c < 256; ++c) {
                std::string name = known;
                name[at] = static_cast<char>(c);
                CHECK(iequals(name, known) == by_bytes(name, known));
                CHECK(iequals(known, name) == by_bytes(name, known));
                // lower_equals is meant for tokens (no controls): there it agrees as well.
                if (c > 0x20 && c < 0x7f)
                    CHECK(lower_equals(name, known) == by_bytes(name, known));
            }
        }
        CHECK_FALSE(iequals(known, known + "x"));
        CHECK_FALSE(lower_equals(known + "x", known));
    }
    CHECK(iequals("Content-LENGTH", "content-length"));
    CHECK(lower_equals("X-Forwarded-FOR", "x-forwarded-for"));
    CHECK_FALSE(iequals("\xc1", "\xe1")); // not ASCII: no case
}

TEST_CASE("an incomplete head asks for more, at any cut", "[h1]") {
    std::string in = "GET / HTTP/1.1\r\nHost: a.b\r\n\r\n";
    head h;
    for (std::size_t cut = 0; cut < in.size(); ++cut) {
        CAPTURE(cut);
        CHECK(parse_request(std::string_view(in).substr(0, cut), h).status ==
              parse_status::need_more);
    }
    CHECK(parse_request(in, h).status == parse_status::done);
}

TEST_CASE("keep-alive follows the version and Connection", "[h1]") {
    head h;
    REQUIRE(parse_request("GET / HTTP/1.0\r\nHost: a\r\n\r\n", h).status == parse_status::done);
    CHECK_FALSE(h.keep_alive);
    REQUIRE(parse_request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", h).status ==
            parse_status::done);
    CHECK(h.keep_alive);
    REQUIRE(parse_request("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", h).status ==
            parse_status::done);
    CHECK_FALSE(h.keep_alive);
    CHECK(h.connection_lists);
}

TEST_CASE("requests that could smuggle or confuse are refused with the right status", "[h1]") {
    struct row {
        const char* text;
        unsigned status;
    };
    const row rows[] = {
        {"GET / HTTP/1.1\nHost: a\r\n\r\n", 400},                                 // bare LF
        {"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400},                         // bare LF
        {"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400},                    // obs-fold
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},                              // space before :
        {"GET / HTTP/1.1\r\n: a\r\n\r\n", 400},                                   // empty name
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},                    // two Hosts
        {"GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", 400},                              // control char
        {"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
        {"GET / HTTP/2.0\r\n\r\n", 505},
        {"GET / HTTX/1.1\r\n\r\n", 400},
        {"GET  / HTTP/1.1\r\n\r\n", 400},
        {"GET /a b HTTP/1.1\r\n\r\n", 400},
        {"G(T / HTTP/1.1\r\n\r\n", 400},
    };
    for (const auto& row : rows) {
        CAPTURE(row.text);
        head h;
        auto r = parse_request(row.text, h);
        CHECK(r.status == parse_status::bad);
        CHECK(r.http_status == row.status);
        CHECK_FALSE(r.message.empty());
    }
}

TEST_CASE("equal duplicate Content-Lengths are one length", "[h1]") {
    head h;
    REQUIRE(parse_request("PUT / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n", h)
                .status == parse_status::done);
    CHECK(h.content_length == 3);
}

TEST_CASE("a head larger than 64 KiB gets 431", "[h1]") {
    std::string in = "GET / HTTP/1.1\r\n";
    while (in.size() < max_head_size)
        in += "X-Filler: " + std::string(100, 'x') + "\r\n";
    head h;
    auto r = parse_request(in, h);
    CHECK(r.status == parse_status::bad);
    CHECK(r.http_status == 431);
}

TEST_CASE("response framing follows RFC 9112 section 6.3", "[h1]") {
    head h;
    REQUIRE(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", h, false).status ==
            parse_status::done);
    CHECK(h.body == body_kind::length);
    CHECK(h.reason == "OK");
    REQUIRE(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", h, true).status ==
            parse_status::done);
    CHECK(h.body == body_kind::none);
    REQUIRE(parse_response("HTTP/1.1 204 No Content\r\n\r\n", h, false).status ==
            parse_status::done);
    CHECK(h.body == body_kind::none);
    REQUIRE(parse_response("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", h, false)
                .status == parse_status::done);
    CHECK(h.body == body_kind::none);
    REQUIRE(parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                           h, false)
                .status == parse_status::done);
    CHECK(h.body == body_kind::chunked);
    REQUIRE(parse_response("HTTP/1.0 200 OK\r\n\r\n", h, false).status == parse_status::done);
    CHECK(h.body == body_kind::until_close);
    CHECK_FALSE(h.keep_alive);
    REQUIRE(parse_response("HTTP/1.1 200\r\n\r\n", h, false).status == parse_status::done);
    CHECK(h.status == 200);
    CHECK(h.reason.empty());
    CHECK(parse_response("HTTP/1.1 2000 OK\r\n\r\n", h, false).status == parse_status::bad);
    CHECK(parse_response("ICY 200 OK\r\n\r\n", h, false).http_status == 502);
}

namespace {
// Feeds `wire` to a decoder in pieces of `step` bytes; returns the data and how much was used.
std::string decode(const std::string& wire, std::size_t step, std::size_t& used, bool& done,
                   bool& bad) {
    chunked_decoder d;
    std::string data;
    used = 0;
    done = bad = false;
    while (used < wire.size() && !done && !bad) {
        auto piece = std::string_view(wire).substr(used, step);
        auto r = d.feed(piece, [&](std::string_view s) { data.append(s); });
        used += r.used;
        done = r.done;
        bad = r.bad;
        if (r.used < piece.size() && !done && !bad)
            FAIL("decoder stopped early");
    }
    return data;
}
} // namespace

TEST_CASE("chunked bodies are decoded at any split and end exactly", "[h1]") {
    const std::string wire = "5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
    for (std::size_t step : {1u, 2u, 3u, 7u, 100u}) {
        CAPTURE(step);
        std::size_t used = 0;
        bool done = false, bad = false;
        auto data = decode(wire, step, used, done, bad);
        CHECK(data == "hello0123456789");
        CHECK(done);
        CHECK_FALSE(bad);
        CHECK(wire.substr(used) == "NEXT");
    }
}

TEST_CASE("malformed chunk framing is refused", "[h1]") {
    for (std::string wire : {"x\r\n", "5\r\nhelloX\r\n", "\r\n", "5\nhello\r\n",
                             "10000000000000000\r\n", "0\r\nbad header\x01\r\n\r\n",
                             "0\r\n\r\r"}) {
        CAPTURE(wire);
        std::size_t used = 0;
        bool done = false, bad = false;
        decode(wire, 100, used, done, bad);
        CHECK(bad);
        CHECK_FALSE(done);
    }
}

TEST_CASE("a chunked body's trailer section is kept, and where it starts is told", "[h1]") {
    const std::string wire = "5\r\nhello\r\n0\r\nX-Sum: 1 \r\nHost: evil\r\ngrpc-status:0\r\n\r\nNEXT";
    const std::size_t trailer_at = wire.find("X-Sum");
    for (std::size_t step : {1u, 2u, 5u, 13u, 100u}) {
        CAPTURE(step);
        chunked_decoder d;
        std::size_t used = 0, passed = 0;
        bool done = false;
        while (!done) {
            auto piece = std::string_view(wire).substr(used, step);
            auto r = d.feed(piece, [](std::string_view) {});
            REQUIRE_FALSE(r.bad);
            CHECK(r.before_trailers <= r.used);
            passed += r.before_trailers;
            used += r.used;
            done = r.done;
        }
        CHECK(passed == trailer_at); // the framing up to the last chunk's line, no more
        CHECK(wire.substr(used) == "NEXT");
        CHECK(d.trailers() == "X-Sum: 1 \r\nHost: evil\r\ngrpc-status:0\r\n");
        std::string out;
        append_trailer_section(out, d.trailers());
        CHECK(out == "X-Sum: 1\r\ngrpc-status: 0\r\n\r\n"); // Host may not be a trailer
    }
}

TEST_CASE("fields that must not be trailers are recognised", "[h1]") {
    for (auto name : {"Content-Length", "transfer-encoding", "Host", "Connection", "TE",
                      "Trailer", "Authorization", "Set-Cookie", "Content-Type",
                      "X-Daytona-Authorization", "X-Forwarded-For", "Proxy-Authorization"}) {
        CAPTURE(name);
        CHECK_FALSE(forwardable_trailer(name));
    }
    for (auto name : {"grpc-status", "grpc-message", "X-Checksum", "Server-Timing", "Digest"})
        CHECK(forwardable_trailer(name));
}

TEST_CASE("a trailer line without a colon is malformed", "[h1]") {
    for (std::string wire : {"0\r\nnocolon\r\n\r\n", "0\r\nbad name: 1\r\n\r\n"}) {
        CAPTURE(wire);
        std::size_t used = 0;
        bool done = false, bad = false;
        decode(wire, 100, used, done, bad);
        CHECK(bad);
    }
}
