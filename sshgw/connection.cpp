#include "sshgw/connection.hpp"

#include "common/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

// libssh marks the pty/x11/password getters deprecated without a replacement for server code
// that reads requests from its message queue.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace edge::sshgw {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// One end of a relayed channel: index 0 is the client's, 1 the runner's.
struct connection::side {
    connection* conn = nullptr;
    channel_pair* pair = nullptr;
    int index = 0;
    ssh_channel ch = nullptr;
    ssh_channel_callbacks_struct cb{};
    uint32_t leftover[2] = {0, 0}; // bytes libssh keeps for us (stdout, stderr) not yet forwarded
    // Bytes taken out of libssh that the other side did not accept yet (its window was short,
    // or its session was re-keying): written before anything else of that stream. At most one
    // of libssh's windows.
    std::string taken[2];
    bool eof_in = false, eof_out = false, close_in = false, close_out = false;
};

struct connection::channel_pair {
    side s[2];
    detail::channel_kind kind = detail::channel_kind::session;
    bool open = false;
    std::deque<action> requests; // the client's requests, played on the runner channel in order
    std::deque<action> opening;  // the open on the other side, until it is answered
};

namespace {
// What a client sees when the drain deadline ends its session (tests assert it).
constexpr const char* msg_restarting = "sandbox gateway is restarting, please reconnect";
constexpr std::size_t scratch_size = 4 * 1024 * 1024;
constexpr int dopoll_budget = 1024; // 4 MiB of input per pump before yielding to other sessions

connection::side& side_of(void* u) {
    return *static_cast<connection::side*>(u);
}

int cb_data(ssh_session, ssh_channel, void* data, uint32_t len, int is_stderr, void* u) {
    auto& s = side_of(u);
    return s.conn->on_data(s, data, len, is_stderr);
}
void cb_eof(ssh_session, ssh_channel, void* u) {
    auto& s = side_of(u);
    s.conn->on_eof(s);
}
void cb_close(ssh_session, ssh_channel, void* u) {
    auto& s = side_of(u);
    s.conn->on_close(s);
}
void cb_signal(ssh_session, ssh_channel, const char* signal, void* u) {
    auto& s = side_of(u);
    s.conn->on_signal(s, signal);
}
void cb_exit_status(ssh_session, ssh_channel, int status, void* u) {
    auto& s = side_of(u);
    s.conn->on_exit_status(s, status);
}
void cb_exit_signal(ssh_session, ssh_channel, const char* signal, int core, const char* errmsg,
                    const char* lang, void* u) {
    auto& s = side_of(u);
    s.conn->on_exit_signal(s, signal, core, errmsg, lang);
}
void cb_agent_req(ssh_session, ssh_channel, void* u) {
    auto& s = side_of(u);
    s.conn->on_agent_req(s);
}

std::string str(const char* s) {
    return s ? s : "";
}

// TCP keepalive after 60 s of silence, 4 probes 15 s apart: a vanished peer is noticed in about
// two minutes (the SSH_MSG_IGNORE keepalive below makes the silence rare on the client side).
void set_keepalive(tcp::socket& sock) {
    boost::system::error_code ec;
    sock.set_option(tcp::socket::keep_alive(true), ec);
    int idle = 60, interval = 15, count = 4;
    ::setsockopt(sock.native_handle(), IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(sock.native_handle(), IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(sock.native_handle(), IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

// The data of one packet libssh sends to a peer that allows 32 KiB packets (its maximum packet
// size less the 10 bytes of the channel data message), the common case toward OpenSSH.
constexpr uint32_t max_relay_payload = 32768 - 10;

// Writes up to `n` bytes of stdout (st 0) or stderr (st 1) to `ch`: the bytes libssh took, 0 when
// none (its session re-keying, or a failed write).
int write_stream(ssh_channel ch, int st, const void* data, uint32_t n) {
    if (n == 0)
        return 0;
    int w = st ? ssh_channel_write_stderr(ch, data, n) : ssh_channel_write(ch, data, n);
    return std::max(w, 0);
}

// Toward runners: the client's cipher first, then AES-GCM (the cheapest with AES-NI),
// chacha20-poly1305 and AES-CTR.
std::string upstream_ciphers(const std::string& client_cipher) {
    static constexpr const char* preferred[] = {
        "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
        "aes128-ctr",             "aes192-ctr",             "aes256-ctr"};
    std::string out;
    if (std::find(std::begin(preferred), std::end(preferred), client_cipher) !=
        std::end(preferred))
        out = client_cipher;
    for (const char* c : preferred) {
        if (c == client_cipher)
            continue;
        if (!out.empty())
            out += ',';
        out += c;
    }
    return out;
}

bool closed(ssh_session s) {
    return !s || (ssh_get_status(s) & (SSH_CLOSED | SSH_CLOSED_ERROR)) != 0;
}
} // namespace

connection::connection(std::shared_ptr<detail::worker_state> w, tcp::socket sock)
    : keep_(std::move(w)), w_(*keep_), ra_(w_.readahead_buffers), client_sock_(std::move(sock)),
      runner_sock_(keep_->ex),
      grace_timer_(keep_->ex), keepalive_timer_(keep_->ex) {
    boost::system::error_code ec;
    auto ep = client_sock_.remote_endpoint(ec);
    peer_ = ec ? "?" : ep.address().to_string() + ":" + std::to_string(ep.port());
    w_.live.insert(this);
    w_.live_count.fetch_add(1);
}

connection::~connection() {
    w_.live.erase(this);
    w_.live_count.fetch_sub(1);
    if (in_sessions_gauge_)
        w_.metrics.sessions.dec();
    if (!logged_ && client_fd_in_ssh_) {
        close_reason_ = "ended";
        log_session();
    }
    if (counted_unauth_)
        w_.shared->unauthenticated.fetch_sub(1);
    if (pending_auth_)
        ssh_message_free(pending_auth_);
    for (auto& p : pairs_) {
        for (auto& a : p->requests)
            if (a.reply_to)
                ssh_message_free(a.reply_to);
        for (auto& a : p->opening)
            if (a.reply_to)
                ssh_message_free(a.reply_to);
    }
    for (auto& a : global_actions_)
        if (a.reply_to)
            ssh_message_free(a.reply_to);
    // libssh closes the descriptors it was given: Asio lets go of them first.
    release_sockets();
    if (event_) {
        if (server_in_event_)
            ssh_event_remove_session(event_.get(), server_.get());
        if (upstream_in_event_)
            ssh_event_remove_session(event_.get(), upstream_.get());
    }
    event_.reset();
    pairs_.clear(); // channels are freed with their sessions
    upstream_.reset();
    server_.reset();
}

void connection::abort() {
    close("gateway_stopping");
}

void connection::end_for_restart() {
    auto self = weak_from_this().lock();
    if (!self)
        return;
    fail(msg_restarting, "the drain deadline (SHUTDOWN_TIMEOUT_SEC) is reached", "gateway_restart");
}

// A descriptor libssh has taken is closed by libssh (ssh_free): Asio only lets go of it.
void connection::release_sockets() {
    boost::system::error_code ignored;
    for (auto [sock, in_ssh] : {std::pair{&client_sock_, client_fd_in_ssh_},
                                std::pair{&runner_sock_, runner_fd_in_ssh_}}) {
        if (!sock->is_open())
            continue;
        sock->cancel(ignored);
        if (in_ssh)
            sock->release(ignored);
        else
            sock->close(ignored);
    }
}

void connection::start() {
    auto& sh = *w_.shared;
    if (sh.unauthenticated.fetch_add(1) >= w_.cfg.ssh_max_unauthenticated) {
        sh.unauthenticated.fetch_sub(1);
        w_.metrics.refused.inc();
        spdlog::warn(
            "ssh: {} refused: {} connections are still logging in (SSH_MAX_UNAUTHENTICATED)", peer_,
            w_.cfg.ssh_max_unauthenticated);
        return; // the socket closes with us
    }
    counted_unauth_ = true;
    w_.metrics.accepted.inc();
    boost::system::error_code ec;
    client_sock_.non_blocking(true, ec);
    client_sock_.set_option(tcp::no_delay(true), ec);
    set_keepalive(client_sock_);

    server_.reset(ssh_new());
    event_.reset(ssh_event_new());
    if (!server_ || !event_ ||
        ssh_bind_accept_fd(w_.bind.get(), server_.get(), client_sock_.native_handle()) != SSH_OK) {
        spdlog::error("ssh: {}: cannot start a session: {}", peer_, ssh_get_error(w_.bind.get()));
        return;
    }
    client_fd_in_ssh_ = true;
    ra_.watch(0, client_sock_.native_handle());
    ssh_set_blocking(server_.get(), 0);
    ssh_set_auth_methods(server_.get(), SSH_AUTH_METHOD_NONE | SSH_AUTH_METHOD_PASSWORD |
                                            SSH_AUTH_METHOD_INTERACTIVE);

    grace_timer_.expires_after(std::chrono::seconds(w_.cfg.ssh_login_grace_sec));
    grace_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
        if (!e && self->phase_ != phase::relay && self->phase_ != phase::done)
            self->fail("login timed out", "login grace time elapsed", "login_timeout");
    });
    pump();
}

// ---------------------------------------------------------------------------------------------
// Driving libssh from Asio readiness

void connection::on_ready(bool upstream, bool write) {
    armed_[upstream][write] = false;
    if (!write)
        ra_.on_readable(upstream ? 1 : 0);
    pump();
}

void connection::pump() {
    if (phase_ == phase::done)
        return;
    if (in_pump_) {
        repump_ = true;
        return;
    }
    auto self = shared_from_this();
    detail::readahead::scope reading(ra_);
    in_pump_ = true;
    int rounds = 0;
    do {
        repump_ = false;
        // Relaying: libssh's output waits in its buffers while input is read and goes out in
        // flush(), one send() per socket per read-ahead chunk instead of one per packet.
        ra_.set_mode(phase_ == phase::relay ? detail::readahead::mode::batch
                                            : detail::readahead::mode::plain);
        drive_io();
        auto after_io = ra_.buffered();
        if (phase_ != phase::done)
            step();
        // A libssh call in step() read the socket: what it took into the read-ahead is not
        // socket readiness any more, so drive_io() must run again for it.
        if (ra_.buffered() > 0 && ra_.buffered() != after_io)
            repump_ = true;
    } while (repump_ && phase_ != phase::done && ++rounds < 16);
    if (phase_ != phase::done)
        flush();
    ra_.set_mode(detail::readahead::mode::plain);
    in_pump_ = false;
    if (phase_ == phase::done)
        return;
    ra_.release_idle();
    if (repump_) { // more to do: let other connections of this worker run first
        repump_ = false;
        asio::post(w_.ex, [self] { self->pump(); });
    }
    arm();
}

void connection::drive_io() {
    if (!server_in_event_) {
        // A session joins the event once libssh has set up its poll context (after its first
        // handle_key_exchange / connect call).
        return;
    }
    bool batch = ra_.current_mode() == detail::readahead::mode::batch;
    for (int i = 0; i < dopoll_budget; ++i) {
        ra_.expect_outer_poll(true);
        int rc = ssh_event_dopoll(event_.get(), 0);
        ra_.expect_outer_poll(false);
        if (rc == SSH_AGAIN || rc == SSH_ERROR) // SSH_ERROR: a socket closed or failed
            return;
        if (batch && ra_.buffered() == 0)
            flush(); // a read-ahead chunk is done: what it produced goes out
    }
    repump_ = true; // budget used up with input still waiting: come back without an event
}

// Sends what libssh buffered for either socket: a poll round that reports POLLOUT (without a
// system call) for the sockets with bytes to send and nothing else. What the kernel does not
// take stays in libssh's buffer; arm() waits for the socket to become writable.
void connection::flush() {
    bool pending[2] = {server_in_event_ && (ssh_get_status(server_.get()) & SSH_WRITE_PENDING),
                       upstream_in_event_ && (ssh_get_status(upstream_.get()) & SSH_WRITE_PENDING)};
    if (!pending[0] && !pending[1])
        return;
    auto was = ra_.current_mode();
    ra_.set_mode(detail::readahead::mode::flush);
    ra_.flush_on(pending[0], pending[1]);
    ssh_event_dopoll(event_.get(), 0);
    ra_.flush_on(false, false);
    ra_.set_mode(was);
}

void connection::arm() {
    auto wait = [this](tcp::socket& sock, bool upstream, bool write) {
        if (armed_[upstream][write] || !sock.is_open())
            return;
        armed_[upstream][write] = true;
        sock.async_wait(
            write ? tcp::socket::wait_write : tcp::socket::wait_read,
            [self = shared_from_this(), upstream, write](const boost::system::error_code& ec) {
                if (ec == asio::error::operation_aborted)
                    return;
                self->on_ready(upstream, write);
            });
    };
    // Written only when libssh holds bytes it could not send (ssh_get_poll_flags would say
    // SSH_WRITE_PENDING after every send: libssh asks for POLLOUT again each time).
    wait(client_sock_, false, false);
    if (server_ && (ssh_get_status(server_.get()) & SSH_WRITE_PENDING))
        wait(client_sock_, false, true);
    if (upstream_ && runner_sock_.is_open()) {
        wait(runner_sock_, true, false);
        if (ssh_get_status(upstream_.get()) & SSH_WRITE_PENDING)
            wait(runner_sock_, true, true);
    }
}

void connection::step() {
    if (phase_ == phase::kex) {
        int rc = ssh_handle_key_exchange(server_.get());
        if (!server_in_event_ && ssh_event_add_session(event_.get(), server_.get()) == SSH_OK)
            server_in_event_ = true;
        if (rc == SSH_ERROR)
            return close("key_exchange_failed", ssh_get_error(server_.get()));
        if (rc == SSH_AGAIN)
            return;
        phase_ = phase::auth;
        repump_ = true;
    }
    if (closed(server_.get())) {
        // libssh marks a session that received SSH_MSG_DISCONNECT (a logout) or a plain TCP
        // close (`ssh -W` ends that way) as failed too; only its error text tells them apart
        // from a reset or a timeout.
        std::string_view error = ssh_get_error(server_.get());
        bool clean = !(ssh_get_status(server_.get()) & SSH_CLOSED_ERROR) ||
                     error.starts_with("Received SSH_MSG_DISCONNECT") ||
                     error == "Socket error: disconnected";
        return close(clean ? "client_closed" : "client_error", std::string(error));
    }

    while (phase_ != phase::done) {
        ssh_message m = ssh_message_get(server_.get());
        if (!m)
            break;
        serve_client_message(m);
    }
    if (phase_ == phase::done)
        return;

    if (phase_ == phase::handshake) {
        int rc = ssh_connect(upstream_.get());
        runner_fd_in_ssh_ = true;
        if (!upstream_in_event_ && ssh_event_add_session(event_.get(), upstream_.get()) == SSH_OK)
            upstream_in_event_ = true;
        if (rc == SSH_ERROR)
            return fail(msg_unavailable, std::string("SSH handshake with the runner failed: ") +
                                             ssh_get_error(upstream_.get()));
        if (rc == SSH_AGAIN)
            return;
        if (!check_runner_host_key())
            return; // refused, or the Redis pin check resumes the login
        phase_ = phase::upstream_auth;
    }
    if (phase_ == phase::upstream_auth) {
        int rc = ssh_userauth_publickey(upstream_.get(), nullptr, w_.runner_key.get());
        if (rc == SSH_AUTH_AGAIN)
            return;
        if (rc != SSH_AUTH_SUCCESS)
            return fail(msg_unavailable,
                        "the runner refused the gateway's key (SSH_PRIVATE_KEY) for sandbox " +
                            sandbox_id_ + ": " + ssh_get_error(upstream_.get()));
        upstream_ready();
    }
    if (phase_ != phase::relay)
        return;

    if (closed(upstream_.get()))
        return fail("the sandbox closed the connection", "runner closed the SSH connection",
                    "runner_closed");
    while (phase_ != phase::done) {
        ssh_message m = ssh_message_get(upstream_.get());
        if (!m)
            break;
        serve_runner_message(m);
    }
    run_actions(global_actions_);
    for (auto& p : pairs_)
        service_pair(*p);
    reap_pairs();
}

// ---------------------------------------------------------------------------------------------
// Login

void connection::serve_client_message(ssh_message m) {
    int type = ssh_message_type(m);
    int sub = ssh_message_subtype(m);
    if (type == SSH_REQUEST_AUTH) {
        if (phase_ != phase::auth) { // a second request while one is being validated
            ssh_message_reply_default(m);
            ssh_message_free(m);
            return;
        }
        if (sub == SSH_AUTH_METHOD_NONE) {
            std::string user = str(ssh_message_auth_user(m));
            // Daytona's form: the token as the username. A short name ("root", "daytona") is
            // a client that will offer the token as a password or keyboard-interactive answer.
            if (user.size() >= 16 && looks_like_token(user))
                return begin_login(m, user);
            return deny_auth(m);
        }
        if (sub == SSH_AUTH_METHOD_PASSWORD)
            return begin_login(m, str(ssh_message_auth_password(m)));
        if (sub == SSH_AUTH_METHOD_INTERACTIVE) {
            if (!ssh_message_auth_kbdint_is_response(m)) {
                const char* prompts[] = {"Sandbox SSH access token: "};
                char echo[] = {0};
                ssh_message_auth_interactive_request(
                    m, "edgegate", "Log in with your sandbox's SSH access token", 1, prompts, echo);
                ssh_message_free(m);
                return;
            }
            std::string answer = ssh_userauth_kbdint_getnanswers(server_.get()) > 0
                                     ? str(ssh_userauth_kbdint_getanswer(server_.get(), 0))
                                     : std::string();
            return begin_login(m, answer);
        }
        return deny_auth(m);
    }
    if (phase_ != phase::relay) {
        ssh_message_reply_default(m); // service requests are accepted, the rest refused
        ssh_message_free(m);
        return;
    }
    if (type == SSH_REQUEST_CHANNEL_OPEN)
        return open_from_client(m);
    if (type == SSH_REQUEST_CHANNEL)
        return channel_request_from_client(m);
    if (type == SSH_REQUEST_GLOBAL)
        return global_request_from_client(m);
    ssh_message_reply_default(m);
    ssh_message_free(m);
}

void connection::deny_auth(ssh_message m) {
    ssh_message_auth_set_methods(m, SSH_AUTH_METHOD_PASSWORD | SSH_AUTH_METHOD_INTERACTIVE);
    ssh_message_reply_default(m);
    ssh_message_free(m);
}

void connection::begin_login(ssh_message m, std::string token) {
    token_presented_ = true;
    if (++auth_attempts_ > 6) {
        ssh_message_free(m);
        return fail("too many authentication attempts", "more than 6 authentication attempts",
                    "too_many_auth_attempts");
    }
    pending_auth_ = m;
    phase_ = phase::validating;
    asio::co_spawn(
        w_.ex,
        [self = shared_from_this(), token = std::move(token)]() -> awaitable<void> {
            auto r = co_await self->w_.validator.validate(token);
            self->login_done(std::move(r));
        },
        asio::detached);
}

void connection::login_done(login_result r) {
    if (phase_ != phase::validating)
        return;
    if (r.status != login_status::ok) {
        using detail::login_outcome;
        count_login(r.status == login_status::invalid_token ? login_outcome::invalid_token
                    : r.status == login_status::not_started ? login_outcome::not_started
                    : r.status == login_status::not_found   ? login_outcome::not_found
                                                            : login_outcome::unavailable);
        return fail(r.message, r.detail);
    }
    sandbox_id_ = r.sandbox_id;
    connect_upstream(r.runner_host);
}

void connection::connect_upstream(std::string host) {
    phase_ = phase::connecting;
    runner_host_ = host;
    asio::co_spawn(
        w_.ex,
        [self = shared_from_this(), host = std::move(host)]() -> awaitable<void> {
            auto port = self->w_.cfg.runner_ssh_port;
            asio::steady_timer deadline(
                self->w_.ex, std::chrono::seconds(self->w_.cfg.upstream_connect_timeout_sec));
            bool timed_out = false;
            deadline.async_wait([&](const boost::system::error_code& ec) {
                if (!ec) {
                    timed_out = true;
                    boost::system::error_code ignored;
                    self->runner_sock_.close(ignored);
                }
            });
            boost::system::error_code ec;
            auto addr = asio::ip::make_address(host, ec);
            if (!ec) {
                auto [cec] = co_await self->runner_sock_.async_connect(tcp::endpoint(addr, port),
                                                                       use_nothrow);
                ec = cec;
            } else {
                tcp::resolver resolver(self->w_.ex);
                auto [rec, results] =
                    co_await resolver.async_resolve(host, std::to_string(port), use_nothrow);
                ec = rec;
                if (!ec) {
                    auto [cec, ep] =
                        co_await asio::async_connect(self->runner_sock_, results, use_nothrow);
                    ec = cec;
                }
            }
            deadline.cancel();
            if (self->phase_ != phase::connecting)
                co_return;
            if (ec || timed_out) {
                boost::system::error_code ignored;
                self->runner_sock_.close(ignored);
                co_return self->fail(msg_unavailable,
                                     "cannot reach the runner's SSH at " + host + ":" +
                                         std::to_string(port) + ": " +
                                         (timed_out ? std::string("timeout") : ec.message()));
            }
            self->upstream_connected();
        },
        asio::detached);
}

void connection::upstream_connected() {
    boost::system::error_code ec;
    runner_sock_.non_blocking(true, ec);
    runner_sock_.set_option(tcp::no_delay(true), ec);
    set_keepalive(runner_sock_);
    upstream_.reset(ssh_new());
    auto* up = upstream_.get();
    socket_t fd = runner_sock_.native_handle();
    int port = w_.cfg.runner_ssh_port;
    int no = 0;
    ssh_options_set(up, SSH_OPTIONS_PROCESS_CONFIG, &no);
    ssh_options_set(up, SSH_OPTIONS_HOST, runner_host_.c_str());
    ssh_options_set(up, SSH_OPTIONS_PORT, &port);
    ssh_options_set(up, SSH_OPTIONS_USER, sandbox_id_.c_str());
    ssh_options_set(up, SSH_OPTIONS_FD, &fd);
    ra_.watch(1, fd);
    ssh_options_set(up, SSH_OPTIONS_KNOWNHOSTS, "/dev/null");
    ssh_options_set(up, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null");
    // The cipher the client chose is offered first: the runner's sshd does the same work as for
    // a direct connection, and a client held to a cipher (FIPS: AES-GCM) gets it on both hops.
    auto ciphers = upstream_ciphers(str(ssh_get_cipher_out(server_.get())));
    ssh_options_set(up, SSH_OPTIONS_CIPHERS_C_S, ciphers.c_str());
    ssh_options_set(up, SSH_OPTIONS_CIPHERS_S_C, ciphers.c_str());
    ssh_set_blocking(up, 0);
    phase_ = phase::handshake;
    pump();
}

bool connection::check_runner_host_key() {
    const auto& policy = w_.cfg.ssh_runner_host_key_check;
    if (policy == "off")
        return true;
    std::string where = runner_host_ + ":" + std::to_string(w_.cfg.runner_ssh_port);
    if (policy == "known-hosts") {
        ssh_options_set(upstream_.get(), SSH_OPTIONS_KNOWNHOSTS,
                        w_.cfg.ssh_known_hosts_file.c_str());
        auto st = ssh_session_is_known_server(upstream_.get());
        if (st == SSH_KNOWN_HOSTS_OK)
            return true;
        fail(msg_unavailable,
             "host key of runner " + where +
                 (st == SSH_KNOWN_HOSTS_CHANGED || st == SSH_KNOWN_HOSTS_OTHER
                      ? " does NOT match SSH_KNOWN_HOSTS_FILE: refusing the connection"
                      : " is not in SSH_KNOWN_HOSTS_FILE: refusing the connection"));
        return false;
    }
    ssh_key key = nullptr;
    if (ssh_get_server_publickey(upstream_.get(), &key) != SSH_OK) {
        fail(msg_unavailable, "runner " + where + " sent no host key");
        return false;
    }
    detail::key_ptr owned(key);
    unsigned char* hash = nullptr;
    size_t hlen = 0;
    if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) != 0) {
        fail(msg_unavailable, "cannot hash the host key of runner " + where);
        return false;
    }
    char* fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
    std::string fingerprint = fp ? fp : "";
    ssh_string_free_char(fp);
    ssh_clean_pubkey_hash(&hash);
    if (!w_.redis)
        return pin_in_memory(where, fingerprint);
    // Pinned in Redis, shared by every replica: SET NX claims the first key seen; a later
    // different key refuses. Without an answer from Redis the in-memory pin decides.
    phase_ = phase::host_key;
    asio::co_spawn(
        w_.ex,
        [self = shared_from_this(), where, fingerprint]() -> awaitable<void> {
            auto pin_key = std::string(runner_host_key_prefix) + where;
            auto& redis = *self->w_.redis;
            std::optional<std::string> pinned;
            bool first = false;
            // (argument vectors built outside co_await: g++ 12 mis-compiles braced lists there)
            std::vector<std::string> set_args{"SET", pin_key, fingerprint, "NX"};
            std::vector<std::string> get_args{"GET", pin_key};
            auto set = co_await redis.command(std::move(set_args));
            if (set && set->type == routing::redis::reply::kind::status) {
                first = true;
            } else if (set && set->type == routing::redis::reply::kind::nil) {
                auto get = co_await redis.command(std::move(get_args));
                if (get && get->type == routing::redis::reply::kind::string)
                    pinned = get->str;
            }
            if (self->phase_ != phase::host_key)
                co_return;
            if (first) {
                spdlog::info("ssh: runner {} host key {} trusted on first use (pinned in Redis)",
                             where, fingerprint);
            } else if (pinned && *pinned != fingerprint) {
                co_return self->fail(msg_unavailable, "host key of runner " + where + " changed (" +
                                                          *pinned + " pinned in Redis -> " +
                                                          fingerprint +
                                                          "): refusing the connection");
            } else if (!pinned && !self->pin_in_memory(where, fingerprint)) {
                co_return;
            }
            self->phase_ = phase::upstream_auth;
            self->pump();
        },
        asio::detached);
    return false;
}

bool connection::pin_in_memory(const std::string& where, const std::string& fingerprint) {
    std::lock_guard lock(w_.shared->tofu_mu);
    auto [it, first] = w_.shared->tofu.emplace(where, fingerprint);
    if (first) {
        spdlog::info("ssh: runner {} host key {} trusted on first use", where, fingerprint);
        return true;
    }
    if (it->second == fingerprint)
        return true;
    fail(msg_unavailable, "host key of runner " + where + " changed (" + it->second + " -> " +
                              fingerprint + "): refusing the connection");
    return false;
}

void connection::upstream_ready() {
    phase_ = phase::relay;
    grace_timer_.cancel();
    if (counted_unauth_) {
        counted_unauth_ = false;
        w_.shared->unauthenticated.fetch_sub(1);
    }
    ssh_message_auth_reply_success(pending_auth_, 0);
    ssh_message_free(pending_auth_);
    pending_auth_ = nullptr;
    logged_in_ = true;
    count_login(detail::login_outcome::ok);
    w_.metrics.login_seconds.observe(std::chrono::steady_clock::now() - started_);
    w_.metrics.sessions.inc();
    in_sessions_gauge_ = true;
    spdlog::info("ssh: {} logged in to sandbox {} via runner {} (ciphers: client {}, runner {})",
                 peer_, sandbox_id_, runner_host_, str(ssh_get_cipher_out(server_.get())),
                 str(ssh_get_cipher_out(upstream_.get())));
    activity_ = w_.activity.start(sandbox_id_, nullptr);
    keepalive();
    repump_ = true;
}

// Server-side keepalive: an SSH_MSG_IGNORE every 30 s keeps NAT and load-balancer state of idle
// sessions alive; with TCP keepalive on the socket, a vanished client is noticed.
void connection::keepalive() {
    keepalive_timer_.expires_after(std::chrono::seconds(30));
    keepalive_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
        if (ec || self->phase_ != phase::relay)
            return;
        ssh_send_ignore(self->server_.get(), "");
        self->pump();
        self->keepalive();
    });
}

