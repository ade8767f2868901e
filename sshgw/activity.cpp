#include "sshgw/activity.hpp"

// g++ 12 reports -Wmismatched-new-delete on some Asio coroutine frames (a false positive: the
// frame's operator new and delete match).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "common/async.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <vector>

namespace edge::sshgw {

namespace {
constexpr auto interval = std::chrono::seconds(45);

awaitable<void> post_activity(conf::url_parts api, std::string key, std::string sandbox_id) {
    using tcp = asio::ip::tcp;
    auto ex = co_await asio::this_coro::executor;
    // An IP literal is used as is: Asio's async_resolve runs on a hidden thread of its own.
    std::vector<tcp::endpoint> endpoints;
    boost::system::error_code aec;
    auto addr = asio::ip::make_address(api.host, aec);
    if (!aec) {
        endpoints.emplace_back(addr, api.port);
    } else {
        tcp::resolver resolver(ex);
        auto [rec, results] =
            co_await resolver.async_resolve(api.host, std::to_string(api.port), use_nothrow);
        if (rec) {
            spdlog::warn("ssh: last-activity of {}: {}", sandbox_id, rec.message());
            co_return;
        }
        for (auto& r : results)
            endpoints.push_back(r.endpoint());
    }
    tcp::socket sock(ex);
    asio::steady_timer deadline(ex, std::chrono::seconds(10));
    deadline.async_wait([&sock](const boost::system::error_code& ec) {
        if (!ec) {
            boost::system::error_code ignored;
            sock.close(ignored);
        }
    });
    auto [cec, ep] = co_await asio::async_connect(sock, endpoints, use_nothrow);
    if (cec) {
        spdlog::warn("ssh: last-activity of {}: {}", sandbox_id, cec.message());
        co_return;
    }
    std::string req = "POST " + api.path + "/sandbox/" + sandbox_id +
                      "/last-activity HTTP/1.1\r\nHost: " + api.host + ":" +
                      std::to_string(api.port) + "\r\nAuthorization: Bearer " + key +
                      "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(req), use_nothrow);
    if (wec)
        co_return;
    std::string answer(64, '\0');
    auto [rec2, rn] = co_await sock.async_read_some(asio::buffer(answer), use_nothrow);
    deadline.cancel();
    answer.resize(rn);
    if (!answer.starts_with("HTTP/1.1 2") && !answer.starts_with("HTTP/1.0 2"))
        spdlog::warn("ssh: last-activity of {}: {}", sandbox_id,
                     answer.substr(0, answer.find('\r')));
}
} // namespace

bool activity_clock::due(const std::string& sandbox_id, std::chrono::steady_clock::time_point now) {
    std::lock_guard lock(mu_);
    auto& last = last_[sandbox_id];
    if (last.time_since_epoch().count() != 0 && now - last < interval)
        return false;
    last = now;
    if (last_.size() > 100000)
        std::erase_if(last_, [&](auto& kv) { return now - kv.second >= interval; });
    return true;
}

void activity_reporter::touch(const std::string& sandbox_id) {
    if (cfg_.api.scheme != "http") {
        static std::atomic<bool> warned{false};
        if (!warned.exchange(true))
            spdlog::warn("ssh: last-activity is only sent to plain-http control planes for now");
        return;
    }
    if (!clock_.due(sandbox_id, std::chrono::steady_clock::now()))
        return;
    asio::co_spawn(ex_, post_activity(cfg_.api, cfg_.ssh_gateway_api_key, sandbox_id),
                   asio::detached);
}

} // namespace edge::sshgw
