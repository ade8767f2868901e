#include "proxy/http_metrics.hpp"

#include <catch2/catch.hpp>

#include <string>

using edge::proxy::http_metrics;
using edge::proxy::http_protocol;

TEST_CASE("http metrics: classes of methods and statuses") {
    CHECK(http_metrics::method_class("GET") == 0);
    CHECK(http_metrics::method_class("CONNECT") == 7);
    CHECK(http_metrics::method_class("get") == 8); // methods are case-sensitive: OTHER
    CHECK(http_metrics::method_class("PROPFIND") == 8);
    CHECK(http_metrics::status_class(0) == 0);
    CHECK(http_metrics::status_class(101) == 1);
    CHECK(http_metrics::status_class(404) == 4);
    CHECK(http_metrics::status_class(599) == 5);
    CHECK(http_metrics::status_class(600) == 0);
}

TEST_CASE("http metrics: an exchange counts once, with its durations and bytes") {
    edge::metrics::registry reg;
    http_metrics m(reg);
    m.done({.protocol = http_protocol::h2,
            .method = "POST",
            .status = 201,
            .duration = std::chrono::milliseconds(30),
            .upstream_duration = std::chrono::milliseconds(20),
            .bytes_in = 100,
            .bytes_out = 7});
    m.done({.protocol = http_protocol::h1, .method = "BREW", .status = 0});
    m.connection_opened(http_protocol::h2);
    m.stream_opened();
    auto text = reg.expose();
    CHECK(text.find("edgegate_http_requests_total{protocol=\"h2\",method=\"POST\","
                    "status_class=\"2xx\"} 1\n") != std::string::npos);
    CHECK(text.find("edgegate_http_requests_total{protocol=\"h1\",method=\"OTHER\","
                    "status_class=\"none\"} 1\n") != std::string::npos);
    CHECK(text.find("edgegate_http_request_duration_seconds_count{protocol=\"h2\"} 1\n") !=
          std::string::npos);
    CHECK(text.find("edgegate_http_upstream_duration_seconds_count{protocol=\"h2\"} 1\n") !=
          std::string::npos);
    CHECK(text.find("edgegate_http_upstream_duration_seconds_count{protocol=\"h1\"} 0\n") !=
          std::string::npos);
    CHECK(text.find("edgegate_http_request_body_bytes_total{protocol=\"h2\"} 100\n") !=
          std::string::npos);
    CHECK(text.find("edgegate_http_response_body_bytes_total{protocol=\"h2\"} 7\n") !=
          std::string::npos);
    CHECK(text.find("edgegate_http_connections{protocol=\"h2\"} 1\n") != std::string::npos);
    CHECK(text.find("edgegate_http2_streams 1\n") != std::string::npos);
}
