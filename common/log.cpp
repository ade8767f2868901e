#include "common/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace edge::log {
bool init(std::string_view level) {
    auto lvl = spdlog::level::from_str(std::string(level));
    if (lvl == spdlog::level::off && level != "off")
        return false;
    auto logger = spdlog::stderr_color_mt("edgegate");
    spdlog::set_default_logger(logger);
    spdlog::set_level(lvl);
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");
    return true;
}
} // namespace edge::log
