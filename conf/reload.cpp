#include "conf/reload.hpp"

#include <functional>
#include <utility>

namespace edge::conf {
namespace {

std::string str(bool b) { return b ? "true" : "false"; }
template <class T> std::string str(T n) { return std::to_string(n); }
std::string str(const std::string& s) { return s; }

// Live settings: read through the worker's config snapshot per request (proxy), or applied by
// the app itself on reload (logging, drain timeout).
struct live_setting {
    const char* key;
    std::function<bool(config& to, const config& from)> copy; // true when it changed
};

template <class T> std::function<bool(config&, const config&)> member(T config::*m) {
    return [m](config& to, const config& from) {
        if (to.*m == from.*m)
            return false;
        to.*m = from.*m;
        return true;
    };
}

const std::vector<live_setting>& live() {
    static const std::vector<live_setting> v = {
        {"TOOLBOX_ONLY_MODE", member(&config::toolbox_only_mode)},
        {"PREVIEW_WARNING_ENABLED", member(&config::preview_warning_enabled)},
        {"UPSTREAM_CONNECT_TIMEOUT_SEC", member(&config::upstream_connect_timeout_sec)},
        {"UPSTREAM_RESPONSE_TIMEOUT_SEC", member(&config::upstream_response_timeout_sec)},
        {"SHUTDOWN_TIMEOUT_SEC", member(&config::shutdown_timeout_sec)},
        {"LOG_LEVEL", member(&config::log_level)},
        {"LOG_FORMAT", member(&config::log_format)},
    };
    return v;
}

// Restart-only settings, each as the text compared.
struct fixed_setting {
    const char* key;
    std::function<std::string(const config&)> value;
};

template <class T> std::function<std::string(const config&)> text(T config::*m) {
    return [m](const config& c) { return str(c.*m); };
}

const std::vector<fixed_setting>& fixed() {
    static const std::vector<fixed_setting> v = {
        {"BIND_ADDRESS", text(&config::bind_address)},
        {"PROXY_PORT", text(&config::proxy_port)},
        {"PROXY_PROTOCOL", text(&config::proxy_protocol)},
        {"EDGEGATE_WORKERS", text(&config::workers)},
        // A key given inline cannot be swapped; a key file's contents are re-read on SIGHUP
        // (auth/key_holder), so only a changed path counts.
        {"PROXY_API_KEY",
         [](const config& c) { return c.proxy_api_key_file.empty() ? c.proxy_api_key : ""; }},
        {"PROXY_API_KEY_FILE", text(&config::proxy_api_key_file)},
        {"DAYTONA_API_URL", text(&config::api_url)},
        {"API_CLIENT_TIMEOUT_SEC", text(&config::api_client_timeout_sec)},
        {"ENABLE_TLS", text(&config::enable_tls)},
        {"TLS_CERT_FILE", text(&config::tls_cert_file)},
        {"TLS_KEY_FILE", text(&config::tls_key_file)},
        {"TLS_SNI_CERTS", text(&config::tls_sni_certs)},
        {"RUNNER_CA_FILE", text(&config::runner_ca_file)},
        {"AUTH_LOOKUP_TIMEOUT_MS", text(&config::auth_lookup_timeout_ms)},
        {"AUTH_CACHE_MAX_ENTRIES", text(&config::auth_cache_max_entries)},
        {"COOKIE_DOMAIN", text(&config::cookie_domain)},
        {"OIDC_CLIENT_ID", text(&config::oidc_client_id)},
        {"OIDC_CLIENT_SECRET", text(&config::oidc_client_secret)},
        {"OIDC_DOMAIN", text(&config::oidc_domain)},
        {"OIDC_PUBLIC_DOMAIN", text(&config::oidc_public_domain)},
        {"OIDC_AUDIENCE", text(&config::oidc_audience)},
        {"REDIS_HOST", text(&config::redis_host)},
        {"REDIS_PORT", text(&config::redis_port)},
        {"REDIS_USERNAME", text(&config::redis_username)},
        {"REDIS_PASSWORD", text(&config::redis_password)},
        {"REDIS_TLS", text(&config::redis_tls)},
        {"REDIS_TIMEOUT_MS", text(&config::redis_timeout_ms)},
        {"ROUTE_LOOKUP_TIMEOUT_MS", text(&config::route_lookup_timeout_ms)},
        {"ROUTE_STALE_MAX_SEC", text(&config::route_stale_max_sec)},
        {"ROUTE_CACHE_MAX_ENTRIES", text(&config::route_cache_max_entries)},
        {"ROUTE_CACHE_MAX_MB", text(&config::route_cache_max_mb)},
        {"METRICS_PORT", text(&config::metrics_port)},
        {"SSH_GATEWAY_PORT", text(&config::ssh_gateway_port)},
        {"SSH_GATEWAY_API_KEY",
         [](const config& c) {
             return c.ssh_gateway_api_key_file.empty() ? c.ssh_gateway_api_key : "";
         }},
        {"SSH_GATEWAY_API_KEY_FILE", text(&config::ssh_gateway_api_key_file)},
        {"SSH_PRIVATE_KEY", text(&config::ssh_private_key)},
        {"SSH_HOST_KEY", text(&config::ssh_host_key)},
        {"SSH_HOST_KEY_FILE", text(&config::ssh_host_key_file)},
        {"SSH_PRIVATE_KEY_FILE", text(&config::ssh_private_key_file)},
        {"RUNNER_SSH_PORT", text(&config::runner_ssh_port)},
        {"SSH_KNOWN_HOSTS_FILE", text(&config::ssh_known_hosts_file)},
        {"SSH_RUNNER_HOST_KEY_CHECK", text(&config::ssh_runner_host_key_check)},
        {"SSH_LOGIN_GRACE_SEC", text(&config::ssh_login_grace_sec)},
        {"SSH_MAX_UNAUTHENTICATED", text(&config::ssh_max_unauthenticated)},
        {"SSH_TOKEN_CACHE_SEC", text(&config::ssh_token_cache_sec)},
    };
    return v;
}

} // namespace

const std::vector<std::string>& live_keys() {
    static const std::vector<std::string> keys = [] {
        std::vector<std::string> k;
        for (auto& s : live())
            k.emplace_back(s.key);
        return k;
    }();
    return keys;
}

const std::vector<std::string>& restart_keys() {
    static const std::vector<std::string> keys = [] {
        std::vector<std::string> k;
        for (auto& s : fixed())
            k.emplace_back(s.key);
        return k;
    }();
    return keys;
}

reload_plan plan_reload(const config& serving, const config& fresh) {
    reload_plan p{serving, {}, {}};
    for (auto& s : live())
        if (s.copy(p.next, fresh))
            p.applied.emplace_back(s.key);
    for (auto& s : fixed())
        if (s.value(serving) != s.value(fresh))
            p.need_restart.emplace_back(s.key);
    // The key files' contents as just read: the app reloads the key holders from the same
    // files, so the snapshot says what is in use.
    if (!fresh.proxy_api_key_file.empty() && fresh.proxy_api_key_file == serving.proxy_api_key_file)
        p.next.proxy_api_key = fresh.proxy_api_key;
    if (!fresh.ssh_gateway_api_key_file.empty() &&
        fresh.ssh_gateway_api_key_file == serving.ssh_gateway_api_key_file)
        p.next.ssh_gateway_api_key = fresh.ssh_gateway_api_key;
    return p;
}

} // namespace edge::conf
