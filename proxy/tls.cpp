#include "proxy/tls.hpp"

#include "common/metrics.hpp"
#include "proxy/h1_codec.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <spdlog/spdlog.h>

namespace edge::proxy {
namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {

// Mozilla's "intermediate" configuration (TLS 1.2 suites; TLS 1.3 uses OpenSSL's defaults,
// which are the same three).
constexpr const char* tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";

std::string openssl_error(std::string_view what) {
    std::string out(what);
    unsigned long e = 0;
    char buf[256];
    bool first = true;
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        out += first ? ": " : "; ";
        out += buf;
        first = false;
    }
    return out;
}

// ALPN: h2 first, then HTTP/1.1; a client offering neither gets no ALPN answer and may still
// speak HTTP/1.1.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
    static const unsigned char ours[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    unsigned char* selected = nullptr;
    if (SSL_select_next_proto(&selected, outlen, ours, sizeof ours, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = selected;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

error_code ssl_failure(SSL* ssl, int ret) {
    int err = SSL_get_error(ssl, ret);
    if (err == SSL_ERROR_ZERO_RETURN)
        return asio::error::eof;
    if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
        return errno != 0 ? error_code(errno, boost::system::system_category())
                          : error_code(asio::error::eof);
    ERR_clear_error();
    return asio::error::connection_aborted; // a protocol error: the connection is unusable
}

} // namespace

namespace {

std::string lower(std::string_view s) {
    std::string out;
    h1::append_lower(out, s);
    return out;
}

// The DNS names a certificate serves: its subjectAltName entries, or its common name when it has
// none (as browsers no longer accept, but curl and OpenSSL still do).
std::vector<std::string> dns_names(X509* cert) {
    std::vector<std::string> out;
    auto* sans = static_cast<GENERAL_NAMES*>(
        X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    if (sans) {
        for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
            const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
            if (n->type != GEN_DNS)
                continue;
            const auto* s = n->d.dNSName;
            out.push_back(lower({reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                 static_cast<std::size_t>(ASN1_STRING_length(s))}));
        }
        GENERAL_NAMES_free(sans);
        return out;
    }
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0)
        out.push_back(lower(cn));
    return out;
}

// `name` (lowercase, no trailing dot) against a certificate name: exact, or "*.rest" for exactly
// one label in front of "rest".
bool name_matches(std::string_view pattern, std::string_view name) {
    if (pattern.starts_with("*.")) {
        const auto dot = name.find('.');
        return dot != std::string_view::npos && dot > 0 && name.substr(dot + 1) == pattern.substr(2);
    }
    return pattern == name;
}

int on_server_name(SSL* ssl, int*, void* arg) {
    const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!sni)
        return SSL_TLSEXT_ERR_OK; // no SNI: the default certificate
    const auto& chosen = static_cast<const tls_server_context*>(arg)->select(sni);
    if (chosen.ctx != SSL_get_SSL_CTX(ssl))
        SSL_set_SSL_CTX(ssl, chosen.ctx);
    return SSL_TLSEXT_ERR_OK;
}

// One certificate's context; nullptr with `error` set when the files do not make one.
SSL_CTX* make_server_ctx(const cert_files& files, std::string& error) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        error = openssl_error("cannot create a TLS context");
        return nullptr;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_max_early_data(ctx, 0);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, nullptr);
    std::string what;
    if (SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1 ||
        SSL_CTX_set1_groups_list(ctx, "X25519:prime256v1:secp384r1") != 1)
        what = "cannot set the TLS ciphers";
    else if (SSL_CTX_use_certificate_chain_file(ctx, files.cert.c_str()) != 1)
        what = files.cert_setting + " " + files.cert + " is not a usable PEM certificate chain";
    else if (SSL_CTX_use_PrivateKey_file(ctx, files.key.c_str(), SSL_FILETYPE_PEM) != 1)
        what = files.key_setting + " " + files.key + " is not a usable PEM private key";
    else if (SSL_CTX_check_private_key(ctx) != 1)
        what = files.key_setting + " " + files.key + " does not match the certificate in " +
               files.cert;
    if (!what.empty()) {
        error = openssl_error(what);
        SSL_CTX_free(ctx);
        return nullptr;
    }
    return ctx;
}

} // namespace

