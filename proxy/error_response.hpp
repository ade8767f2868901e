#pragma once
// The JSON body of every error edgegate makes itself (contract §4):
// {"statusCode":N,"message":"...","code":"NOT_FOUND","timestamp":"RFC3339","path":"/x","method":"GET",
//  "requestId":"..."} (requestId is edgegate's addition: the X-Request-Id of the exchange)
#include <string>
#include <string_view>

namespace edge::proxy {

// NOT_FOUND, UNAUTHORIZED, BAD_GATEWAY, ... for a status code.
std::string_view status_code_name(unsigned status) noexcept;

// `target` is the request target; only its path (never the query) goes into the body.
// `request_id` (the exchange's X-Request-Id), when given, is added as "requestId".
std::string error_body(unsigned status, std::string_view message, std::string_view target,
                       std::string_view method, std::string_view request_id = {});

} // namespace edge::proxy
