#pragma once
// What a sandbox resolves to, and the seam through which routes are found (API, Redis, cache).
#include "common/async.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace edge::routing {

// Where a sandbox's traffic goes: the runner's proxy endpoint and the key it expects.
// Immutable once built; shared by every request that uses it.
struct runner_route {
    std::string scheme; // "http" or "https"
    std::string host;
    std::uint16_t port = 0;
    std::string base_path; // the proxyUrl's path, without a trailing slash
    std::string api_key;   // sent as X-Daytona-Authorization: Bearer <api_key>
    std::string host_port; // "host:port": the upstream Host header and the pool key
};

enum class lookup_status {
    found,
    not_found,   // the control plane says the sandbox does not exist
    unavailable, // the control plane could not answer (network, 5xx, bad body)
};

struct runner_lookup {
    lookup_status status = lookup_status::unavailable;
    std::shared_ptr<const runner_route> route;
    std::string detail; // for unavailable: why, for logs and the error body
};

struct public_lookup {
    lookup_status status = lookup_status::unavailable;
    bool is_public = false;
    std::string detail;
};

// Answers "which runner serves this sandbox" and "is this sandbox public". Implementations:
// the control-plane API (auth/), the in-process cache in front of it (routing/), Redis (later).
// Used from one worker thread; implementations need no locks.
class route_source {
  public:
    virtual ~route_source() = default;
    virtual awaitable<runner_lookup> runner_for(std::string_view sandbox_id) = 0;
    virtual awaitable<public_lookup> is_public(std::string_view id_or_token) = 0;
};

// Builds a route from a runner's proxyUrl and key; nullptr when the URL is not usable.
std::shared_ptr<const runner_route> make_route(const std::string& proxy_url, std::string api_key);

} // namespace edge::routing