// ---------------------------------------------------------------------------------------------
// Channels

connection::channel_pair& connection::new_pair() {
    auto& p = *pairs_.emplace_back(std::make_unique<channel_pair>());
    for (int i = 0; i < 2; ++i) {
        p.s[i].conn = this;
        p.s[i].pair = &p;
        p.s[i].index = i;
    }
    return p;
}

void connection::attach(channel_pair& p) {
    for (auto& s : p.s) {
        ssh_callbacks_init(&s.cb);
        s.cb.userdata = &s;
        s.cb.channel_data_function = cb_data;
        s.cb.channel_eof_function = cb_eof;
        s.cb.channel_close_function = cb_close;
        if (s.index == 0) {
            s.cb.channel_signal_function = cb_signal;
            s.cb.channel_auth_agent_req_function = cb_agent_req;
        } else {
            s.cb.channel_exit_status_function = cb_exit_status;
            s.cb.channel_exit_signal_function = cb_exit_signal;
        }
        ssh_set_channel_callbacks(s.ch, &s.cb);
    }
    p.open = true;
    auto k = static_cast<std::size_t>(p.kind);
    ++channels_[k];
    w_.metrics.channels[k].inc();
}

void connection::open_from_client(ssh_message m) {
    int kind = ssh_message_subtype(m);
    if (kind != SSH_CHANNEL_SESSION && kind != SSH_CHANNEL_DIRECT_TCPIP) {
        ssh_message_reply_default(m);
        ssh_message_free(m);
        return;
    }
    auto& p = new_pair();
    p.kind = kind == SSH_CHANNEL_SESSION ? detail::channel_kind::session
                                         : detail::channel_kind::direct_tcpip;
    p.s[1].ch = ssh_channel_new(upstream_.get());
    ssh_channel up = p.s[1].ch;
    action a;
    a.reply_to = m;
    if (kind == SSH_CHANNEL_SESSION) {
        a.run = [up] { return ssh_channel_open_session(up); };
    } else {
        std::string dest = str(ssh_message_channel_request_open_destination(m));
        int dport = ssh_message_channel_request_open_destination_port(m);
        std::string orig = str(ssh_message_channel_request_open_originator(m));
        int oport = ssh_message_channel_request_open_originator_port(m);
        a.run = [up, dest, dport, orig, oport] {
            return ssh_channel_open_forward(up, dest.c_str(), dport, orig.c_str(), oport);
        };
    }
    a.then = [this, &p](int rc) {
        auto& msg = p.opening.front().reply_to;
        if (rc == SSH_OK) {
            p.s[0].ch = ssh_message_channel_request_open_reply_accept(msg);
            if (p.s[0].ch) {
                attach(p);
                return;
            }
        } else {
            ssh_message_reply_default(msg);
            w_.metrics.channel_refusals[static_cast<std::size_t>(p.kind)].inc();
        }
        p.s[0].close_in = p.s[0].close_out = p.s[1].close_in = p.s[1].close_out = true;
    };
    p.opening.push_back(std::move(a));
}

