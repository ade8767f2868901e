#include "auth/api_route_source.hpp"

#include <catch2/catch.hpp>

using edge::routing::lookup_status;

TEST_CASE("a RunnerFull answer becomes a route to its proxyUrl", "[api]") {
    auto r = edge::auth::parse_runner(
        R"({"id":"r1","domain":"runner1.internal","apiUrl":"http://runner1.internal:3000",
            "proxyUrl":"http://runner1.internal:3003/base/","apiKey":"k1","state":"ready"})");
    REQUIRE(r.status == lookup_status::found);
    CHECK(r.route->host == "runner1.internal");
    CHECK(r.route->port == 3003);
    CHECK(r.route->base_path == "/base");
    CHECK(r.route->api_key == "k1");
    CHECK(r.route->host_port == "runner1.internal:3003");
    CHECK(r.route->domain == "runner1.internal");
}

TEST_CASE("runners without proxyUrl are reached on apiUrl", "[api]") {
    auto r = edge::auth::parse_runner(R"({"apiUrl":"http://10.1.2.3:3000","apiKey":"k"})");
    REQUIRE(r.status == lookup_status::found);
    CHECK(r.route->port == 3000);
}

TEST_CASE("unusable runner answers are unavailable, not found", "[api]") {
    CHECK(edge::auth::parse_runner("<html>").status == lookup_status::unavailable);
    CHECK(edge::auth::parse_runner(R"({"proxyUrl":"runner:3000"})").status ==
          lookup_status::unavailable);
    CHECK(edge::auth::parse_runner("[]").status == lookup_status::unavailable);
}
