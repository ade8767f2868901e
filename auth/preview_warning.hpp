#pragma once
// The preview warning page (contract §4, PREVIEW_WARNING_ENABLED=true) and its accept endpoint
// `POST /accept-daytona-preview-warning?redirect=...`, which works on any host. Deviation: the
// redirect is followed only when it is this host's own URL or a single-slash relative path
// (Daytona redirects anywhere). Pure functions.
#include "auth/request.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace edge::auth {

inline constexpr std::string_view accept_warning_path = "/accept-daytona-preview-warning";

// A browser's User-Agent (Chrome, Firefox, Safari, Edge, Brave, Vivaldi, Samsung, Opera).
bool is_browser(std::string_view user_agent) noexcept;

// Should this preview request get the warning page instead of the sandbox? (enabled, preview
// mode, a non-reserved port, a browser, no skip header, no accepted cookie, no WebSocket, not
// the accept endpoint itself.)
bool wants_preview_warning(const request_view& v, bool enabled);

// 200 text/html with CSP and nosniff; the URL shown is HTML-escaped.
response preview_warning_page(const request_view& v, std::string_view proxy_protocol);

// Where the accept endpoint may send the browser: `redirect` (already decoded) when it is a
// same-host absolute http(s) URL or a single-slash relative path; "/" otherwise.
std::string safe_redirect(std::string_view redirect, std::string_view host);

// The accept endpoint's 302: cookie `daytona-preview-page-accepted=true` for 24 h on this host,
// Location = safe_redirect(query redirect).
response accept_preview_warning(const request_view& v, std::string_view proxy_protocol);

std::string html_escape(std::string_view s);

} // namespace edge::auth