void connection::open_from_runner(ssh_message m) {
    int kind = ssh_message_subtype(m);
    auto& p = new_pair();
    p.s[0].ch = ssh_channel_new(server_.get());
    ssh_channel down = p.s[0].ch;
    action a;
    a.reply_to = m;
    if (kind == SSH_CHANNEL_FORWARDED_TCPIP) {
        std::string dest = str(ssh_message_channel_request_open_destination(m));
        int dport = ssh_message_channel_request_open_destination_port(m);
        std::string orig = str(ssh_message_channel_request_open_originator(m));
        int oport = ssh_message_channel_request_open_originator_port(m);
        a.run = [down, dest, dport, orig, oport] {
            return ssh_channel_open_reverse_forward(down, dest.c_str(), dport, orig.c_str(), oport);
        };
        p.kind = detail::channel_kind::forwarded_tcpip;
    } else if (kind == SSH_CHANNEL_AUTH_AGENT) {
        a.run = [down] { return ssh_channel_open_auth_agent(down); };
        p.kind = detail::channel_kind::auth_agent;
    } else if (kind == SSH_CHANNEL_X11) {
        p.kind = detail::channel_kind::x11;
        std::string orig = str(ssh_message_channel_request_open_originator(m));
        int oport = ssh_message_channel_request_open_originator_port(m);
        a.run = [down, orig, oport] { return ssh_channel_open_x11(down, orig.c_str(), oport); };
    } else {
        a.run = [] { return SSH_ERROR; };
    }
    a.then = [this, &p](int rc) {
        auto& msg = p.opening.front().reply_to;
        if (rc == SSH_OK) {
            p.s[1].ch = ssh_message_channel_request_open_reply_accept(msg);
            if (p.s[1].ch) {
                attach(p);
                return;
            }
            ssh_channel_close(p.s[0].ch);
        } else {
            ssh_message_reply_default(msg);
            w_.metrics.channel_refusals[static_cast<std::size_t>(p.kind)].inc();
        }
        p.s[0].close_in = p.s[0].close_out = p.s[1].close_in = p.s[1].close_out = true;
    };
    p.opening.push_back(std::move(a));
}

