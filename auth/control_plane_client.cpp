#include "auth/control_plane_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json/parse.hpp>
#include <spdlog/spdlog.h>

namespace edge::auth {
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = boost::asio::ssl;
using boost::system::error_code;
using boost::system::result;
using tcp = boost::asio::ip::tcp;

struct control_plane_client::tls_state {
    ssl::context ctx{ssl::context::tls_client};
    std::vector<std::unique_ptr<beast::ssl_stream<beast::tcp_stream>>> idle;
};

namespace {
constexpr std::size_t max_body = 4 * 1024 * 1024;

bool looks_like_json(const std::string& body) {
    error_code ec;
    boost::json::parse(body, ec);
    return !ec;
}

// One request/response on an open stream. Sets `keep` when the connection can be reused.
template <class Stream>
awaitable<result<api_response>> exchange(Stream& s, const http::request<http::empty_body>& req,
                                         std::chrono::milliseconds timeout, bool& keep) {
    beast::get_lowest_layer(s).expires_after(timeout);
    auto [wec, wn] = co_await http::async_write(s, req, use_nothrow);
    if (wec)
        co_return wec;
    beast::flat_buffer buf;
    http::response_parser<http::string_body> p;
    p.body_limit(max_body);
    auto [rec, rn] = co_await http::async_read(s, buf, p, use_nothrow);
    if (rec)
        co_return rec;
    keep = p.get().keep_alive() && buf.size() == 0;
    auto& res = p.get();
    co_return api_response{res.result_int(), std::move(res.body())};
}
} // namespace

control_plane_client::control_plane_client(boost::asio::any_io_executor ex, conf::url_parts api,
                                           options opts)
    : ex_(ex), api_(std::move(api)), opts_(opts),
      pool_key_(api_.host + ":" + std::to_string(api_.port)), pool_(tcp_pool::options{}),
      resolver_(ex) {
    if (api_.scheme == "https") {
        tls_ = std::make_unique<tls_state>();
        tls_->ctx.set_default_verify_paths();
        tls_->ctx.set_verify_mode(ssl::verify_peer);
    }
}

control_plane_client::~control_plane_client() = default;

awaitable<result<api_response>> control_plane_client::attempt(const std::string& target,
                                                              const std::string& bearer) {
    http::request<http::empty_body> req{http::verb::get, target, 11};
    bool default_port = api_.port == (tls_ ? 443 : 80);
    req.set(http::field::host, default_port ? api_.host : pool_key_);
    req.set(http::field::accept, "application/json");
    req.set(http::field::user_agent, "edgegate/" EDGE_VERSION);
    if (!bearer.empty())
        req.set(http::field::authorization, "Bearer " + bearer);
    req.keep_alive(true);

    bool keep = false;
    if (!tls_) {
        // A pooled connection the server closed in between fails at once; one fresh try then.
        while (auto pooled = pool_.take(pool_key_)) {
            beast::tcp_stream s(std::move(*pooled));
            auto r = co_await exchange(s, req, opts_.timeout, keep);
            if (r) {
                if (keep)
                    pool_.put(pool_key_, s.release_socket());
                co_return r;
            }
        }
    } else if (!tls_->idle.empty()) {
        auto s = std::move(tls_->idle.back());
        tls_->idle.pop_back();
        auto r = co_await exchange(*s, req, opts_.timeout, keep);
        if (r) {
            if (keep)
                tls_->idle.push_back(std::move(s));
            co_return r;
        }
    }

    auto [rec, endpoints] =
        co_await resolver_.async_resolve(api_.host, std::to_string(api_.port), use_nothrow);
    if (rec)
        co_return rec;
    beast::tcp_stream tcp_s(ex_);
    tcp_s.expires_after(opts_.timeout);
    auto [cec, ep] = co_await tcp_s.async_connect(endpoints, use_nothrow);
    if (cec)
        co_return cec;
    tcp_s.socket().set_option(tcp::no_delay(true));
    if (!tls_) {
        auto r = co_await exchange(tcp_s, req, opts_.timeout, keep);
        if (r && keep)
            pool_.put(pool_key_, tcp_s.release_socket());
        co_return r;
    }
    auto s = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(std::move(tcp_s), tls_->ctx);
    if (!SSL_set_tlsext_host_name(s->native_handle(), api_.host.c_str()))
        co_return error_code(static_cast<int>(::ERR_get_error()),
                             boost::asio::error::get_ssl_category());
    s->set_verify_callback(ssl::host_name_verification(api_.host));
    auto [hec] = co_await s->async_handshake(ssl::stream_base::client, use_nothrow);
    if (hec)
        co_return hec;
    auto r = co_await exchange(*s, req, opts_.timeout, keep);
    if (r && keep && tls_->idle.size() < 64)
        tls_->idle.push_back(std::move(s));
    co_return r;
}

awaitable<result<api_response>> control_plane_client::get(std::string path, std::string bearer,
                                                          std::string_view endpoint,
                                                          bool expect_json) {
    std::string target = api_.path + path;
    result<api_response> last = error_code(boost::asio::error::try_again);
    auto backoff = opts_.first_backoff;
    for (int i = 0; i < opts_.tries; ++i) {
        if (i > 0) {
            boost::asio::steady_timer t(ex_, backoff);
            co_await t.async_wait(use_nothrow);
            backoff *= 2;
        }
        last = co_await attempt(target, bearer);
        if (!last) {
            spdlog::warn("control plane GET {}: {} (try {}/{})", endpoint, last.error().message(),
                         i + 1, opts_.tries);
            continue;
        }
        auto status = last->status;
        bool retry = status == 502 || status == 503 || status == 504 ||
                     (expect_json && status >= 200 && status < 300 && !looks_like_json(last->body));
        if (!retry)
            co_return last;
        spdlog::warn("control plane GET {}: answered {} (try {}/{})", endpoint, status, i + 1,
                     opts_.tries);
    }
    co_return last;
}

} // namespace edge::auth