tls_server_context::entry::~entry() {
    SSL_CTX_free(ctx);
}

tls_server_context::~tls_server_context() = default;

std::shared_ptr<tls_server_context> tls_server_context::load(const std::vector<cert_files>& certs,
                                                             std::string& error) {
    ERR_clear_error();
    if (certs.empty()) {
        error = "no TLS certificate configured";
        return nullptr;
    }
    std::shared_ptr<tls_server_context> out(new tls_server_context());
    for (const auto& files : certs) {
        auto e = std::make_unique<entry>();
        e->ctx = make_server_ctx(files, error);
        if (!e->ctx)
            return nullptr;
        if (X509* cert = SSL_CTX_get0_certificate(e->ctx)) {
            char name[512];
            X509_NAME_oneline(X509_get_subject_name(cert), name, sizeof name);
            e->subject = name;
            e->names = dns_names(cert);
        }
        out->entries_.push_back(std::move(e));
    }
    out->default_ = out->entries_.front().get();
    // Sessions (tickets) are the default context's: a ticket issued under one certificate's
    // name resumes under the same name later, whichever context served it.
    if (out->entries_.size() > 1) {
        SSL_CTX_set_tlsext_servername_callback(out->default_->ctx, on_server_name);
        SSL_CTX_set_tlsext_servername_arg(out->default_->ctx, out.get());
    }
    return out;
}

const tls_server_context::entry& tls_server_context::select(std::string_view server_name) const {
    std::string name = lower(server_name);
    if (!name.empty() && name.back() == '.')
        name.pop_back();
    // An exact name first, then a wildcard, then the default.
    for (const auto& e : entries_)
        for (const auto& n : e->names)
            if (n == name)
                return *e;
    for (const auto& e : entries_)
        for (const auto& n : e->names)
            if (n.starts_with("*.") && name_matches(n, name))
                return *e;
    return *default_;
}

std::string tls_server_context::describe() const {
    std::string out;
    for (const auto& e : entries_) {
        if (!out.empty())
            out += "; ";
        out += e->subject;
        if (e.get() == default_ && entries_.size() > 1)
            out += " (default)";
    }
    return out;
}

bool tls_store::reload(std::string& error) {
    auto next = tls_server_context::load(certs_, error);
    if (!next)
        return false;
    std::lock_guard lock(mutex_);
    current_ = std::move(next);
    return true;
}

std::shared_ptr<tls_server_context> tls_store::current() const {
    std::lock_guard lock(mutex_);
    return current_;
}

static awaitable<error_code> tls_handshake(timed_socket& s, const tls_server_context& ctx);

namespace {
struct handshake_metrics {
    metrics::counter ok, failed, not_tls, tls12, tls13, resumed;
    handshake_metrics() {
        auto& r = metrics::global();
        constexpr auto name = "edgegate_tls_handshakes_total";
        constexpr auto help = "TLS handshakes on PROXY_PORT by result (not_tls: plain HTTP on "
                              "the TLS port, answered 400)";
        ok = r.counter(name, help, {{"result", "ok"}});
        failed = r.counter(name, help, {{"result", "failed"}});
        not_tls = r.counter(name, help, {{"result", "not_tls"}});
        constexpr auto vname = "edgegate_tls_versions_total";
        constexpr auto vhelp = "Completed TLS handshakes by protocol version";
        tls12 = r.counter(vname, vhelp, {{"version", "TLSv1.2"}});
        tls13 = r.counter(vname, vhelp, {{"version", "TLSv1.3"}});
        resumed = r.counter("edgegate_tls_resumed_total",
                            "Completed TLS handshakes that resumed a session", {});
    }
};
handshake_metrics& tls_metrics() {
    static handshake_metrics m;
    return m;
}
} // namespace

