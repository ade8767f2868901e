#include "sshgw/gateway.hpp"

#include "sshgw/connection.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include <sys/socket.h>

// jemalloc (linked into edgegate outside the sanitizer builds) reads this at start-up. libssh
// callocs every channel-data packet (~32 KiB) and frees it; past jemalloc's default thread-cache
// limit (32 KiB) each calloc came from the arena and was zeroed with madvise(MADV_DONTNEED): a TLB
// shoot-down per packet, 45% of the gateway's CPU and half its throughput. A 128 KiB limit keeps
// them in the thread cache. The thread cache's garbage collection (one size class per 64 KiB
// allocated, by default) still handed a cached block back every ~45 packets, zeroed the same way
// on its next calloc (~700 madvise calls per GiB relayed, ~0.2 ms each on this VM); once per
// 16 MiB allocated is rare enough. Harmless without jemalloc.
extern "C" {
// NOLINTNEXTLINE(readability-identifier-naming): jemalloc's name
extern const char* malloc_conf;
const char* malloc_conf = "tcache_max:131072,tcache_gc_incr_bytes:16777216";
}

namespace edge::sshgw {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
// Modern algorithms only: no SHA-1, CBC, group1/group14-sha1, ssh-rsa (SHA-1) signatures or NIST
// curves. libssh 0.10.6 adds strict KEX (Terrapin) on its own.
constexpr const char* kex_algorithms = "curve25519-sha256,curve25519-sha256@libssh.org,"
                                       "diffie-hellman-group16-sha512,"
                                       "diffie-hellman-group18-sha512";
constexpr const char* ciphers = "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,"
                                "aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr";
constexpr const char* macs = "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com";
constexpr const char* host_key_algorithms = "ssh-ed25519,rsa-sha2-512,rsa-sha2-256";

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw std::runtime_error("cannot read " + path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

detail::key_ptr import_key(const std::string& text, const char* what) {
    ssh_key key = nullptr;
    if (ssh_pki_import_privkey_base64(text.c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK ||
        !key)
        throw std::runtime_error(std::string(what) +
                                 ": not a usable private key (unencrypted OpenSSH or PEM)");
    return detail::key_ptr(key);
}
} // namespace

bool wanted(const conf::config& cfg, std::string& why_not) {
    if (cfg.ssh_gateway_api_key.empty() && cfg.ssh_gateway_api_key_file.empty()) {
        why_not = "SSH_GATEWAY_API_KEY (or API_KEY, or SSH_GATEWAY_API_KEY_FILE) is not set";
        return false;
    }
    if (cfg.ssh_private_key.empty() && cfg.ssh_private_key_file.empty()) {
        why_not = "SSH_PRIVATE_KEY (or SSH_PRIVATE_KEY_FILE), the key runners accept, is not set";
        return false;
    }
    return true;
}

std::shared_ptr<gateway_shared> make_shared_state(std::shared_ptr<const conf::config> cfg) {
    static const int init = ssh_init();
    (void)init;
    auto sh = std::make_shared<gateway_shared>();
    sh->cfg = cfg;
    sh->private_key_text =
        cfg->ssh_private_key.empty() ? read_file(cfg->ssh_private_key_file) : cfg->ssh_private_key;
    import_key(sh->private_key_text, "SSH_PRIVATE_KEY");
    if (!cfg->ssh_host_key.empty()) {
        sh->host_key_text = cfg->ssh_host_key;
    } else if (!cfg->ssh_host_key_file.empty()) {
        sh->host_key_text = read_file(cfg->ssh_host_key_file);
    } else {
        ssh_key key = nullptr;
        if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key) != SSH_OK)
            throw std::runtime_error("cannot generate an ed25519 host key");
        detail::key_ptr owned(key);
        char* b64 = nullptr;
        if (ssh_pki_export_privkey_base64(key, nullptr, nullptr, nullptr, &b64) != SSH_OK)
            throw std::runtime_error("cannot export the generated host key");
        sh->host_key_text = b64;
        ssh_string_free_char(b64);
        spdlog::warn("ssh: no SSH_HOST_KEY or SSH_HOST_KEY_FILE: using a generated ed25519 host "
                     "key that changes at every start");
    }
    auto host = import_key(sh->host_key_text, "SSH_HOST_KEY");
    auto type = ssh_key_type(host.get());
    if (type != SSH_KEYTYPE_ED25519 && type != SSH_KEYTYPE_RSA)
        throw std::runtime_error("SSH_HOST_KEY: use an ed25519 (preferred) or RSA key");
    return sh;
}

