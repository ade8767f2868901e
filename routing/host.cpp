#include "routing/host.hpp"

#include <algorithm>

namespace edge::routing {

host_target parse_host(std::string_view host) noexcept {
    host_target t;
    if (host.empty() || host.front() == '[')
        return t;
    auto dot = host.find('.');
    if (dot == std::string_view::npos || dot + 1 >= host.size())
        return t;
    auto label = host.substr(0, dot);
    auto dash = label.find('-');
    if (dash == std::string_view::npos)
        return t;
    auto port = label.substr(0, dash);
    auto id = label.substr(dash + 1);
    bool digits =
        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits)
        return t; // a hyphenated base host
    t.kind = host_kind::invalid;
    if (port.empty()) {
        t.error = "the preview host has no port before '-' (expected {port}-{sandboxId}.{domain})";
        return t;
    }
    unsigned long value = 0;
    for (char c : port) {
        value = value * 10 + static_cast<unsigned>(c - '0');
        if (value > 65535)
            break;
    }
    if (value < 1 || value > 65535) {
        t.error = "the preview port must be a number from 1 to 65535";
        return t;
    }
    if (id.empty()) {
        t.error =
            "the preview host has no sandbox id after '-' (expected {port}-{sandboxId}.{domain})";
        return t;
    }
    if (!valid_id(id)) {
        t.error = "the sandbox id in the preview host has characters other than letters, digits, "
                  "'-' and '_'";
        return t;
    }
    t.kind = host_kind::preview;
    t.port = static_cast<std::uint16_t>(value);
    t.id = id;
    t.base_host = host.substr(dot + 1);
    return t;
}

bool valid_id(std::string_view id) noexcept {
    return !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_';
    });
}

std::optional<toolbox_target> parse_toolbox_path(std::string_view target) noexcept {
    constexpr std::string_view prefix = "/toolbox/";
    if (target.substr(0, prefix.size()) != prefix)
        return std::nullopt;
    auto after = target.substr(prefix.size());
    auto slash = after.find_first_of("/?");
    if (slash == std::string_view::npos || after[slash] != '/' || slash == 0)
        return std::nullopt;
    return toolbox_target{after.substr(0, slash), after.substr(slash)};
}

} // namespace edge::routing
