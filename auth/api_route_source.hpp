#pragma once
// Routes straight from Daytona's API: GET /runners/by-sandbox/{id} and GET /preview/{id}/public
// with the proxy API key. The slowest route_source; cached_route_source sits in front of it.
#include "auth/control_plane_client.hpp"
#include "auth/key_holder.hpp"
#include "routing/route.hpp"

namespace edge::auth {

class api_route_source final : public routing::route_source {
  public:
    api_route_source(control_plane_client& api, std::string proxy_api_key)
        : api_(api), key_(std::move(proxy_api_key)) {}
    // With a key_holder, each call uses the current key (rotation without restart); `keys`
    // must outlive this source.
    api_route_source(control_plane_client& api, key_holder& keys) : api_(api), keys_(&keys) {}

    awaitable<routing::runner_lookup> runner_for(std::string_view sandbox_id) override;
    awaitable<routing::public_lookup> is_public(std::string_view id_or_token) override;
    // The same call as runner_for: RunnerFull carries both proxyUrl and domain.
    awaitable<routing::runner_lookup> ssh_runner_for(std::string_view sandbox_id) override {
        return runner_for(sandbox_id);
    }
    void invalidate(std::string_view) override {} // nothing kept here

  private:
    std::string key() const {
        if (!keys_)
            return key_;
        keys_->check_file();
        return keys_->key();
    }

    control_plane_client& api_;
    std::string key_;
    key_holder* keys_ = nullptr;
};

// Parses a RunnerFull body into a route (proxyUrl, or apiUrl for runners that have none).
routing::runner_lookup parse_runner(const std::string& body);

} // namespace edge::auth
