#include "routing/route_cache.hpp"

namespace edge::routing {

template <class T> std::optional<T> route_cache::find(table<T>& t, std::string_view key) {
    auto now = opts_.now();
    std::lock_guard lock(mutex_);
    auto it = t.find(key);
    if (it == t.end())
        return std::nullopt;
    if (it->second.expires > now)
        return it->second.value;
    t.erase(it);
    return std::nullopt;
}

template <class T> void route_cache::store(table<T>& t, std::string_view key, const T& value) {
    std::chrono::seconds ttl{};
    if (value.status == lookup_status::found)
        ttl = std::is_same_v<T, runner_lookup> ? opts_.runner_ttl : opts_.public_ttl;
    else if (value.status == lookup_status::not_found)
        ttl = opts_.negative_ttl;
    else
        return;
    auto now = opts_.now();
    std::lock_guard lock(mutex_);
    if (t.size() >= opts_.max_entries && t.find(key) == t.end()) {
        std::erase_if(t, [&](const auto& kv) { return kv.second.expires <= now; });
        if (t.size() >= opts_.max_entries)
            t.erase(t.begin());
    }
    t.insert_or_assign(std::string(key), entry<T>{value, now + ttl});
}

std::optional<runner_lookup> route_cache::find_runner(std::string_view id) {
    return find(runners_, id);
}
std::optional<public_lookup> route_cache::find_public(std::string_view id) {
    return find(publics_, id);
}
void route_cache::store_runner(std::string_view id, const runner_lookup& r) {
    store(runners_, id, r);
}
void route_cache::store_public(std::string_view id, const public_lookup& r) {
    store(publics_, id, r);
}

void route_cache::forget(std::string_view id) {
    std::lock_guard lock(mutex_);
    if (auto it = runners_.find(id); it != runners_.end())
        runners_.erase(it);
    if (auto it = publics_.find(id); it != publics_.end())
        publics_.erase(it);
}

std::size_t route_cache::size() const {
    std::lock_guard lock(mutex_);
    return runners_.size() + publics_.size();
}

} // namespace edge::routing
