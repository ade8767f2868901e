#include "common/tcp_pool.hpp"

#include "common/coarse_clock.hpp"

#include <cerrno>
#include <sys/socket.h>

namespace edge {
bool tcp_pool::looks_open(boost::asio::ip::tcp::socket& s) {
    char c;
    auto fd = s.native_handle();
    ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void tcp_pool::drop(connection& c) {
    boost::system::error_code ignored;
    c.socket.close(ignored);
    if (c.tls && opts_.free_tls)
        opts_.free_tls(c.tls);
    c.tls = nullptr;
}

tcp_pool::~tcp_pool() {
    for (auto& [key, list] : idle_)
        for (auto& entry : list)
            drop(entry.conn);
}

std::optional<tcp_pool::connection> tcp_pool::take(std::string_view key, bool check_open) {
    auto it = idle_.find(key);
    if (it == idle_.end())
        return std::nullopt;
    auto& list = it->second;
    auto now = coarse_now();
    while (!list.empty()) {
        idle entry = std::move(list.back());
        list.pop_back();
        idle_total_.fetch_sub(1, std::memory_order_relaxed);
        // (A TLS connection's peek sees records, not data: a close_notify is not told from a
        // stray byte; both mean the connection is not reusable.)
        if (now - entry.since < opts_.max_idle_time &&
            (!check_open || looks_open(entry.conn.socket)))
            return std::move(entry.conn);
        drop(entry.conn);
    }
    return std::nullopt;
}

void tcp_pool::put(std::string_view key, boost::asio::ip::tcp::socket socket, void* tls) {
    auto it = idle_.find(key);
    if (it == idle_.end())
        it = idle_.emplace(std::string(key), std::deque<idle>{}).first;
    auto& list = it->second;
    if (list.size() >= opts_.max_idle_per_key) {
        drop(list.front().conn);
        list.pop_front();
        idle_total_.fetch_sub(1, std::memory_order_relaxed);
    }
    list.push_back(idle{connection{std::move(socket), tls}, coarse_now()});
    idle_total_.fetch_add(1, std::memory_order_relaxed);
}

std::size_t tcp_pool::idle_count(std::string_view key) const {
    auto it = idle_.find(key);
    return it == idle_.end() ? 0 : it->second.size();
}
} // namespace edge
