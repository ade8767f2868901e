#include "auth/decision_cache.hpp"

#include <algorithm>

namespace edge::auth {

digest check_key(check_kind kind, std::string_view sandbox, std::string_view credential,
                 std::uint16_t port) {
    // Fixed-width lengths first, so that no two different inputs encode the same; no
    // allocation (this runs on every authenticated request).
    const auto k = static_cast<char>(kind);
    const std::uint32_t lens[3] = {static_cast<std::uint32_t>(sandbox.size()),
                                   static_cast<std::uint32_t>(credential.size()), port};
    return sha256_stream()
        .update("edgegate-auth-v1")
        .update({&k, 1})
        .update({reinterpret_cast<const char*>(lens), sizeof lens})
        .update(sandbox)
        .update(credential)
        .finish();
}

std::string redis_check_key(const digest& key) { return "edgegate:auth:" + hex(key); }

decision_cache::found decision_cache::lookup(const digest& key, bool stale_ok,
                                             clock::time_point now) {
    std::lock_guard lock(mutex_);
    auto it = map_.find(key);
    if (it == map_.end())
        return {};
    const auto& e = it->second;
    if (now < e.fresh_until)
        return {e.allowed ? state::allowed : state::denied, e.sandbox_id};
    if (stale_ok && e.allowed && now < e.keep_until)
        return {state::stale_allowed, e.sandbox_id};
    return {};
}

bool decision_cache::fresh_allowed(const digest& key, clock::time_point now) {
    std::lock_guard lock(mutex_);
    auto it = map_.find(key);
    return it != map_.end() && it->second.allowed && now < it->second.fresh_until;
}

void decision_cache::store(const digest& key, bool allowed, std::string sandbox_id,
                           clock::time_point now) {
    store_for(key, allowed, std::move(sandbox_id), allowed ? opts_.valid_ttl : opts_.invalid_ttl,
              now);
}

void decision_cache::store_for(const digest& key, bool allowed, std::string sandbox_id,
                               std::chrono::seconds ttl, clock::time_point now) {
    entry e{allowed, std::move(sandbox_id), now + ttl, now + ttl};
    if (allowed)
        e.keep_until += opts_.stale_max;
    std::lock_guard lock(mutex_);
    auto it = map_.find(key);
    if (it != map_.end()) {
        it->second = std::move(e);
        return;
    }
    if (map_.size() >= opts_.max_entries)
        make_room(now);
    map_.emplace(key, std::move(e));
}

void decision_cache::make_room(clock::time_point now) {
    for (auto it = map_.begin(); it != map_.end();) {
        if (now >= it->second.keep_until) {
            it = map_.erase(it);
            ++evictions_;
        } else {
            ++it;
        }
    }
    const std::size_t target =
        opts_.max_entries - std::max<std::size_t>(1, opts_.max_entries / 10);
    while (map_.size() > target && !map_.empty()) {
        map_.erase(map_.begin());
        ++evictions_;
    }
}

void decision_cache::clear() {
    std::lock_guard lock(mutex_);
    map_.clear();
}

std::size_t decision_cache::size() const {
    std::lock_guard lock(mutex_);
    return map_.size();
}

} // namespace edge::auth