awaitable<error_code> tls_accept(timed_socket& s, const tls_server_context& ctx) {
    auto& m = tls_metrics();
    auto ec = co_await tls_handshake(s, ctx);
    if (!ec) {
        m.ok.inc();
        if (SSL_version(s.tls) == TLS1_3_VERSION)
            m.tls13.inc();
        else
            m.tls12.inc();
        if (SSL_session_reused(s.tls))
            m.resumed.inc();
    } else if (ec == asio::error::no_protocol_option) {
        m.not_tls.inc();
    } else {
        m.failed.inc();
    }
    co_return ec;
}

static awaitable<error_code> tls_handshake(timed_socket& s, const tls_server_context& ctx) {
    // A client speaking plain HTTP to the TLS port gets told so, in plain HTTP.
    auto [wec] = co_await s.sock.async_wait(tcp::socket::wait_read, use_nothrow);
    if (wec)
        co_return s.result(wec);
    unsigned char first = 0;
    error_code pec;
    std::size_t peeked =
        s.sock.receive(asio::buffer(&first, 1), tcp::socket::message_peek, pec);
    if (pec || peeked == 0)
        co_return pec ? pec : error_code(asio::error::eof);
    if (first != 0x16) { // not a TLS handshake record
        static constexpr std::string_view body =
            "{\"statusCode\":400,\"message\":\"this port speaks HTTPS: use https:// to reach it\"}\n";
        const std::string answer =
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + std::string(body);
        std::vector<asio::const_buffer> bufs{asio::buffer(answer)};
        write_now(s, bufs);
        co_return asio::error::no_protocol_option;
    }
    SSL* ssl = SSL_new(ctx.native());
    if (!ssl)
        co_return asio::error::no_memory;
    s.tls = ssl; // owned by the socket from here
    SSL_set_fd(ssl, static_cast<int>(s.sock.native_handle()));
    error_code ignored;
    s.sock.non_blocking(true, ignored);
    for (;;) {
        ERR_clear_error();
        int r = SSL_accept(ssl);
        if (r == 1)
            co_return error_code{};
        int err = SSL_get_error(ssl, r);
        tcp::socket::wait_type what;
        if (err == SSL_ERROR_WANT_READ)
            what = tcp::socket::wait_read;
        else if (err == SSL_ERROR_WANT_WRITE)
            what = tcp::socket::wait_write;
        else
            co_return ssl_failure(ssl, r);
        auto [ec] = co_await s.sock.async_wait(what, use_nothrow);
        if (ec)
            co_return s.result(ec);
    }
}

awaitable<std::tuple<error_code, std::size_t>> tls_read_some(timed_socket& s,
                                                            asio::mutable_buffer b) {
    for (;;) {
        error_code ec;
        std::size_t n = tls_read_now(s, b, ec);
        if (!ec)
            co_return std::tuple{ec, n};
        if (ec != asio::error::would_block && ec != asio::error::try_again)
            co_return std::tuple{ec, std::size_t{0}};
        // SSL_read may need to write (a TLS 1.3 key update answer over a full send buffer):
        // try_again says so, and then writability is what to wait for.
        const auto what =
            ec == asio::error::try_again ? tcp::socket::wait_write : tcp::socket::wait_read;
        auto [wec] = co_await s.sock.async_wait(what, use_nothrow);
        if (wec)
            co_return std::tuple{s.result(wec), std::size_t{0}};
    }
}

std::size_t tls_read_now(timed_socket& s, asio::mutable_buffer b, error_code& ec) {
    ERR_clear_error();
    std::size_t n = 0;
    int r = SSL_read_ex(s.tls, b.data(), b.size(), &n);
    if (r == 1) {
        ec = {};
        return n;
    }
    int err = SSL_get_error(s.tls, r);
    if (err == SSL_ERROR_WANT_READ)
        ec = asio::error::would_block;
    else if (err == SSL_ERROR_WANT_WRITE)
        ec = asio::error::try_again;
    else
        ec = ssl_failure(s.tls, r);
    return 0;
}

