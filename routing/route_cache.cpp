#include "routing/route_cache.hpp"

namespace edge::routing {
namespace {
constexpr std::size_t entry_overhead = 96; // node, hash bucket, bookkeeping

std::size_t weight(std::string_view key, const runner_lookup& r) {
    std::size_t n = entry_overhead + key.size() + r.detail.size();
    if (r.route)
        n += sizeof(runner_route) + r.route->scheme.size() + r.route->host.size() +
             r.route->base_path.size() + r.route->api_key.size() + r.route->host_port.size() +
             r.route->domain.size();
    return n;
}
std::size_t weight(std::string_view key, const public_lookup& r) {
    return entry_overhead + key.size() + r.detail.size();
}
} // namespace

route_stats& stats() noexcept {
    static route_stats s;
    return s;
}

template <class T>
std::optional<route_cache::hit<T>> route_cache::find(table<T>& t, std::string_view key) {
    auto now = opts_.now();
    std::lock_guard lock(mutex_);
    auto it = t.find(key);
    if (it == t.end())
        return std::nullopt;
    auto& e = it->second;
    if (now < e.fresh_until)
        return hit<T>{e.value, true};
    if (now < e.usable_until)
        return hit<T>{e.value, false};
    bytes_ -= e.bytes;
    t.erase(it);
    return std::nullopt;
}

void route_cache::make_room(clock::time_point now, std::size_t incoming) {
    auto full = [&] {
        return runners_.size() + publics_.size() + 1 > opts_.max_entries ||
               bytes_ + incoming > opts_.max_bytes;
    };
    if (!full())
        return;
    auto sweep = [&](auto& t, auto keep) {
        for (auto it = t.begin(); it != t.end();) {
            if (keep(it->second)) {
                ++it;
            } else {
                bytes_ -= it->second.bytes;
                it = t.erase(it);
                stats().evictions.fetch_add(1, std::memory_order_relaxed);
            }
        }
    };
    // First what is no longer usable, then (still full) down to 90% so that inserts at capacity
    // do not sweep every time.
    sweep(runners_, [&](const auto& e) { return now < e.usable_until; });
    sweep(publics_, [&](const auto& e) { return now < e.usable_until; });
    auto target_entries = opts_.max_entries / 10 * 9;
    auto target_bytes = opts_.max_bytes / 10 * 9;
    auto over = [&] {
        return runners_.size() + publics_.size() > target_entries || bytes_ > target_bytes;
    };
    auto drop_some = [&](auto& t) {
        while (over() && !t.empty()) {
            auto it = t.begin();
            bytes_ -= it->second.bytes;
            t.erase(it);
            stats().evictions.fetch_add(1, std::memory_order_relaxed);
        }
    };
    if (over()) {
        drop_some(publics_);
        drop_some(runners_);
    }
}

template <class T>
void route_cache::store(table<T>& t, std::string_view key, const T& value,
                        std::chrono::seconds ttl) {
    auto now = opts_.now();
    auto stale = value.status == lookup_status::found ? opts_.stale_max : std::chrono::seconds{0};
    auto w = weight(key, value);
    std::lock_guard lock(mutex_);
    if (auto it = t.find(key); it != t.end()) {
        bytes_ -= it->second.bytes;
        t.erase(it);
    }
    make_room(now, w);
    t.emplace(std::string(key), entry<T>{value, now + ttl, now + ttl + stale, w});
    bytes_ += w;
}

template <class T> void route_cache::erase(table<T>& t, std::string_view key) {
    std::lock_guard lock(mutex_);
    if (auto it = t.find(key); it != t.end()) {
        bytes_ -= it->second.bytes;
        t.erase(it);
    }
}

template <class T> void route_cache::expire(table<T>& t, std::string_view key) {
    auto now = opts_.now();
    std::lock_guard lock(mutex_);
    if (auto it = t.find(key); it != t.end()) {
        auto& e = it->second;
        e.fresh_until = std::min(e.fresh_until, now);
        if (e.value.status != lookup_status::found)
            e.usable_until = e.fresh_until;
    }
}

void route_cache::expire_runner(std::string_view key) {
    expire(runners_, key);
}
void route_cache::expire_public(std::string_view key) {
    expire(publics_, key);
}

std::optional<route_cache::hit<runner_lookup>> route_cache::find_runner(std::string_view key) {
    return find(runners_, key);
}
std::optional<route_cache::hit<public_lookup>> route_cache::find_public(std::string_view key) {
    return find(publics_, key);
}

void route_cache::store_runner(std::string_view key, const runner_lookup& r) {
    if (r.status == lookup_status::found)
        store(runners_, key, r, opts_.runner_ttl);
    else if (r.status == lookup_status::not_found)
        store(runners_, key, r, opts_.negative_ttl);
}

void route_cache::store_public(std::string_view key, const public_lookup& r) {
    if (r.status == lookup_status::found)
        store(publics_, key, r, opts_.public_ttl);
    else if (r.status == lookup_status::not_found)
        store(publics_, key, r, opts_.negative_ttl);
}

void route_cache::forget_runner(std::string_view key) {
    erase(runners_, key);
}
void route_cache::forget_public(std::string_view key) {
    erase(publics_, key);
}

void route_cache::expire_all() {
    auto now = opts_.now();
    std::lock_guard lock(mutex_);
    auto expire = [&](auto& t) {
        for (auto& [k, e] : t) {
            e.fresh_until = std::min(e.fresh_until, now);
            if (e.value.status != lookup_status::found)
                e.usable_until = e.fresh_until; // a "not found" is never served stale
        }
    };
    expire(runners_);
    expire(publics_);
}

std::size_t route_cache::size() const {
    std::lock_guard lock(mutex_);
    return runners_.size() + publics_.size();
}

std::size_t route_cache::bytes() const {
    std::lock_guard lock(mutex_);
    return bytes_;
}

} // namespace edge::routing
