#pragma once
// One client connection: a libssh server session on the accepted socket, after login ONE libssh
// client session to the sandbox's runner, and the relay of every channel and global request
// between them. Both sockets are watched by Asio; on each readiness event libssh is polled until
// it has nothing left (ssh_event_dopoll until SSH_AGAIN: libssh reads 4 KiB per call while Asio's
// epoll is edge-triggered), then its message queues are served. Lives on one worker thread; owned
// by shared_ptr (pending waits and coroutines hold it).
#include "auth/activity.hpp"
#include "common/metrics.hpp"
#include "routing/redis/redis_client.hpp"
#include "sshgw/libssh.hpp"
#include "sshgw/login.hpp"
#include "sshgw/readahead.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace edge::sshgw {

// Redis key of a runner's pinned host key: {prefix}{domain}:{port} → "SHA256:..." (no TTL).
inline constexpr std::string_view runner_host_key_prefix = "edgegate:ssh-runner-host-key:";

struct gateway_shared {
    std::shared_ptr<const conf::config> cfg;
    std::string host_key_text;    // OpenSSH/PEM private key text
    std::string private_key_text; // toward runners
    std::mutex tofu_mu;
    std::unordered_map<std::string, std::string> tofu; // "host:port" → SHA256 fingerprint
    std::atomic<unsigned> unauthenticated{0};
};

class connection;

namespace detail {
// Channel types the gateway relays (an index into per-type counters).
enum class channel_kind { session, direct_tcpip, forwarded_tcpip, auth_agent, x11 };
inline constexpr std::size_t channel_kinds = 5;
std::string_view channel_kind_name(channel_kind k) noexcept;

// How a login ended (edgegate_ssh_logins_total{outcome}).
enum class login_outcome {
    ok,
    invalid_token,
    not_started,
    not_found,
    unavailable,        // the API did not answer
    runner_unavailable, // the runner's SSH could not be reached, refused our key or host key
    timeout,            // SSH_LOGIN_GRACE_SEC
    too_many_attempts,
    abandoned // the client left while its token was being checked
};
inline constexpr std::size_t login_outcomes = 9;

// The gateway's series in the process registry; one set of handles per worker.
struct gateway_metrics {
    gateway_metrics();
    metrics::counter accepted;      // edgegate_ssh_connections_total{result="accepted"}
    metrics::counter refused;       // ... {result="refused"} (SSH_MAX_UNAUTHENTICATED)
    metrics::gauge sessions;        // edgegate_ssh_sessions: logged in, relaying
    metrics::counter logins[login_outcomes];
    metrics::histogram login_seconds;                // accept → relay
    metrics::counter channels[channel_kinds];        // opened, by type
    metrics::counter channel_refusals[channel_kinds]; // the other side refused the open
    metrics::counter bytes_up, bytes_down;           // channel payload relayed
    metrics::counter relay_errors_client, relay_errors_runner;
};

// Everything a connection needs from its worker.
struct worker_state {
    worker_state(boost::asio::any_io_executor e, std::shared_ptr<gateway_shared> s,
                 auth::control_plane_client& api, routing::route_source& routes,
                 auth::key_holder& ssh_keys, auth::activity_tracker& activity);
    boost::asio::any_io_executor ex;
    std::shared_ptr<gateway_shared> shared;
    const conf::config& cfg;
    bind_ptr bind;
    key_ptr runner_key;
    token_validator validator;
    auth::activity_tracker& activity;
    routing::redis::client* redis = nullptr; // runner host key pins, when Redis is configured
    std::vector<char> scratch;
    readahead_pool readahead_buffers;
    gateway_metrics metrics;
    std::unordered_set<connection*> live;
    std::atomic<std::size_t> live_count{0}; // readable from any thread (shutdown drain)
};
} // namespace detail

class connection : public std::enable_shared_from_this<connection> {
  public:
    connection(std::shared_ptr<detail::worker_state> w, boost::asio::ip::tcp::socket sock);
    ~connection();
    void start();
    // Ends the connection now (the gateway is going away): no more use of the worker's
    // services (activity tracker, API) from here on.
    void abort();
    // The drain deadline: the client is told the gateway is restarting, then disconnected.
    void end_for_restart();

    struct side;
    struct channel_pair;