bool tls_write_now(timed_socket& s, std::vector<asio::const_buffer>& bufs, error_code& ec,
                   bool& want_read) {
    ec = {};
    std::size_t done = 0;
    while (done < bufs.size()) {
        auto& b = bufs[done];
        if (b.size() == 0) {
            ++done;
            continue;
        }
        ERR_clear_error();
        std::size_t n = 0;
        int r = SSL_write_ex(s.tls, b.data(), b.size(), &n);
        if (r == 1) {
            b += n;
            if (b.size() == 0)
                ++done;
            continue;
        }
        int err = SSL_get_error(s.tls, r);
        if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
            want_read = err == SSL_ERROR_WANT_READ;
        } else {
            ec = ssl_failure(s.tls, r);
        }
        break;
    }
    bufs.erase(bufs.begin(), bufs.begin() + static_cast<std::ptrdiff_t>(done));
    return bufs.empty();
}

bool tls_pending(const timed_socket& s) {
    return SSL_pending(s.tls) > 0;
}

void tls_close_notify(timed_socket& s) {
    ERR_clear_error();
    SSL_shutdown(s.tls); // one try: the socket is non-blocking and about to close
    ERR_clear_error();
}

void tls_free(ssl_st* ssl) {
    SSL_free(ssl);
}

bool tls_chose_h2(const timed_socket& s) {
    if (!s.tls)
        return false;
    const unsigned char* proto = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(s.tls, &proto, &len);
    return len == 2 && proto[0] == 'h' && proto[1] == '2';
}

std::shared_ptr<tls_client_context> tls_client_context::load(const std::string& ca_file,
                                                             std::string& error) {
    ERR_clear_error();
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        error = openssl_error("cannot create a TLS client context");
        return nullptr;
    }
    std::shared_ptr<tls_client_context> out(new tls_client_context(ctx));
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_default_verify_paths(ctx);
    if (!ca_file.empty() && SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != 1) {
        error = openssl_error("RUNNER_CA_FILE " + ca_file + " is not a usable PEM CA bundle");
        return nullptr;
    }
    static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
    return out;
}

tls_client_context::~tls_client_context() {
    SSL_CTX_free(ctx_);
}

awaitable<error_code> tls_connect(timed_socket& s, const tls_client_context& ctx,
                                  std::string_view host, std::string& detail) {
    SSL* ssl = SSL_new(ctx.native());
    if (!ssl)
        co_return asio::error::no_memory;
    s.tls = ssl; // owned by the socket from here
    SSL_set_fd(ssl, static_cast<int>(s.sock.native_handle()));
    std::string name(host.size() > 1 && host.front() == '[' ? host.substr(1, host.size() - 2)
                                                            : host);
    error_code aec;
    asio::ip::make_address(name, aec);
    if (aec) { // a DNS name: SNI, and the certificate must name it
        SSL_set_tlsext_host_name(ssl, name.c_str());
        SSL_set1_host(ssl, name.c_str());
    } else {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
    }
    error_code ignored;
    s.sock.non_blocking(true, ignored);
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(ssl);
        if (r == 1)
            co_return error_code{};
        int err = SSL_get_error(ssl, r);
        tcp::socket::wait_type what;
        if (err == SSL_ERROR_WANT_READ) {
            what = tcp::socket::wait_read;
        } else if (err == SSL_ERROR_WANT_WRITE) {
            what = tcp::socket::wait_write;
        } else {
            const long verify = SSL_get_verify_result(ssl);
            if (verify != X509_V_OK)
                detail = std::string("certificate verification failed: ") +
                         X509_verify_cert_error_string(verify);
            else
                detail = openssl_error("TLS handshake failed");
            co_return ssl_failure(ssl, r);
        }
        auto [ec] = co_await s.sock.async_wait(what, use_nothrow);
        if (ec)
            co_return s.result(ec);
    }
}

} // namespace edge::proxy
