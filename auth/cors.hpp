#pragma once
// CORS for preview requests (contract §4). Unless the request says `X-Daytona-Disable-CORS:
// true`, a foreign Origin (not {protocol}://{Host}) is reflected with credentials, and a
// foreign-origin preflight is answered 204 by the proxy itself. Deviation (Daytona issue #3308):
// headers the sandbox app already set are never duplicated. Pure functions.
#include "auth/request.hpp"

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace edge::auth {

// The Origin to reflect, when CORS applies to this request (empty: nothing to do).
std::string_view foreign_origin(const request_view& v, std::string_view proxy_protocol);

// A foreign-origin OPTIONS with Access-Control-Request-Method: the 204 to answer without
// authentication or forwarding (browsers send preflights without credentials).
std::optional<response> cors_preflight(const request_view& v, std::string_view proxy_protocol);

// Fields to add to the upstream's response for a foreign-origin request: each one only when
// the upstream response (`upstream`) has no field of that name. Appended to `out`.
void cors_response_headers(const request_view& v, std::string_view proxy_protocol,
                           const header_lookup& upstream,
                           std::vector<std::pair<std::string, std::string>>& out);

} // namespace edge::auth
