#include "common/metrics.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace edge::metrics {
namespace detail {
constinit thread_local unsigned tl_shard = shards;

unsigned assign_shard() noexcept {
    // Threads that were not bound (resolvers, tests) spread over the shared shards.
    static std::atomic<unsigned> next{0};
    tl_shard = exclusive_shards + next.fetch_add(1, std::memory_order_relaxed) % shared_shards;
    return tl_shard;
}
} // namespace detail

void bind_thread_shard(unsigned index) noexcept {
    detail::tl_shard =
        index < exclusive_shards ? index : exclusive_shards + index % shared_shards;
}

namespace {
enum kind : int { k_counter = 0, k_gauge = 1, k_histogram = 2 };
constexpr const char* kind_names[] = {"counter", "gauge", "histogram"};

// Handles made without a registry count here; nobody reads these.
detail::counter_series counter_sink;
detail::gauge_series gauge_sink;
detail::histogram_series histogram_sink;

bool valid_name(std::string_view n, bool metric) {
    if (n.empty())
        return false;
    for (std::size_t i = 0; i < n.size(); ++i) {
        char c = n[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (metric && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return !(n.size() >= 2 && n[0] == '_' && n[1] == '_'); // reserved
}

void append_double(std::string& out, double v) {
    if (std::isnan(v)) {
        out += "NaN";
        return;
    }
    if (std::isinf(v)) {
        out += v > 0 ? "+Inf" : "-Inf";
        return;
    }
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

template <class Int> void append_int(std::string& out, Int v) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

void append_escaped(std::string& out, std::string_view v, bool quote) {
    for (char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else if (c == '"' && quote)
            out += "\\\"";
        else
            out += c;
    }
}
} // namespace

struct registry::family {
    struct series {
        std::vector<std::string> values;
        std::unique_ptr<detail::counter_series> c;
        std::unique_ptr<detail::gauge_series> g;
        std::unique_ptr<detail::histogram_series> h;
        std::function<double()> fn;
        const void* owner = nullptr;
    };
    std::string name;
    std::string help;
    int type = 0;
    std::vector<std::string> label_names;
    std::vector<double> bounds;
    std::vector<std::unique_ptr<series>> all;
    bool overflow_logged = false;

    series& get(labels l) {
        for (auto& s : all) {
            bool same = true;
            std::size_t i = 0;
            for (auto& [k, v] : l)
                if (s->values[i++] != v) {
                    same = false;
                    break;
                }
            if (same)
                return *s;
        }
        auto s = std::make_unique<series>();
        if (all.size() >= max_series) {
            if (!overflow_logged) {
                overflow_logged = true;
                spdlog::error("metrics: {} has {} series: label values are not bounded; further "
                              "ones are counted as _overflow",
                              name, all.size());
            }
            for (std::size_t i = 0; i < label_names.size(); ++i)
                s->values.emplace_back("_overflow");
            for (auto& e : all)
                if (e->values == s->values)
                    return *e;
        } else {
            for (auto& [k, v] : l)
                s->values.emplace_back(v);
        }
        all.push_back(std::move(s));
        return *all.back();
    }
};

counter::counter() noexcept : s_(&counter_sink) {}
gauge::gauge() noexcept : s_(&gauge_sink) {}
histogram::histogram() noexcept : s_(&histogram_sink) {}

std::uint64_t counter::value() const noexcept {
    std::uint64_t sum = 0;
    for (auto& c : s_->cells)
        sum += c.v.load(std::memory_order_relaxed);
    return sum;
}

void gauge::set(std::int64_t v) const noexcept {
    // Documented as not mixed with add(): storing into every cell is then race-free enough
    // (one setter), and the sum is v.
    for (unsigned i = 0; i < shards; ++i)
        s_->cells[i].v.store(i == 0 ? v : 0, std::memory_order_relaxed);
}

std::int64_t gauge::value() const noexcept {
    std::int64_t sum = 0;
    for (auto& c : s_->cells)
        sum += c.v.load(std::memory_order_relaxed);
    return sum;
}

std::uint64_t histogram::count() const noexcept {
    std::uint64_t n = 0;
    for (auto& c : s_->cells)
        for (unsigned i = 0; i <= s_->nbounds; ++i)
            n += c.buckets[i].load(std::memory_order_relaxed);
    return n;
}

double histogram::sum() const noexcept {
    double s = 0;
    for (auto& c : s_->cells)
        s += c.sum.load(std::memory_order_relaxed);
    return s;
}

registry::registry() = default;
registry::~registry() = default;

registry::family& registry::find_family(std::string_view name, std::string_view help, int type,
                                        labels l, std::span<const double> bounds) {
    for (auto& f : families_) {
        if (f->name != name)
            continue;
        bool same = f->type == type && f->label_names.size() == l.size();
        std::size_t i = 0;
        for (auto& [k, v] : l)
            same = same && f->label_names[i++] == k;
        if (type == k_histogram)
            same = same && std::equal(bounds.begin(), bounds.end(), f->bounds.begin(),
                                      f->bounds.end());
        if (!same)
            throw std::logic_error("metrics: " + std::string(name) +
                                   " registered again with another type, label names or buckets");
        return *f;
    }
    if (!valid_name(name, true))
        throw std::logic_error("metrics: bad metric name " + std::string(name));
    auto f = std::make_unique<family>();
    f->name = name;
    f->help = help;
    f->type = type;
    for (auto& [k, v] : l) {
        if (!valid_name(k, false) || k == "le")
            throw std::logic_error("metrics: " + std::string(name) + ": bad label name " +
                                   std::string(k));
        f->label_names.emplace_back(k);
    }
    if (type == k_histogram) {
        if (bounds.size() > max_buckets || !std::is_sorted(bounds.begin(), bounds.end()) ||
            std::adjacent_find(bounds.begin(), bounds.end()) != bounds.end())
            throw std::logic_error("metrics: " + std::string(name) +
                                   ": bucket bounds must be increasing, at most 24");
        f->bounds.assign(bounds.begin(), bounds.end());
    }
    families_.push_back(std::move(f));
    return *families_.back();
}

counter registry::counter(std::string_view name, std::string_view help, labels l) {
    std::lock_guard lock(mu_);
    auto& s = find_family(name, help, k_counter, l, {}).get(l);
    if (!s.c && !s.fn)
        s.c = std::make_unique<detail::counter_series>();
    if (!s.c)
        throw std::logic_error("metrics: " + std::string(name) + " is a callback series");
    return metrics::counter(s.c.get());
}

gauge registry::gauge(std::string_view name, std::string_view help, labels l) {
    std::lock_guard lock(mu_);
    auto& s = find_family(name, help, k_gauge, l, {}).get(l);
    if (!s.g && !s.fn)
        s.g = std::make_unique<detail::gauge_series>();
    if (!s.g)
        throw std::logic_error("metrics: " + std::string(name) + " is a callback series");
    return metrics::gauge(s.g.get());
}

histogram registry::histogram(std::string_view name, std::string_view help, labels l,
                              std::span<const double> bounds) {
    std::lock_guard lock(mu_);
    auto& f = find_family(name, help, k_histogram, l, bounds);
    auto& s = f.get(l);
    if (!s.h) {
        s.h = std::make_unique<detail::histogram_series>();
        s.h->bounds = f.bounds.data();
        s.h->nbounds = static_cast<unsigned>(f.bounds.size());
    }
    return metrics::histogram(s.h.get());
}

void registry::add_fn(int type, std::string_view name, std::string_view help, labels l,
                      std::function<double()> fn, const void* owner) {
    std::lock_guard lock(mu_);
    auto& s = find_family(name, help, type, l, {}).get(l);
    if (s.c || s.g)
        throw std::logic_error("metrics: " + std::string(name) + " already has a plain series");
    s.fn = std::move(fn);
    s.owner = owner;
}

void registry::counter_fn(std::string_view name, std::string_view help, labels l,
                          std::function<double()> fn, const void* owner) {
    add_fn(k_counter, name, help, l, std::move(fn), owner);
}

void registry::gauge_fn(std::string_view name, std::string_view help, labels l,
                        std::function<double()> fn, const void* owner) {
    add_fn(k_gauge, name, help, l, std::move(fn), owner);
}

void registry::remove_callbacks(const void* owner) {
    std::lock_guard lock(mu_);
    for (auto& f : families_)
        std::erase_if(f->all, [&](auto& s) { return s->fn && s->owner == owner; });
}

std::string registry::expose() const {
    std::string out;
    out.reserve(16384);
    std::lock_guard lock(mu_);
    for (auto& f : families_) {
        if (f->all.empty())
            continue;
        out += "# HELP ";
        out += f->name;
        out += ' ';
        append_escaped(out, f->help, false);
        out += "\n# TYPE ";
        out += f->name;
        out += ' ';
        out += kind_names[f->type];
        out += '\n';
        // `name{labels[,extra]} ` for one sample line.
        auto head = [&](const family::series& s, std::string_view suffix, std::string_view le) {
            out += f->name;
            out += suffix;
            if (!s.values.empty() || !le.empty()) {
                out += '{';
                for (std::size_t i = 0; i < s.values.size(); ++i) {
                    if (i)
                        out += ',';
                    out += f->label_names[i];
                    out += "=\"";
                    append_escaped(out, s.values[i], true);
                    out += '"';
                }
                if (!le.empty()) {
                    if (!s.values.empty())
                        out += ',';
                    out += "le=\"";
                    out += le;
                    out += '"';
                }
                out += '}';
            }
            out += ' ';
        };
        for (auto& s : f->all) {
            if (s->fn) {
                head(*s, {}, {});
                append_double(out, s->fn());
            } else if (s->c) {
                head(*s, {}, {});
                append_int(out, metrics::counter(s->c.get()).value());
            } else if (s->g) {
                head(*s, {}, {});
                append_int(out, metrics::gauge(s->g.get()).value());
            } else if (s->h) {
                std::uint64_t per_bucket[max_buckets + 1] = {};
                double sum = 0;
                for (auto& c : s->h->cells) {
                    for (unsigned i = 0; i <= s->h->nbounds; ++i)
                        per_bucket[i] += c.buckets[i].load(std::memory_order_relaxed);
                    sum += c.sum.load(std::memory_order_relaxed);
                }
                std::uint64_t cumulative = 0;
                std::string le;
                for (unsigned i = 0; i <= s->h->nbounds; ++i) {
                    cumulative += per_bucket[i];
                    le.clear();
                    if (i < s->h->nbounds)
                        append_double(le, f->bounds[i]);
                    else
                        le = "+Inf";
                    head(*s, "_bucket", le);
                    append_int(out, cumulative);
                    out += '\n';
                }
                head(*s, "_sum", {});
                append_double(out, sum);
                out += '\n';
                head(*s, "_count", {});
                append_int(out, cumulative);
            }
            out += '\n';
        }
    }
    return out;
}

registry& global() {
    static registry r;
    return r;
}

} // namespace edge::metrics
