#pragma once
// Cookies minted by edgegate (contract §3, §4): the sandbox auth cookie
// `daytona-sandbox-auth-{idOrToken}`, the login's `pkce_verifier`, and the preview warning's
// `daytona-preview-page-accepted`. Signed values are ours (a deviation Daytona's contract
// allows): `v1.{expiry}.{payload}.{mac}`, mac = base64url(HMAC-SHA256(key,
// "{cookie name}|{payload}|{expiry}")), compared in constant time. Binding the cookie name
// into the MAC means a cookie minted for sandbox A cannot be renamed into one for sandbox B.
// Pure functions; thread-safe.
#include "auth/key_holder.hpp"
#include "auth/request.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace edge::auth {

inline constexpr std::string_view sandbox_cookie_prefix = "daytona-sandbox-auth-";
inline constexpr std::string_view pkce_cookie = "pkce_verifier";
inline constexpr std::string_view warning_cookie = "daytona-preview-page-accepted";
inline constexpr std::chrono::seconds sandbox_cookie_ttl{3600};
inline constexpr std::chrono::seconds pkce_cookie_ttl{300};
inline constexpr std::chrono::seconds warning_cookie_ttl{86400};

std::string sandbox_cookie_name(std::string_view id_or_token);

// `payload` must be made of cookie-safe characters without '.' (ids, base64url).
std::string sign_value(std::string_view key, std::string_view cookie_name, std::string_view payload,
                       std::int64_t expiry_unix);

// The payload of a value signed with one of `keys` (current, then previous) whose expiry is
// after `now_unix`; nullopt otherwise.
std::optional<std::string> verify_value(const key_set& keys, std::string_view cookie_name,
                                        std::string_view value, std::int64_t now_unix);

// Calls `f(value)` for every cookie named `name` in every Cookie field until f returns true.
template <class F> bool for_each_cookie(const header_lookup& h, std::string_view name, F&& f) {
    return h.any("Cookie", [&](std::string_view line) {
        while (!line.empty()) {
            auto semi = line.find(';');
            auto part = line.substr(0, semi);
            while (!part.empty() && (part.front() == ' ' || part.front() == '\t'))
                part.remove_prefix(1);
            auto eq = part.find('=');
            if (eq != std::string_view::npos && part.substr(0, eq) == name) {
                auto v = part.substr(eq + 1);
                while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
                    v.remove_suffix(1);
                if (v.size() >= 2 && v.front() == '"' && v.back() == '"')
                    v = v.substr(1, v.size() - 2);
                if (f(v))
                    return true;
            }
            if (semi == std::string_view::npos)
                break;
            line.remove_prefix(semi + 1);
        }
        return false;
    });
}

// The first cookie named `name`, if any.
std::optional<std::string_view> find_cookie(const header_lookup& h, std::string_view name);

struct cookie_policy {
    bool secure = false;       // PROXY_PROTOCOL=https
    std::string cookie_domain; // COOKIE_DOMAIN; empty: derived from the host
};

// The Domain attribute for cookies set while serving `host` (port ignored): COOKIE_DOMAIN
// when set, else the host itself (Daytona's ".{host}"; browsers ignore the leading dot).
// Empty (host-only cookie) for IP literals and single-label hosts, where browsers refuse a
// Domain attribute.
std::string cookie_domain(const cookie_policy& p, std::string_view host);

// `name=value; Path=/; Domain=d; Max-Age=n; HttpOnly; Secure; SameSite=Lax`. max_age 0
// deletes (Max-Age=0).
std::string set_cookie(std::string_view name, std::string_view value, std::string_view domain,
                       std::chrono::seconds max_age, bool secure, bool http_only = true);

std::int64_t unix_now();

} // namespace edge::auth
