#include "proxy/http_metrics.hpp"

namespace edge::proxy {
namespace {
constexpr std::string_view protocol_names[] = {"h1", "h2", "ws"};
constexpr std::string_view method_names[] = {"GET",     "HEAD",    "POST",
                                             "PUT",     "PATCH",   "DELETE",
                                             "OPTIONS", "CONNECT", "OTHER"};
constexpr std::string_view status_names[] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
} // namespace

unsigned http_metrics::method_class(std::string_view m) noexcept {
    for (unsigned i = 0; i + 1 < methods; ++i)
        if (m == method_names[i])
            return i;
    return methods - 1;
}

unsigned http_metrics::status_class(unsigned status) noexcept {
    return status >= 100 && status < 600 ? status / 100 : 0;
}

http_metrics::http_metrics(metrics::registry& reg) : reg_(reg) {
    for (unsigned p = 0; p < protocols; ++p) {
        const metrics::label l{"protocol", protocol_names[p]};
        duration_[p] = reg.histogram("edgegate_http_request_duration_seconds",
                                     "Time from a request's head to the end of its response",
                                     {l});
        upstream_[p] = reg.histogram(
            "edgegate_http_upstream_duration_seconds",
            "Time from a request forwarded to a runner to the runner's response head", {l});
        bytes_in_[p] = reg.counter("edgegate_http_request_body_bytes_total",
                                   "Request body bytes received from clients", {l});
        bytes_out_[p] = reg.counter("edgegate_http_response_body_bytes_total",
                                    "Response body bytes sent to clients", {l});
        if (p != idx(http_protocol::ws)) {
            connections_[p] = reg.gauge("edgegate_http_connections",
                                        "Open HTTP client connections by protocol", {l});
            websockets_[p] = reg.gauge("edgegate_websockets",
                                       "Open WebSocket tunnels by the protocol they came over",
                                       {l});
        }
    }
    streams_ = reg.gauge("edgegate_http2_streams", "Open HTTP/2 streams", {});
}

void http_metrics::done(const exchange& e) {
    const unsigned p = idx(e.protocol) % protocols;
    const unsigned m = method_class(e.method);
    const unsigned s = status_class(e.status);
    const unsigned i = (p * methods + m) * statuses + s;
    if (!made_[i]) {
        made_[i] = true;
        requests_[i] = reg_.counter("edgegate_http_requests_total",
                                    "HTTP exchanges by protocol, method and status class "
                                    "(none: no response was sent)",
                                    {{"protocol", protocol_names[p]},
                                     {"method", method_names[m]},
                                     {"status_class", status_names[s]}});
    }
    requests_[i].inc();
    duration_[p].observe(e.duration);
    if (e.upstream_duration.count() >= 0)
        upstream_[p].observe(e.upstream_duration);
    if (e.bytes_in)
        bytes_in_[p].inc(e.bytes_in);
    if (e.bytes_out)
        bytes_out_[p].inc(e.bytes_out);
}

} // namespace edge::proxy
