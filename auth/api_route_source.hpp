#pragma once
// Routes straight from Daytona's API: GET /runners/by-sandbox/{id} and GET /preview/{id}/public
// with the proxy API key. The slowest route_source; cached_route_source sits in front of it.
#include "auth/control_plane_client.hpp"
#include "routing/route.hpp"

namespace edge::auth {

class api_route_source final : public routing::route_source {
  public:
    api_route_source(control_plane_client& api, std::string proxy_api_key)
        : api_(api), key_(std::move(proxy_api_key)) {}

    awaitable<routing::runner_lookup> runner_for(std::string_view sandbox_id) override;
    awaitable<routing::public_lookup> is_public(std::string_view id_or_token) override;
    // The same call as runner_for: RunnerFull carries both proxyUrl and domain.
    awaitable<routing::runner_lookup> ssh_runner_for(std::string_view sandbox_id) override {
        return runner_for(sandbox_id);
    }
    void invalidate(std::string_view) override {} // nothing kept here

  private:
    control_plane_client& api_;
    std::string key_;
};

// Parses a RunnerFull body into a route (proxyUrl, or apiUrl for runners that have none).
routing::runner_lookup parse_runner(const std::string& body);

} // namespace edge::auth