void connection::channel_request_from_client(ssh_message m) {
    ssh_channel ch = ssh_message_channel_request_channel(m);
    channel_pair* pair = nullptr;
    for (auto& p : pairs_)
        if (p->open && p->s[0].ch == ch)
            pair = p.get();
    if (!pair || pair->s[1].close_out) {
        ssh_message_reply_default(m);
        ssh_message_free(m);
        return;
    }
    ssh_channel up = pair->s[1].ch;
    action a;
    a.reply_to = m;
    switch (ssh_message_subtype(m)) {
    case SSH_CHANNEL_REQUEST_PTY: {
        std::string term = str(ssh_message_channel_request_pty_term(m));
        int cols = ssh_message_channel_request_pty_width(m);
        int rows = ssh_message_channel_request_pty_height(m);
        a.run = [up, term, cols, rows] {
            return ssh_channel_request_pty_size(up, term.c_str(), cols, rows);
        };
        break;
    }
    case SSH_CHANNEL_REQUEST_SHELL: a.run = [up] { return ssh_channel_request_shell(up); }; break;
    case SSH_CHANNEL_REQUEST_EXEC: {
        std::string cmd = str(ssh_message_channel_request_command(m));
        a.run = [up, cmd] { return ssh_channel_request_exec(up, cmd.c_str()); };
        break;
    }
    case SSH_CHANNEL_REQUEST_ENV: {
        std::string name = str(ssh_message_channel_request_env_name(m));
        std::string value = str(ssh_message_channel_request_env_value(m));
        a.run = [up, name, value] {
            return ssh_channel_request_env(up, name.c_str(), value.c_str());
        };
        break;
    }
    case SSH_CHANNEL_REQUEST_SUBSYSTEM: {
        std::string name = str(ssh_message_channel_request_subsystem(m));
        a.run = [up, name] { return ssh_channel_request_subsystem(up, name.c_str()); };
        break;
    }
    case SSH_CHANNEL_REQUEST_WINDOW_CHANGE: {
        int cols = ssh_message_channel_request_pty_width(m);
        int rows = ssh_message_channel_request_pty_height(m);
        a.run = [up, cols, rows] { return ssh_channel_change_pty_size(up, cols, rows); };
        break;
    }
    case SSH_CHANNEL_REQUEST_X11: {
        int single = ssh_message_channel_request_x11_single_connection(m);
        std::string proto = str(ssh_message_channel_request_x11_auth_protocol(m));
        std::string cookie = str(ssh_message_channel_request_x11_auth_cookie(m));
        int screen = ssh_message_channel_request_x11_screen_number(m);
        a.run = [up, single, proto, cookie, screen] {
            return ssh_channel_request_x11(up, single, proto.c_str(), cookie.c_str(), screen);
        };
        break;
    }
    default:
        ssh_message_reply_default(m);
        ssh_message_free(m);
        return;
    }
    pair->requests.push_back(std::move(a));
}

