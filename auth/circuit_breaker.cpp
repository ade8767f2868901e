#include "auth/circuit_breaker.hpp"

namespace edge::auth {
namespace {
class category final : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "edgegate.control_plane"; }
    std::string message(int v) const override {
        if (v == static_cast<int>(control_plane_errc::circuit_open))
            return "the control plane failed repeatedly; calls are paused for a moment "
                   "(circuit breaker open)";
        return "control plane error";
    }
};
} // namespace

const boost::system::error_category& control_plane_category() noexcept {
    static const category c;
    return c;
}

std::int64_t circuit_breaker::now_ms() noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               clock::now().time_since_epoch())
        .count();
}

bool circuit_breaker::allow() noexcept {
    auto until = open_until_ms_.load(std::memory_order_acquire);
    if (until == 0)
        return true;
    if (now_ms() < until) {
        rejected_.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    // Half-open: one probe at a time.
    bool expected = false;
    if (probing_.compare_exchange_strong(expected, true, std::memory_order_acq_rel))
        return true;
    rejected_.fetch_add(1, std::memory_order_relaxed);
    return false;
}

void circuit_breaker::on_success() noexcept {
    failures_.store(0, std::memory_order_relaxed);
    open_until_ms_.store(0, std::memory_order_release);
    probing_.store(false, std::memory_order_release);
}

void circuit_breaker::on_failure() noexcept {
    auto n = failures_.fetch_add(1, std::memory_order_relaxed) + 1;
    bool was_probe = probing_.exchange(false, std::memory_order_acq_rel);
    if (n >= opts_.failure_threshold || was_probe)
        open_until_ms_.store(now_ms() + opts_.open_for.count(), std::memory_order_release);
}

bool circuit_breaker::is_open() const noexcept {
    auto until = open_until_ms_.load(std::memory_order_acquire);
    return until != 0 && now_ms() < until;
}

} // namespace edge::auth
