#include "routing/redis_tracking.hpp"

#include "routing/redis/redis_client.hpp"
#include "routing/redis_route_source.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

namespace edge::routing {

redis_tracking::redis_tracking(boost::asio::any_io_executor ex, const redis::options& opts,
                               redis::client& commands, shared_routes& shared)
    : ex_(std::move(ex)), commands_(commands), shared_(shared),
      listener_(std::make_unique<redis::invalidation_listener>(ex_, opts)) {}

redis_tracking::~redis_tracking() = default;

void redis_tracking::apply(route_cache& cache, const std::vector<std::string>& keys) {
    if (keys.empty()) {
        cache.expire_all();
        return;
    }
    for (auto& key : keys) {
        std::string_view k(key);
        // Expired, not erased: our own write-backs come back as invalidations too, and the entry
        // must stay available as stale should Redis and the API fail right after.
        if (k.starts_with(runner_key_prefix)) {
            cache.expire_runner(k.substr(runner_key_prefix.size()));
        } else if (k.starts_with(public_key_prefix)) {
            cache.expire_public(k.substr(public_key_prefix.size()));
        } else if (k.starts_with(ssh_key_prefix)) {
            cache.expire_runner(cached_route_source::ssh_key(k.substr(ssh_key_prefix.size())));
        } else {
            continue;
        }
        stats().invalidations.fetch_add(1, std::memory_order_relaxed);
    }
}

void redis_tracking::start() {
    listener_->start(
        [this](long long id) {
            listener_id_ = id;
            enable();
        },
        [this](const std::vector<std::string>& keys) { apply(shared_.cache, keys); });
    // Tracking is a property of the command connection: set it again after it reconnects.
    commands_.on_connect([this] { enable(); });
}

void redis_tracking::stop() {
    listener_->stop();
}

void redis_tracking::enable() {
    if (listener_id_ < 0 || commands_.current_state() != redis::state::connected)
        return;
    auto run = [](redis::client& c, long long id, route_cache& cache) -> awaitable<void> {
        std::vector<std::string> off{"CLIENT", "TRACKING", "OFF"};
        co_await c.command(std::move(off));
        std::vector<std::string> on{"CLIENT", "TRACKING", "ON",     "REDIRECT", std::to_string(id),
                                    "BCAST",  "PREFIX",   "proxy:", "PREFIX",   "edgegate:"};
        auto r = co_await c.command(std::move(on));
        if (!r || r->type == redis::reply::kind::error)
            spdlog::error("redis: cannot enable invalidations (CLIENT TRACKING): {}; routes "
                          "changed in Redis reach this replica only when their TTL ends",
                          r ? r->str : r.error().message());
        else {
            // Keys written between the (re)connect and this point were not reported.
            cache.expire_all();
            spdlog::info("redis: route invalidations on (tracking redirected to client {})", id);
        }
    };
    boost::asio::co_spawn(ex_, run(commands_, listener_id_, shared_.cache), boost::asio::detached);
}

} // namespace edge::routing
