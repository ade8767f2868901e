#pragma once
// Query hygiene (contract §2): finding and removing one parameter of a request target without
// touching any other byte. Pure functions; no allocation except the returned strings.
#include <optional>
#include <string>
#include <string_view>

namespace edge::auth {

inline constexpr std::string_view auth_key_param = "DAYTONA_SANDBOX_AUTH_KEY";

// The decoded value of the first `name=value` pair of `target`'s query whose decoded name is
// `name` (as Go's url.Values.Get: '+' is a space, %XX decoded; a pair with a bad escape is
// skipped). nullopt when absent or empty.
std::optional<std::string> query_param(std::string_view target, std::string_view name);

// `target` without every pair named `name` (and the '&' that joined it); the path and every
// other pair keep their bytes and order. The '?' goes when nothing is left.
std::string remove_query_param(std::string_view target, std::string_view name);

// Percent-decoding as in a query ('+' → ' '); nullopt on a bad escape.
std::optional<std::string> query_unescape(std::string_view s);

// Percent-encoding for a query value (RFC 3986 unreserved kept; as Go's QueryEscape but
// spaces as %20).
std::string query_escape(std::string_view s);

} // namespace edge::auth
