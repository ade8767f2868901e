#pragma once
// The process-wide in-process route cache (L1): every worker reads and fills the same entries,
// so a sandbox is asked of Redis or the API once per TTL, not once per worker. One entry per key
// holds both answers a preview request needs (its runner, whether it is public), so the hot path
// makes one hash lookup. Answers are fresh for the contract's TTLs (runner 120 s, public status
// 3600 s); a found answer past its TTL may still be served for `stale_max` while nobody can
// refresh it. "Not found" answers are cached briefly; "unavailable" never. Bounded in entries
// and bytes. Thread-safe: one mutex, held only for a hash lookup or insert (no syscall when
// uncontended, no allocation on a hit).
#include "common/coarse_clock.hpp"
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
        std::function<clock::time_point()> now = [] { return coarse_now(); };
    };

    template <class T> struct hit {
        T value;
        bool fresh; // false: past its TTL, within the staleness bound
    };

    explicit route_cache(options opts) : opts_(std::move(opts)) {}

    std::optional<hit<runner_lookup>> find_runner(std::string_view key);
    std::optional<hit<public_lookup>> find_public(std::string_view key);
    // Both fresh answers for a preview request in one lookup; false when either is missing or
    // not fresh.
    bool find_fresh_pair(std::string_view key, runner_lookup& runner, public_lookup& pub);

    void store_runner(std::string_view key, const runner_lookup& r);
    void store_public(std::string_view key, const public_lookup& r);

    void forget_runner(std::string_view key);
    void forget_public(std::string_view key);
    // Asks again next time, but keeps the answer as stale (an invalidation).
    void expire_runner(std::string_view key);
    void expire_public(std::string_view key);
    // Everything must be asked again (e.g. invalidations may have been lost), but stays
    // available as stale while Redis and the API cannot answer.
    void expire_all();

    std::size_t size() const;
    std::size_t bytes() const;

  private:
    template <class T> struct part {
        T value;
        clock::time_point fresh_until;
        clock::time_point usable_until;
        bool present = false;
    };
    struct entry {
        part<runner_lookup> runner;
        part<public_lookup> pub;
        std::size_t bytes = 0;
    };
    struct key_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    using table = std::unordered_map<std::string, entry, key_hash, std::equal_to<>>;

    template <class T> static std::optional<hit<T>> read(part<T>& p, clock::time_point now);
    template <class T>
    void write(std::string_view key, part<T> entry::*which, const T& value,
               std::chrono::seconds ttl);
    template <class T> void change(std::string_view key, part<T> entry::*which, bool erase);
    void drop_if_empty(table::iterator it);
    void reweigh(std::string_view key, entry& e);
    void make_room(clock::time_point now, std::size_t incoming);

    options opts_;
    mutable std::mutex mutex_;
    table table_;
    std::size_t bytes_ = 0;
};

} // namespace edge::routing
