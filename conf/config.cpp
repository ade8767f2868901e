#include "conf/config.hpp"

#include "common/base64.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string_view>
#include <tuple>

extern char** environ;

namespace edge::conf {
namespace {

bool parse_bool(std::string_view v, bool& out) {
    // The spellings Go's strconv.ParseBool accepts, as Daytona's services read these variables.
    static constexpr std::string_view yes[] = {"1", "t", "T", "true", "TRUE", "True"};
    static constexpr std::string_view no[] = {"0", "f", "F", "false", "FALSE", "False"};
    if (std::find(std::begin(yes), std::end(yes), v) != std::end(yes))
        return out = true, true;
    if (std::find(std::begin(no), std::end(no), v) != std::end(no))
        return out = false, true;
    return false;
}

template <class T>
bool parse_uint(std::string_view v, T& out, unsigned long long lo, unsigned long long hi) {
    unsigned long long n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc{} || p != v.data() + v.size() || n < lo || n > hi)
        return false;
    out = static_cast<T>(n);
    return true;
}

// The key in a key file, surrounding whitespace removed; nullopt when unreadable.
std::optional<std::string> read_key_file(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
        return std::nullopt;
    std::ifstream f(path);
    if (!f)
        return std::nullopt;
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto first = text.find_first_not_of(" \t\r\n");
    if (first == std::string::npos)
        return std::string();
    auto last = text.find_last_not_of(" \t\r\n");
    return text.substr(first, last - first + 1);
}

bool readable(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
        return false; // a directory opens fine with ifstream on Linux
    std::ifstream f(path);
    return f.good();
}

class loader {
  public:
    loader(const key_values& env, const key_values& file) : env_(env), file_(file) {}

    const std::string* get(const std::string& key) const {
        if (auto it = env_.find(key); it != env_.end())
            return &it->second;
        if (auto it = file_.find(key); it != file_.end())
            return &it->second;
        return nullptr;
    }

    void text(const std::string& key, std::string& out) {
        if (auto v = get(key))
            out = *v;
    }

    void flag(const std::string& key, bool& out) {
        auto v = get(key);
        if (v && !v->empty() && !parse_bool(*v, out))
            bad(key, *v, "true or false");
    }

    template <class T>
    void number(const std::string& key, T& out, unsigned long long lo, unsigned long long hi,
                const char* expected) {
        auto v = get(key);
        if (v && !v->empty() && !parse_uint(*v, out, lo, hi))
            bad(key, *v, expected);
    }

    void bad(const std::string& key, const std::string& value, const std::string& expected) {
        problems.push_back(key + "=" + quote(value) + ": expected " + expected);
    }
    void secret_problem(const std::string& key, const std::string& what) {
        problems.push_back(key + ": " + what);
    }

    std::vector<std::string> problems;

  private:
    static std::string quote(const std::string& v) {
        std::string shown = v.size() > 200 ? v.substr(0, 200) + "..." : v;
        return "\"" + shown + "\"";
    }
    const key_values& env_;
    const key_values& file_;
};

} // namespace

bool parse_url(const std::string& text, url_parts& out) {
    auto r = boost::urls::parse_absolute_uri(text);
    if (!r)
        return false;
    std::string scheme(r->scheme());
    if (scheme != "http" && scheme != "https")
        return false;
    if (!r->has_authority() || r->encoded_host().empty() || r->has_userinfo())
        return false;
    out.scheme = scheme;
    out.host = std::string(r->encoded_host_address());
    if (r->host_type() == boost::urls::host_type::ipv6)
        out.host = "[" + out.host + "]";
    unsigned long long port = scheme == "https" ? 443 : 80;
    if (r->has_port() && !parse_uint(r->port(), port, 1, 65535))
        return false;
    out.port = static_cast<std::uint16_t>(port);
    out.path = std::string(r->encoded_path());
    while (!out.path.empty() && out.path.back() == '/')
        out.path.pop_back();
    return true;
}

