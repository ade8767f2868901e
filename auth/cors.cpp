#include "auth/cors.hpp"

namespace edge::auth {
namespace {
bool cors_disabled(const header_lookup& h) {
    auto v = h.first("X-Daytona-Disable-CORS");
    return v && iequals(*v, "true");
}
} // namespace

std::string_view foreign_origin(const request_view& v, std::string_view proxy_protocol) {
    if (!v.headers || cors_disabled(*v.headers))
        return {};
    auto origin = v.headers->first("Origin");
    if (!origin || origin->empty())
        return {};
    // Same origin: {protocol}://{Host}.
    auto o = *origin;
    if (o.size() == proxy_protocol.size() + 3 + v.host.size() && o.starts_with(proxy_protocol) &&
        o.substr(proxy_protocol.size(), 3) == "://" &&
        iequals(o.substr(proxy_protocol.size() + 3), v.host))
        return {};
    return o;
}

std::optional<response> cors_preflight(const request_view& v, std::string_view proxy_protocol) {
    if (v.method != "OPTIONS" || !v.headers)
        return std::nullopt;
    auto origin = foreign_origin(v, proxy_protocol);
    if (origin.empty() || !v.headers->first("Access-Control-Request-Method"))
        return std::nullopt;
    response r;
    r.status = 204;
    r.headers.emplace_back("Access-Control-Allow-Origin", std::string(origin));
    r.headers.emplace_back("Access-Control-Allow-Credentials", "true");
    r.headers.emplace_back("Access-Control-Allow-Methods", "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS");
    std::string requested;
    v.headers->any("Access-Control-Request-Headers", [&](std::string_view h) {
        if (!requested.empty())
            requested.append(", ");
        requested.append(h);
        return false;
    });
    if (!requested.empty())
        r.headers.emplace_back("Access-Control-Allow-Headers", std::move(requested));
    r.headers.emplace_back("Access-Control-Max-Age", "43200");
    r.headers.emplace_back("Vary",
                           "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
    return r;
}

void cors_response_headers(const request_view& v, std::string_view proxy_protocol,
                           const header_lookup& upstream,
                           std::vector<std::pair<std::string, std::string>>& out) {
    auto origin = foreign_origin(v, proxy_protocol);
    if (origin.empty())
        return;
    // The app answered CORS itself: its policy stands, nothing is added or duplicated.
    if (upstream.first("Access-Control-Allow-Origin"))
        return;
    out.emplace_back("Access-Control-Allow-Origin", std::string(origin));
    if (!upstream.first("Access-Control-Allow-Credentials"))
        out.emplace_back("Access-Control-Allow-Credentials", "true");
    bool vary_origin = upstream.any("Vary", [](std::string_view val) {
        return val.find('*') != std::string_view::npos ||
               val.find("Origin") != std::string_view::npos ||
               val.find("origin") != std::string_view::npos;
    });
    if (!vary_origin)
        out.emplace_back("Vary", "Origin");
}

} // namespace edge::auth
