#include "auth/cookies.hpp"

#include "auth/crypto.hpp"

#include <charconv>

namespace edge::auth {
namespace {
digest mac_of(std::string_view key, std::string_view cookie_name, std::string_view payload,
              std::string_view expiry) {
    return hmac_sha256(key, {cookie_name, "|", payload, "|", expiry});
}

std::string mac_text(const digest& d) {
    return base64url(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}
} // namespace

std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string sandbox_cookie_name(std::string_view id_or_token) {
    std::string n(sandbox_cookie_prefix);
    n.append(id_or_token);
    return n;
}

std::string sign_value(std::string_view key, std::string_view cookie_name, std::string_view payload,
                       std::int64_t expiry_unix) {
    const auto expiry = std::to_string(expiry_unix);
    std::string v = "v1.";
    v.append(expiry).push_back('.');
    v.append(payload).push_back('.');
    v.append(mac_text(mac_of(key, cookie_name, payload, expiry)));
    return v;
}

std::optional<std::string> verify_value(const key_set& keys, std::string_view cookie_name,
                                        std::string_view value, std::int64_t now_unix) {
    if (!value.starts_with("v1."))
        return std::nullopt;
    value.remove_prefix(3);
    auto dot1 = value.find('.');
    auto dot2 = value.rfind('.');
    if (dot1 == std::string_view::npos || dot2 == dot1)
        return std::nullopt;
    auto exp_text = value.substr(0, dot1);
    auto payload = value.substr(dot1 + 1, dot2 - dot1 - 1);
    auto mac = base64url_decode(value.substr(dot2 + 1));
    std::int64_t expiry = 0;
    auto [p, ec] = std::from_chars(exp_text.data(), exp_text.data() + exp_text.size(), expiry);
    if (ec != std::errc{} || p != exp_text.data() + exp_text.size() || expiry <= now_unix ||
        !mac || mac->size() != 32)
        return std::nullopt;
    for (const std::string* k : {&keys.current, &keys.previous}) {
        if (k->empty())
            continue;
        auto d = mac_of(*k, cookie_name, payload, exp_text);
        if (constant_time_equal({reinterpret_cast<const char*>(d.data()), d.size()}, *mac))
            return std::string(payload);
    }
    return std::nullopt;
}

std::optional<std::string_view> find_cookie(const header_lookup& h, std::string_view name) {
    std::optional<std::string_view> out;
    for_each_cookie(h, name, [&](std::string_view v) {
        out = v;
        return true;
    });
    return out;
}

std::string cookie_domain(const cookie_policy& p, std::string_view host) {
    if (!p.cookie_domain.empty())
        return p.cookie_domain;
    if (!host.empty() && host.front() == '[')
        return {}; // IPv6 literal
    host = host.substr(0, host.find(':'));
    if (host.find('.') == std::string_view::npos)
        return {};
    bool ip = host.find_first_not_of("0123456789.") == std::string_view::npos;
    if (ip)
        return {};
    return "." + std::string(host);
}

std::string set_cookie(std::string_view name, std::string_view value, std::string_view domain,
                       std::chrono::seconds max_age, bool secure, bool http_only) {
    std::string s;
    s.reserve(name.size() + value.size() + domain.size() + 80);
    s.append(name).push_back('=');
    s.append(value);
    s.append("; Path=/");
    if (!domain.empty()) {
        s.append("; Domain=");
        // RFC 6265 ignores a leading dot; Go strips it when writing, so do we.
        s.append(domain.starts_with('.') ? domain.substr(1) : domain);
    }
    s.append("; Max-Age=").append(std::to_string(max_age.count()));
    if (http_only)
        s.append("; HttpOnly");
    if (secure)
        s.append("; Secure");
    s.append("; SameSite=Lax");
    return s;
}

} // namespace edge::auth
