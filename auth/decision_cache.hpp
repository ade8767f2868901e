#pragma once
// The process-wide cache of credential checks (contract §3: valid 2 min, invalid 5 s). Keys are
// SHA-256 digests of (check kind, sandbox, credential): a credential is never kept, in memory or
// in Redis. A valid answer past its TTL is kept `stale_max` longer, to be served only when the
// control plane cannot be asked (outage). Bounded: when full, expired entries go first, then
// arbitrary ones down to 90 %. Shared by all workers; one mutex held for a hash lookup.
#include "auth/crypto.hpp"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace edge::auth {

enum class check_kind : char {
    bearer = 'b',        // GET /preview/{id}/access with the user's token
    preview_token = 't', // GET /preview/{id}/validate/{token} (header or query)
    signed_url = 's',    // GET /preview/{token}/{port}/sandbox-id
};

// The cache key of one check: SHA-256 over a domain-separated encoding of its inputs.
digest check_key(check_kind kind, std::string_view sandbox, std::string_view credential,
                 std::uint16_t port = 0);

// The Redis key under which a check's answer is shared: `edgegate:auth:{hex digest}`.
std::string redis_check_key(const digest& key);

class decision_cache {
  public:
    using clock = std::chrono::steady_clock;
    struct options {
        std::chrono::seconds valid_ttl{120};
        std::chrono::seconds invalid_ttl{5};
        std::chrono::seconds stale_max{300};
        std::size_t max_entries = 200000;
    };
    enum class state { none, allowed, denied, stale_allowed };
    struct found {
        state s = state::none;
        std::string sandbox_id; // signed_url checks: the real sandbox id
    };

    decision_cache() : decision_cache(options{}) {}
    explicit decision_cache(options o) : opts_(o) {}

    // Fresh answers only, unless `stale_ok` (then a valid answer within stale_max is
    // stale_allowed).
    found lookup(const digest& key, bool stale_ok = false, clock::time_point now = clock::now());
    // Is a fresh valid answer there? The hot path: no copy of anything.
    bool fresh_allowed(const digest& key, clock::time_point now = clock::now());
    void store(const digest& key, bool allowed, std::string sandbox_id = {},
               clock::time_point now = clock::now());
    // Stores with an explicit remaining lifetime (from a Redis TTL).
    void store_for(const digest& key, bool allowed, std::string sandbox_id,
                   std::chrono::seconds ttl, clock::time_point now = clock::now());
    void clear();
    std::size_t size() const;
    std::uint64_t evictions() const noexcept { return evictions_; }
    const options& opts() const noexcept { return opts_; }

  private:
    struct entry {
        bool allowed = false;
        std::string sandbox_id;
        clock::time_point fresh_until;
        clock::time_point keep_until;
    };
    struct digest_hash {
        std::size_t operator()(const digest& d) const noexcept {
            std::size_t h;
            std::memcpy(&h, d.data(), sizeof h); // already uniformly distributed
            return h;
        }
    };
    void make_room(clock::time_point now);

    options opts_;
    mutable std::mutex mutex_;
    std::unordered_map<digest, entry, digest_hash> map_;
    std::uint64_t evictions_ = 0;
};

} // namespace edge::auth