const std::vector<std::string>& known_keys() {
    static const std::vector<std::string> keys = {"BIND_ADDRESS",
                                                  "PROXY_PORT",
                                                  "PROXY_PROTOCOL",
                                                  "PROXY_API_KEY",
                                                  "PROXY_API_KEY_FILE",
                                                  "SSH_GATEWAY_API_KEY_FILE",
                                                  "AUTH_LOOKUP_TIMEOUT_MS",
                                                  "AUTH_CACHE_MAX_ENTRIES",
                                                  "DAYTONA_API_URL",
                                                  "API_URL",
                                                  "API_CLIENT_TIMEOUT_SEC",
                                                  "ENABLE_TLS",
                                                  "TLS_CERT_FILE",
                                                  "TLS_KEY_FILE",
                                                  "TLS_SNI_CERTS",
                                                  "RUNNER_CA_FILE",
                                                  "COOKIE_DOMAIN",
                                                  "OIDC_CLIENT_ID",
                                                  "OIDC_CLIENT_SECRET",
                                                  "OIDC_DOMAIN",
                                                  "OIDC_PUBLIC_DOMAIN",
                                                  "OIDC_AUDIENCE",
                                                  "REDIS_HOST",
                                                  "REDIS_PORT",
                                                  "REDIS_USERNAME",
                                                  "REDIS_PASSWORD",
                                                  "REDIS_TLS",
                                                  "TOOLBOX_ONLY_MODE",
                                                  "PREVIEW_WARNING_ENABLED",
                                                  "SHUTDOWN_TIMEOUT_SEC",
                                                  "METRICS_PORT",
                                                  "SSH_GATEWAY_PORT",
                                                  "API_KEY",
                                                  "SSH_GATEWAY_API_KEY",
                                                  "SSH_PRIVATE_KEY",
                                                  "SSH_HOST_KEY",
                                                  "SSH_HOST_KEY_FILE",
                                                  "SSH_PRIVATE_KEY_FILE",
                                                  "RUNNER_SSH_PORT",
                                                  "SSH_KNOWN_HOSTS_FILE",
                                                  "SSH_RUNNER_HOST_KEY_CHECK",
                                                  "SSH_LOGIN_GRACE_SEC",
                                                  "SSH_MAX_UNAUTHENTICATED",
                                                  "SSH_TOKEN_CACHE_SEC",
                                                  "EDGEGATE_WORKERS",
                                                  "UPSTREAM_CONNECT_TIMEOUT_SEC",
                                                  "UPSTREAM_RESPONSE_TIMEOUT_SEC",
                                                  "LOG_LEVEL",
                                                  "LOG_FORMAT",
                                                  "REDIS_TIMEOUT_MS",
                                                  "ROUTE_LOOKUP_TIMEOUT_MS",
                                                  "ROUTE_STALE_MAX_SEC",
                                                  "ROUTE_CACHE_MAX_ENTRIES",
                                                  "ROUTE_CACHE_MAX_MB"};
    return keys;
}

