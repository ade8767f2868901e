#include "auth/request.hpp"

namespace edge::auth {

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = static_cast<char>(y - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

std::optional<std::string_view> pair_header_lookup::first(std::string_view name) const {
    for (auto& [k, v] : p_)
        if (iequals(k, name))
            return std::string_view(v);
    return std::nullopt;
}

bool pair_header_lookup::each_value(std::string_view name, void* ctx,
                                    bool (*f)(void*, std::string_view)) const {
    for (auto& [k, v] : p_)
        if (iequals(k, name) && f(ctx, v))
            return true;
    return false;
}

bool accepts_html(const header_lookup& h) {
    return h.any("Accept", [](std::string_view v) {
        return v.find("text/html") != std::string_view::npos;
    });
}

} // namespace edge::auth
