#include "routing/route_cache.hpp"

namespace edge::routing {
namespace {
constexpr std::size_t entry_overhead = 160; // node, hash bucket, both parts' bookkeeping

std::size_t weight(std::string_view key, const runner_lookup& r, const public_lookup& p) {
    std::size_t n = entry_overhead + key.size() + r.detail.size() + p.detail.size();
    if (r.route)
        n += sizeof(runner_route) + r.route->scheme.size() + r.route->host.size() +
             r.route->base_path.size() + r.route->api_key.size() + r.route->host_port.size() +
             r.route->domain.size();
    return n;
}
} // namespace

route_stats& stats() noexcept {
    static route_stats s;
    return s;
}

template <class T>
std::optional<route_cache::hit<T>> route_cache::read(part<T>& p, clock::time_point now) {
    if (!p.present)
        return std::nullopt;
    if (now < p.fresh_until)
        return hit<T>{p.value, true};
    if (now < p.usable_until)
        return hit<T>{p.value, false};
    p.present = false;
    p.value = T{};
    return std::nullopt;
}

void route_cache::drop_if_empty(table::iterator it) {
    if (it->second.runner.present || it->second.pub.present)
        return;
    bytes_ -= it->second.bytes;
    table_.erase(it);
}

void route_cache::reweigh(std::string_view key, entry& e) {
    bytes_ -= e.bytes;
    e.bytes = weight(key, e.runner.value, e.pub.value);
    bytes_ += e.bytes;
}

std::optional<route_cache::hit<runner_lookup>> route_cache::find_runner(std::string_view key) {
    auto now = opts_.now();
    std::lock_guard lock(mutex_);
    auto it = table_.find(key);
    if (it == table_.end())
        return std::nullopt;
    auto r = read(it->second.runner, now);
    if (!r)
        drop_if_empty(it);
    return r;
}

std::optional<route_cache::hit<public_lookup>> route_cache::find_public(std::string_view key) {
    auto now = opts_.now();
    std::lock_guard lock(mutex_);
    auto it = table_.find(key);
    if (it == table_.end())
        return std::nullopt;
    auto r = read(it->second.pub, now);
    if (!r)
        drop_if_empty(it);
    return r;
}

bool route_cache::find_fresh_pair(std::string_view key, runner_lookup& runner, public_lookup& pub) {
    auto now = opts_.now();
    std::lock_guard lock(mutex_);
    auto it = table_.find(key);
    if (it == table_.end())
        return false;
    auto& e = it->second;
    if (!e.runner.present || !e.pub.present || now >= e.runner.fresh_until ||
        now >= e.pub.fresh_until)
        return false;
    runner = e.runner.value;
    pub = e.pub.value;
    return true;
}

void route_cache::make_room(clock::time_point now, std::size_t incoming) {
    auto full = [&] {
        return table_.size() + 1 > opts_.max_entries || bytes_ + incoming > opts_.max_bytes;
    };
    if (!full())
        return;
    // First what is no longer usable, then (still full) down to 90% so that inserts at capacity
    // do not sweep every time.
    for (auto it = table_.begin(); it != table_.end();) {
        auto& e = it->second;
        read(e.runner, now);
        read(e.pub, now);
        if (e.runner.present || e.pub.present) {
            ++it;
        } else {
            bytes_ -= e.bytes;
            it = table_.erase(it);
            stats().evictions.fetch_add(1, std::memory_order_relaxed);
        }
    }
    auto target_entries = opts_.max_entries / 10 * 9;
    auto target_bytes = opts_.max_bytes / 10 * 9;
    while (!table_.empty() && (table_.size() > target_entries || bytes_ > target_bytes)) {
        auto it = table_.begin();
        bytes_ -= it->second.bytes;
        table_.erase(it);
        stats().evictions.fetch_add(1, std::memory_order_relaxed);
    }
}

template <class T>
void route_cache::write(std::string_view key, part<T> entry::*which, const T& value,
                        std::chrono::seconds ttl) {
    auto now = opts_.now();
    auto stale = value.status == lookup_status::found ? opts_.stale_max : std::chrono::seconds{0};
    std::lock_guard lock(mutex_);
    auto it = table_.find(key);
    if (it == table_.end()) {
        make_room(now, entry_overhead + key.size());
        it = table_.emplace(std::string(key), entry{}).first;
    }
    auto& p = it->second.*which;
    p.value = value;
    p.fresh_until = now + ttl;
    p.usable_until = now + ttl + stale;
    p.present = true;
    reweigh(key, it->second);
}

void route_cache::store_runner(std::string_view key, const runner_lookup& r) {
    if (r.status == lookup_status::found)
        write(key, &entry::runner, r, opts_.runner_ttl);
    else if (r.status == lookup_status::not_found)
        write(key, &entry::runner, r, opts_.negative_ttl);
}

void route_cache::store_public(std::string_view key, const public_lookup& r) {
    if (r.status == lookup_status::found)
        write(key, &entry::pub, r, opts_.public_ttl);
    else if (r.status == lookup_status::not_found)
        write(key, &entry::pub, r, opts_.negative_ttl);
}

template <class T>
void route_cache::change(std::string_view key, part<T> entry::*which, bool erase) {
    auto now = opts_.now();
    std::lock_guard lock(mutex_);
    auto it = table_.find(key);
    if (it == table_.end())
        return;
    auto& p = it->second.*which;
    if (erase) {
        p.present = false;
        p.value = T{};
        reweigh(key, it->second);
        drop_if_empty(it);
        return;
    }
    p.fresh_until = std::min(p.fresh_until, now);
    if (p.value.status != lookup_status::found)
        p.usable_until = p.fresh_until; // a "not found" is never served stale
}

void route_cache::forget_runner(std::string_view key) {
    change(key, &entry::runner, true);
}
void route_cache::forget_public(std::string_view key) {
    change(key, &entry::pub, true);
}
void route_cache::expire_runner(std::string_view key) {
    change(key, &entry::runner, false);
}
void route_cache::expire_public(std::string_view key) {
    change(key, &entry::pub, false);
}

void route_cache::expire_all() {
    auto now = opts_.now();
    std::lock_guard lock(mutex_);
    auto expire = [&](auto& p) {
        p.fresh_until = std::min(p.fresh_until, now);
        if (p.value.status != lookup_status::found)
            p.usable_until = p.fresh_until;
    };
    for (auto& [k, e] : table_) {
        expire(e.runner);
        expire(e.pub);
    }
}

std::size_t route_cache::size() const {
    std::lock_guard lock(mutex_);
    return table_.size();
}

std::size_t route_cache::bytes() const {
    std::lock_guard lock(mutex_);
    return bytes_;
}

} // namespace edge::routing
