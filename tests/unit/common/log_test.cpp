#include "common/log.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

using edge::log::field;

TEST_CASE("log: event fields as flat JSON members") {
    std::string out;
    std::string host = "8080-abc.proxy.localhost";
    std::uint64_t bytes = 1234;
    edge::log::append_json_fields(out, {{"method", "GET"},
                                        {"host", host},
                                        {"status", 200},
                                        {"bytes_out", bytes},
                                        {"delta", -3},
                                        {"duration_ms", 1.5},
                                        {"ws", true},
                                        field::null("runner")});
    CHECK(out == "\"method\":\"GET\",\"host\":\"8080-abc.proxy.localhost\",\"status\":200,"
                 "\"bytes_out\":1234,\"delta\":-3,\"duration_ms\":1.5,\"ws\":true,"
                 "\"runner\":null");
}

TEST_CASE("log: JSON strings escape quotes, controls and bytes that are not UTF-8") {
    std::string out;
    edge::log::append_json_escaped(out, "a\"b\\c\n\x01\x7f\xff \xc3\xa9");
    CHECK(out == "a\\\"b\\\\c\\n\\u0001\\u007f\\ufffd \xc3\xa9");
}

TEST_CASE("log: text fields quote what would break key=value parsing") {
    std::string out;
    edge::log::append_text_fields(out, {{"method", "GET"},
                                        {"ua", "curl/8 (x)"},
                                        {"empty", ""},
                                        {"eq", "a=b"},
                                        {"status", 404},
                                        field::null("runner")});
    CHECK(out == "method=GET ua=\"curl/8 (x)\" empty=\"\" eq=\"a=b\" status=404");
}

TEST_CASE("log: init refuses unknown levels and formats") {
    CHECK_FALSE(edge::log::init("loud", "json"));
    CHECK_FALSE(edge::log::init("info", "xml"));
}
