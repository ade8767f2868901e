#pragma once
// Preview access decisions (contract §3), independent of HTTP/1.1 or HTTP/2: a request_view in,
// a decision out: ALLOW (with what to change before forwarding) or a response to send instead.
//
// Credentials are tried in Daytona's order, first success wins: `Authorization: Bearer`
// (checked with the user's own token), `X-Daytona-Preview-Token`, the DAYTONA_SANDBOX_AUTH_KEY
// query parameter, the `daytona-sandbox-auth-{idOrToken}` cookie, then (preview hosts) the
// signed preview URL. API answers are cached process-wide (decision_cache, keys are hashes),
// optionally shared through Redis (`edgegate:auth:{sha256}`), and concurrent identical checks
// on any worker are coalesced into one API call.
//
// auth_shared is process-wide (thread-safe); authorizer is per worker thread (not thread-safe)
// and must outlive the coroutines it starts (a coalesced check finishes in the background).
#include "auth/control_plane_client.hpp"
#include "auth/cookies.hpp"
#include "auth/decision_cache.hpp"
#include "auth/key_holder.hpp"
#include "auth/oidc.hpp"
#include "auth/request.hpp"
#include "conf/config.hpp"
#include "routing/redis/redis_client.hpp"
#include "routing/single_flight.hpp"

#include <array>
#include <atomic>
#include <optional>
#include <string>
#include <vector>

namespace edge::auth {

enum class auth_method {
    public_sandbox, // no credential needed
    bearer,
    preview_token_header,
    query_key,
    cookie,
    signed_url,
};
std::string_view to_string(auth_method m) noexcept;

struct decision {
    enum class kind { allow, respond };
    kind what = kind::respond;

    // allow:
    auth_method method = auth_method::public_sandbox;
    // Signed preview URL (or its cookie): the real sandbox id behind the token in the host.
    std::string signed_sandbox_id;
    // The query key authenticated: the target to forward (the parameter removed, every other
    // byte untouched). Empty optional: forward the target as received.
    std::optional<std::string> target;
    // The bearer authenticated: remove Authorization before forwarding.
    bool strip_authorization = false;
    // Set-Cookie values to add to the response (the signed preview URL's cookie).
    std::vector<std::string> set_cookies;

    // respond:
    response resp;

    bool allowed() const noexcept { return what == kind::allow; }
    // The sandbox whose runner serves the request.
    std::string_view sandbox_id(const request_view& v) const noexcept {
        return signed_sandbox_id.empty() ? v.id : std::string_view(signed_sandbox_id);
    }
};

// Request fields removed before forwarding whatever the decision (contract §2).
inline constexpr std::array<std::string_view, 2> always_stripped = {"X-Daytona-Preview-Token",
                                                                    "X-Daytona-Disable-CORS"};

struct check_outcome {
    enum class result { allowed, denied, unavailable };
    result r = result::unavailable;
    std::string sandbox_id; // signed URL: the real id
    std::string detail;     // unavailable: why
};

// What every worker's authorizer shares. One per process.
struct auth_shared {
    explicit auth_shared(key_holder& proxy_keys_, decision_cache::options o = {})
        : proxy_keys(proxy_keys_), cache(o) {}
    key_holder& proxy_keys;
    decision_cache cache;
    routing::single_flight<check_outcome> flights;
    oidc_store oidc;
    // Counters (metrics).
    std::atomic<std::uint64_t> api_checks{0};
    std::atomic<std::uint64_t> redis_hits{0};
    std::atomic<std::uint64_t> stale_allows{0};
    std::atomic<std::uint64_t> unavailable{0};
};

struct authorizer_options {
    std::string proxy_protocol = "http"; // PROXY_PROTOCOL: returnTo, redirect_uri, Secure
    cookie_policy cookies;
    // How long a request waits for a check that is not cached (then 503).
    std::chrono::milliseconds lookup_timeout{5000};
    static authorizer_options from(const conf::config& c);
};

class authorizer {
  public:
    // `redis` may be null (no shared decisions).
    authorizer(control_plane_client& api, auth_shared& shared, routing::redis::client* redis,
               authorizer_options o);

    // Does this request need credentials at all? Private sandbox, reserved port, or toolbox.
    static bool needs_auth(const request_view& v) noexcept;

    // The hot path, without a coroutine: an ALLOW decision when it can be made from the
    // process cache alone (public sandbox, cached valid credential, signed cookie); nullopt
    // otherwise (then co_await authorize()).
    std::optional<decision> ready(const request_view& v);

    // The full decision: may call the API (coalesced, cached) and Redis. `v` and the bytes it
    // views must stay valid until the co_await completes.
    awaitable<decision> authorize(const request_view& v);

    // The process-wide state (cache, OIDC store, counters).
    auth_shared& shared() noexcept { return shared_; }

  private:
    // `client_ip` and `traceparent` go with the API call (X-Forwarded-For, trace context).
    awaitable<check_outcome> check(check_kind kind, std::string sandbox, std::string credential,
                                   std::uint16_t port, std::string client_ip,
                                   std::string traceparent);
    awaitable<check_outcome> fetch(check_kind kind, digest key, std::string sandbox,
                                   std::string credential, std::uint16_t port,
                                   std::string client_ip, std::string traceparent);
    awaitable<check_outcome> ask_api(check_kind kind, const std::string& sandbox,
                                     const std::string& credential, std::uint16_t port,
                                     const std::string& client_ip,
                                     const std::string& traceparent);
    std::optional<decision> cookie_decision(const request_view& v) const;
    decision fail(const request_view& v, const std::vector<std::string>& failures,
                  const std::string& unavailable_detail) const;

    control_plane_client& api_;
    auth_shared& shared_;
    routing::redis::client* redis_;
    authorizer_options opts_;
};

// The bearer token of an `Authorization: Bearer <t>` field, trimmed; empty when none.
std::string_view bearer_token(const header_lookup& h);

} // namespace edge::auth
