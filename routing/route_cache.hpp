#pragma once
// The process-wide in-process route cache: every worker reads and fills the same entries, so a
// sandbox is asked of the API once per TTL, not once per worker. Entries live for the
// contract's TTLs (runner 120 s, public status 3600 s); "not found" answers are cached briefly so
// a stream of requests for a deleted sandbox does not reach the API each time; "unavailable" is
// never cached. Bounded in entries. Thread-safe: one mutex, held only for a hash lookup or insert.
#include "routing/route.hpp"

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace edge::routing {

class route_cache {
  public:
    using clock = std::chrono::steady_clock;
    struct options {
        std::chrono::seconds runner_ttl{120};
        std::chrono::seconds public_ttl{3600};
        std::chrono::seconds negative_ttl{5};
        std::size_t max_entries = 100000;
        std::function<clock::time_point()> now = [] { return clock::now(); };
    };

    explicit route_cache(options opts) : opts_(std::move(opts)) {}

    std::optional<runner_lookup> find_runner(std::string_view sandbox_id);
    std::optional<public_lookup> find_public(std::string_view id_or_token);
    void store_runner(std::string_view sandbox_id, const runner_lookup& r);
    void store_public(std::string_view id_or_token, const public_lookup& r);
    void forget(std::string_view sandbox_id);
    std::size_t size() const;

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

    template <class T> std::optional<T> find(table<T>& t, std::string_view key);
    template <class T> void store(table<T>& t, std::string_view key, const T& value);

    options opts_;
    mutable std::mutex mutex_;
    table<runner_lookup> runners_;
    table<public_lookup> publics_;
};

} // namespace edge::routing