namespace detail {
std::string_view channel_kind_name(channel_kind k) noexcept {
    switch (k) {
    case channel_kind::session: return "session";
    case channel_kind::direct_tcpip: return "direct-tcpip";
    case channel_kind::forwarded_tcpip: return "forwarded-tcpip";
    case channel_kind::auth_agent: return "auth-agent";
    case channel_kind::x11: return "x11";
    }
    return "?";
}

gateway_metrics::gateway_metrics() {
    auto& reg = metrics::global();
    constexpr auto conns = "edgegate_ssh_connections_total";
    constexpr auto conns_help = "SSH client connections: accepted, or refused at accept "
                                "(SSH_MAX_UNAUTHENTICATED)";
    accepted = reg.counter(conns, conns_help, {{"result", "accepted"}});
    refused = reg.counter(conns, conns_help, {{"result", "refused"}});
    sessions = reg.gauge("edgegate_ssh_sessions", "SSH sessions logged in and relaying");
    static constexpr const char* outcomes[login_outcomes] = {
        "ok",      "invalid_token", "not_started",       "not_found", "unavailable",
        "runner_unavailable", "timeout", "too_many_attempts", "abandoned"};
    for (std::size_t i = 0; i < login_outcomes; ++i)
        logins[i] = reg.counter("edgegate_ssh_logins_total",
                                "SSH token logins by outcome (one per connection that offered a "
                                "token)",
                                {{"outcome", outcomes[i]}});
    login_seconds = reg.histogram("edgegate_ssh_login_duration_seconds",
                                  "From accept to the relay (key exchange, token check, runner "
                                  "connection)",
                                  {});
    for (std::size_t i = 0; i < channel_kinds; ++i) {
        auto type = channel_kind_name(static_cast<channel_kind>(i));
        channels[i] = reg.counter("edgegate_ssh_channels_total", "SSH channels relayed, by type",
                                  {{"type", type}});
        channel_refusals[i] =
            reg.counter("edgegate_ssh_channel_refusals_total",
                        "SSH channel opens the other side refused, by type", {{"type", type}});
    }
    constexpr auto bytes = "edgegate_ssh_bytes_total";
    constexpr auto bytes_help = "SSH channel data relayed (up: client to runner)";
    bytes_up = reg.counter(bytes, bytes_help, {{"direction", "up"}});
    bytes_down = reg.counter(bytes, bytes_help, {{"direction", "down"}});
    constexpr auto errors = "edgegate_ssh_relay_errors_total";
    constexpr auto errors_help = "SSH sessions ended by an error on one side (not a logout)";
    relay_errors_client = reg.counter(errors, errors_help, {{"side", "client"}});
    relay_errors_runner = reg.counter(errors, errors_help, {{"side", "runner"}});
}

worker_state::worker_state(asio::any_io_executor e, std::shared_ptr<gateway_shared> s,
                           auth::control_plane_client& api, routing::route_source& routes,
                           auth::key_holder& ssh_keys, auth::activity_tracker& activity_tracker)
    : ex(std::move(e)), shared(std::move(s)), cfg(*shared->cfg), bind(ssh_bind_new()),
      runner_key(import_key(shared->private_key_text, "SSH_PRIVATE_KEY")),
      validator(api, routes, ssh_keys, std::chrono::seconds(cfg.ssh_token_cache_sec)),
      activity(activity_tracker), scratch(4 * 1024 * 1024) {
    auto* b = bind.get();
    // The bind takes ownership of an imported key: one per worker.
    auto host = import_key(shared->host_key_text, "SSH_HOST_KEY");
    if (ssh_bind_options_set(b, SSH_BIND_OPTIONS_IMPORT_KEY, host.get()) != SSH_OK)
        throw std::runtime_error(std::string("ssh: host key: ") + ssh_get_error(b));
    (void)host.release();
    int no_config = 0;
    (void)no_config;
    for (auto [opt, value] :
         {std::pair{SSH_BIND_OPTIONS_KEY_EXCHANGE, kex_algorithms},
          std::pair{SSH_BIND_OPTIONS_CIPHERS_C_S, ciphers},
          std::pair{SSH_BIND_OPTIONS_CIPHERS_S_C, ciphers},
          std::pair{SSH_BIND_OPTIONS_HMAC_C_S, macs}, std::pair{SSH_BIND_OPTIONS_HMAC_S_C, macs},
          std::pair{SSH_BIND_OPTIONS_HOSTKEY_ALGORITHMS, host_key_algorithms}}) {
        if (ssh_bind_options_set(b, opt, value) != SSH_OK)
            throw std::runtime_error(std::string("ssh: algorithms: ") + ssh_get_error(b));
    }
}
} // namespace detail