void connection::global_request_from_client(ssh_message m) {
    int sub = ssh_message_subtype(m);
    std::string addr = str(ssh_message_global_request_address(m));
    int port = ssh_message_global_request_port(m);
    action a;
    a.reply_to = m;
    a.global = true;
    auto* up = upstream_.get();
    if (sub == SSH_GLOBAL_REQUEST_TCPIP_FORWARD) {
        auto bound = std::make_shared<int>(0);
        a.run = [up, addr, port, bound] {
            return ssh_channel_listen_forward(up, addr.c_str(), port, bound.get());
        };
        a.then = [this, bound](int rc) {
            auto& msg = global_actions_.front().reply_to;
            if (rc == SSH_OK)
                ssh_message_global_request_reply_success(msg, static_cast<uint16_t>(*bound));
            else
                ssh_message_reply_default(msg);
        };
    } else if (sub == SSH_GLOBAL_REQUEST_CANCEL_TCPIP_FORWARD) {
        a.run = [up, addr, port] { return ssh_channel_cancel_forward(up, addr.c_str(), port); };
        a.then = [this](int rc) {
            auto& msg = global_actions_.front().reply_to;
            if (rc == SSH_OK)
                ssh_message_global_request_reply_success(msg, 0);
            else
                ssh_message_reply_default(msg);
        };
    } else {
        ssh_message_reply_default(m);
        ssh_message_free(m);
        return;
    }
    global_actions_.push_back(std::move(a));
}

