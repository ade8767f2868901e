#pragma once
// The in-process route cache of one worker, in front of a slower route_source. Entries live for
// the contract's TTLs (runner 120 s, public status 3600 s); "not found" answers are cached briefly
// so a stream of requests for a deleted sandbox does not reach the API each time; "unavailable"
// is never cached. Bounded in entries. One per worker thread, no locks.
#include "routing/route.hpp"

#include <chrono>
#include <functional>
#include <unordered_map>

namespace edge::routing {

class cached_route_source final : public route_source {
  public:
    using clock = std::chrono::steady_clock;
    struct options {
        std::chrono::seconds runner_ttl{120};
        std::chrono::seconds public_ttl{3600};
        std::chrono::seconds negative_ttl{5};
        std::size_t max_entries = 100000;
        std::function<clock::time_point()> now = [] { return clock::now(); };
    };

    cached_route_source(route_source& next, options opts) : next_(next), opts_(std::move(opts)) {}

    awaitable<runner_lookup> runner_for(std::string_view sandbox_id) override;
    awaitable<public_lookup> is_public(std::string_view id_or_token) override;

    void forget(std::string_view sandbox_id);
    std::size_t size() const noexcept { return runners_.size() + publics_.size(); }

  private:
    template <class T> struct entry {
        T value;
        clock::time_point expires;
    };
    struct key_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    template <class T>
    using table = std::unordered_map<std::string, entry<T>, key_hash, std::equal_to<>>;

    template <class T>
    void store(table<T>& t, std::string_view key, T value, std::chrono::seconds ttl);

    route_source& next_;
    options opts_;
    table<runner_lookup> runners_;
    table<public_lookup> publics_;
};

} // namespace edge::routing
