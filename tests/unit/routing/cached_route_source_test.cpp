#include "routing/cached_route_source.hpp"
#include "routing/redis_route_source.hpp"
#include "routing/redis_tracking.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

using namespace edge::routing;
using namespace std::chrono_literals;

namespace {
// Counts calls and answers from a script; `delay` makes answers wait on the io_context's clock.
class scripted_source final : public route_source {
  public:
    lookup_status next_runner = lookup_status::found;
    bool next_public = true;
    std::chrono::milliseconds delay{0};
    int runner_calls = 0;
    int public_calls = 0;
    int invalidations = 0;

    edge::awaitable<runner_lookup> runner_for(std::string_view) override {
        ++runner_calls;
        if (delay.count() > 0) {
            boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, delay);
            co_await t.async_wait(edge::use_nothrow);
        }
        runner_lookup r;
        r.status = next_runner;
        if (r.status == lookup_status::found)
            r.route = make_route("http://127.0.0.1:3000", "k", "runner.internal");
        co_return r;
    }
    edge::awaitable<runner_lookup> ssh_runner_for(std::string_view id) override {
        co_return co_await runner_for(id);
    }
    edge::awaitable<public_lookup> is_public(std::string_view) override {
        ++public_calls;
        co_return public_lookup{lookup_status::found, next_public, {}};
    }
    void invalidate(std::string_view) override { ++invalidations; }
};

template <class T> T run(edge::awaitable<T> a) {
    boost::asio::io_context io;
    auto f = boost::asio::co_spawn(io, std::move(a), boost::asio::use_future);
    io.run();
    return f.get();
}

struct fixture {
    route_cache::clock::time_point now = route_cache::clock::now();
    route_cache::options opts() {
        route_cache::options o;
        o.now = [this] { return now; };
        return o;
    }
};
} // namespace

TEST_CASE_METHOD(fixture, "routes are cached for their TTL", "[cache]") {
    scripted_source api;
    shared_routes shared(opts());
    cached_route_source cache(shared, api, {});

    CHECK(run(cache.runner_for("a")).status == lookup_status::found);
    CHECK(run(cache.runner_for("a")).route->port == 3000);
    CHECK(api.runner_calls == 1);
    now += 119s;
    run(cache.runner_for("a"));
    CHECK(api.runner_calls == 1);
    now += 2s;
    run(cache.runner_for("a"));
    CHECK(api.runner_calls == 2);
}

TEST_CASE_METHOD(fixture, "unknown sandboxes are remembered briefly, outages not at all",
                 "[cache]") {
    scripted_source api;
    shared_routes shared(opts());
    cached_route_source cache(shared, api, {});

    api.next_runner = lookup_status::not_found;
    CHECK(run(cache.runner_for("gone")).status == lookup_status::not_found);
    CHECK(run(cache.runner_for("gone")).status == lookup_status::not_found);
    CHECK(api.runner_calls == 1);
    now += 6s;
    api.next_runner = lookup_status::unavailable;
    CHECK(run(cache.runner_for("gone")).status == lookup_status::unavailable);
    CHECK(run(cache.runner_for("gone")).status == lookup_status::unavailable);
    CHECK(api.runner_calls == 3);
}

TEST_CASE_METHOD(fixture, "a route past its TTL is served stale while nobody can answer",
                 "[cache]") {
    scripted_source api;
    auto o = opts();
    o.stale_max = 300s;
    shared_routes shared(o);
    cached_route_source cache(shared, api, {});
    run(cache.runner_for("a"));
    api.next_runner = lookup_status::unavailable;
    auto stale_before = stats().stale_serves.load();

    now += 121s; // expired, within the staleness bound
    auto r = run(cache.runner_for("a"));
    CHECK(r.status == lookup_status::found);
    CHECK(stats().stale_serves.load() == stale_before + 1);

    now += 300s; // past the bound: the outage shows
    CHECK(run(cache.runner_for("a")).status == lookup_status::unavailable);
}

