#pragma once
// TLS at the edge (OpenSSL 3): the server context built from TLS_CERT_FILE/TLS_KEY_FILE, swapped
// atomically on reload, and TLS I/O on a timed_socket driven by readiness (SSL on the socket's
// descriptor, non-blocking: no stream wrapper, no extra copy).
#include "common/async.hpp"
#include "proxy/http_io.hpp"

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

struct ssl_ctx_st;

namespace edge::proxy {

// A certificate chain and its key, as PEM files.
struct cert_files {
    std::string cert, key;
    // The settings that named them, for error messages.
    std::string cert_setting = "TLS_CERT_FILE", key_setting = "TLS_KEY_FILE";
};

// An immutable server context: TLS 1.2-1.3 with Mozilla's "intermediate" ciphers, no
// renegotiation, no compression, no 0-RTT, session tickets on, ALPN h2 then http/1.1. The first
// certificate is the default; the others are chosen by SNI when the client's server name matches
// one of their DNS names (subjectAltName; `*.example.com` matches one label).
class tls_server_context {
  public:
    // Builds the contexts from PEM files (`certs` not empty); nullptr with `error` set when one
    // of them does not make a context.
    static std::shared_ptr<tls_server_context> load(const std::vector<cert_files>& certs,
                                                    std::string& error);
    ~tls_server_context();
    tls_server_context(const tls_server_context&) = delete;
    tls_server_context& operator=(const tls_server_context&) = delete;

    ssl_ctx_st* native() const { return default_->ctx; }
    // The subjects and names of the certificates, for logs.
    std::string describe() const;

    struct entry {
        ssl_ctx_st* ctx = nullptr;
        std::string subject;
        std::vector<std::string> names; // lowercase DNS names, wildcards as "*.rest"
        ~entry();
    };
    // The certificate for `server_name` (the default when none matches).
    const entry& select(std::string_view server_name) const;

  private:
    tls_server_context() = default;
    std::vector<std::unique_ptr<entry>> entries_;
    entry* default_ = nullptr;
};

// The context new connections use; reload() swaps it only when every file is valid.
// Connections keep the context they started with.
class tls_store {
  public:
    explicit tls_store(std::vector<cert_files> certs) : certs_(std::move(certs)) {}
    // Loads the files; false (and `error`) when one is unusable, the current context stays.
    bool reload(std::string& error);
    std::shared_ptr<tls_server_context> current() const;

  private:
    std::vector<cert_files> certs_;
    mutable std::mutex mutex_;
    std::shared_ptr<tls_server_context> current_;
};

// The client side toward runners whose proxyUrl is https: their certificate is verified against
// the system's CAs plus RUNNER_CA_FILE (a PEM bundle, for private CAs) and the runner's host
// name or IP address; TLS 1.2-1.3; ALPN http/1.1.
class tls_client_context {
  public:
    // nullptr with `error` set when `ca_file` (optional) does not load.
    static std::shared_ptr<tls_client_context> load(const std::string& ca_file,
                                                    std::string& error);
    ~tls_client_context();
    tls_client_context(const tls_client_context&) = delete;
    tls_client_context& operator=(const tls_client_context&) = delete;
    ssl_ctx_st* native() const { return ctx_; }

  private:
    explicit tls_client_context(ssl_ctx_st* ctx) : ctx_(ctx) {}
    ssl_ctx_st* ctx_;
};

// Makes the connected `s` a TLS client connection to `host` (a DNS name: SNI and name check; an
// IP literal, brackets allowed: address check) and runs the handshake within the socket's
// deadline. `detail` says why when it fails (e.g. the verification error).
awaitable<boost::system::error_code> tls_connect(timed_socket& s, const tls_client_context& ctx,
                                                 std::string_view host, std::string& detail);

// Makes `s` a TLS server connection with `ctx` and runs the handshake (bounded by the socket's
// deadline). An error means no TLS connection (the client is gone, spoke no TLS, or offered
// nothing acceptable).
awaitable<boost::system::error_code> tls_accept(timed_socket& s, const tls_server_context& ctx);

// TLS halves of http_io's functions (called by them when s.tls is set).
awaitable<std::tuple<boost::system::error_code, std::size_t>>
tls_read_some(timed_socket& s, boost::asio::mutable_buffer b);
std::size_t tls_read_now(timed_socket& s, boost::asio::mutable_buffer b,
                         boost::system::error_code& ec);
bool tls_write_now(timed_socket& s, std::vector<boost::asio::const_buffer>& bufs,
                   boost::system::error_code& ec, bool& want_read);
bool tls_pending(const timed_socket& s);
// True when the handshake's ALPN chose HTTP/2.
bool tls_chose_h2(const timed_socket& s);
void tls_close_notify(timed_socket& s);
void tls_free(ssl_st* ssl);

} // namespace edge::proxy
