#pragma once
// steady_clock's time as of the kernel's last timer tick: the same clock (CLOCK_MONOTONIC), at
// most a tick (a few milliseconds) behind, and much cheaper to read than the exact time, which
// costs a TSC or pvclock read (on a VM, a good part of a request's clock cost). For deadlines and
// ages counted in seconds; durations that are reported need steady_clock::now().
#include <chrono>
#include <ctime>

namespace edge {

inline std::chrono::steady_clock::time_point coarse_now() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return std::chrono::steady_clock::time_point(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
}

} // namespace edge
