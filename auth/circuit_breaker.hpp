#pragma once
// Fails calls to the control plane fast while it is down: after `failure_threshold` calls in a
// row that got no usable answer (every try failed), the breaker opens for `open_for`; calls
// made then fail at once with circuit_open. After that one call at a time is let through as a
// probe (half-open): its success closes the breaker, its failure opens it again. Shareable by
// every worker's client (process-wide); thread-safe, lock-free.
#include <boost/system/error_code.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace edge::auth {

enum class control_plane_errc { circuit_open = 1 };
const boost::system::error_category& control_plane_category() noexcept;
inline boost::system::error_code make_error_code(control_plane_errc e) noexcept {
    return {static_cast<int>(e), control_plane_category()};
}

class circuit_breaker {
  public:
    using clock = std::chrono::steady_clock;
    struct options {
        unsigned failure_threshold = 5;
        std::chrono::milliseconds open_for{2000};
    };
    circuit_breaker() : circuit_breaker(options{}) {}
    explicit circuit_breaker(options o) : opts_(o) {}

    // May a call go out now? In the half-open state only one caller gets true.
    bool allow() noexcept;
    void on_success() noexcept;
    void on_failure() noexcept;

    bool is_open() const noexcept;
    std::uint64_t rejected() const noexcept { return rejected_.load(std::memory_order_relaxed); }

  private:
    static std::int64_t now_ms() noexcept;
    options opts_;
    std::atomic<unsigned> failures_{0};
    std::atomic<std::int64_t> open_until_ms_{0}; // 0: closed
    std::atomic<bool> probing_{false};
    std::atomic<std::uint64_t> rejected_{0};
};

} // namespace edge::auth

namespace boost::system {
template <> struct is_error_code_enum<edge::auth::control_plane_errc> : std::true_type {};
} // namespace boost::system
