#pragma once
// Process metrics: counters, gauges and histograms with small fixed label sets, exposed in the
// Prometheus text format (version 0.0.4) by registry::expose(). Written here because
// prometheus-cpp is not packaged on Debian 12.
//
// Usage: get a handle ONCE (at construction of a per-worker object, or at startup), keep it,
// then update it on the hot path:
//
//     auto& reg = edge::metrics::global();
//     metrics::counter hits = reg.counter("edgegate_route_cache_lookups_total",
//                                         "Route cache lookups by result", {{"result", "hit"}});
//     metrics::histogram lat = reg.histogram("edgegate_api_call_duration_seconds",
//                                            "Control-plane API call latency",
//                                            {{"endpoint", "runner_by_sandbox"}},
//                                            metrics::latency_bounds);
//     metrics::gauge open = reg.gauge("edgegate_connections", "Open client connections",
//                                     {{"protocol", "h1"}});
//     hits.inc();  lat.observe(elapsed);  open.inc(); ... open.dec();
//
// - A series is (family name, label values). Calling counter()/gauge()/histogram() again with the
//   same name and labels returns a handle to the SAME series (every worker may ask for its own
//   handle). The first call fixes a family's help, type, label names and bucket bounds; a later
//   call that disagrees throws std::logic_error (a programming error, found at startup).
// - Label values must come from a small fixed set (protocol, method class, status class,
//   endpoint name, outcome...): NEVER sandbox ids, tokens, IPs, hosts or paths. A family holds at
//   most max_series series; past that, further label sets share one series labelled "_overflow"
//   and an error is logged once.
// - Handles are small, trivially copyable, valid for the registry's lifetime, and safe to use
//   from any thread. A default-constructed handle is valid and counts into a private sink (so an
//   object built without metrics needs no null checks).
// - Cost: inc() is a load and a store (no locked instruction) on the calling thread's own
//   cache line when the thread is bound to a shard of its own (runtime binds every worker:
//   bind_thread_shard), else one relaxed atomic add on a shard shared with other unbound
//   threads; observe() adds a bucket search over <= 24 bounds. No lock, no allocation, no string
//   work. Each series has `shards` cache-line-sized cells; a scrape sums them.
// - Names follow Prometheus conventions: edgegate_ prefix, counters end in _total, units in the
//   name (_seconds, _bytes).
// - Callback series (counter_fn, gauge_fn) are read at scrape time on the scraping thread: the
//   callback must be thread-safe (read atomics) and whatever it captures must outlive the
//   registry's scrapes (or be removed with remove_callbacks(owner)).
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace edge::metrics {

// Shards 0..exclusive_shards-1 are each written by the one thread bound to it (plain load and
// store); the others are shared by unbound threads (atomic add).
inline constexpr unsigned exclusive_shards = 24;
inline constexpr unsigned shared_shards = 8;
inline constexpr unsigned shards = exclusive_shards + shared_shards;
inline constexpr std::size_t max_series = 1024;
inline constexpr std::size_t max_buckets = 24;

// Bucket bounds (upper, inclusive) for latencies in seconds: 1 ms .. 60 s.
inline constexpr double latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1,     2.5,  5,     10,   30, 60};
// For sizes in bytes: 256 B .. 1 GiB.
inline constexpr double size_bounds[] = {256,     1024,     4096,      16384,     65536,
                                         262144,  1048576,  4194304,   16777216,  67108864,
                                         268435456, 1073741824};

using label = std::pair<std::string_view, std::string_view>;
using labels = std::initializer_list<label>;

namespace detail {
// The calling thread's shard (0..shards-1); `shards` until the thread is bound or first counts.
extern constinit thread_local unsigned tl_shard;
unsigned assign_shard() noexcept;
inline unsigned thread_shard() noexcept {
    unsigned s = tl_shard;
    return s < shards ? s : assign_shard();
}

struct alignas(64) counter_cell {
    std::atomic<std::uint64_t> v{0};
};
struct alignas(64) gauge_cell {
    std::atomic<std::int64_t> v{0};
};
struct alignas(64) histogram_cell {
    std::atomic<double> sum{0};
    std::atomic<std::uint64_t> buckets[max_buckets + 1]{}; // the last one is +Inf
};
struct counter_series {
    counter_cell cells[shards];
};
struct gauge_series {
    gauge_cell cells[shards];
};
struct histogram_series {
    const double* bounds = nullptr; // owned by the family
    unsigned nbounds = 0;
    histogram_cell cells[shards];
};
} // namespace detail

