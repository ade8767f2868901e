#pragma once
// Last-activity heartbeats (contract §4): `POST /api/sandbox/{id}/last-activity` when a request
// starts and every 50 s while a request or WebSocket to the sandbox lives, at most once per 45 s
// per sandbox: within the process (activity_shared), across workers, and across replicas
// through Daytona's Redis key `proxy:sandbox-last-activity-update:{id}` (SET NX EX 45).
// Skipped for requests with `X-Daytona-Skip-Last-Activity-Update: true`. Failures are logged
// and never reach the request.
//
// activity_shared: one per process, thread-safe. activity_tracker: one per worker thread, not
// thread-safe; its background work holds its own state, so it may be destroyed at any time
// after stop().
#include "auth/control_plane_client.hpp"
#include "auth/key_holder.hpp"
#include "auth/request.hpp"
#include "routing/redis/redis_client.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace edge::auth {

inline constexpr std::string_view skip_activity_header = "X-Daytona-Skip-Last-Activity-Update";

std::string activity_redis_key(std::string_view sandbox_id);

struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

class activity_shared {
  public:
    using clock = std::chrono::steady_clock;
    explicit activity_shared(std::chrono::seconds min_gap = std::chrono::seconds(45))
        : min_gap_(min_gap) {}
    // True (and the sandbox is claimed for min_gap) when no one in this process claimed it
    // within min_gap.
    bool claim(std::string_view sandbox_id, clock::time_point now = clock::now());
    std::chrono::seconds min_gap() const noexcept { return min_gap_; }

    // Counters (metrics, tests).
    std::atomic<std::uint64_t> posted{0};        // calls made
    std::atomic<std::uint64_t> failed{0};        // calls that failed
    std::atomic<std::uint64_t> skipped_redis{0}; // another replica had just done it

  private:
    std::chrono::seconds min_gap_;
    std::mutex mutex_;
    std::unordered_map<std::string, clock::time_point, string_hash, std::equal_to<>> last_;
    clock::time_point next_prune_{};
};

class activity_tracker {
  public:
    struct options {
        std::chrono::milliseconds interval{50000}; // heartbeat while requests live
    };

    // `redis` may be null (dedup within the process only).
    activity_tracker(boost::asio::any_io_executor ex, control_plane_client& api,
                     key_holder& proxy_keys, activity_shared& shared,
                     routing::redis::client* redis, options o);
    activity_tracker(boost::asio::any_io_executor ex, control_plane_client& api,
                     key_holder& proxy_keys, activity_shared& shared,
                     routing::redis::client* redis)
        : activity_tracker(std::move(ex), api, proxy_keys, shared, redis, options{}) {}
    ~activity_tracker();
    activity_tracker(const activity_tracker&) = delete;
    activity_tracker& operator=(const activity_tracker&) = delete;

    // Keeps the sandbox marked active while it lives (move-only; destroy it when the request,
    // or its WebSocket, ends).
    class handle {
      public:
        handle() = default;
        handle(handle&& o) noexcept : slot_(std::exchange(o.slot_, nullptr)) {}
        handle& operator=(handle&& o) noexcept {
            reset();
            slot_ = std::exchange(o.slot_, nullptr);
            return *this;
        }
        ~handle() { reset(); }
        void reset() noexcept;
        bool active() const noexcept { return slot_ != nullptr; }

      private:
        friend class activity_tracker;
        explicit handle(unsigned* slot) : slot_(slot) {}
        unsigned* slot_ = nullptr;
    };

    // A request to `sandbox_id` (the real id) starts: one heartbeat now unless one was sent
    // within 45 s, then one every interval while the handle lives. An inactive handle when
    // `headers` say X-Daytona-Skip-Last-Activity-Update: true.
    handle start(std::string_view sandbox_id, const header_lookup* headers);

    // Starts the periodic heartbeat loop (once).
    void run();
    // Stops the loop; handles stay harmless.
    void stop();

    std::size_t live_sandboxes() const;

  private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

} // namespace edge::auth