  private:
    enum class phase {
        kex,
        auth,
        validating,
        connecting,
        handshake,
        host_key, // waiting for the runner host key pin in Redis
        upstream_auth,
        relay,
        done
    };
    struct action {
        std::function<int()> run; // SSH_OK, SSH_ERROR or SSH_AGAIN (call again later)
        ssh_message reply_to = nullptr;
        bool global = false;
        std::function<void(int)> then; // optional, after run() finished
    };

    void pump();
    void drive_io();
    void flush();
    void step();
    void arm();
    void on_ready(bool upstream, bool write);

    void serve_client_message(ssh_message m);
    void serve_runner_message(ssh_message m);
    void begin_login(ssh_message m, std::string token);
    void deny_auth(ssh_message m);
    void login_done(login_result r);
    void connect_upstream(std::string host);
    void upstream_connected();
    // True: go on; false: refused (fail() called) or the Redis pin check resumes the login.
    bool check_runner_host_key();
    bool pin_in_memory(const std::string& where, const std::string& fingerprint);
    void upstream_ready();
    void keepalive();

    channel_pair& new_pair();
    void open_from_client(ssh_message m);
    void open_from_runner(ssh_message m);
    void channel_request_from_client(ssh_message m);
    void global_request_from_client(ssh_message m);
    void attach(channel_pair& p);
    bool run_actions(std::deque<action>& q);
    void service_pair(channel_pair& p);
    void reap_pairs();

    // Tells the client `user_message` (a banner before login, the disconnect message), logs
    // `log_detail`, then close(reason). An empty reason: login_failed before the relay, error in it.
    void fail(const std::string& user_message, const std::string& log_detail,
              std::string_view reason = {});
    // Ends the connection; `reason` goes to the session log line (close_reason).
    void close(std::string_view reason, const std::string& detail = {});
    void release_sockets();
    void count_login(detail::login_outcome o) noexcept;
    void count_bytes(int from, int n) noexcept;
    void log_session() noexcept;

  public: // called from libssh's C callbacks
    int on_data(side& s, void* data, uint32_t len, int is_stderr) noexcept;
    void on_eof(side& s) noexcept;
    void on_close(side& s) noexcept;
    void on_signal(side& s, const char* signal) noexcept;
    void on_exit_status(side& s, int status) noexcept;
    void on_exit_signal(side& s, const char* signal, int core, const char* errmsg,
                        const char* lang) noexcept;
    void on_agent_req(side& s) noexcept;

  private:
    std::shared_ptr<detail::worker_state> keep_; // outlives the gateway while handlers hold us
    detail::worker_state& w_;
    detail::readahead ra_; // under libssh's 4 KiB reads; installed around libssh calls
    boost::asio::ip::tcp::socket client_sock_;
    boost::asio::ip::tcp::socket runner_sock_;
    boost::asio::steady_timer grace_timer_;
    boost::asio::steady_timer keepalive_timer_;
    detail::session_ptr server_;
    detail::session_ptr upstream_;
    detail::event_ptr event_;
    bool client_fd_in_ssh_ = false; // libssh closes it from then on
    bool runner_fd_in_ssh_ = false;
    bool server_in_event_ = false;
    bool upstream_in_event_ = false;
    phase phase_ = phase::kex;
    bool counted_unauth_ = false;
    bool in_pump_ = false;
    bool repump_ = false;
    bool armed_[2][2] = {{false, false}, {false, false}}; // [upstream][write]
    int auth_attempts_ = 0;
    ssh_message pending_auth_ = nullptr;
    std::string sandbox_id_;
    std::string runner_host_;
    std::string peer_;
    std::list<std::unique_ptr<channel_pair>> pairs_;
    std::deque<action> global_actions_;
    auth::activity_tracker::handle activity_; // heartbeats while the session lives

    // For the session log line and the metrics.
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
    bool token_presented_ = false;
    bool login_counted_ = false;
    bool in_sessions_gauge_ = false;
    bool logged_in_ = false;
    bool logged_ = false; // the session line is written
    std::string close_reason_;
    std::string close_error_; // what the client was told, when it was told something
    std::uint64_t bytes_[2] = {0, 0}; // [0] client → runner, [1] runner → client
    unsigned channels_[detail::channel_kinds] = {};
    std::optional<int> exit_status_; // the last one a runner channel reported
    std::string exit_signal_;
};

} // namespace edge::sshgw
