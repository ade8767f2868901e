#pragma once
// Process-wide request coalescing: while a lookup for a key is under way, every other caller
// (on any worker) waits for that one instead of starting its own. Each caller waits at most until
// its own deadline; the lookup itself runs to completion in the background on the first caller's
// worker, so a late answer still lands in the cache. Thread-safe.
#include "common/async.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace edge::routing {

template <class T> class single_flight {
  public:
    using clock = std::chrono::steady_clock;

    // The result of `work()` (started only if no lookup for `key` is under way), or nullopt when
    // `deadline` passed first.
    awaitable<std::optional<T>> run(std::string key, clock::time_point deadline,
                                    std::function<awaitable<T>()> work) {
        auto ex = co_await asio::this_coro::executor;
        std::shared_ptr<flight> f;
        bool leader = false;
        {
            std::lock_guard lock(mutex_);
            auto& slot = flights_[key];
            if (!slot) {
                slot = std::make_shared<flight>();
                leader = true;
            }
            f = slot;
        }
        auto timer = std::make_shared<asio::steady_timer>(ex, deadline);
        {
            std::lock_guard lock(f->mutex);
            if (!f->result)
                f->waiters.push_back({ex, timer});
        }
        if (leader)
            asio::co_spawn(ex, lead(this, std::move(key), f, std::move(work)), asio::detached);
        {
            std::lock_guard lock(f->mutex);
            if (f->result)
                co_return f->result;
        }
        co_await timer->async_wait(use_nothrow);
        std::lock_guard lock(f->mutex);
        co_return f->result;
    }

    std::size_t in_flight() const {
        std::lock_guard lock(mutex_);
        return flights_.size();
    }

  private:
    struct waiter {
        asio::any_io_executor ex;
        std::shared_ptr<asio::steady_timer> timer;
    };
    struct flight {
        std::mutex mutex;
        std::optional<T> result;
        std::vector<waiter> waiters;
    };

    static awaitable<void> lead(single_flight* self, std::string key, std::shared_ptr<flight> f,
                                std::function<awaitable<T>()> work) {
        T value = co_await work();
        {
            std::lock_guard lock(self->mutex_);
            self->flights_.erase(key);
        }
        std::vector<waiter> waiters;
        {
            std::lock_guard lock(f->mutex);
            f->result = std::move(value);
            waiters.swap(f->waiters);
        }
        // Each waiter's timer belongs to its own worker: wake it there.
        for (auto& w : waiters)
            asio::post(w.ex, [t = w.timer] { t->cancel(); });
    }

    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::shared_ptr<flight>> flights_;
};

} // namespace edge::routing
