#include "routing/cached_route_source.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

using namespace edge::routing;
using namespace std::chrono_literals;

namespace {
// Counts calls and answers from a script.
class scripted_source final : public route_source {
  public:
    lookup_status next_runner = lookup_status::found;
    bool next_public = true;
    int runner_calls = 0;
    int public_calls = 0;

    edge::awaitable<runner_lookup> runner_for(std::string_view) override {
        ++runner_calls;
        runner_lookup r;
        r.status = next_runner;
        if (r.status == lookup_status::found)
            r.route = make_route("http://127.0.0.1:3000", "k");
        co_return r;
    }
    edge::awaitable<public_lookup> is_public(std::string_view) override {
        ++public_calls;
        co_return public_lookup{lookup_status::found, next_public, {}};
    }
};

template <class T> T run(edge::awaitable<T> a) {
    boost::asio::io_context io;
    auto f = boost::asio::co_spawn(io, std::move(a), boost::asio::use_future);
    io.run();
    return f.get();
}
} // namespace

TEST_CASE("routes are cached for their TTL", "[cache]") {
    scripted_source api;
    auto now = route_cache::clock::now();
    route_cache::options o;
    o.now = [&] { return now; };
    route_cache shared(o);
    cached_route_source cache(shared, api);

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

TEST_CASE("unknown sandboxes are remembered briefly, outages not at all", "[cache]") {
    scripted_source api;
    auto now = route_cache::clock::now();
    route_cache::options o;
    o.now = [&] { return now; };
    route_cache shared(o);
    cached_route_source cache(shared, api);

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

TEST_CASE("public status lives an hour and forget drops it", "[cache]") {
    scripted_source api;
    auto now = route_cache::clock::now();
    route_cache::options o;
    o.now = [&] { return now; };
    route_cache shared(o);
    cached_route_source cache(shared, api);
    CHECK(run(cache.is_public("a")).is_public);
    now += 3599s;
    CHECK(run(cache.is_public("a")).is_public);
    CHECK(api.public_calls == 1);
    shared.forget("a");
    api.next_public = false;
    CHECK_FALSE(run(cache.is_public("a")).is_public);
    CHECK(api.public_calls == 2);
}

TEST_CASE("the cache is bounded", "[cache]") {
    scripted_source api;
    route_cache::options o;
    o.max_entries = 10;
    route_cache shared(o);
    cached_route_source cache(shared, api);
    for (int i = 0; i < 100; ++i)
        run(cache.runner_for("s" + std::to_string(i)));
    CHECK(shared.size() == 10);
}

TEST_CASE("workers share one cache", "[cache]") {
    scripted_source api_of_worker_1, api_of_worker_2;
    route_cache shared(route_cache::options{});
    cached_route_source w1(shared, api_of_worker_1), w2(shared, api_of_worker_2);
    run(w1.runner_for("a"));
    CHECK(run(w2.runner_for("a")).status == lookup_status::found);
    CHECK(api_of_worker_1.runner_calls == 1);
    CHECK(api_of_worker_2.runner_calls == 0);
}