key_values environment() {
    key_values out;
    for (char** e = environ; e && *e; ++e) {
        std::string_view kv(*e);
        auto eq = kv.find('=');
        if (eq != std::string_view::npos)
            out.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
    return out;
}

load_result load(const key_values& env, const key_values& file) {
    loader l(env, file);
    config c;
    constexpr auto port_expected = "a port number from 1 to 65535";

    l.text("BIND_ADDRESS", c.bind_address);
    {
        boost::system::error_code ec;
        boost::asio::ip::make_address(c.bind_address, ec);
        if (ec)
            l.bad("BIND_ADDRESS", c.bind_address, "an IPv4 or IPv6 address such as 0.0.0.0 or ::");
    }
    l.number("PROXY_PORT", c.proxy_port, 1, 65535, port_expected);
    l.text("PROXY_PROTOCOL", c.proxy_protocol);
    if (c.proxy_protocol != "http" && c.proxy_protocol != "https")
        l.bad("PROXY_PROTOCOL", c.proxy_protocol, "http or https");
    l.number("EDGEGATE_WORKERS", c.workers, 0, 256,
             "a number of worker threads from 0 (one per core) to 256");

    l.text("PROXY_API_KEY", c.proxy_api_key);
    l.text("PROXY_API_KEY_FILE", c.proxy_api_key_file);
    l.text("SSH_GATEWAY_API_KEY_FILE", c.ssh_gateway_api_key_file);
    // A key file (rotation without restart) is read now for validation; auth/key_holder
    // re-reads it later.
    for (auto [key, plain, path, out] :
         {std::tuple{"PROXY_API_KEY_FILE", "PROXY_API_KEY", &c.proxy_api_key_file,
                     &c.proxy_api_key},
          std::tuple{"SSH_GATEWAY_API_KEY_FILE", "SSH_GATEWAY_API_KEY",
                     &c.ssh_gateway_api_key_file, &c.ssh_gateway_api_key}}) {
        if (path->empty())
            continue;
        auto v = l.get(plain);
        if ((!v || v->empty()) && std::string_view(plain) == "SSH_GATEWAY_API_KEY")
            v = l.get("API_KEY");
        auto text = read_key_file(*path);
        if (v && !v->empty())
            l.bad(key, *path, std::string("unset when ") + plain + " is set (one or the other)");
        else if (!text)
            l.bad(key, *path, "a readable file holding the key");
        else if (text->empty())
            l.bad(key, *path, "a file holding the key (it is empty)");
        else
            *out = std::move(*text);
    }
    if (c.proxy_api_key.empty() && c.proxy_api_key_file.empty())
        l.secret_problem("PROXY_API_KEY", "missing: set it (or PROXY_API_KEY_FILE) to the "
                                          "region's proxy API key");
    l.number("AUTH_LOOKUP_TIMEOUT_MS", c.auth_lookup_timeout_ms, 50, 600000,
             "a number of milliseconds from 50 to 600000");
    l.number("AUTH_CACHE_MAX_ENTRIES", c.auth_cache_max_entries, 100, 100000000,
             "a number of entries from 100 to 100000000");

    if (auto v = l.get("DAYTONA_API_URL"); v && !v->empty())
        c.api_url = *v;
    else
        l.text("API_URL", c.api_url);
    if (c.api_url.empty())
        l.secret_problem(
            "DAYTONA_API_URL",
            "missing: set it to the Daytona API base URL, e.g. https://app.daytona.io/api");
    else if (!parse_url(c.api_url, c.api))
        l.bad(l.get("DAYTONA_API_URL") ? "DAYTONA_API_URL" : "API_URL", c.api_url,
              "an absolute http:// or https:// URL, e.g. https://app.daytona.io/api");
    l.number("API_CLIENT_TIMEOUT_SEC", c.api_client_timeout_sec, 1, 3600,
             "a number of seconds from 1 to 3600");

    l.flag("ENABLE_TLS", c.enable_tls);
    l.text("TLS_CERT_FILE", c.tls_cert_file);
    l.text("TLS_KEY_FILE", c.tls_key_file);
    l.text("TLS_SNI_CERTS", c.tls_sni_certs);
    c.tls_sni_pairs.clear();
    for (std::string_view rest = c.tls_sni_certs; !rest.empty();) {
        const auto comma = rest.find(',');
        std::string_view item = rest.substr(0, comma);
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        while (!item.empty() && (item.front() == ' ' || item.back() == ' '))
            item = item.front() == ' ' ? item.substr(1) : item.substr(0, item.size() - 1);
        if (item.empty())
            continue;
        const auto colon = item.find(':');
        if (colon == std::string_view::npos || colon == 0 || colon + 1 == item.size()) {
            l.bad("TLS_SNI_CERTS", std::string(item),
                  "comma-separated CERT_FILE:KEY_FILE pairs of PEM files");
            continue;
        }
        c.tls_sni_pairs.emplace_back(item.substr(0, colon), item.substr(colon + 1));
    }
    l.text("RUNNER_CA_FILE", c.runner_ca_file);
    if (!c.runner_ca_file.empty() && !readable(c.runner_ca_file))
        l.bad("RUNNER_CA_FILE", c.runner_ca_file, "a readable PEM CA bundle");
    if (c.enable_tls) {
        for (auto [key, path] : {std::pair{"TLS_CERT_FILE", &c.tls_cert_file},
                                 std::pair{"TLS_KEY_FILE", &c.tls_key_file}}) {
            if (path->empty())
                l.secret_problem(key, "missing: required when ENABLE_TLS=true");
            else if (!readable(*path))
                l.bad(key, *path, "a readable PEM file");
        }
        for (const auto& [cert, key] : c.tls_sni_pairs)
            for (const auto* path : {&cert, &key})
                if (!readable(*path))
                    l.bad("TLS_SNI_CERTS", *path, "a readable PEM file");
    }

    l.text("COOKIE_DOMAIN", c.cookie_domain);
    l.text("OIDC_CLIENT_ID", c.oidc_client_id);
    l.text("OIDC_CLIENT_SECRET", c.oidc_client_secret);
    l.text("OIDC_DOMAIN", c.oidc_domain);
    l.text("OIDC_PUBLIC_DOMAIN", c.oidc_public_domain);
    l.text("OIDC_AUDIENCE", c.oidc_audience);
    for (auto key : {"OIDC_DOMAIN", "OIDC_PUBLIC_DOMAIN"}) {
        url_parts ignored;
        auto v = l.get(key);
        if (v && !v->empty() && !parse_url(*v, ignored))
            l.bad(key, *v, "an absolute http:// or https:// URL of the OIDC issuer");
    }
    l.flag("TOOLBOX_ONLY_MODE", c.toolbox_only_mode);
    l.flag("PREVIEW_WARNING_ENABLED", c.preview_warning_enabled);

    l.text("REDIS_HOST", c.redis_host);
    l.number("REDIS_PORT", c.redis_port, 1, 65535, port_expected);
    l.text("REDIS_USERNAME", c.redis_username);
    l.text("REDIS_PASSWORD", c.redis_password);
    l.flag("REDIS_TLS", c.redis_tls);
    if (c.redis_tls)
        l.bad("REDIS_TLS", "true",
              "false: edgegate speaks plain RESP to Redis; run Redis inside the private network, "
              "or put a TLS tunnel (stunnel, spiped) beside edgegate and point REDIS_HOST at it");

    l.number("REDIS_TIMEOUT_MS", c.redis_timeout_ms, 10, 60000,
             "a number of milliseconds from 10 to 60000");
    l.number("ROUTE_LOOKUP_TIMEOUT_MS", c.route_lookup_timeout_ms, 50, 600000,
             "a number of milliseconds from 50 to 600000");
    l.number("ROUTE_STALE_MAX_SEC", c.route_stale_max_sec, 0, 86400,
             "a number of seconds from 0 to 86400");
    l.number("ROUTE_CACHE_MAX_ENTRIES", c.route_cache_max_entries, 100, 100000000,
             "a number of entries from 100 to 100000000");
    l.number("ROUTE_CACHE_MAX_MB", c.route_cache_max_mb, 1, 1048576,
             "a number of MiB from 1 to 1048576");
    l.number("UPSTREAM_CONNECT_TIMEOUT_SEC", c.upstream_connect_timeout_sec, 1, 600,
             "a number of seconds from 1 to 600");
    l.number("UPSTREAM_RESPONSE_TIMEOUT_SEC", c.upstream_response_timeout_sec, 1, 86400,
             "a number of seconds from 1 to 86400");
    l.number("SHUTDOWN_TIMEOUT_SEC", c.shutdown_timeout_sec, 0, 86400,
             "a number of seconds from 0 to 86400");
    l.number("METRICS_PORT", c.metrics_port, 1, 65535, port_expected);
    l.text("LOG_LEVEL", c.log_level);
    static const std::vector<std::string> levels = {"trace", "debug", "info",
                                                    "warn",  "error", "off"};
    if (std::find(levels.begin(), levels.end(), c.log_level) == levels.end())
        l.bad("LOG_LEVEL", c.log_level, "one of trace, debug, info, warn, error, off");
    if (auto v = l.get("LOG_FORMAT"); v && !v->empty())
        c.log_format = *v;
    if (c.log_format != "json" && c.log_format != "text")
        l.bad("LOG_FORMAT", c.log_format, "json (one JSON object per line) or text");

    l.number("SSH_GATEWAY_PORT", c.ssh_gateway_port, 1, 65535, port_expected);
    if (auto v = l.get("SSH_GATEWAY_API_KEY"); v && !v->empty())
        c.ssh_gateway_api_key = *v;
    else
        l.text("API_KEY", c.ssh_gateway_api_key);
    for (auto [key, out] : {std::pair{"SSH_PRIVATE_KEY", &c.ssh_private_key},
                            std::pair{"SSH_HOST_KEY", &c.ssh_host_key}}) {
        auto v = l.get(key);
        if (!v || v->empty())
            continue;
        // `base64 -w0 < key` as the message says, or plain `base64` (wrapped lines) pasted.
        auto decoded = base64::decode(*v, base64::alphabet::standard, base64::rules::lenient);
        if (!decoded || decoded->find("-----BEGIN") == std::string::npos)
            l.secret_problem(key, "not a base64-encoded PEM or OpenSSH private key "
                                  "(encode it with: base64 -w0 < key)");
        else
            *out = std::move(*decoded);
    }
    for (auto [key, path] : {std::pair{"SSH_HOST_KEY_FILE", &c.ssh_host_key_file},
                             std::pair{"SSH_PRIVATE_KEY_FILE", &c.ssh_private_key_file},
                             std::pair{"SSH_KNOWN_HOSTS_FILE", &c.ssh_known_hosts_file}}) {
        l.text(key, *path);
        if (!path->empty() && !readable(*path))
            l.bad(key, *path, "a readable file");
    }
    if (!c.ssh_host_key.empty() && !c.ssh_host_key_file.empty())
        l.bad("SSH_HOST_KEY_FILE", c.ssh_host_key_file, "unset when SSH_HOST_KEY is set (one or the other)");
    if (!c.ssh_private_key.empty() && !c.ssh_private_key_file.empty())
        l.bad("SSH_PRIVATE_KEY_FILE", c.ssh_private_key_file,
              "unset when SSH_PRIVATE_KEY is set (one or the other)");
    l.number("RUNNER_SSH_PORT", c.runner_ssh_port, 1, 65535, port_expected);
    if (!c.ssh_known_hosts_file.empty())
        c.ssh_runner_host_key_check = "known-hosts";
    l.text("SSH_RUNNER_HOST_KEY_CHECK", c.ssh_runner_host_key_check);
    if (c.ssh_runner_host_key_check != "tofu" && c.ssh_runner_host_key_check != "known-hosts" &&
        c.ssh_runner_host_key_check != "off")
        l.bad("SSH_RUNNER_HOST_KEY_CHECK", c.ssh_runner_host_key_check,
              "one of tofu (trust a runner's first host key, refuse a change), known-hosts "
              "(SSH_KNOWN_HOSTS_FILE), off");
    else if (c.ssh_runner_host_key_check == "known-hosts" && c.ssh_known_hosts_file.empty())
        l.secret_problem("SSH_KNOWN_HOSTS_FILE",
                         "missing: required when SSH_RUNNER_HOST_KEY_CHECK=known-hosts");
    l.number("SSH_LOGIN_GRACE_SEC", c.ssh_login_grace_sec, 1, 600,
             "a number of seconds from 1 to 600");
    l.number("SSH_MAX_UNAUTHENTICATED", c.ssh_max_unauthenticated, 1, 100000,
             "a number of connections from 1 to 100000");
    l.number("SSH_TOKEN_CACHE_SEC", c.ssh_token_cache_sec, 0, 3600,
             "a number of seconds from 0 to 3600");
    if (c.proxy_port == c.ssh_gateway_port && !c.ssh_gateway_api_key.empty())
        l.bad("SSH_GATEWAY_PORT", std::to_string(c.ssh_gateway_port),
              "a port other than PROXY_PORT");
    if (c.metrics_port != 0 && c.metrics_port == c.proxy_port)
        l.bad("METRICS_PORT", std::to_string(c.metrics_port), "a port other than PROXY_PORT");

    return load_result{std::move(c), std::move(l.problems)};
}

} // namespace edge::conf
