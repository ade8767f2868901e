#pragma once
// What a sandbox resolves to, and the seam through which routes are found (API, Redis, cache).
#include "common/async.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
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
    std::string domain;    // the runner's domain (SSH routes); empty for preview routes from Redis
};

enum class lookup_status {
    found,
    not_found,   // the control plane says the sandbox does not exist
    unavailable, // nobody could answer (Redis and API down, timeouts, 5xx, bad body)
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
// the control-plane API (auth/), Redis in front of it, the in-process cache in front of both.
// Used from one worker thread; implementations need no locks of their own.
class route_source {
  public:
    virtual ~route_source() = default;
    virtual awaitable<runner_lookup> runner_for(std::string_view sandbox_id) = 0;
    virtual awaitable<public_lookup> is_public(std::string_view id_or_token) = 0;
    // The runner of a sandbox for the SSH gateway (route->domain set).
    virtual awaitable<runner_lookup> ssh_runner_for(std::string_view sandbox_id) = 0;
    // The runner said it has no such sandbox: forget the route everywhere it is kept.
    virtual void invalidate(std::string_view sandbox_id) = 0;
    // A fresh answer that is at hand without waiting (the hot path skips a coroutine for it).
    virtual std::optional<runner_lookup> ready_runner(std::string_view) { return std::nullopt; }
    virtual std::optional<public_lookup> ready_public(std::string_view) { return std::nullopt; }
    // Both answers of a preview request at once, when both are at hand and fresh.
    virtual bool ready_pair(std::string_view, runner_lookup&, public_lookup&) { return false; }
};

// Builds a route from a runner's proxyUrl and key; nullptr when the URL is not usable.
std::shared_ptr<const runner_route> make_route(const std::string& proxy_url, std::string api_key,
                                               std::string domain = {});

// Process-wide counters of the route path (exported as metrics by the operations module).
struct route_stats {
    std::atomic<std::uint64_t> cache_hits{0};
    std::atomic<std::uint64_t> cache_misses{0};
    std::atomic<std::uint64_t> stale_serves{0};
    std::atomic<std::uint64_t> redis_hits{0};
    std::atomic<std::uint64_t> redis_errors{0};
    std::atomic<std::uint64_t> api_lookups{0};
    std::atomic<std::uint64_t> invalidations{0};
    std::atomic<std::uint64_t> lookup_timeouts{0};
    std::atomic<std::uint64_t> evictions{0};
};
route_stats& stats() noexcept;

} // namespace edge::routing
