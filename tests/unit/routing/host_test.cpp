#include "routing/host.hpp"

#include <catch2/catch.hpp>

using edge::routing::host_kind;
using edge::routing::parse_host;
using edge::routing::parse_toolbox_path;

TEST_CASE("preview hosts follow Daytona's {port}-{id}.{base} rule", "[host]") {
    struct row {
        const char* host;
        host_kind kind;
        unsigned port;
        const char* id;
        const char* base;
    };
    const row rows[] = {
        {"3000-abc.proxy.example.com", host_kind::preview, 3000, "abc", "proxy.example.com"},
        {"3000-abc.proxy.example.com:4000", host_kind::preview, 3000, "abc",
         "proxy.example.com:4000"},
        {"3000-abc-def.proxy.example.com", host_kind::preview, 3000, "abc-def",
         "proxy.example.com"},
        {"1-x.y", host_kind::preview, 1, "x", "y"},
        {"65535-x.y", host_kind::preview, 65535, "x", "y"},
        {"03000-abc.x", host_kind::preview, 3000, "abc", "x"},
        // Case is kept: signed preview tokens are case-sensitive; browsers send lower case.
        {"3000-ABC.Proxy.Example.COM", host_kind::preview, 3000, "ABC", "Proxy.Example.COM"},
        // A trailing dot (fully qualified name) stays on the base host.
        {"3000-abc.proxy.example.com.", host_kind::preview, 3000, "abc", "proxy.example.com."},
        {"abc.proxy.example.com", host_kind::base, 0, "", ""},
        {"localhost:4000", host_kind::base, 0, "", ""},
        {"localhost", host_kind::base, 0, "", ""},
        {"127.0.0.1:4000", host_kind::base, 0, "", ""},
        {"[::1]:4000", host_kind::base, 0, "", ""},
        {"[::ffff:127.0.0.1]:4000", host_kind::base, 0, "", ""},
        {"", host_kind::base, 0, "", ""},
        {"edge-proxy.example.com", host_kind::base, 0, "", ""},
        {"3000-abc.", host_kind::base, 0, "", ""},
        {"-abc.x", host_kind::invalid, 0, "", ""},
        {"99999-abc.x", host_kind::invalid, 0, "", ""},
        {"65536-abc.x", host_kind::invalid, 0, "", ""},
        {"0-abc.x", host_kind::invalid, 0, "", ""},
        {"99999999999999999999-abc.x", host_kind::invalid, 0, "", ""},
        {"3000-.x", host_kind::invalid, 0, "", ""},
        {"3000-a/b.x", host_kind::invalid, 0, "", ""},
        {"3000-a%2F.x", host_kind::invalid, 0, "", ""},
    };
    for (auto& r : rows) {
        CAPTURE(r.host);
        auto t = parse_host(r.host);
        CHECK(t.kind == r.kind);
        if (r.kind == host_kind::preview) {
            CHECK(t.port == r.port);
            CHECK(t.id == r.id);
            CHECK(t.base_host == r.base);
        }
        if (r.kind == host_kind::invalid)
            CHECK_FALSE(t.error.empty());
    }
}

TEST_CASE("toolbox paths need an id and a slash after it", "[host]") {
    auto t = parse_toolbox_path("/toolbox/abc/files?path=%2Ftmp");
    REQUIRE(t);
    CHECK(t->id == "abc");
    CHECK(t->rest == "/files?path=%2Ftmp");

    auto root = parse_toolbox_path("/toolbox/abc/");
    REQUIRE(root);
    CHECK(root->rest == "/");

    CHECK_FALSE(parse_toolbox_path("/toolbox/abc"));
    CHECK_FALSE(parse_toolbox_path("/toolbox/abc?x=1"));
    CHECK_FALSE(parse_toolbox_path("/toolbox/"));
    CHECK_FALSE(parse_toolbox_path("/toolbox//x"));
    CHECK_FALSE(parse_toolbox_path("/toolboxes/abc/x"));
}
