#include "proxy/error_response.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <ctime>

namespace edge::proxy {

std::string_view status_code_name(unsigned status) noexcept {
    switch (status) {
    case 400: return "BAD_REQUEST";
    case 401: return "UNAUTHORIZED";
    case 403: return "FORBIDDEN";
    case 404: return "NOT_FOUND";
    case 405: return "METHOD_NOT_ALLOWED";
    case 408: return "REQUEST_TIMEOUT";
    case 413: return "PAYLOAD_TOO_LARGE";
    case 414: return "URI_TOO_LONG";
    case 431: return "REQUEST_HEADER_FIELDS_TOO_LARGE";
    case 500: return "INTERNAL_SERVER_ERROR";
    case 501: return "NOT_IMPLEMENTED";
    case 502: return "BAD_GATEWAY";
    case 503: return "SERVICE_UNAVAILABLE";
    case 504: return "GATEWAY_TIMEOUT";
    default: return status >= 500 ? "INTERNAL_SERVER_ERROR" : "BAD_REQUEST";
    }
}

namespace {
std::string rfc3339_now() {
    auto now = std::chrono::system_clock::now();
    auto t = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[40];
    auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms.count()));
    return buf;
}
} // namespace

std::string error_body(unsigned status, std::string_view message, std::string_view target,
                       std::string_view method, std::string_view request_id) {
    auto path = target.substr(0, target.find('?'));
    boost::json::object o;
    o["statusCode"] = status;
    o["message"] = message;
    o["code"] = status_code_name(status);
    o["timestamp"] = rfc3339_now();
    o["path"] = path;
    o["method"] = method;
    if (!request_id.empty())
        o["requestId"] = request_id;
    return boost::json::serialize(o);
}

} // namespace edge::proxy