void connection::serve_runner_message(ssh_message m) {
    if (ssh_message_type(m) == SSH_REQUEST_CHANNEL_OPEN)
        return open_from_runner(m);
    ssh_message_reply_default(m);
    ssh_message_free(m);
}

// Plays queued actions in order; one in flight at a time (libssh tracks one pending request per
// channel and one global request per session).
bool connection::run_actions(std::deque<action>& q) {
    bool progressed = false;
    while (!q.empty() && phase_ != phase::done) {
        int rc = q.front().run();
        if (rc == SSH_AGAIN)
            break;
        progressed = true;
        if (q.front().then) {
            q.front().then(rc);
        } else if (q.front().reply_to) {
            if (rc == SSH_OK)
                ssh_message_channel_request_reply_success(q.front().reply_to);
            else
                ssh_message_reply_default(q.front().reply_to);
        }
        if (q.front().reply_to)
            ssh_message_free(q.front().reply_to);
        q.pop_front();
    }
    return progressed;
}

void connection::service_pair(channel_pair& p) {
    if (!p.opening.empty()) {
        run_actions(p.opening);
        if (!p.open)
            return;
    }
    if (!p.open)
        return;
    if (!p.s[1].close_out && !p.s[1].close_in)
        run_actions(p.requests);

    // Data libssh kept because the other side's window was full. Reading it out of libssh
    // (ssh_channel_read*) re-opens the source's window to 1.28 MB whatever libssh still holds,
    // so it is read only when nothing taken earlier waits, and then all of it at once: what the
    // other side's window does not take now waits in `taken`, and the source can send at most
    // one more window meanwhile (which libssh keeps: on_data does not take it while `taken`
    // holds bytes). Reading piecemeal, a window's worth per read, let a client with a small
    // window (dropbear's 24 KiB) have the gateway buffer a whole download.
    for (int from = 0; from < 2; ++from) {
        auto& src = p.s[from];
        auto& dst = p.s[1 - from];
        for (int st = 0; st < 2; ++st) {
            if (src.leftover[st] == 0 && src.taken[st].empty())
                continue;
            if (dst.close_out || dst.eof_out) {
                src.leftover[st] = 0; // nobody to deliver to
                src.taken[st].clear();
                continue;
            }
            auto& t = src.taken[st];
            if (!t.empty()) {
                int wr = write_stream(dst.ch, st, t.data(),
                                      std::min<uint32_t>(ssh_channel_window_size(dst.ch),
                                                         uint32_t(t.size())));
                t.erase(0, static_cast<std::size_t>(wr));
                count_bytes(from, wr);
                if (!t.empty())
                    continue;
            }
            uint32_t room = ssh_channel_window_size(dst.ch);
            if (src.leftover[st] == 0 || room == 0)
                continue; // nothing would go out: leave it with libssh
            uint32_t n = std::min<uint32_t>(src.leftover[st], uint32_t(w_.scratch.size()));
            int r = ssh_channel_read_nonblocking(src.ch, w_.scratch.data(), n, st);
            if (r <= 0) {
                src.leftover[st] = 0;
                continue;
            }
            src.leftover[st] -= std::min<uint32_t>(src.leftover[st], r);
            int wr = write_stream(dst.ch, st, w_.scratch.data(), std::min<uint32_t>(room, r));
            count_bytes(from, wr);
            if (wr < r) // the other side's window is short, or its session is re-keying
                t.assign(w_.scratch.data() + wr, w_.scratch.data() + r);
        }
    }
    for (int from = 0; from < 2; ++from) {
        auto& src = p.s[from];
        auto& dst = p.s[1 - from];
        bool drained = src.leftover[0] == 0 && src.leftover[1] == 0 && src.taken[0].empty() &&
                       src.taken[1].empty();
        if (!drained)
            continue;
        if ((src.eof_in || src.close_in) && !dst.eof_out && !dst.close_out) {
            ssh_channel_send_eof(dst.ch);
            dst.eof_out = true;
        }
        if (src.close_in) {
            if (!dst.close_out) {
                ssh_channel_close(dst.ch);
                dst.close_out = true;
            }
            if (!src.close_out) {
                ssh_channel_close(src.ch);
                src.close_out = true;
            }
        }
    }
}

