#include "auth/cookies.hpp"
#include "auth/crypto.hpp"
#include "auth/key_holder.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <unistd.h>

using namespace edge::auth;

namespace {
const std::string key_a = "dtn_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const std::string key_b = "dtn_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const std::string sid = "4be4ac5c-1048-423f-8460-37cc95c6a1af";
} // namespace

TEST_CASE("crypto helpers match their RFC vectors", "[auth][crypto]") {
    CHECK(hex(sha256("abc")) ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    // RFC 4231 test case 2
    CHECK(hex(hmac_sha256("Jefe", "what do ya want for nothing?")) ==
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    CHECK(base64url("\xfb\xff") == "-_8");
    CHECK(base64url_padded("\xfb\xff") == "-_8=");
    CHECK(base64url_decode("-_8=") == std::optional<std::string>("\xfb\xff"));
    CHECK(base64url_decode("-_8") == std::optional<std::string>("\xfb\xff"));
    CHECK_FALSE(base64url_decode("a+b/"));
    CHECK(constant_time_equal("abc", "abc"));
    CHECK_FALSE(constant_time_equal("abc", "abd"));
    CHECK_FALSE(constant_time_equal("abc", "abcd"));
    CHECK(random_bytes(32).size() == 32);
    CHECK(random_bytes(16) != random_bytes(16));
}

TEST_CASE("signed cookie values verify, expire and bind their name", "[auth][cookie]") {
    const auto name = sandbox_cookie_name(sid);
    CHECK(name == "daytona-sandbox-auth-" + sid);
    const std::int64_t now = 1'800'000'000;
    const auto v = sign_value(key_a, name, sid, now + 3600);
    key_set keys{key_a, {}};
    CHECK(verify_value(keys, name, v, now) == std::optional<std::string>(sid));
    CHECK(verify_value(keys, name, v, now + 3599) == std::optional<std::string>(sid));

    SECTION("expired") { CHECK_FALSE(verify_value(keys, name, v, now + 3600)); }
    SECTION("another key") { CHECK_FALSE(verify_value(key_set{key_b, {}}, name, v, now)); }
    SECTION("renamed to another sandbox's cookie") {
        CHECK_FALSE(verify_value(keys, sandbox_cookie_name("other-sandbox"), v, now));
    }
    SECTION("tampered payload, expiry or MAC") {
        auto other = v;
        other.replace(other.find(sid), sid.size(), "55bde3c7-45b0-4f2e-afe1-6ceff67ef72d");
        CHECK_FALSE(verify_value(keys, name, other, now));
        auto later = v;
        later.replace(3, 10, std::to_string(now + 999999));
        CHECK_FALSE(verify_value(keys, name, later, now));
        auto mac = v;
        mac.back() = mac.back() == 'A' ? 'B' : 'A';
        CHECK_FALSE(verify_value(keys, name, mac, now));
    }
    SECTION("garbage") {
        for (std::string g : std::vector<std::string>{"", "v1.", "v1..", "v2.1.a.b", "true", "v1.x.y.z", sid})
            CHECK_FALSE(verify_value(keys, name, g, now));
    }
    SECTION("after a rotation the previous key still verifies until expiry") {
        key_set rotated{key_b, key_a};
        CHECK(verify_value(rotated, name, v, now) == std::optional<std::string>(sid));
        CHECK_FALSE(verify_value(rotated, name, v, now + 3600));
        key_set twice{"dtn_c", key_b};
        CHECK_FALSE(verify_value(twice, name, v, now));
    }
}

TEST_CASE("Set-Cookie lines carry the contract's attributes", "[auth][cookie]") {
    CHECK(set_cookie("n", "v", ".proxy.example.com", std::chrono::seconds(3600), true) ==
          "n=v; Path=/; Domain=proxy.example.com; Max-Age=3600; HttpOnly; Secure; SameSite=Lax");
    CHECK(set_cookie("n", "", "", std::chrono::seconds(0), false) ==
          "n=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
}

TEST_CASE("cookie domains follow COOKIE_DOMAIN, else the host", "[auth][cookie]") {
    cookie_policy none;
    CHECK(cookie_domain(none, "proxy.example.com:4000") == ".proxy.example.com");
    CHECK(cookie_domain(none, "proxy.example.com") == ".proxy.example.com");
    CHECK(cookie_domain(none, "127.0.0.1:4000") == "");
    CHECK(cookie_domain(none, "[::1]:4000") == "");
    CHECK(cookie_domain(none, "localhost:4000") == "");
    cookie_policy set{false, ".example.com"};
    CHECK(cookie_domain(set, "proxy.example.com:4000") == ".example.com");
}

TEST_CASE("cookies are found across several Cookie fields", "[auth][cookie]") {
    pair_header_lookup::pairs p{{"Cookie", "a=1; daytona-sandbox-auth-x=first"},
                                {"cookie", "b=2;daytona-sandbox-auth-x=\"second\" "},
                                {"Cookie", "daytona-sandbox-auth-xy=other"}};
    pair_header_lookup h(p);
    std::vector<std::string> seen;
    for_each_cookie(h, "daytona-sandbox-auth-x", [&](std::string_view v) {
        seen.emplace_back(v);
        return false;
    });
    CHECK(seen == std::vector<std::string>{"first", "second"});
    CHECK(find_cookie(h, "b") == std::optional<std::string_view>("2"));
    CHECK_FALSE(find_cookie(h, "daytona-sandbox-auth-"));
}

namespace {
std::string temp_key_file(const std::string& text) {
    char name[] = "/tmp/edgegate-key-XXXXXX";
    int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    ::close(fd);
    std::ofstream(name) << text;
    return name;
}
} // namespace

TEST_CASE("key_holder re-reads its file and keeps the previous key", "[auth][keys]") {
    auto path = temp_key_file(key_a + "\n");
    key_holder k("PROXY_API_KEY", "ignored", path, std::chrono::milliseconds(0));
    CHECK(k.key() == key_a);
    CHECK(k.reload() == key_holder::reload_result::unchanged);

    std::ofstream(path) << key_b;
    CHECK(k.reload() == key_holder::reload_result::changed);
    CHECK(k.key() == key_b);
    CHECK(k.keys()->previous == key_a);

    SECTION("an empty or missing file keeps the key") {
        std::ofstream(path) << "\n";
        CHECK(k.reload() == key_holder::reload_result::failed);
        CHECK(k.key() == key_b);
        std::remove(path.c_str());
        CHECK(k.reload() == key_holder::reload_result::failed);
        CHECK(k.key() == key_b);
    }
    SECTION("check_file notices a change (size differs)") {
        std::ofstream(path) << key_a << "-rotated";
        CHECK(k.check_file() == key_holder::reload_result::changed);
        CHECK(k.key() == key_a + "-rotated");
        CHECK(k.check_file() == key_holder::reload_result::unchanged);
        std::remove(path.c_str());
    }
    SECTION("a snapshot taken before a rotation stays whole") {
        auto snap = k.keys();
        std::ofstream(path) << "dtn_third";
        CHECK(k.reload() == key_holder::reload_result::changed);
        CHECK(snap->current == key_b);
        CHECK(k.keys()->previous == key_b);
        std::remove(path.c_str());
    }
    CHECK(key_holder("X", "plain").reload() == key_holder::reload_result::no_file);
    CHECK_THROWS(key_holder("X", "", "/nonexistent/key"));
}

TEST_CASE("fields_lookup reads any range of name/value fields", "[auth][request]") {
    struct field {
        std::string_view name, value;
    };
    std::vector<field> fields{{"Host", "x"}, {"cookie", "a=1"}, {"COOKIE", "b=2"}};
    fields_lookup<std::vector<field>> h(fields);
    CHECK(h.first("cookie") == std::optional<std::string_view>("a=1"));
    CHECK_FALSE(h.first("Accept"));
    CHECK(find_cookie(h, "b") == std::optional<std::string_view>("2"));
    int n = 0;
    h.any("Cookie", [&](std::string_view) { return ++n == 5; });
    CHECK(n == 2);
}
