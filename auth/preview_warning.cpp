#include "auth/preview_warning.hpp"

#include "auth/cookies.hpp"
#include "auth/query.hpp"

#include <boost/url/parse.hpp>

namespace edge::auth {

bool is_browser(std::string_view ua) noexcept {
    if (!ua.starts_with("Mozilla/"))
        return false;
    static constexpr std::string_view marks[] = {"Chrome/",  "Chromium/", "Firefox/",
                                                 "Safari/",  "Edg/",      "OPR/",
                                                 "Opera",    "SamsungBrowser/", "Vivaldi/",
                                                 "Brave"};
    for (auto m : marks)
        if (ua.find(m) != std::string_view::npos)
            return true;
    return false;
}

bool wants_preview_warning(const request_view& v, bool enabled) {
    if (!enabled || v.mode != request_mode::preview || is_reserved_port(v.port) || v.websocket ||
        !v.headers)
        return false;
    auto& h = *v.headers;
    if (auto skip = h.first("X-Daytona-Skip-Preview-Warning"); skip && *skip == "true")
        return false;
    auto ua = h.first("User-Agent");
    if (!ua || !is_browser(*ua))
        return false;
    if (v.target.substr(0, v.target.find('?')) == accept_warning_path)
        return false;
    bool accepted = for_each_cookie(h, warning_cookie, [](std::string_view c) { return c == "true"; });
    return !accepted;
}

std::string html_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 16);
    for (char c : s) {
        switch (c) {
        case '&': out.append("&amp;"); break;
        case '<': out.append("&lt;"); break;
        case '>': out.append("&gt;"); break;
        case '"': out.append("&quot;"); break;
        case '\'': out.append("&#39;"); break;
        default: out.push_back(c);
        }
    }
    return out;
}

response preview_warning_page(const request_view& v, std::string_view proxy_protocol) {
    std::string url(proxy_protocol);
    url.append("://").append(v.host).append(v.target);
    std::string action(accept_warning_path);
    action.append("?redirect=").append(query_escape(url));
    response r;
    r.status = 200;
    r.content_type = "text/html; charset=utf-8";
    r.headers.emplace_back("Content-Security-Policy",
                           "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'");
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.headers.emplace_back("Cache-Control", "no-store");
    r.body = R"(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Preview URL warning</title>
<style>
body{font-family:system-ui,sans-serif;background:#0a0a0a;color:#fff;margin:0;min-height:100vh;
display:flex;align-items:center;justify-content:center}
main{background:#1a1a1a;border:1px solid #333;border-radius:12px;padding:2.5rem;max-width:600px}
h1{margin-top:0}ul{color:#ccc;line-height:1.6}strong{color:#ffa500;word-break:break-all}
button{background:#0066ff;color:#fff;border:0;border-radius:8px;padding:.8rem 2rem;font-size:1rem;
cursor:pointer}
</style>
</head>
<body>
<main>
<h1>Preview URL warning</h1>
<p>You are about to visit <strong>)" +
             html_escape(url) + R"(</strong></p>
<ul>
<li>This website is a preview of a sandbox, served through a Daytona proxy.</li>
<li>Its content and behaviour may change without notice.</li>
<li>Only continue if you trust whoever sent you the link.</li>
<li>Do not disclose passwords, phone numbers or payment details unless you are sure.</li>
</ul>
<form action=")" + html_escape(action) +
             R"(" method="POST"><button type="submit">I understand, continue</button></form>
</main>
</body>
</html>
)";
    return r;
}

std::string safe_redirect(std::string_view redirect, std::string_view host) {
    // Browsers drop tabs and newlines inside URLs and treat '\' as '/': any of them (or other
    // control characters) could turn a path into "//evil".
    for (char c : redirect)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '\\' || c == ' ')
            return "/";
    if (redirect.starts_with('/')) {
        if (redirect.size() > 1 && redirect[1] == '/')
            return "/";
        return std::string(redirect);
    }
    auto u = boost::urls::parse_absolute_uri(redirect);
    if (!u || (u->scheme() != "http" && u->scheme() != "https") || !u->has_authority() ||
        u->has_userinfo())
        return "/";
    if (!iequals(u->encoded_host_and_port(), host))
        return "/";
    if (auto path = u->encoded_path(); !path.empty() && path.front() != '/')
        return "/"; // "host:4000.evil.com/" would read as port 4000 and path ".evil.com/"
    return std::string(redirect);
}

response accept_preview_warning(const request_view& v, std::string_view proxy_protocol) {
    const bool secure = proxy_protocol == "https";
    auto redirect = query_param(v.target, "redirect");
    std::string cookie = set_cookie(warning_cookie, "true", {}, warning_cookie_ttl, secure);
    if (secure) // Daytona: None over https so that the page works inside iframes
        cookie.replace(cookie.rfind("SameSite=Lax"), 12, "SameSite=None");
    response r;
    r.status = 302;
    r.headers.emplace_back("Location", safe_redirect(redirect ? *redirect : "/", v.host));
    r.headers.emplace_back("Set-Cookie", std::move(cookie));
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
}

} // namespace edge::auth
