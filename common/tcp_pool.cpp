#include "common/tcp_pool.hpp"

#include <cerrno>
#include <sys/socket.h>

namespace edge {
namespace {
// A pooled connection is usable when the peer has neither closed it nor sent anything unasked
// (a non-blocking peek finds nothing to read).
bool looks_open(boost::asio::ip::tcp::socket& s) {
    char c;
    auto fd = s.native_handle();
    ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}
} // namespace

std::optional<boost::asio::ip::tcp::socket> tcp_pool::take(std::string_view key, bool check_open) {
    auto it = idle_.find(key);
    if (it == idle_.end())
        return std::nullopt;
    auto& list = it->second;
    auto now = std::chrono::steady_clock::now();
    while (!list.empty()) {
        idle entry = std::move(list.back());
        list.pop_back();
        if (now - entry.since < opts_.max_idle_time && (!check_open || looks_open(entry.socket)))
            return std::move(entry.socket);
        boost::system::error_code ignored;
        entry.socket.close(ignored);
    }
    return std::nullopt;
}

void tcp_pool::put(std::string_view key, boost::asio::ip::tcp::socket socket) {
    auto it = idle_.find(key);
    if (it == idle_.end())
        it = idle_.emplace(std::string(key), std::deque<idle>{}).first;
    auto& list = it->second;
    if (list.size() >= opts_.max_idle_per_key) {
        boost::system::error_code ignored;
        list.front().socket.close(ignored);
        list.pop_front();
    }
    list.push_back(idle{std::move(socket), std::chrono::steady_clock::now()});
}

std::size_t tcp_pool::idle_count(std::string_view key) const {
    auto it = idle_.find(key);
    return it == idle_.end() ? 0 : it->second.size();
}
} // namespace edge
