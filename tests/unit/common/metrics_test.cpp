#include "common/metrics.hpp"

#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace edge::metrics;

TEST_CASE("metrics: the same name and labels give the same series") {
    registry r;
    auto a = r.counter("edgegate_x_total", "X", {{"result", "hit"}});
    auto b = r.counter("edgegate_x_total", "X", {{"result", "hit"}});
    auto c = r.counter("edgegate_x_total", "X", {{"result", "miss"}});
    a.inc();
    b.inc(2);
    c.inc();
    CHECK(a.value() == 3);
    CHECK(c.value() == 1);
    CHECK(r.expose() == "# HELP edgegate_x_total X\n# TYPE edgegate_x_total counter\n"
                        "edgegate_x_total{result=\"hit\"} 3\nedgegate_x_total{result=\"miss\"} 1\n");
}

TEST_CASE("metrics: a family registered again with other labels or type is an error") {
    registry r;
    r.counter("edgegate_y_total", "Y", {{"a", "1"}});
    CHECK_THROWS_AS(r.counter("edgegate_y_total", "Y", {{"b", "1"}}), std::logic_error);
    CHECK_THROWS_AS(r.gauge("edgegate_y_total", "Y", {{"a", "1"}}), std::logic_error);
    CHECK_THROWS_AS(r.counter("bad-name", "Z"), std::logic_error);
    CHECK_THROWS_AS(r.counter("edgegate_z", "Z", {{"le", "1"}}), std::logic_error);
}

TEST_CASE("metrics: default handles are usable and count nowhere") {
    counter c;
    gauge g;
    histogram h;
    c.inc();
    g.inc();
    h.observe(1.0);
    registry r;
    CHECK(r.expose().empty());
}

TEST_CASE("metrics: gauges sum increments from every thread; set replaces") {
    registry r;
    auto g = r.gauge("edgegate_open", "Open things");
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
        ts.emplace_back([g] {
            for (int i = 0; i < 1000; ++i)
                g.inc();
            for (int i = 0; i < 250; ++i)
                g.dec();
        });
    for (auto& t : ts)
        t.join();
    CHECK(g.value() == 3000);
    g.set(7);
    CHECK(g.value() == 7);
    CHECK(r.expose().find("edgegate_open 7\n") != std::string::npos);
}

TEST_CASE("metrics: counters are exact under concurrent increments") {
    registry r;
    auto c = r.counter("edgegate_n_total", "N");
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < 2 * shards + 3; ++t) // more threads than shards: shared cells
        ts.emplace_back([c] {
            for (int i = 0; i < 10000; ++i)
                c.inc();
        });
    for (auto& t : ts)
        t.join();
    CHECK(c.value() == (2 * shards + 3) * 10000ull);
}

TEST_CASE("metrics: threads bound to shards of their own count exactly") {
    registry r;
    auto c = r.counter("edgegate_bound_total", "B");
    auto h = r.histogram("edgegate_bound_seconds", "B", {});
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < exclusive_shards + 4; ++t) // the last ones share shards
        ts.emplace_back([c, h, t] {
            bind_thread_shard(t);
            for (int i = 0; i < 10000; ++i) {
                c.inc();
                h.observe(0.5);
            }
        });
    for (auto& t : ts)
        t.join();
    CHECK(c.value() == (exclusive_shards + 4) * 10000ull);
    CHECK(h.count() == (exclusive_shards + 4) * 10000ull);
    CHECK(h.sum() == Approx((exclusive_shards + 4) * 5000.0));
}

TEST_CASE("metrics: histogram buckets are cumulative, with +Inf, sum and count") {
    registry r;
    const double bounds[] = {0.1, 1};
    auto h = r.histogram("edgegate_d_seconds", "D", {{"op", "a"}}, bounds);
    h.observe(0.05);
    h.observe(0.1); // a bound is inclusive
    h.observe(0.5);
    h.observe(std::chrono::milliseconds(2500));
    CHECK(h.count() == 4);
    CHECK(h.sum() == Approx(3.15));
    auto text = r.expose();
    CHECK(text.find("# TYPE edgegate_d_seconds histogram\n") != std::string::npos);
    CHECK(text.find("edgegate_d_seconds_bucket{op=\"a\",le=\"0.1\"} 2\n") != std::string::npos);
    CHECK(text.find("edgegate_d_seconds_bucket{op=\"a\",le=\"1\"} 3\n") != std::string::npos);
    CHECK(text.find("edgegate_d_seconds_bucket{op=\"a\",le=\"+Inf\"} 4\n") != std::string::npos);
    CHECK(text.find("edgegate_d_seconds_sum{op=\"a\"} 3.15\n") != std::string::npos);
    CHECK(text.find("edgegate_d_seconds_count{op=\"a\"} 4\n") != std::string::npos);
    const double other[] = {1, 2};
    CHECK_THROWS_AS(r.histogram("edgegate_d_seconds", "D", {{"op", "b"}}, other),
                    std::logic_error);
}

TEST_CASE("metrics: callbacks are read at scrape time and can be removed") {
    registry r;
    double v = 1.5;
    int owner = 0;
    r.gauge_fn("edgegate_fn", "F", {{"k", "v"}}, [&] { return v; }, &owner);
    r.counter_fn("edgegate_fn_total", "F", {}, [] { return 42.0; }, &owner);
    CHECK(r.expose().find("edgegate_fn{k=\"v\"} 1.5\n") != std::string::npos);
    v = 2;
    CHECK(r.expose().find("edgegate_fn{k=\"v\"} 2\n") != std::string::npos);
    CHECK(r.expose().find("edgegate_fn_total 42\n") != std::string::npos);
    r.remove_callbacks(&owner);
    CHECK(r.expose().empty());
}

TEST_CASE("metrics: label values are escaped; too many label sets share _overflow") {
    registry r;
    r.counter("edgegate_e_total", "help with \\ and\nnewline", {{"v", "a\"b\\c\nd"}}).inc();
    auto text = r.expose();
    CHECK(text.find("# HELP edgegate_e_total help with \\\\ and\\nnewline\n") != std::string::npos);
    CHECK(text.find("edgegate_e_total{v=\"a\\\"b\\\\c\\nd\"} 1\n") != std::string::npos);
    for (std::size_t i = 0; i < max_series + 10; ++i)
        r.counter("edgegate_many_total", "M", {{"v", std::to_string(i)}}).inc();
    auto many = r.expose();
    CHECK(many.find("edgegate_many_total{v=\"_overflow\"} 10\n") != std::string::npos);
}
