#include "proxy/error_response.hpp"

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

TEST_CASE("error bodies are Daytona's JSON shape without the query", "[errors]") {
    auto body = edge::proxy::error_body(404, "sandbox x not found",
                                        "/a/b?DAYTONA_SANDBOX_AUTH_KEY=s3cret", "GET");
    CHECK(body.find("s3cret") == std::string::npos);
    auto v = boost::json::parse(body).as_object();
    CHECK(v.at("statusCode").to_number<int>() == 404);
    CHECK(v.at("message").as_string() == "sandbox x not found");
    CHECK(v.at("code").as_string() == "NOT_FOUND");
    CHECK(v.at("path").as_string() == "/a/b");
    CHECK(v.at("method").as_string() == "GET");
    std::string ts(v.at("timestamp").as_string());
    REQUIRE(ts.size() == 24);
    CHECK(ts[4] == '-');
    CHECK(ts[10] == 'T');
    CHECK(ts.back() == 'Z');
}

TEST_CASE("status names", "[errors]") {
    CHECK(edge::proxy::status_code_name(401) == "UNAUTHORIZED");
    CHECK(edge::proxy::status_code_name(502) == "BAD_GATEWAY");
    CHECK(edge::proxy::status_code_name(503) == "SERVICE_UNAVAILABLE");
    CHECK(edge::proxy::status_code_name(504) == "GATEWAY_TIMEOUT");
    CHECK(edge::proxy::status_code_name(400) == "BAD_REQUEST");
}
