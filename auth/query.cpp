#include "auth/query.hpp"

namespace edge::auth {
namespace {
int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// Does the pair's (encoded) name decode to `name`? Cheap when it is plainly spelled.
bool name_matches(std::string_view pair, std::string_view name) {
    auto eq = pair.find('=');
    auto raw = pair.substr(0, eq);
    if (raw == name)
        return true;
    if (raw.find('%') == std::string_view::npos && raw.find('+') == std::string_view::npos)
        return false;
    auto decoded = query_unescape(raw);
    return decoded && *decoded == name;
}
} // namespace

std::optional<std::string> query_unescape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '+') {
            out.push_back(' ');
        } else if (c == '%') {
            if (i + 2 >= s.size())
                return std::nullopt;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return std::nullopt;
            out.push_back(static_cast<char>(hi * 16 + lo));
            i += 2;
        } else {
            out.push_back(c);
        }
    }
    return out;
}

std::string query_escape(std::string_view s) {
    static constexpr char digits[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (unsigned char c : s) {
        bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~';
        if (keep) {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(digits[c >> 4]);
            out.push_back(digits[c & 15]);
        }
    }
    return out;
}

std::optional<std::string> query_param(std::string_view target, std::string_view name) {
    auto q = target.find('?');
    if (q == std::string_view::npos)
        return std::nullopt;
    std::string_view rest = target.substr(q + 1);
    while (true) {
        auto amp = rest.find('&');
        auto pair = rest.substr(0, amp);
        if (!pair.empty() && name_matches(pair, name)) {
            auto eq = pair.find('=');
            auto value = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
            auto decoded = query_unescape(value);
            if (decoded) // Go drops a pair whose value does not decode and reads on
                return decoded->empty() ? std::nullopt : std::optional<std::string>(*decoded);
        }
        if (amp == std::string_view::npos)
            return std::nullopt;
        rest = rest.substr(amp + 1);
    }
}

std::string remove_query_param(std::string_view target, std::string_view name) {
    auto q = target.find('?');
    if (q == std::string_view::npos)
        return std::string(target);
    std::string out(target.substr(0, q));
    std::string_view rest = target.substr(q + 1);
    bool first = true;
    bool removed = false;
    while (true) {
        auto amp = rest.find('&');
        auto pair = rest.substr(0, amp);
        if (pair.empty() || !name_matches(pair, name)) {
            out.push_back(first ? '?' : '&');
            out.append(pair);
            first = false;
        } else {
            removed = true;
        }
        if (amp == std::string_view::npos)
            break;
        rest = rest.substr(amp + 1);
    }
    if (!removed)
        return std::string(target);
    // Only empty pairs left ("?", "?&"): no query at all, as Go's RawQuery = "".
    if (out.find_first_not_of('&', q + 1) == std::string::npos)
        out.resize(q);
    return out;
}

} // namespace edge::auth
