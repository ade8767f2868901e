#pragma once
// Keeps the L1 route cache in step with Redis: Redis client-side caching in broadcast mode
// (`CLIENT TRACKING ON REDIRECT <listener id> BCAST PREFIX proxy: PREFIX edgegate:`) tells us of
// every write or delete of a route key by anyone (Daytona's API, an operator, another replica);
// the matching L1 entry is dropped within the round trip. When the listener's connection was
// lost, invalidations may have been missed: every L1 entry is then expired (kept only as stale).
// Lives on one worker (the one `commands` belongs to).
#include "routing/cached_route_source.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <memory>
#include <string>
#include <vector>

namespace edge::routing {
namespace redis {
class client;
class invalidation_listener;
struct options;
} // namespace redis

class redis_tracking {
  public:
    redis_tracking(boost::asio::any_io_executor ex, const redis::options& opts,
                   redis::client& commands, shared_routes& shared);
    ~redis_tracking();

    void start();
    void stop();

    // Applies one invalidation message (public for tests): empty = everything.
    static void apply(route_cache& cache, const std::vector<std::string>& keys);

  private:
    void enable();

    boost::asio::any_io_executor ex_;
    redis::client& commands_;
    shared_routes& shared_;
    std::unique_ptr<redis::invalidation_listener> listener_;
    long long listener_id_ = -1;
};

} // namespace edge::routing