void connection::reap_pairs() {
    for (auto it = pairs_.begin(); it != pairs_.end();) {
        auto& p = **it;
        bool done = p.opening.empty() && p.s[0].close_in && p.s[1].close_in && p.s[0].close_out &&
                    p.s[1].close_out;
        if (!done) {
            ++it;
            continue;
        }
        for (auto& a : p.requests)
            if (a.reply_to)
                ssh_message_free(a.reply_to);
        p.requests.clear();
        for (auto& s : p.s) {
            if (!s.ch)
                continue;
            if (p.open)
                ssh_remove_channel_callbacks(s.ch, &s.cb);
            ssh_channel_free(s.ch);
            s.ch = nullptr;
        }
        it = pairs_.erase(it);
    }
}

int connection::on_data(side& s, void* data, uint32_t len, int is_stderr) noexcept {
    auto& p = *s.pair;
    auto& dst = p.s[1 - s.index];
    int st = is_stderr ? 1 : 0;
    if (!p.open || dst.close_out || dst.eof_out) {
        s.leftover[st] = 0;
        return static_cast<int>(len); // nowhere to go: drop
    }
    if (!s.taken[st].empty()) { // older bytes go first
        s.leftover[st] = len;
        repump_ = true;
        return 0;
    }
    uint32_t n = std::min(len, ssh_channel_window_size(dst.ch));
    // libssh cuts what it sends into packets of the peer's maximum packet size less 10 bytes
    // (32,758 for OpenSSH's 32 KiB), while clients and sshd send 32,768 bytes a packet: each
    // packet relayed at once would go out as two, one of 10 bytes, and the receiver would
    // decrypt and deliver twice the packets. While more input waits in the read-ahead, only
    // whole packets go out; the rest stays in libssh's buffer for the next packet's bytes, or
    // goes out at the end of the input round (service_pair, as leftover).
    if (n > max_relay_payload && ra_.buffered() > 0)
        n -= n % max_relay_payload;
    int w = write_stream(dst.ch, st, data, n);
    count_bytes(s.index, w);
    s.leftover[st] = len - static_cast<uint32_t>(w);
    if (s.leftover[st] > 0)
        repump_ = true;
    return w;
}

void connection::on_eof(side& s) noexcept {
    s.eof_in = true;
    repump_ = true;
}

void connection::on_close(side& s) noexcept {
    s.close_in = true;
    repump_ = true;
}

void connection::on_signal(side& s, const char* signal) noexcept {
    auto& p = *s.pair;
    ssh_channel up = p.s[1].ch;
    std::string sig = str(signal);
    action a;
    a.run = [up, sig] { return ssh_channel_request_send_signal(up, sig.c_str()); };
    p.requests.push_back(std::move(a));
    repump_ = true;
}

void connection::on_agent_req(side& s) noexcept {
    auto& p = *s.pair;
    ssh_channel up = p.s[1].ch;
    action a;
    a.run = [up] { return ssh_channel_request_auth_agent(up); };
    p.requests.push_back(std::move(a));
    repump_ = true;
}

void connection::on_exit_status(side& s, int status) noexcept {
    exit_status_ = status;
    auto& down = s.pair->s[0];
    if (down.ch && !down.close_out)
        ssh_channel_request_send_exit_status(down.ch, status);
}

