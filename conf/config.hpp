#pragma once
// The configuration model: a plain struct filled from the environment (Daytona's variable names)
// over an optional config file. Immutable once loaded; shared as std::shared_ptr<const config>.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace edge::conf {

struct url_parts {
    std::string scheme; // "http" or "https"
    std::string host;
    std::uint16_t port = 0;
    std::string path; // without a trailing slash; "" for the root
};

struct config {
    // Listeners
    std::string bind_address = "0.0.0.0";
    std::uint16_t proxy_port = 4000;
    std::string proxy_protocol = "http";
    unsigned workers = 0; // 0: one per core

    // Control plane
    std::string proxy_api_key;
    std::string proxy_api_key_file; // PROXY_API_KEY_FILE: re-read on SIGHUP and when it changes
    std::string api_url; // DAYTONA_API_URL (or API_URL), ends in /api
    url_parts api;
    unsigned api_client_timeout_sec = 60;

    // TLS at the edge
    bool enable_tls = false;
    std::string tls_cert_file;
    // Extra CAs (PEM) trusted for runners whose proxyUrl is https, beside the system's.
    std::string runner_ca_file;
    std::string tls_key_file;
    // TLS_SNI_CERTS: more certificates, chosen by the client's SNI ("CERT:KEY,CERT:KEY").
    std::string tls_sni_certs;
    std::vector<std::pair<std::string, std::string>> tls_sni_pairs; // parsed from it

    // Preview auth
    unsigned auth_lookup_timeout_ms = 5000; // a request waits this long for an uncached check
    std::size_t auth_cache_max_entries = 200000;
    std::string cookie_domain;
    std::string oidc_client_id;
    std::string oidc_client_secret;
    std::string oidc_domain;
    std::string oidc_public_domain;
    std::string oidc_audience;
    bool toolbox_only_mode = false;
    bool preview_warning_enabled = false;

    // Redis
    std::string redis_host;
    std::uint16_t redis_port = 6379;
    std::string redis_username;
    std::string redis_password;
    bool redis_tls = false;
    unsigned redis_timeout_ms = 500; // per command; a slower Redis is skipped for the API

    // Route cache (L1, in process)
    unsigned route_lookup_timeout_ms = 2000; // past it a request for an unknown route gets 503
    unsigned route_stale_max_sec = 300;      // how long past its TTL a route may serve in an outage
    std::size_t route_cache_max_entries = 1000000;
    std::size_t route_cache_max_mb = 256;

    // Upstream (runners)
    unsigned upstream_connect_timeout_sec = 5;
    unsigned upstream_response_timeout_sec = 60;

    // Operations
    unsigned shutdown_timeout_sec = 3600;
    std::uint16_t metrics_port = 0; // 0: no metrics listener
    std::string log_level = "info";
    std::string log_format = "json"; // json | text

    // SSH gateway
    std::uint16_t ssh_gateway_port = 2222;
    std::string ssh_gateway_api_key;
    std::string ssh_gateway_api_key_file; // SSH_GATEWAY_API_KEY_FILE, re-read like the proxy's
    std::string ssh_private_key; // decoded PEM/OpenSSH text
    std::string ssh_host_key;    // decoded PEM text
    std::string ssh_host_key_file;
    std::string ssh_private_key_file;
    std::uint16_t runner_ssh_port = 2220;
    std::string ssh_known_hosts_file;
    std::string ssh_runner_host_key_check = "tofu"; // tofu | known-hosts | off
    unsigned ssh_login_grace_sec = 30;
    unsigned ssh_max_unauthenticated = 256;
    unsigned ssh_token_cache_sec = 10;
};

using key_values = std::map<std::string, std::string>;

struct load_result {
    config cfg;
    // One line per problem: names the variable, the bad value (never for secrets) and what is
    // expected. Empty when the configuration is valid.
    std::vector<std::string> problems;
};

// Builds the configuration from `env` (wins) over `file` (keys already upper-cased).
load_result load(const key_values& env, const key_values& file);

// The process environment as key/values.
key_values environment();

// Reads a config file: flat TOML (`KEY = value`, `#` comments, strings in double quotes,
// integers, true/false). Keys are the environment variable names, in any case. Problems are
// appended to `problems` with the file name and line number.
key_values read_config_file(const std::string& path, std::vector<std::string>& problems);

// Every key edgegate reads, for --help and for rejecting unknown keys in a file.
const std::vector<std::string>& known_keys();

bool parse_url(const std::string& text, url_parts& out);

} // namespace edge::conf
