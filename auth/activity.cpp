#include "auth/activity.hpp"

#include "common/coarse_clock.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

namespace edge::auth {
namespace redis = routing::redis;
using clock = std::chrono::steady_clock;

std::string activity_redis_key(std::string_view sandbox_id) {
    std::string k = "proxy:sandbox-last-activity-update:";
    k.append(sandbox_id);
    return k;
}

bool activity_shared::claim(std::string_view id, clock::time_point now) {
    std::lock_guard lock(mutex_);
    if (now >= next_prune_) {
        for (auto it = last_.begin(); it != last_.end();)
            it = now - it->second >= min_gap_ ? last_.erase(it) : std::next(it);
        next_prune_ = now + min_gap_;
    }
    auto it = last_.find(id);
    if (it != last_.end() && now - it->second < min_gap_)
        return false;
    if (it == last_.end())
        last_.emplace(std::string(id), now);
    else
        it->second = now;
    return true;
}

struct activity_tracker::impl : std::enable_shared_from_this<impl> {
    impl(boost::asio::any_io_executor ex_, control_plane_client& api_, key_holder& keys_,
         activity_shared& shared_, redis::client* redis_, options o)
        : ex(std::move(ex_)), api(api_), keys(keys_), shared(shared_), redis(redis_), opts(o),
          timer(ex) {}

    boost::asio::any_io_executor ex;
    control_plane_client& api;
    key_holder& keys;
    activity_shared& shared;
    redis::client* redis;
    options opts;
    boost::asio::steady_timer timer;
    bool running = false;
    bool stopped = false;
    struct sandbox {
        unsigned live = 0; // requests to it on this worker now
        // This worker's last claim: spares the process-wide mutex on busy sandboxes.
        clock::time_point claimed = clock::time_point::min();
    };
    // The sandboxes with live requests or a recent claim on this worker (one lookup per
    // request). Node-based: a handle keeps a pointer to its `live`; the loop sweeps entries
    // with neither.
    std::unordered_map<std::string, sandbox, string_hash, std::equal_to<>> sandboxes;

    void touch(std::string_view id, sandbox& s, clock::time_point now) {
        if (now < s.claimed + shared.min_gap())
            return;
        if (!shared.claim(id, now))
            return;
        s.claimed = now;
        boost::asio::co_spawn(ex, post(shared_from_this(), std::string(id)), boost::asio::detached);
    }

    static awaitable<void> post(std::shared_ptr<impl> self, std::string id) {
        if (self->redis && self->redis->current_state() == redis::state::connected) {
            std::vector<std::string> cmd{"SET",
                                         activity_redis_key(id),
                                         R"({"value":true})",
                                         "NX",
                                         "EX",
                                         std::to_string(self->shared.min_gap().count())};
            auto r = co_await self->redis->command(std::move(cmd));
            if (r && r->type == redis::reply::kind::nil) {
                ++self->shared.skipped_redis; // another replica did it within 45 s
                co_return;
            }
            // A Redis error: post anyway (this process's own 45 s limit still holds).
        }
        ++self->shared.posted;
        std::string path = "/sandbox/" + id + "/last-activity";
        auto r = co_await self->api.post(std::move(path), self->keys.key(), "sandbox/last-activity");
        if (!r || r->status >= 300) {
            ++self->shared.failed;
            spdlog::debug("last-activity for sandbox {}: {}", id,
                          r ? "answered " + std::to_string(r->status) : r.error().message());
        }
    }

    static awaitable<void> loop(std::shared_ptr<impl> self) {
        while (!self->stopped) {
            self->timer.expires_after(self->opts.interval);
            co_await self->timer.async_wait(use_nothrow);
            if (self->stopped)
                co_return;
            auto now = coarse_now();
            for (auto it = self->sandboxes.begin(); it != self->sandboxes.end();) {
                auto& s = it->second;
                if (s.live == 0 && now >= s.claimed + self->shared.min_gap()) {
                    it = self->sandboxes.erase(it);
                    continue;
                }
                if (s.live > 0)
                    self->touch(it->first, s, now);
                ++it;
            }
        }
    }
};

activity_tracker::activity_tracker(boost::asio::any_io_executor ex, control_plane_client& api,
                                   key_holder& proxy_keys, activity_shared& shared,
                                   routing::redis::client* redis, options o)
    : impl_(std::make_shared<impl>(std::move(ex), api, proxy_keys, shared, redis, o)) {}

activity_tracker::~activity_tracker() { stop(); }

void activity_tracker::handle::reset() noexcept {
    if (slot_ && *slot_ > 0)
        --*slot_;
    slot_ = nullptr;
}

activity_tracker::handle activity_tracker::start(std::string_view sandbox_id,
                                                 const header_lookup* headers) {
    if (headers) {
        auto skip = headers->first(skip_activity_header);
        if (skip && *skip == "true")
            return handle{};
    }
    auto& i = *impl_;
    auto it = i.sandboxes.find(sandbox_id);
    if (it == i.sandboxes.end())
        it = i.sandboxes.emplace(std::string(sandbox_id), impl::sandbox{}).first;
    ++it->second.live;
    i.touch(sandbox_id, it->second, coarse_now());
    return handle{&it->second.live};
}

void activity_tracker::run() {
    if (impl_->running)
        return;
    impl_->running = true;
    boost::asio::co_spawn(impl_->ex, impl::loop(impl_), boost::asio::detached);
}

void activity_tracker::stop() {
    impl_->stopped = true;
    impl_->timer.cancel();
}

std::size_t activity_tracker::live_sandboxes() const {
    std::size_t n = 0;
    for (auto& [id, s] : impl_->sandboxes)
        n += s.live > 0;
    return n;
}

} // namespace edge::auth
