#include "common/ops_server.hpp"

#include "common/async.hpp"
#include "common/metrics.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <spdlog/spdlog.h>

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

namespace edge {
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct ops_server::state {
    state(asio::any_io_executor ex, metrics::registry& r, std::function<readiness()> f)
        : acceptor(ex), reg(r), ready(std::move(f)) {}
    tcp::acceptor acceptor;
    metrics::registry& reg;
    std::function<readiness()> ready;
    unsigned connections = 0;
};

namespace {
constexpr unsigned max_connections = 64;

std::string json_escape(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\')
            out += '\\';
        if (static_cast<unsigned char>(c) < 0x20)
            continue;
        out += c;
    }
    return out;
}

http::response<http::string_body> answer(ops_server::state& s,
                                         const http::request<http::string_body>& req) {
    http::response<http::string_body> res;
    res.version(11);
    res.keep_alive(req.keep_alive());
    res.set(http::field::server, "edgegate");
    auto target = std::string_view(req.target().data(), req.target().size());
    auto path = target.substr(0, target.find('?'));
    auto json = [&](http::status st, std::string body) {
        res.result(st);
        res.set(http::field::content_type, "application/json");
        res.body() = std::move(body);
    };
    if (path != "/metrics" && path != "/ready" && path != "/live") {
        json(http::status::not_found, R"({"status":"not found"})");
    } else if (req.method() != http::verb::get && req.method() != http::verb::head) {
        json(http::status::method_not_allowed, R"({"status":"method not allowed"})");
        res.set(http::field::allow, "GET, HEAD");
    } else if (path == "/metrics") {
        res.result(http::status::ok);
        res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        res.body() = s.reg.expose();
    } else if (path == "/live") {
        json(http::status::ok, R"({"status":"live"})");
    } else {
        auto r = s.ready();
        if (r.ready) {
            json(http::status::ok, R"({"status":"ready"})");
        } else {
            json(http::status::service_unavailable,
                 R"({"status":"not ready","reason":")" + json_escape(r.reason) + "\"}");
            res.set(http::field::retry_after, "5");
        }
    }
    res.set(http::field::cache_control, "no-store");
    res.prepare_payload();
    if (req.method() == http::verb::head)
        res.body().clear(); // Content-Length stays that of GET
    return res;
}

awaitable<void> serve(std::shared_ptr<ops_server::state> s, tcp::socket socket) {
    ++s->connections;
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buf;
    for (;;) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(16 * 1024);
        parser.body_limit(16 * 1024);
        stream.expires_after(std::chrono::seconds(10));
        auto [ec, n] = co_await http::async_read(stream, buf, parser, use_nothrow);
        if (ec)
            break;
        auto req = parser.release();
        auto res = answer(*s, req);
        const bool head = req.method() == http::verb::head;
        const bool keep = res.keep_alive();
        bool failed = false;
        if (head) {
            http::response_serializer<http::string_body> sr(res);
            sr.split(true);
            auto [wec, wn] = co_await http::async_write_header(stream, sr, use_nothrow);
            failed = static_cast<bool>(wec);
        } else {
            auto [wec, wn] = co_await http::async_write(stream, res, use_nothrow);
            failed = static_cast<bool>(wec);
        }
        if (failed || !keep)
            break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    --s->connections;
}

awaitable<void> accept_loop(std::shared_ptr<ops_server::state> s) {
    for (;;) {
        auto [ec, socket] = co_await s->acceptor.async_accept(use_nothrow);
        if (ec == asio::error::operation_aborted || !s->acceptor.is_open())
            co_return;
        if (ec) {
            spdlog::error("metrics listener: accept failed: {}", ec.message());
            asio::steady_timer t(s->acceptor.get_executor(), std::chrono::milliseconds(100));
            co_await t.async_wait(use_nothrow);
            continue;
        }
        if (s->connections >= max_connections)
            continue; // closed by the socket's destructor
        asio::co_spawn(s->acceptor.get_executor(), serve(s, std::move(socket)), asio::detached);
    }
}

double read_statm_field(int index) {
    std::ifstream f("/proc/self/statm");
    long v = 0;
    for (int i = 0; i <= index && f; ++i)
        f >> v;
    return static_cast<double>(v) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

double open_fds() {
    DIR* d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    double n = 0;
    while (auto* e = readdir(d))
        if (e->d_name[0] != '.')
            ++n;
    closedir(d);
    return n - 1; // the directory's own descriptor
}
} // namespace

ops_server::ops_server(asio::any_io_executor ex, const tcp::endpoint& ep, metrics::registry& reg,
                       std::function<readiness()> ready)
    : s_(std::make_shared<state>(ex, reg, std::move(ready))) {
    s_->acceptor.open(ep.protocol());
    s_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    s_->acceptor.bind(ep);
    s_->acceptor.listen(64);
}

ops_server::~ops_server() = default;

void ops_server::start() {
    asio::co_spawn(s_->acceptor.get_executor(), accept_loop(s_), asio::detached);
}

void ops_server::stop() {
    boost::system::error_code ignored;
    s_->acceptor.close(ignored);
}

unsigned short ops_server::port() const { return s_->acceptor.local_endpoint().port(); }

void register_process_metrics(metrics::registry& reg) {
    reg.counter_fn("process_cpu_seconds_total", "User and system CPU time spent, in seconds", {},
                   [] {
                       rusage ru{};
                       getrusage(RUSAGE_SELF, &ru);
                       auto sec = [](const timeval& tv) {
                           return static_cast<double>(tv.tv_sec) +
                                  static_cast<double>(tv.tv_usec) / 1e6;
                       };
                       return sec(ru.ru_utime) + sec(ru.ru_stime);
                   });
    reg.gauge_fn("process_resident_memory_bytes", "Resident memory size in bytes", {},
                 [] { return read_statm_field(1); });
    reg.gauge_fn("process_virtual_memory_bytes", "Virtual memory size in bytes", {},
                 [] { return read_statm_field(0); });
    reg.gauge_fn("process_open_fds", "Open file descriptors", {}, [] { return open_fds(); });
    reg.gauge_fn("process_max_fds", "Limit of open file descriptors", {}, [] {
        rlimit rl{};
        getrlimit(RLIMIT_NOFILE, &rl);
        return static_cast<double>(rl.rlim_cur);
    });
    const double start = std::chrono::duration<double>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
    reg.gauge_fn("process_start_time_seconds", "Start time of the process since the Unix epoch",
                 {}, [start] { return start; });
    reg.gauge_fn("edgegate_build_info", "Always 1; the labels say which build is running",
                 {{"version", EDGE_VERSION}}, [] { return 1.0; });
}

} // namespace edge
