#include "auth/control_plane_client.hpp"

#include "common/metrics.hpp"

#include <algorithm>

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

struct control_plane_client::prepared {
    http::request<http::string_body> req;
};

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
awaitable<result<api_response>> exchange(Stream& s, const http::request<http::string_body>& req,
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
    api_response out{res.result_int(), std::move(res.body()), {}};
    if (auto it = res.find(http::field::location); it != res.end())
        out.location = std::string(it->value());
    co_return out;
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

awaitable<result<api_response>> control_plane_client::attempt(const prepared& prep) {
    const auto& req = prep.req;
    bool keep = false;
    if (!tls_) {
        // A pooled connection the server closed in between fails at once; one fresh try then.
        while (auto pooled = pool_.take(pool_key_)) {
            beast::tcp_stream s(std::move(pooled->socket));
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

    beast::tcp_stream tcp_s(ex_);
    tcp_s.expires_after(opts_.timeout);
    // An IP literal needs no resolver (whose first use starts a hidden thread per worker).
    boost::system::error_code aec;
    auto literal = boost::asio::ip::make_address(
        api_.host.size() > 1 && api_.host.front() == '[' ? api_.host.substr(1, api_.host.size() - 2)
                                                         : api_.host,
        aec);
    if (!aec) {
        auto [cec] = co_await tcp_s.async_connect(tcp::endpoint(literal, api_.port), use_nothrow);
        if (cec)
            co_return cec;
    } else {
        auto [rec, endpoints] =
            co_await resolver_.async_resolve(api_.host, std::to_string(api_.port), use_nothrow);
        if (rec)
            co_return rec;
        auto [cec, ep] = co_await tcp_s.async_connect(endpoints, use_nothrow);
        if (cec)
            co_return cec;
    }
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
    call_options o;
    o.expect_json = expect_json;
    co_return co_await call(std::move(path), std::move(bearer), endpoint, std::move(o));
}

awaitable<result<api_response>> control_plane_client::post(std::string path, std::string bearer,
                                                           std::string_view endpoint,
                                                           std::string body, bool expect_json) {
    call_options o;
    o.method = "POST";
    if (!body.empty())
        o.content_type = "application/json";
    o.body = std::move(body);
    o.expect_json = expect_json;
    co_return co_await call(std::move(path), std::move(bearer), endpoint, std::move(o));
}

struct control_plane_client::call_metrics {
    explicit call_metrics(std::string_view e) : endpoint(e) {
        auto& r = metrics::global();
        constexpr auto name = "edgegate_api_calls_total";
        constexpr auto help = "Control-plane API calls by endpoint and outcome (the HTTP status "
                              "class of the last try; error: no answer; circuit_open: not tried)";
        const char* outcomes[] = {"2xx", "3xx", "4xx", "5xx", "error", "circuit_open"};
        for (int i = 0; i < 6; ++i)
            outcome[i] = r.counter(name, help, {{"endpoint", endpoint}, {"outcome", outcomes[i]}});
        retries = r.counter("edgegate_api_retries_total",
                            "Control-plane API tries after the first, by endpoint",
                            {{"endpoint", endpoint}});
        duration = r.histogram("edgegate_api_call_duration_seconds",
                               "Control-plane API call latency, retries included, by endpoint",
                               {{"endpoint", endpoint}});
    }
    std::string endpoint;
    metrics::counter outcome[6];
    metrics::counter retries;
    metrics::histogram duration;
};

control_plane_client::call_metrics& control_plane_client::metrics_for(std::string_view endpoint) {
    for (auto& m : metrics_)
        if (m->endpoint == endpoint)
            return *m;
    metrics_.push_back(std::make_unique<call_metrics>(endpoint));
    return *metrics_.back();
}

awaitable<result<api_response>> control_plane_client::call(std::string path, std::string bearer,
                                                           std::string_view endpoint,
                                                           call_options opts) {
    auto& m = metrics_for(endpoint);
    auto* breaker = opts_.breaker.get();
    if (breaker && !breaker->allow()) {
        m.outcome[5].inc();
        co_return error_code(control_plane_errc::circuit_open);
    }
    const auto started = std::chrono::steady_clock::now();

    prepared prep;
    auto& req = prep.req;
    req.method_string(opts.method);
    req.target(api_.path + path);
    req.version(11);
    bool default_port = api_.port == (tls_ ? 443 : 80);
    req.set(http::field::host, default_port ? api_.host : pool_key_);
    req.set(http::field::accept, "application/json");
    req.set(http::field::user_agent, "edgegate/" EDGE_VERSION);
    if (!bearer.empty())
        req.set(http::field::authorization, "Bearer " + bearer);
    for (auto& [k, v] : opts.headers)
        req.insert(k, v);
    if (!opts.content_type.empty())
        req.set(http::field::content_type, opts.content_type);
    const bool has_body = !opts.body.empty() || opts.method == "POST" || opts.method == "PUT";
    req.body() = std::move(opts.body);
    if (has_body)
        req.content_length(req.body().size());
    req.keep_alive(true);

    const int tries = opts.tries > 0 ? opts.tries : opts_.tries;
    result<api_response> last = error_code(boost::asio::error::try_again);
    auto backoff = opts_.first_backoff;
    for (int i = 0; i < tries; ++i) {
        if (i > 0) {
            m.retries.inc();
            boost::asio::steady_timer t(ex_, backoff);
            co_await t.async_wait(use_nothrow);
            backoff *= 2;
        }
        last = co_await attempt(prep);
        if (!last) {
            spdlog::warn("control plane {} {}: {} (try {}/{})", opts.method, endpoint,
                         last.error().message(), i + 1, tries);
            continue;
        }
        auto status = last->status;
        bool retry = status == 502 || status == 503 || status == 504 ||
                     (opts.expect_json && status >= 200 && status < 300 &&
                      !looks_like_json(last->body));
        if (!retry)
            break;
        spdlog::warn("control plane {} {}: answered {} (try {}/{})", opts.method, endpoint, status,
                     i + 1, tries);
    }
    if (breaker) {
        if (last && last->status < 500)
            breaker->on_success();
        else
            breaker->on_failure();
    }
    m.duration.observe(std::chrono::steady_clock::now() - started);
    if (!last)
        m.outcome[4].inc();
    else
        m.outcome[std::clamp(static_cast<int>(last->status / 100), 2, 5) - 2].inc();
    co_return last;
}

} // namespace edge::auth