TEST_CASE_METHOD(fixture, "expire_all keeps routes only as stale", "[cache]") {
    scripted_source api;
    shared_routes shared(opts());
    cached_route_source cache(shared, api, {});
    run(cache.runner_for("a"));
    api.next_runner = lookup_status::not_found;
    run(cache.runner_for("gone"));
    shared.cache.expire_all();

    api.next_runner = lookup_status::unavailable;
    CHECK(run(cache.runner_for("a")).status == lookup_status::found); // stale
    CHECK(run(cache.runner_for("gone")).status == lookup_status::unavailable);
    CHECK(api.runner_calls == 4);
}

TEST_CASE_METHOD(fixture, "public status lives an hour and forget drops it", "[cache]") {
    scripted_source api;
    shared_routes shared(opts());
    cached_route_source cache(shared, api, {});
    CHECK(run(cache.is_public("a")).is_public);
    now += 3599s;
    CHECK(run(cache.is_public("a")).is_public);
    CHECK(api.public_calls == 1);
    shared.cache.forget_public("a");
    api.next_public = false;
    CHECK_FALSE(run(cache.is_public("a")).is_public);
    CHECK(api.public_calls == 2);
}

TEST_CASE("the cache is bounded in entries and bytes", "[cache]") {
    scripted_source api;
    route_cache::options o;
    o.max_entries = 100;
    shared_routes shared(o);
    cached_route_source cache(shared, api, {});
    for (int i = 0; i < 1000; ++i)
        run(cache.runner_for("s" + std::to_string(i)));
    CHECK(shared.cache.size() <= 100);
    CHECK(shared.cache.size() >= 50);

    route_cache::options b;
    b.max_bytes = 64 * 1024;
    shared_routes small(b);
    cached_route_source cache2(small, api, {});
    for (int i = 0; i < 10000; ++i)
        run(cache2.runner_for("s" + std::to_string(i)));
    CHECK(small.cache.bytes() <= 64 * 1024);
    CHECK(small.cache.size() > 10);
}

TEST_CASE("workers share one cache", "[cache]") {
    scripted_source api_of_worker_1, api_of_worker_2;
    shared_routes shared(route_cache::options{});
    cached_route_source w1(shared, api_of_worker_1, {}), w2(shared, api_of_worker_2, {});
    run(w1.runner_for("a"));
    CHECK(run(w2.runner_for("a")).status == lookup_status::found);
    CHECK(api_of_worker_1.runner_calls == 1);
    CHECK(api_of_worker_2.runner_calls == 0);
}

TEST_CASE("concurrent misses for one sandbox make one lookup", "[cache]") {
    scripted_source api;
    api.delay = 20ms;
    shared_routes shared(route_cache::options{});
    cached_route_source cache(shared, api, {});
    boost::asio::io_context io;
    int found = 0;
    for (int i = 0; i < 100; ++i)
        boost::asio::co_spawn(
            io,
            [&]() -> edge::awaitable<void> {
                auto r = co_await cache.runner_for("cold");
                found += r.status == lookup_status::found;
            },
            boost::asio::detached);
    io.run();
    CHECK(found == 100);
    CHECK(api.runner_calls == 1);
    CHECK(shared.runner_flights.in_flight() == 0);
}

TEST_CASE("a lookup slower than the bound answers unavailable, and still fills the cache",
          "[cache]") {
    scripted_source api;
    api.delay = 200ms;
    shared_routes shared(route_cache::options{});
    cached_route_source cache(shared, api, cached_route_source::options{50ms});
    boost::asio::io_context io;
    std::optional<runner_lookup> first;
    boost::asio::co_spawn(
        io, [&]() -> edge::awaitable<void> { first = co_await cache.runner_for("slow"); },
        boost::asio::detached);
    io.run(); // runs until the background lookup has finished too
    REQUIRE(first);
    CHECK(first->status == lookup_status::unavailable);
    CHECK(first->detail.find("50 ms") != std::string::npos);
    CHECK(run(cache.runner_for("slow")).status == lookup_status::found);
    CHECK(api.runner_calls == 1);
}

