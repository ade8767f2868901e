#pragma once
// Process-wide logging setup. Code logs through spdlog directly (in .cpp files only, to keep
// headers light). Never log a token, key, cookie, Authorization value or authenticated query.
#include <string_view>

namespace edge::log {
// Returns false when `level` is not one of trace, debug, info, warn, error, off.
bool init(std::string_view level);
} // namespace edge::log
