#include "routing/redis/redis_client.hpp"

#include <catch2/catch.hpp>

using namespace edge::routing::redis;
using namespace std::string_literals;

namespace {
// Feeds `bytes` one at a time and collects every reply, checking that none comes early.
std::vector<reply> parse_bytewise(std::string_view bytes) {
    resp_parser p;
    std::vector<reply> out;
    for (char c : bytes) {
        REQUIRE(p.feed(std::string_view(&c, 1)));
        reply r;
        while (p.next(r))
            out.push_back(std::move(r));
    }
    return out;
}
} // namespace

TEST_CASE("format_command writes RESP arrays of bulk strings", "[redis]") {
    CHECK(format_command({"GET", "proxy:abc"}) == "*2\r\n$3\r\nGET\r\n$9\r\nproxy:abc\r\n");
    CHECK(format_command({"PING"}) == "*1\r\n$4\r\nPING\r\n");
}

TEST_CASE("format_command keeps binary arguments intact", "[redis]") {
    auto bin = "a\0b\r\nc"s;
    CHECK(format_command({"SET", "k", bin, ""}) ==
          "*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\n"s + bin + "\r\n$0\r\n\r\n");
}

TEST_CASE("replies of every kind parse when fed byte by byte", "[redis]") {
    auto replies = parse_bytewise("+OK\r\n"
                                  "-WRONGTYPE Operation against a key\r\n"
                                  ":-42\r\n"
                                  "$5\r\nhe\r\no\r\n"
                                  "$0\r\n\r\n"
                                  "$-1\r\n"
                                  "*-1\r\n");
    REQUIRE(replies.size() == 7);
    CHECK(replies[0].type == reply::kind::status);
    CHECK(replies[0].str == "OK");
    CHECK(replies[1].type == reply::kind::error);
    CHECK(replies[1].str == "WRONGTYPE Operation against a key");
    CHECK(replies[2].type == reply::kind::integer);
    CHECK(replies[2].integer == -42);
    CHECK(replies[3].type == reply::kind::string);
    CHECK(replies[3].str == "he\r\no");
    CHECK(replies[4].type == reply::kind::string);
    CHECK(replies[4].str.empty());
    CHECK(replies[5].type == reply::kind::nil);
    CHECK(replies[6].type == reply::kind::nil);
}

TEST_CASE("nested arrays keep their shape", "[redis]") {
    // What an invalidation message looks like on a RESP2 subscriber.
    auto replies = parse_bytewise("*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n"
                                  "*2\r\n$7\r\nproxy:a\r\n$7\r\nproxy:b\r\n"
                                  "*3\r\n:1\r\n*0\r\n*2\r\n*1\r\n$-1\r\n+x\r\n");
    REQUIRE(replies.size() == 2);
    const auto& msg = replies[0];
    REQUIRE(msg.type == reply::kind::array);
    REQUIRE(msg.elements.size() == 3);
    CHECK(msg.elements[0].str == "message");
    CHECK(msg.elements[1].str == "__redis__:invalidate");
    REQUIRE(msg.elements[2].type == reply::kind::array);
    REQUIRE(msg.elements[2].elements.size() == 2);
    CHECK(msg.elements[2].elements[0].str == "proxy:a");
    CHECK(msg.elements[2].elements[1].str == "proxy:b");

    const auto& nested = replies[1];
    REQUIRE(nested.elements.size() == 3);
    CHECK(nested.elements[0].integer == 1);
    CHECK(nested.elements[1].type == reply::kind::array);
    CHECK(nested.elements[1].elements.empty());
    REQUIRE(nested.elements[2].elements.size() == 2);
    CHECK(nested.elements[2].elements[0].elements[0].type == reply::kind::nil);
    CHECK(nested.elements[2].elements[1].type == reply::kind::status);
    CHECK(nested.elements[2].elements[1].str == "x");
}

TEST_CASE("several replies in one feed come out in order", "[redis]") {
    resp_parser p;
    REQUIRE(p.feed(":1\r\n:2\r\n:3"));
    reply r;
    REQUIRE(p.next(r));
    CHECK(r.integer == 1);
    REQUIRE(p.next(r));
    CHECK(r.integer == 2);
    CHECK_FALSE(p.next(r)); // the third is not complete yet
    REQUIRE(p.feed("\r\n"));
    REQUIRE(p.next(r));
    CHECK(r.integer == 3);
    CHECK_FALSE(p.next(r));
    CHECK_FALSE(p.failed());
}

TEST_CASE("a corrupt stream is a protocol error that sticks", "[redis]") {
    resp_parser p;
    REQUIRE(p.feed("+OK\r\n"));
    CHECK_FALSE(p.feed("?what\r\n"));
    CHECK(p.failed());
    CHECK_FALSE(p.error().empty());
    reply r;
    CHECK_FALSE(p.next(r)); // nothing more comes out of a corrupt stream
    CHECK_FALSE(p.feed(":1\r\n"));
}

TEST_CASE("arrays nested deeper than hiredis supports are a protocol error", "[redis]") {
    resp_parser p;
    std::string deep;
    for (int i = 0; i < 12; ++i)
        deep += "*1\r\n";
    deep += ":1\r\n";
    CHECK_FALSE(p.feed(deep));
    CHECK(p.failed());
}

TEST_CASE("formatted commands parse back as arrays of strings", "[redis]") {
    std::vector<std::string> args{"CLIENT", "TRACKING", "ON",     "REDIRECT",
                                  "7",      "BCAST",    "PREFIX", "proxy:"};
    auto replies = parse_bytewise(format_command(args));
    REQUIRE(replies.size() == 1);
    REQUIRE(replies[0].elements.size() == args.size());
    for (std::size_t i = 0; i < args.size(); ++i)
        CHECK(replies[0].elements[i].str == args[i]);
}
