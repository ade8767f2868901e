#pragma once
// One worker's route_source: answers from the shared route_cache, asks `next` (the worker's own
// API client) on a miss and stores the answer. One per worker thread.
#include "routing/route_cache.hpp"

namespace edge::routing {

class cached_route_source final : public route_source {
  public:
    cached_route_source(route_cache& cache, route_source& next) : cache_(cache), next_(next) {}

    awaitable<runner_lookup> runner_for(std::string_view sandbox_id) override;
    awaitable<public_lookup> is_public(std::string_view id_or_token) override;

  private:
    route_cache& cache_;
    route_source& next_;
};

} // namespace edge::routing
