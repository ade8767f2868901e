#pragma once
// Browser login through Daytona's OIDC provider (contract §3): the settings (from the
// environment or GET /api/config, then the provider's discovery document, loaded once with
// retries), the 307 to the authorize URL (PKCE S256, base64url JSON state, a 5-minute signed
// `pkce_verifier` cookie) and the `GET /callback` handler (code exchange, access check, auth
// cookie on the base domain, 302 to a same-site returnTo).
#include "auth/control_plane_client.hpp"
#include "auth/cookies.hpp"
#include "auth/key_holder.hpp"
#include "auth/request.hpp"
#include "conf/config.hpp"

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace edge::auth {

struct oidc_settings {
    std::string issuer;        // OIDC_DOMAIN or /api/config oidc.issuer: discovery, token calls
    std::string public_issuer; // OIDC_PUBLIC_DOMAIN: the issuer as browsers reach it (or empty)
    std::string client_id;
    std::string client_secret;
    std::string audience;
    std::string authorization_endpoint; // from discovery, as browsers reach it
    std::string token_endpoint;         // from discovery, on the private issuer
};

// The settings once loaded. Process-wide; thread-safe.
class oidc_store {
  public:
    enum class status { loading, ready, not_configured };
    std::shared_ptr<const oidc_settings> get() const;
    status current() const noexcept { return status_.load(std::memory_order_acquire); }
    bool ready() const noexcept { return current() == status::ready; }
    void set(oidc_settings s);
    void set_not_configured() { status_.store(status::not_configured, std::memory_order_release); }

  private:
    mutable std::mutex mutex_;
    std::shared_ptr<const oidc_settings> settings_;
    std::atomic<status> status_{status::loading};
};

// Loads the settings into `store`: what the environment lacks from GET /api/config, then the
// discovery document of the issuer. Retries (backoff from `first_retry` up to 30 s) until done;
// returns early when the API says there is no OIDC issuer (not_configured). Run it once per
// process, detached, on one worker.
awaitable<void> load_oidc(control_plane_client& api, const conf::config& cfg, oidc_store& store,
                          std::chrono::milliseconds first_retry = std::chrono::milliseconds(500));

// Pure pieces, exposed for tests.
struct pkce_pair {
    std::string verifier;  // 43 characters of base64url (32 random bytes)
    std::string challenge; // base64url(SHA-256(verifier)): S256
};
pkce_pair make_pkce();
std::string pkce_challenge(std::string_view verifier);

struct login_state {
    std::string return_to;
    std::string sandbox_id;
    std::string nonce; // Daytona's "state" member; also bound into the pkce_verifier cookie
};
// base64url (padded, Go's URLEncoding) of {"returnTo":...,"sandboxId":...,"state":...}.
std::string encode_state(const login_state& s);
std::optional<login_state> decode_state(std::string_view text);

// {authorization_endpoint}?audience=&client_id=&code_challenge=&code_challenge_method=S256
// &redirect_uri=&response_type=code&scope=openid+profile&state= (Go's sorted order).
std::string authorize_url(const oidc_settings& s, std::string_view redirect_uri,
                          std::string_view state, std::string_view challenge);

// Is `return_to` an http(s) URL without userinfo whose host[:port] is `callback_host` or a
// subdomain of it (the preview hosts of this proxy)? Daytona does not check (open redirect).
bool same_site_return_to(std::string_view return_to, std::string_view callback_host);

struct login_options {
    std::string proxy_protocol = "http";
    cookie_policy cookies;
};

// The 307 for a preview request that nothing authenticated: Location = the authorize URL,
// Set-Cookie = pkce_verifier (signed with `key`, 5 minutes, domain of the base host).
response login_redirect(const oidc_settings& s, const request_view& v, std::string_view key,
                        const login_options& o);

// GET /callback on the base host. One per worker (it owns a client for the token endpoint).
class oidc_login {
  public:
    oidc_login(boost::asio::any_io_executor ex, control_plane_client& api,
               const oidc_store& store, const key_holder& proxy_keys, login_options o,
               std::chrono::milliseconds timeout = std::chrono::seconds(10));
    ~oidc_login();

    // The whole answer: 302 with the auth cookie, or 400 (bad request), 401 (the provider
    // refused), 403 (no access to the sandbox), 502/503 (provider or API unreachable).
    awaitable<response> callback(const request_view& v);

  private:
    control_plane_client& token_client(const std::string& endpoint, std::string& path);

    boost::asio::any_io_executor ex_;
    control_plane_client& api_;
    const oidc_store& store_;
    const key_holder& keys_;
    login_options opts_;
    std::chrono::milliseconds timeout_;
    std::string token_base_;
    std::unique_ptr<control_plane_client> token_client_;
};

} // namespace edge::auth
