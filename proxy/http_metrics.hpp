#pragma once
// The HTTP side's metric families, ready for the sessions and the exchange to feed: one object
// per worker (its thread only; make it once, e.g. in worker_context). Handles come from the
// global registry, made the first time a label combination is seen, so an exchange costs a few
// array lookups and ~1 ns adds. Labels are bounded: protocol, method class, status class.
//
//     http_metrics m;                                  // per worker
//     m.connection_opened(http_protocol::h1);  ...  m.connection_closed(http_protocol::h1);
//     m.stream_opened();  ...  m.stream_closed();      // HTTP/2 streams
//     m.done({.protocol = http_protocol::h2, .method = "GET", .status = 200,
//             .duration = end - start, .upstream_duration = head_at - sent_at,
//             .bytes_in = body_in, .bytes_out = body_out});
//
// Families (docs/operations.md):
//   edgegate_http_requests_total{protocol,method,status_class}    counter
//   edgegate_http_request_duration_seconds{protocol}              histogram
//   edgegate_http_upstream_duration_seconds{protocol}             histogram (to the runner's head)
//   edgegate_http_request_body_bytes_total{protocol}              counter (client → edgegate)
//   edgegate_http_response_body_bytes_total{protocol}             counter (edgegate → client)
//   edgegate_http_connections{protocol}                           gauge (h1, h2)
//   edgegate_http2_streams                                        gauge
//   edgegate_websockets{protocol}                                 gauge (open tunnels, h1/h2)
// protocol: h1, h2, ws (a WebSocket tunnel's exchange, counted when it ends); method: GET HEAD
// POST PUT PATCH DELETE OPTIONS CONNECT OTHER; status_class: 1xx..5xx, or none when no response
// was sent (the client went away first).
#include "common/metrics.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <string_view>

namespace edge::proxy {

enum class http_protocol : std::uint8_t { h1, h2, ws };

class http_metrics {
  public:
    struct exchange {
        http_protocol protocol = http_protocol::h1;
        std::string_view method;
        unsigned status = 0; // 0: no response sent
        std::chrono::nanoseconds duration{0};
        std::chrono::nanoseconds upstream_duration{-1}; // < 0: the exchange had no upstream
        std::uint64_t bytes_in = 0;
        std::uint64_t bytes_out = 0;
    };

    explicit http_metrics(metrics::registry& reg = metrics::global());

    void done(const exchange& e);
    void connection_opened(http_protocol p) { connections_[idx(p)].inc(); }
    void connection_closed(http_protocol p) { connections_[idx(p)].dec(); }
    void stream_opened() { streams_.inc(); }
    void stream_closed() { streams_.dec(); }
    // A WebSocket tunnel over HTTP/1.1 (Upgrade) or HTTP/2 (extended CONNECT).
    void websocket_opened(http_protocol over) { websockets_[idx(over)].inc(); }
    void websocket_closed(http_protocol over) { websockets_[idx(over)].dec(); }

    // Label value helpers (exposed for tests).
    static unsigned method_class(std::string_view method) noexcept;
    static unsigned status_class(unsigned status) noexcept; // 0: none, 1..5

  private:
    static constexpr unsigned protocols = 3, methods = 9, statuses = 6;
    static unsigned idx(http_protocol p) noexcept { return static_cast<unsigned>(p); }

    metrics::registry& reg_;
    std::array<metrics::counter, protocols * methods * statuses> requests_{};
    std::array<bool, protocols * methods * statuses> made_{};
    std::array<metrics::histogram, protocols> duration_, upstream_;
    std::array<metrics::counter, protocols> bytes_in_, bytes_out_;
    std::array<metrics::gauge, protocols> connections_, websockets_;
    metrics::gauge streams_;
};

} // namespace edge::proxy