void connection::on_exit_signal(side& s, const char* signal, int core, const char* errmsg,
                                const char* lang) noexcept {
    try {
        exit_signal_ = str(signal);
    } catch (...) { // only the log line misses it
    }
    auto& down = s.pair->s[0];
    if (down.ch && !down.close_out)
        ssh_channel_request_send_exit_signal(down.ch, signal ? signal : "KILL", core,
                                             errmsg ? errmsg : "", lang ? lang : "");
}

// ---------------------------------------------------------------------------------------------
// Ending

void connection::fail(const std::string& user_message, const std::string& log_detail,
                      std::string_view reason) {
    if (phase_ == phase::done)
        return;
    spdlog::info("ssh: {}{}{}: {} ({})", peer_, sandbox_id_.empty() ? "" : " sandbox ", sandbox_id_,
                 user_message, log_detail);
    close_error_ = user_message;
    detail::readahead::scope reading(ra_);
    ra_.set_mode(detail::readahead::mode::plain); // (fail() may run inside a pump)
    if (server_ && !closed(server_.get()) && phase_ != phase::kex) {
        std::string banner = "edgegate: " + user_message + "\r\n";
        detail::string_ptr b(ssh_string_from_char(banner.c_str()));
        if (phase_ != phase::relay)
            ssh_send_issue_banner(server_.get(), b.get());
        ssh_session_set_disconnect_message(server_.get(), user_message.c_str());
        // libssh sends at most once per poll round (it waits for POLLOUT after every send) and
        // ssh_disconnect closes the socket right after queueing its message: poll until the
        // banner is out and the socket is known writable, so the disconnect message goes too.
        // (Bytes in the read-ahead are read first, 4 KiB per round.)
        int rounds = 8 + static_cast<int>(ra_.buffered() / 4096);
        if (server_in_event_)
            for (int i = 0; i < rounds && ssh_event_dopoll(event_.get(), 0) == SSH_OK; ++i) {
            }
    }
    if (reason.empty())
        reason = phase_ == phase::relay ? "error" : "login_failed";
    close(reason);
}

void connection::close(std::string_view reason, const std::string& detail) {
    if (phase_ == phase::done)
        return;
    if (!detail.empty())
        spdlog::debug("ssh: {}: {}: {}", peer_, reason, detail);
    auto was = phase_;
    close_reason_ = reason;
    if (token_presented_ && !login_counted_) {
        using detail::login_outcome;
        auto o = reason == "login_timeout"            ? login_outcome::timeout
                 : reason == "too_many_auth_attempts" ? login_outcome::too_many_attempts
                 : reason == "login_failed" && was >= phase::connecting
                     ? login_outcome::runner_unavailable
                 : reason == "login_failed" ? login_outcome::unavailable
                                            : login_outcome::abandoned;
        count_login(o);
    }
    if (was == phase::relay && reason == "client_error")
        w_.metrics.relay_errors_client.inc();
    if (was == phase::relay && reason == "runner_closed")
        w_.metrics.relay_errors_runner.inc();
    if (in_sessions_gauge_) {
        in_sessions_gauge_ = false;
        w_.metrics.sessions.dec();
    }
    phase_ = phase::done;
    activity_.reset();
    grace_timer_.cancel();
    keepalive_timer_.cancel();
    release_sockets();
    {
        detail::readahead::scope reading(ra_);
        ra_.set_mode(detail::readahead::mode::plain);
        flush(); // what the relay left in libssh's buffers goes before the disconnect
        // libssh sends a packet at once only when the last poll round reported POLLOUT (the
        // relay's flush rounds leave it waiting for the next one), and ssh_disconnect does not
        // wait: without this the runner's sshd never got the SSH_MSG_DISCONNECT.
        for (auto* s : {upstream_.get(), server_.get()})
            if (s && !closed(s)) {
                socket_t fd = ssh_get_fd(s);
                ssh_set_fd_towrite(s);
                ssh_disconnect(s);
                // A descriptor given with SSH_OPTIONS_FD (the runner's) is left open by
                // ssh_disconnect, which forgets it: ssh_free would not close it either.
                if (s == upstream_.get() && fd != SSH_INVALID_SOCKET)
                    ::close(fd);
            }
    }
    ra_.forget(0);
    ra_.forget(1);
    log_session();
}

void connection::count_login(detail::login_outcome o) noexcept {
    if (login_counted_)
        return;
    login_counted_ = true;
    w_.metrics.logins[static_cast<std::size_t>(o)].inc();
}

void connection::count_bytes(int from, int n) noexcept {
    if (n <= 0)
        return;
    bytes_[from] += static_cast<std::uint64_t>(n);
    (from == 0 ? w_.metrics.bytes_up : w_.metrics.bytes_down).inc(static_cast<std::uint64_t>(n));
}

// One line per client connection when it ends (never the token: the sandbox id, addresses,
// counts and what the client was told).
void connection::log_session() noexcept {
    if (logged_)
        return;
    logged_ = true;
    if (!edge::log::events_enabled())
        return;
    try {
        using edge::log::field;
        auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                            started_)
                      .count();
        auto opt = [](std::string_view k, const std::string& v) {
            return v.empty() ? field::null(k) : field(k, v);
        };
        auto ch = [this](detail::channel_kind k) {
            return channels_[static_cast<std::size_t>(k)];
        };
        using detail::channel_kind;
        edge::log::event("ssh_session",
                   {{"client", peer_},
                    opt("sandbox", sandbox_id_),
                    opt("runner", runner_host_),
                    {"logged_in", logged_in_},
                    {"channels_session", ch(channel_kind::session)},
                    {"channels_direct_tcpip", ch(channel_kind::direct_tcpip)},
                    {"channels_forwarded_tcpip", ch(channel_kind::forwarded_tcpip)},
                    {"channels_auth_agent", ch(channel_kind::auth_agent)},
                    {"channels_x11", ch(channel_kind::x11)},
                    {"bytes_up", bytes_[0]},
                    {"bytes_down", bytes_[1]},
                    exit_status_ ? field("exit_status", *exit_status_) : field::null("exit_status"),
                    opt("exit_signal", exit_signal_),
                    {"duration_ms", std::round(ms * 10) / 10},
                    {"close_reason", close_reason_},
                    opt("error", close_error_)});
    } catch (const std::exception& e) {
        spdlog::error("ssh: {}: cannot write the session line: {}", peer_, e.what());
    }
}

} // namespace edge::sshgw