// Gives the calling thread the exclusive use of shard `index` when index < exclusive_shards
// (worker i calls it with i at start; bind each index to ONE thread only: two threads on one
// exclusive shard would lose counts), else a shared shard.
void bind_thread_shard(unsigned index) noexcept;

namespace detail {
template <class T> inline void add(std::atomic<T>& cell, unsigned shard, T n) noexcept {
    if (shard < exclusive_shards) // single writer: no locked instruction needed
        cell.store(cell.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    else
        cell.fetch_add(n, std::memory_order_relaxed);
}
} // namespace detail

class counter {
  public:
    counter() noexcept;
    void inc(std::uint64_t n = 1) const noexcept {
        const unsigned sh = detail::thread_shard();
        detail::add(s_->cells[sh].v, sh, n);
    }
    std::uint64_t value() const noexcept;

  private:
    friend class registry;
    explicit counter(detail::counter_series* s) noexcept : s_(s) {}
    detail::counter_series* s_;
};

// An up/down value. Use inc/dec/add from any thread, or set() — not both on one series (set()
// from one thread only: it writes the total into one cell and clears the others).
class gauge {
  public:
    gauge() noexcept;
    void add(std::int64_t n) const noexcept {
        const unsigned sh = detail::thread_shard();
        detail::add(s_->cells[sh].v, sh, n);
    }
    void inc() const noexcept { add(1); }
    void dec() const noexcept { add(-1); }
    void set(std::int64_t v) const noexcept;
    std::int64_t value() const noexcept;

  private:
    friend class registry;
    explicit gauge(detail::gauge_series* s) noexcept : s_(s) {}
    detail::gauge_series* s_;
};

class histogram {
  public:
    histogram() noexcept;
    void observe(double v) const noexcept {
        unsigned i = 0;
        while (i < s_->nbounds && v > s_->bounds[i])
            ++i;
        const unsigned sh = detail::thread_shard();
        auto& c = s_->cells[sh];
        detail::add(c.buckets[i], sh, std::uint64_t{1});
        double old = c.sum.load(std::memory_order_relaxed);
        if (sh < exclusive_shards)
            c.sum.store(old + v, std::memory_order_relaxed);
        else
            while (!c.sum.compare_exchange_weak(old, old + v, std::memory_order_relaxed))
                ;
    }
    // A duration, observed in seconds.
    template <class Rep, class Period>
    void observe(std::chrono::duration<Rep, Period> d) const noexcept {
        observe(std::chrono::duration<double>(d).count());
    }
    std::uint64_t count() const noexcept;
    double sum() const noexcept;

  private:
    friend class registry;
    explicit histogram(detail::histogram_series* s) noexcept : s_(s) {}
    detail::histogram_series* s_;
};

class registry {
  public:
    registry();
    ~registry();
    registry(const registry&) = delete;
    registry& operator=(const registry&) = delete;

    // Setup-time calls (take a lock, may allocate): each returns the handle of one series.
    metrics::counter counter(std::string_view name, std::string_view help, labels l = {});
    metrics::gauge gauge(std::string_view name, std::string_view help, labels l = {});
    metrics::histogram histogram(std::string_view name, std::string_view help, labels l,
                                 std::span<const double> bounds = latency_bounds);

    // Series whose value is computed at scrape time. `owner` (any pointer, may be null) groups
    // callbacks for remove_callbacks. Registering the same series again replaces its callback.
    void counter_fn(std::string_view name, std::string_view help, labels l,
                    std::function<double()> fn, const void* owner = nullptr);
    void gauge_fn(std::string_view name, std::string_view help, labels l,
                  std::function<double()> fn, const void* owner = nullptr);
    void remove_callbacks(const void* owner);

    // The whole registry in the Prometheus text exposition format.
    std::string expose() const;

    struct family;

  private:
    family& find_family(std::string_view name, std::string_view help, int type, labels l,
                        std::span<const double> bounds);
    void add_fn(int type, std::string_view name, std::string_view help, labels l,
                std::function<double()> fn, const void* owner);

    mutable std::mutex mu_;
    std::vector<std::unique_ptr<family>> families_;
};

// The process-wide registry that the modules register into and METRICS_PORT serves.
registry& global();

} // namespace edge::metrics
