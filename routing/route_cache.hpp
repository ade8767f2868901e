#pragma once
// The process-wide in-process route cache (L1): every worker reads and fills the same entries,
// so a sandbox is asked of Redis or the API once per TTL, not once per worker. Entries are fresh
// for the contract's TTLs (runner 120 s, public status 3600 s); a found entry past its TTL may
// still be served for `stale_max` while nobody can refresh it. "Not found" answers are cached
// briefly; "unavailable" never. Bounded in entries and bytes. Thread-safe: one mutex, held only
// for a hash lookup or insert.
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
        std::chrono::seconds stale_max{300};
        std::size_t max_entries = 1000000;
        std::size_t max_bytes = 256 * 1024 * 1024;
        std::function<clock::time_point()> now = [] { return clock::now(); };
    };

    template <class T> struct hit {
        T value;
        bool fresh; // false: past its TTL, within the staleness bound
    };

    explicit route_cache(options opts) : opts_(std::move(opts)) {}

    std::optional<hit<runner_lookup>> find_runner(std::string_view key);
    std::optional<hit<public_lookup>> find_public(std::string_view key);
    void store_runner(std::string_view key, const runner_lookup& r);
    void store_public(std::string_view key, const public_lookup& r);

    void forget_runner(std::string_view key);
    void forget_public(std::string_view key);
    // Asks again next time, but keeps the entry as stale (an invalidation).
    void expire_runner(std::string_view key);
    void expire_public(std::string_view key);
    // Everything must be asked again (e.g. invalidations may have been lost), but stays
    // available as stale while Redis and the API cannot answer.
    void expire_all();

    std::size_t size() const;
    std::size_t bytes() const;

  private:
    template <class T> struct entry {
        T value;
        clock::time_point fresh_until;
        clock::time_point usable_until;
        std::size_t bytes;
    };
    struct key_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    template <class T>
    using table = std::unordered_map<std::string, entry<T>, key_hash, std::equal_to<>>;

    template <class T> std::optional<hit<T>> find(table<T>& t, std::string_view key);
    template <class T>
    void store(table<T>& t, std::string_view key, const T& value, std::chrono::seconds ttl);
    template <class T> void erase(table<T>& t, std::string_view key);
    template <class T> void expire(table<T>& t, std::string_view key);
    void make_room(clock::time_point now, std::size_t incoming);

    options opts_;
    mutable std::mutex mutex_;
    table<runner_lookup> runners_;
    table<public_lookup> publics_;
    std::size_t bytes_ = 0;
};

} // namespace edge::routing
