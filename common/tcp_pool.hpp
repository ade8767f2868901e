#pragma once
// Idle keep-alive TCP connections, keyed by "host:port". One pool per worker (no locks).
// A connection taken out belongs to the caller; it is given back only after a clean exchange.
// A connection may carry an opaque TLS state (freed with options::free_tls when dropped).
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace edge {
class tcp_pool {
  public:
    struct options {
        std::size_t max_idle_per_key = 256;
        std::chrono::seconds max_idle_time{50};
        void (*free_tls)(void*) = nullptr;
    };
    struct connection {
        boost::asio::ip::tcp::socket socket;
        void* tls = nullptr;
    };

    explicit tcp_pool(options opts) : opts_(opts) {}

    // The most recently used idle connection to `key`, if any; those idle too long are dropped on
    // the way. With `check_open`, a non-blocking peek (one syscall) also drops connections the
    // peer has closed: worth it when the request could not be replayed on a fresh connection.
    std::optional<connection> take(std::string_view key, bool check_open = true);
    void put(std::string_view key, boost::asio::ip::tcp::socket socket, void* tls = nullptr);
    // True when the peer has neither closed `s` nor sent anything unasked (a non-blocking peek
    // finds nothing to read): take's `check_open` test.
    static bool looks_open(boost::asio::ip::tcp::socket& s);
    ~tcp_pool();
    std::size_t idle_count(std::string_view key) const;
    // Idle connections under every key (read from any thread: for metrics).
    std::size_t idle_total() const { return idle_total_.load(std::memory_order_relaxed); }

  private:
    struct idle {
        connection conn;
        std::chrono::steady_clock::time_point since;
    };
    void drop(connection& c);
    struct key_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    options opts_;
    std::unordered_map<std::string, std::deque<idle>, key_hash, std::equal_to<>> idle_;
    std::atomic<std::size_t> idle_total_{0};
};
} // namespace edge
