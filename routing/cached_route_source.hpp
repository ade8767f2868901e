#pragma once
// One worker's front route_source: fresh answers from the shared L1 cache; on a miss one lookup
// per key across the whole process (single flight) through `next` (Redis, then the API), bounded
// by `lookup_timeout`; when that lookup cannot answer, a stale entry (within the staleness
// bound) is served instead of an error. One per worker thread.
#include "routing/route_cache.hpp"
#include "routing/single_flight.hpp"

namespace edge::routing {

// What all workers share: the L1 cache and the lookups under way.
struct shared_routes {
    explicit shared_routes(route_cache::options o) : cache(std::move(o)) {}
    route_cache cache;
    single_flight<runner_lookup> runner_flights;
    single_flight<public_lookup> public_flights;
};

class cached_route_source final : public route_source {
  public:
    struct options {
        std::chrono::milliseconds lookup_timeout{2000};
        // With a stale entry at hand, how long a refresh may hold the request before the stale
        // entry is served (the refresh goes on in the background).
        std::chrono::milliseconds stale_wait{250};
    };

    cached_route_source(shared_routes& shared, route_source& next, options opts)
        : shared_(shared), next_(next), opts_(opts) {}

    awaitable<runner_lookup> runner_for(std::string_view sandbox_id) override;
    awaitable<public_lookup> is_public(std::string_view id_or_token) override;
    awaitable<runner_lookup> ssh_runner_for(std::string_view sandbox_id) override;
    void invalidate(std::string_view sandbox_id) override;
    std::optional<runner_lookup> ready_runner(std::string_view sandbox_id) override;
    std::optional<public_lookup> ready_public(std::string_view id_or_token) override;
    bool ready_pair(std::string_view sandbox_id, runner_lookup& runner,
                    public_lookup& pub) override;

    // L1 keys: the id for preview routes and public status, "ssh:" + id for SSH routes.
    static std::string ssh_key(std::string_view sandbox_id);

  private:
    // A miss: one lookup across the process, bounded; `cached` (stale) answers if it fails.
    template <class T>
    awaitable<T> miss(single_flight<T>& flights, std::string key,
                      std::optional<route_cache::hit<T>> cached,
                      std::function<awaitable<T>()> work);
    awaitable<runner_lookup> runner_lookup_for(std::string key, std::string sandbox_id, bool ssh);

    shared_routes& shared_;
    route_source& next_;
    options opts_;
};

} // namespace edge::routing