struct gateway::impl {
    impl(asio::any_io_executor ex, std::shared_ptr<gateway_shared> s,
         auth::control_plane_client& api, routing::route_source& routes, auth::key_holder& keys,
         auth::activity_tracker& activity, routing::redis::client* redis)
        : state(std::make_shared<detail::worker_state>(ex, std::move(s), api, routes, keys,
                                                       activity)),
          acceptor(ex), drain_timer(ex) {
        state->redis = redis;
    }
    ~impl() {
        // Connections still referenced by pending handlers are ended now, while the worker's
        // services they use (API client, activity tracker) still exist.
        auto live = state->live;
        for (auto* c : live)
            c->abort();
    }
    std::shared_ptr<detail::worker_state> state;
    tcp::acceptor acceptor;
    asio::steady_timer drain_timer;
};

gateway::gateway(asio::any_io_executor ex, std::shared_ptr<gateway_shared> shared,
                 auth::control_plane_client& api, routing::route_source& routes,
                 auth::key_holder& ssh_keys, auth::activity_tracker& activity,
                 routing::redis::client* redis)
    : impl_(std::make_unique<impl>(std::move(ex), std::move(shared), api, routes, ssh_keys,
                                   activity, redis)) {}

gateway::~gateway() = default;

void gateway::start(const tcp::endpoint& ep) {
    auto& a = impl_->acceptor;
    a.open(ep.protocol());
    a.set_option(tcp::acceptor::reuse_address(true));
    int one = 1;
    if (::setsockopt(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        throw std::runtime_error("SO_REUSEPORT on the SSH port failed");
    a.bind(ep);
    a.listen(asio::socket_base::max_listen_connections);
    asio::co_spawn(
        a.get_executor(),
        [this]() -> awaitable<void> {
            auto& acc = impl_->acceptor;
            for (;;) {
                auto [ec, sock] = co_await acc.async_accept(use_nothrow);
                if (ec == asio::error::operation_aborted || !acc.is_open())
                    co_return;
                if (ec)
                    continue;
                std::make_shared<connection>(impl_->state, std::move(sock))->start();
            }
        },
        asio::detached);
}

void gateway::stop_accepting() {
    boost::system::error_code ignored;
    impl_->acceptor.close(ignored);
}

void gateway::drain(std::chrono::steady_clock::time_point deadline) {
    stop_accepting();
    using namespace std::chrono;
    // Early enough for the disconnect messages to go out and the connections to be counted
    // gone before the process's own deadline check.
    auto left = deadline - steady_clock::now();
    auto margin = std::min<steady_clock::duration>(seconds(1), left / 4);
    impl_->drain_timer.expires_at(deadline - margin);
    impl_->drain_timer.async_wait([state = impl_->state](const boost::system::error_code& ec) {
        if (ec)
            return;
        auto live = state->live; // ending one removes it from the set
        if (!live.empty())
            spdlog::info("ssh: drain deadline: telling {} client(s) the gateway is restarting",
                         live.size());
        for (auto* c : live)
            if (state->live.count(c))
                c->end_for_restart();
    });
}

std::size_t gateway::sessions() const noexcept {
    return impl_->state->live_count.load();
}

} // namespace edge::sshgw
