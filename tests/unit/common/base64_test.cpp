#include "common/base64.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <string>

using namespace edge::base64;
using opt = std::optional<std::string>;

TEST_CASE("base64: the RFC 4648 test vectors, padded and not", "[base64]") {
    const std::pair<std::string, std::string> vectors[] = {{"", ""},
                                                           {"f", "Zg=="},
                                                           {"fo", "Zm8="},
                                                           {"foo", "Zm9v"},
                                                           {"foob", "Zm9vYg=="},
                                                           {"fooba", "Zm9vYmE="},
                                                           {"foobar", "Zm9vYmFy"}};
    for (auto& [plain, coded] : vectors) {
        INFO(plain);
        CHECK(encode(plain, alphabet::standard, true) == coded);
        auto bare = coded.substr(0, coded.find('='));
        CHECK(encode(plain, alphabet::url, false) == bare);
        for (auto r : {rules::strict, rules::lenient}) {
            CHECK(decode(coded, alphabet::standard, r) == opt(plain));
            CHECK(decode(bare, alphabet::standard, r) == opt(plain)); // padding is optional
            CHECK(decode(coded, alphabet::url, r) == opt(plain));
        }
    }
}

TEST_CASE("base64: every byte value round-trips in both alphabets", "[base64]") {
    std::string all;
    for (int i = 0; i < 256; ++i)
        all.push_back(static_cast<char>(i));
    for (auto a : {alphabet::standard, alphabet::url})
        for (bool pad : {true, false})
            for (std::size_t n : {253, 254, 255, 256}) {
                auto text = encode(all.substr(0, n), a, pad);
                CHECK(decode(text, a, rules::strict) == opt(all.substr(0, n)));
            }
    CHECK(encode("\xfb\xff", alphabet::standard, false) == "+/8");
    CHECK(encode("\xfb\xff", alphabet::url, false) == "-_8");
}

TEST_CASE("base64: each alphabet refuses the other's two characters", "[base64]") {
    for (auto r : {rules::strict, rules::lenient}) {
        CHECK(decode("+/8", alphabet::standard, r) == opt("\xfb\xff"));
        CHECK(decode("-_8", alphabet::url, r) == opt("\xfb\xff"));
        CHECK_FALSE(decode("-_8", alphabet::standard, r));
        CHECK_FALSE(decode("+/8", alphabet::url, r));
        CHECK_FALSE(decode("Zm9v*", alphabet::standard, r));
        CHECK_FALSE(decode("Zm9v\t", alphabet::standard, r)); // a tab is never skipped
        CHECK_FALSE(decode("Zm\xc3\xa9", alphabet::standard, r));
        CHECK_FALSE(decode(std::string("Zm\0v", 4), alphabet::standard, r));
    }
}

TEST_CASE("base64 strict: padding only at the end, no whitespace, no lone character", "[base64]") {
    auto strict = [](std::string_view t) { return decode(t, alphabet::url, rules::strict); };
    CHECK(strict("Zg===") == opt("f")); // any number of trailing '='
    CHECK(strict("====") == opt(""));
    CHECK_FALSE(strict("Zg==Zg=="));
    CHECK_FALSE(strict("=Zg"));
    CHECK_FALSE(strict("Zm9v\n"));
    CHECK_FALSE(strict(" Zm9v"));
    CHECK_FALSE(strict("Zm9v\r\nYmFy"));
    CHECK_FALSE(strict("Z"));
    CHECK_FALSE(strict("Zm9vY"));
    CHECK_FALSE(strict("Zm9vY="));
}

TEST_CASE("base64 lenient: '=', CR, LF and space skipped anywhere, a lone character dropped",
          "[base64]") {
    auto lenient = [](std::string_view t) { return decode(t, alphabet::standard, rules::lenient); };
    // `base64` without -w0 wraps its output at 76 columns.
    CHECK(lenient("Zm9v\nYmFy\n") == opt("foobar"));
    CHECK(lenient("Zm9v\r\nYmFy\r\n") == opt("foobar"));
    CHECK(lenient(" Zm9v YmFy ") == opt("foobar"));
    CHECK(lenient("Zm9vYg==\n") == opt("foob"));
    CHECK(lenient("Zm9v=YmFy") == opt("foobar"));
    CHECK(lenient("Z") == opt(""));
    CHECK(lenient("Zm9vY") == opt("foo"));
    CHECK(lenient("\n\n") == opt(""));
}