TEST_CASE("invalidate drops the route and tells the next layer", "[cache]") {
    scripted_source api;
    shared_routes shared(route_cache::options{});
    cached_route_source cache(shared, api, {});
    run(cache.runner_for("a"));
    cache.invalidate("a");
    CHECK(api.invalidations == 1);
    run(cache.runner_for("a"));
    CHECK(api.runner_calls == 2);
}

TEST_CASE("Redis values are Daytona's JSON", "[redis-keys]") {
    auto route = make_route("http://10.0.0.5:3003/base", "key-1", "runner5.internal");
    CHECK(runner_value(*route) ==
          R"({"value":{"apiUrl":"http://10.0.0.5:3003/base","apiKey":"key-1"}})");
    auto back = parse_runner_value(R"({"value":{"apiUrl":"http://10.0.0.5:3003","apiKey":"k"}})");
    REQUIRE(back.status == lookup_status::found);
    CHECK(back.route->host_port == "10.0.0.5:3003");
    CHECK(back.route->api_key == "k");
    CHECK(parse_runner_value("garbage").status == lookup_status::unavailable);
    CHECK(parse_runner_value(R"({"value":true})").status == lookup_status::unavailable);

    CHECK(parse_public_value(R"({"value":true})") == std::optional<bool>(true));
    CHECK(parse_public_value(R"({"value":false})") == std::optional<bool>(false));
    CHECK_FALSE(parse_public_value(R"({"value":"yes"})"));

    auto ssh = parse_ssh_value(ssh_value(*route));
    REQUIRE(ssh.status == lookup_status::found);
    CHECK(ssh.route->domain == "runner5.internal");
}

TEST_CASE("invalidation messages drop the matching L1 entries", "[redis-keys]") {
    scripted_source api;
    shared_routes shared(route_cache::options{});
    cached_route_source cache(shared, api, {});
    run(cache.runner_for("a"));
    run(cache.runner_for("b"));
    run(cache.is_public("a"));
    run(cache.ssh_runner_for("a"));
    redis_tracking::apply(shared.cache, {"proxy:sandbox-runner-info:a", "proxy:sandbox-public:a",
                                         "edgegate:ssh-runner:a", "unrelated:key"});
    // Expired (asked again next time) but kept as stale.
    CHECK_FALSE(shared.cache.find_runner("a")->fresh);
    CHECK_FALSE(shared.cache.find_public("a")->fresh);
    CHECK_FALSE(shared.cache.find_runner(cached_route_source::ssh_key("a"))->fresh);
    CHECK(shared.cache.find_runner("b")->fresh);

    redis_tracking::apply(shared.cache, {}); // flush: everything only stale
    auto b = shared.cache.find_runner("b");
    REQUIRE(b);
    CHECK_FALSE(b->fresh);
}

TEST_CASE_METHOD(fixture, "a preview's two answers come from one entry", "[cache]") {
    scripted_source api;
    shared_routes shared(opts());
    cached_route_source cache(shared, api, {});
    runner_lookup r;
    public_lookup p;
    CHECK_FALSE(cache.ready_pair("a", r, p));
    run(cache.runner_for("a"));
    CHECK_FALSE(cache.ready_pair("a", r, p)); // public status not known yet
    run(cache.is_public("a"));
    REQUIRE(cache.ready_pair("a", r, p));
    CHECK(r.route->port == 3000);
    CHECK(p.is_public);
    CHECK(shared.cache.size() == 1);

    now += 121s; // the runner answer is past its TTL, the public one is not
    CHECK_FALSE(cache.ready_pair("a", r, p));
    CHECK(cache.ready_public("a"));

    shared.cache.forget_public("a");
    shared.cache.forget_runner("a");
    CHECK(shared.cache.size() == 0);
    CHECK(shared.cache.bytes() == 0);
}
