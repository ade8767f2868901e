// Preview authentication against the real stand-ins of tests/support/: the dev control plane
// (Daytona's API from fixtures/test.json), the OIDC stand-in and a real redis-server, each
// started per test on a free 127.0.0.1 port and killed at the end. API calls are counted with
// the control plane's /_dev/calls. No sleeps: the io_context runs until a condition holds or a
// deadline passes.
#include "auth/activity.hpp"
#include "auth/control_plane_client.hpp"
#include "auth/oidc.hpp"
#include "auth/preview_auth.hpp"
#include "auth/query.hpp"
#include "routing/redis/redis_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <catch2/catch.hpp>

#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <fstream>
#include <optional>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

using namespace edge::auth;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace json = boost::json;
using steady = std::chrono::steady_clock;
using pairs = pair_header_lookup::pairs;

namespace {

const std::string private_id = "4be4ac5c-1048-423f-8460-37cc95c6a1af";
const std::string public_id = "26c952c8-f3f5-465d-8e4a-460131027d04";
const std::string preview_token = "ed08887e4a77970acaaea751159391a9";
const std::string user_token = "user-token-699866d4e82b52d924978391a5f5fd00";
const std::string user_without_access = "user-token-without-access-6e3dc1a3cfafe607";
const std::string signed_token = "sgn5c498709777340d5afa471862bd3f464";
const std::string proxy_key =
    "dtn_87a26998d243710d7f61cd6180235352a57ea4bf18d4ec805b2d9bc15ed654ec";

std::uint16_t free_port() {
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    return a.local_endpoint().port();
}

// A child process whose output is read until it says it is ready.
class child {
  public:
    child(std::vector<std::string> args, std::string_view ready) {
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
        int rc = ::posix_spawnp(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        ::close(fds[1]);
        out_ = fds[0];
        REQUIRE(rc == 0);
        auto deadline = steady::now() + 15s;
        while (log_.find(ready) == std::string::npos ||
               log_.find('\n', log_.find(ready)) == std::string::npos) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                              steady::now());
            pollfd p{out_, POLLIN, 0};
            if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
                FAIL(args[0] << " did not become ready:\n" << log_);
            char buf[4096];
            auto n = ::read(out_, buf, sizeof buf);
            if (n <= 0)
                FAIL(args[0] << " exited:\n" << log_);
            log_.append(buf, static_cast<std::size_t>(n));
        }
    }
    ~child() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        if (out_ >= 0)
            ::close(out_);
    }
    child(const child&) = delete;
    child& operator=(const child&) = delete;

    // The port of a `listening on HOST:PORT` line.
    std::uint16_t listening_port() const {
        auto at = log_.find("listening on ");
        auto colon = log_.rfind(':', log_.find('\n', at));
        return static_cast<std::uint16_t>(std::stoi(log_.substr(colon + 1)));
    }

  private:
    pid_t pid_ = -1;
    int out_ = -1;
    std::string log_;
};

std::unique_ptr<child> start_python(const std::string& script, std::vector<std::string> extra) {
    std::vector<std::string> args{EDGE_PYTHON, "-u", std::string(EDGE_SUPPORT_DIR) + "/" + script,
                                  "--port", "0", "--quiet"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<child>(std::move(args), "listening on ");
}

struct redis_process {
    std::uint16_t port = free_port();
    child proc{{"redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1", "--save",
                "", "--appendonly", "no"},
               "Ready to accept connections"};
    edge::routing::redis::options options() const {
        edge::routing::redis::options o;
        o.host = "127.0.0.1";
        o.port = port;
        o.connect_timeout = 500ms;
        o.command_timeout = 500ms;
        return o;
    }
};

template <class Pred>
bool run_until(asio::io_context& io, Pred pred, std::chrono::milliseconds timeout = 10s) {
    auto deadline = steady::now() + timeout;
    auto guard = asio::make_work_guard(io);
    while (!pred()) {
        auto now = steady::now();
        if (now >= deadline)
            return false;
        if (io.stopped())
            io.restart();
        io.run_one_for(std::min<steady::duration>(deadline - now, 50ms));
    }
    return true;
}

template <class T>
T await(asio::io_context& io, edge::awaitable<T> a, std::chrono::milliseconds timeout = 10s) {
    std::optional<T> out;
    asio::co_spawn(io, std::move(a), [&](std::exception_ptr e, T v) {
        if (e)
            std::rethrow_exception(e);
        out.emplace(std::move(v));
    });
    REQUIRE(run_until(io, [&] { return out.has_value(); }, timeout));
    return std::move(*out);
}

void await_void(asio::io_context& io, edge::awaitable<void> a,
                std::chrono::milliseconds timeout = 10s) {
    bool done = false;
    asio::co_spawn(io, std::move(a), [&](std::exception_ptr e) {
        if (e)
            std::rethrow_exception(e);
        done = true;
    });
    REQUIRE(run_until(io, [&] { return done; }, timeout));
}

edge::conf::url_parts local(std::uint16_t port, std::string path = {}) {
    return {"http", "127.0.0.1", port, std::move(path)};
}

// The dev control plane, a client for its API, and one for its /_dev controls.
struct control_plane {
    asio::io_context& io;
    std::unique_ptr<child> proc = start_python(
        "dev_control_plane.py", {"--fixture", std::string(EDGE_SUPPORT_DIR) + "/fixtures/test.json"});
    std::uint16_t port = proc->listening_port();
    control_plane_client dev{io.get_executor(), local(port), {}};

    control_plane_client::options api_options(std::shared_ptr<circuit_breaker> b = {}) const {
        control_plane_client::options o;
        o.timeout = 2s;
        o.first_backoff = 20ms;
        o.breaker = std::move(b);
        return o;
    }
    edge::conf::url_parts api() const { return local(port, "/api"); }

    json::value dev_call(std::string method, std::string path, std::string body = {}) {
        control_plane_client::call_options o;
        o.method = std::move(method);
        o.body = std::move(body);
        if (!o.body.empty())
            o.content_type = "application/json";
        auto r = await(io, dev.call(std::move(path), "", "dev", std::move(o)));
        REQUIRE(r.has_value());
        REQUIRE(r->status == 200);
        return json::parse(r->body);
    }
    void reset() { dev_call("POST", "/_dev/reset"); }
    void fail(const std::string& spec) { dev_call("POST", "/_dev/fail", spec); }
    // API calls whose path starts with `prefix` (method too, when given).
    std::size_t calls(std::string_view prefix, std::string_view method = {}) {
        std::size_t n = 0;
        const auto list = dev_call("GET", "/_dev/calls");
        for (auto& c : list.as_array()) {
            auto& o = c.as_object();
            if (std::string_view(o.at("path").as_string()).starts_with(prefix) &&
                (method.empty() || o.at("method").as_string() == method))
                ++n;
        }
        return n;
    }
};

// One worker's worth of authentication over a shared process state.
struct worker {
    worker(asio::io_context& io, control_plane& cp, auth_shared& shared,
           edge::routing::redis::client* redis = nullptr,
           std::shared_ptr<circuit_breaker> breaker = {})
        : api(io.get_executor(), cp.api(), cp.api_options(std::move(breaker))),
          auth(api, shared, redis, options()) {}
    static authorizer_options options() {
        authorizer_options o;
        o.lookup_timeout = 3s;
        return o;
    }
    control_plane_client api;
    authorizer auth;
};

// A request as a session would describe it.
struct request {
    explicit request(pairs h = {}) : headers(std::move(h)) {}
    request(const request&) = delete; // `lookup` refers to `headers`
    request& operator=(const request&) = delete;
    pairs headers;
    std::string host;
    std::string target = "/";
    std::string method = "GET";
    std::string id = private_id;
    std::uint16_t port = 3000;
    request_mode mode = request_mode::preview;
    bool websocket = false;
    bool is_public = false;
    pair_header_lookup lookup{headers};

    request_view view() {
        if (host.empty())
            host = std::to_string(port) + "-" + id + ".proxy.localhost:4000";
        request_view v;
        v.method = method;
        v.host = host;
        v.target = target;
        v.id = id;
        v.base_host = mode == request_mode::preview ? std::string_view(host).substr(host.find('.') + 1)
                                                    : std::string_view(host);
        v.port = port;
        v.mode = mode;
        v.websocket = websocket;
        v.sandbox_public = is_public;
        v.client_ip = "192.0.2.7";
        v.headers = &lookup;
        return v;
    }
};

decision decide(asio::io_context& io, authorizer& a, request& r) {
    auto v = r.view();
    return await(io, a.authorize(v));
}

std::string header(const response& r, std::string_view name) {
    for (auto& [k, v] : r.headers)
        if (iequals(k, name))
            return v;
    return {};
}

} // namespace

TEST_CASE("every credential path and its failure", "[auth][integration]") {
    asio::io_context io;
    control_plane cp{io};
    key_holder keys("PROXY_API_KEY", proxy_key);
    auth_shared shared(keys);
    shared.oidc.set_not_configured(); // logins are tested below; here: 401 for everyone
    worker w(io, cp, shared);

    SECTION("Bearer with the user's own token; stripped only when it authenticated") {
        request r{pairs{{"Authorization", "Bearer " + user_token}}};
        auto d = decide(io, w.auth, r);
        REQUIRE(d.allowed());
        CHECK(d.method == auth_method::bearer);
        CHECK(d.strip_authorization);
        // The access call went out WITH the user's token and X-Forwarded-For.
        auto calls = cp.dev_call("GET", "/_dev/calls").as_array();
        REQUIRE(calls.size() == 1);
        auto& h = calls[0].as_object().at("headers").as_object();
        CHECK(h.at("Authorization").as_string() == "Bearer " + user_token);
        CHECK(h.at("X-Forwarded-For").as_string() == "192.0.2.7");

        request no_access{pairs{{"Authorization", "Bearer " + user_without_access}}};
        auto d2 = decide(io, w.auth, no_access);
        REQUIRE_FALSE(d2.allowed());
        CHECK(d2.resp.status == 401);
        CHECK(d2.resp.message.find("Bearer token is invalid") != std::string::npos);
        request garbage{pairs{{"Authorization", "Bearer nope"}}};
        CHECK(decide(io, w.auth, garbage).resp.status == 401);
    }
    SECTION("X-Daytona-Preview-Token") {
        request r{pairs{{"X-Daytona-Preview-Token", preview_token}}};
        auto d = decide(io, w.auth, r);
        REQUIRE(d.allowed());
        CHECK(d.method == auth_method::preview_token_header);
        CHECK_FALSE(d.strip_authorization);
        request bad{pairs{{"X-Daytona-Preview-Token", "0000"}}};
        auto d2 = decide(io, w.auth, bad);
        CHECK(d2.resp.status == 401);
        CHECK(d2.resp.message.find("X-Daytona-Preview-Token is invalid") != std::string::npos);
    }
    SECTION("a token for sandbox A is refused on sandbox B") {
        cp.dev_call("POST", "/_dev/sandbox/bbbbbbbb-0000-4000-8000-00000000000b",
                    R"({"public": false, "previewTokens": ["token-of-b"]})");
        request a_on_b{pairs{{"X-Daytona-Preview-Token", preview_token}}};
        a_on_b.id = "bbbbbbbb-0000-4000-8000-00000000000b";
        CHECK(decide(io, w.auth, a_on_b).resp.status == 401);
        request b_on_a{pairs{{"X-Daytona-Preview-Token", "token-of-b"}}};
        CHECK(decide(io, w.auth, b_on_a).resp.status == 401);
    }
    SECTION("the query key is removed, other parameters keep their bytes") {
        request r;
        r.target = "/a%2Fb?x=%40&DAYTONA_SANDBOX_AUTH_KEY=" + preview_token + "&y=%5B1%5D&z=(local)";
        auto d = decide(io, w.auth, r);
        REQUIRE(d.allowed());
        CHECK(d.method == auth_method::query_key);
        REQUIRE(d.target);
        CHECK(*d.target == "/a%2Fb?x=%40&y=%5B1%5D&z=(local)");
        request bad;
        bad.target = "/?DAYTONA_SANDBOX_AUTH_KEY=wrong&a=1";
        auto d2 = decide(io, w.auth, bad);
        CHECK(d2.resp.status == 401);
        CHECK_FALSE(d2.target);
    }
    SECTION("signed preview URL, then its cookie on the refresh: no API call") {
        request r;
        r.id = signed_token;
        auto d = decide(io, w.auth, r);
        REQUIRE(d.allowed());
        CHECK(d.method == auth_method::signed_url);
        CHECK(d.sandbox_id(r.view()) == private_id);
        REQUIRE(d.set_cookies.size() == 1);
        const auto& sc = d.set_cookies[0];
        REQUIRE(sc.starts_with("daytona-sandbox-auth-" + signed_token + "="));
        CHECK(sc.find("Domain=proxy.localhost") != std::string::npos);
        CHECK(sc.find("Max-Age=3600; HttpOnly; SameSite=Lax") != std::string::npos);

        cp.reset();
        request refresh{pairs{{"Cookie", sc.substr(0, sc.find(';'))}}};
        refresh.id = signed_token;
        auto ready = w.auth.ready(refresh.view());
        REQUIRE(ready);
        CHECK(ready->method == auth_method::signed_url);
        CHECK(ready->sandbox_id(refresh.view()) == private_id);
        CHECK(cp.calls("/api") == 0);

        request wrong_port;
        wrong_port.id = signed_token;
        wrong_port.port = 3001;
        CHECK(decide(io, w.auth, wrong_port).resp.status == 401);
    }
    SECTION("absent: 401 JSON naming the ways; toolbox and WebSocket never redirect") {
        request r{pairs{{"Accept", "application/json"}}};
        auto d = decide(io, w.auth, r);
        CHECK(d.resp.status == 401);
        CHECK(d.resp.message.find("X-Daytona-Preview-Token") != std::string::npos);
        CHECK(d.resp.message.find("DAYTONA_SANDBOX_AUTH_KEY") != std::string::npos);
        CHECK(d.resp.message.find("Authorization: Bearer") != std::string::npos);
        request tb{pairs{{"Accept", "text/html"}}};
        tb.mode = request_mode::toolbox;
        tb.port = 2280;
        tb.host = "proxy.localhost:4000";
        CHECK(decide(io, w.auth, tb).resp.status == 401);
    }
    SECTION("public sandboxes: nothing asked, except on reserved ports") {
        request r;
        r.id = public_id;
        r.is_public = true;
        CHECK(decide(io, w.auth, r).method == auth_method::public_sandbox);
        CHECK(cp.calls("/api") == 0);
        r.port = 22222;
        CHECK(decide(io, w.auth, r).resp.status == 401);
    }
}

TEST_CASE("cached decisions cost no API call; the API down with and without them",
          "[auth][integration]") {
    asio::io_context io;
    control_plane cp{io};
    key_holder keys("PROXY_API_KEY", proxy_key);
    decision_cache::options co;
    co.valid_ttl = 1s; // then stale, served only while the API cannot answer
    auth_shared shared(keys, co);
    shared.oidc.set_not_configured();
    worker w(io, cp, shared);

    request r{pairs{{"X-Daytona-Preview-Token", preview_token}}};
    REQUIRE(decide(io, w.auth, r).allowed());
    CHECK(cp.calls("/api/preview") == 1);
    for (int i = 0; i < 20; ++i) {
        auto d = w.auth.ready(r.view());
        REQUIRE(d);
        CHECK(d->allowed());
    }
    REQUIRE(decide(io, w.auth, r).allowed());
    CHECK(cp.calls("/api/preview") == 1);

    cp.fail(R"({"mode": "503"})");
    SECTION("no cached decision: 503 with Retry-After, never 2xx, never 400") {
        request other{pairs{{"X-Daytona-Preview-Token", "another-token"}}};
        auto d = decide(io, w.auth, other);
        REQUIRE_FALSE(d.allowed());
        CHECK(d.resp.status == 503);
        CHECK(header(d.resp, "Retry-After") == "5");
        CHECK(d.resp.message.find("unavailable") != std::string::npos);
        // Not cached: once the API is back, the same token is asked again.
        cp.reset();
        CHECK(decide(io, w.auth, other).resp.status == 401);
    }
    SECTION("a valid decision past its TTL carries through the outage (stale)") {
        REQUIRE(run_until(io, [&] { return !w.auth.ready(r.view()); }, 3s));
        auto d = decide(io, w.auth, r);
        CHECK(d.allowed());
        CHECK(shared.stale_allows == 1);
    }
}

TEST_CASE("the circuit breaker makes an API outage fail fast", "[auth][integration]") {
    asio::io_context io;
    control_plane cp{io};
    auto breaker = std::make_shared<circuit_breaker>(circuit_breaker::options{2, 10s});
    control_plane_client api(io.get_executor(), cp.api(), cp.api_options(breaker));
    cp.fail(R"({"mode": "503"})");
    for (int i = 0; i < 2; ++i) {
        auto r = await(io, api.get("/preview/" + private_id + "/public", proxy_key, "public"));
        CHECK((r && r->status == 503));
    }
    const auto tried = cp.calls("/api");
    CHECK(tried == 6); // 2 calls × 3 tries
    CHECK(breaker->is_open());
    auto t0 = steady::now();
    auto r = await(io, api.get("/preview/" + private_id + "/public", proxy_key, "public"));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == make_error_code(control_plane_errc::circuit_open));
    CHECK(steady::now() - t0 < 100ms);
    CHECK(cp.calls("/api") == tried);
}

TEST_CASE("identical checks in flight are coalesced into one API call", "[auth][integration]") {
    asio::io_context io;
    control_plane cp{io};
    key_holder keys("PROXY_API_KEY", proxy_key);
    auth_shared shared(keys);
    worker w1(io, cp, shared), w2(io, cp, shared);
    cp.fail(R"({"mode": "slow", "delayMs": 300, "pathPrefix": "/api/preview"})");

    std::vector<std::unique_ptr<request>> reqs;
    std::vector<request_view> views; // authorize() reads its view until it completes
    views.reserve(100);
    int allowed = 0, done = 0;
    for (int i = 0; i < 100; ++i) {
        reqs.push_back(
            std::make_unique<request>(pairs{{"X-Daytona-Preview-Token", preview_token}}));
        views.push_back(reqs.back()->view());
        auto& a = (i % 2 ? w1 : w2).auth;
        asio::co_spawn(io, a.authorize(views.back()), [&](std::exception_ptr e, decision d) {
            REQUIRE_FALSE(e);
            allowed += d.allowed();
            ++done;
        });
    }
    REQUIRE(run_until(io, [&] { return done == 100; }));
    CHECK(allowed == 100);
    CHECK(cp.calls("/api/preview") == 1);
}

TEST_CASE("decisions are shared through Redis without the credential in the key",
          "[auth][integration][redis]") {
    asio::io_context io;
    control_plane cp{io};
    redis_process rs;
    edge::routing::redis::client redis(io.get_executor(), rs.options());
    redis.start();
    REQUIRE(run_until(io, [&] { return redis.current_state() == edge::routing::redis::state::connected; }));
    key_holder keys("PROXY_API_KEY", proxy_key);
    auth_shared replica_a(keys), replica_b(keys);
    worker a(io, cp, replica_a, &redis), b(io, cp, replica_b, &redis);

    request r{pairs{{"X-Daytona-Preview-Token", preview_token}}};
    REQUIRE(decide(io, a.auth, r).allowed());
    const auto key = redis_check_key(check_key(check_kind::preview_token, private_id, preview_token));
    std::optional<std::string> stored;
    REQUIRE(run_until(io, [&] {
        std::vector<std::string> cmd{"GET", key};
        auto g = await(io, redis.command(std::move(cmd)));
        if (g && g->type == edge::routing::redis::reply::kind::string)
            stored = g->str;
        return stored.has_value();
    }));
    CHECK(stored->find(R"("value":true)") != std::string::npos);
    std::vector<std::string> keys_cmd{"KEYS", "*"};
    auto all = await(io, redis.command(std::move(keys_cmd)));
    REQUIRE(all.has_value());
    for (auto& k : all->elements) {
        CHECK(k.str.find(preview_token) == std::string::npos);
        CHECK(k.str.starts_with("edgegate:auth:"));
    }

    // The other replica finds it in Redis: no API call.
    REQUIRE(decide(io, b.auth, r).allowed());
    CHECK(cp.calls("/api/preview") == 1);
    CHECK(replica_b.redis_hits == 1);
    redis.stop();
    run_until(io, [] { return false; }, 50ms);
}

TEST_CASE("last-activity: once per 45 s per sandbox across requests and replicas",
          "[auth][integration][activity]") {
    asio::io_context io;
    control_plane cp{io};
    redis_process rs;
    edge::routing::redis::client redis(io.get_executor(), rs.options());
    redis.start();
    REQUIRE(run_until(io, [&] { return redis.current_state() == edge::routing::redis::state::connected; }));
    key_holder keys("PROXY_API_KEY", proxy_key);
    control_plane_client api(io.get_executor(), cp.api(), cp.api_options());
    activity_shared shared_a, shared_b; // two replicas
    activity_tracker a(io.get_executor(), api, keys, shared_a, &redis);
    activity_tracker b(io.get_executor(), api, keys, shared_b, &redis);

    std::vector<activity_tracker::handle> live;
    for (int i = 0; i < 100; ++i)
        live.push_back(a.start(private_id, nullptr));
    REQUIRE(run_until(io, [&] { return shared_a.posted == 1; }));
    live.push_back(b.start(private_id, nullptr)); // the other replica: Redis says done
    REQUIRE(run_until(io, [&] { return shared_b.skipped_redis == 1; }));
    CHECK(a.live_sandboxes() == 1);
    REQUIRE(run_until(io, [&] { return cp.calls("/api/sandbox/" + private_id + "/last-activity", "POST") == 1; }));

    pairs skip{{"X-Daytona-Skip-Last-Activity-Update", "true"}};
    pair_header_lookup h(skip);
    CHECK_FALSE(a.start(public_id, &h).active());

    // A failing API never surfaces: counted, logged, nothing thrown.
    cp.fail(R"({"mode": "500", "pathPrefix": "/api/sandbox"})");
    auto other = a.start(public_id, nullptr);
    REQUIRE(run_until(io, [&] { return shared_a.failed == 1; }));

    std::vector<std::string> ttl_cmd{"TTL", activity_redis_key(private_id)};
    auto ttl = await(io, redis.command(std::move(ttl_cmd)));
    REQUIRE(ttl.has_value());
    CHECK(ttl->integer > 0);
    CHECK(ttl->integer <= 45);
    live.clear();
    other.reset();
    a.stop();
    b.stop();
    redis.stop();
    run_until(io, [] { return false; }, 50ms);
}

TEST_CASE("last-activity repeats while a request lives, and stops after it",
          "[auth][integration][activity]") {
    asio::io_context io;
    control_plane cp{io};
    key_holder keys("PROXY_API_KEY", proxy_key);
    control_plane_client api(io.get_executor(), cp.api(), cp.api_options());
    activity_shared shared(std::chrono::seconds(1)); // 45 s in production
    activity_tracker t(io.get_executor(), api, keys, shared, nullptr, {200ms});
    t.run();
    auto h = t.start(private_id, nullptr);
    REQUIRE(run_until(io, [&] { return shared.posted >= 3; }, 10s));
    h.reset();
    // Within one more interval the sweep drops the sandbox; no more calls after that.
    REQUIRE(run_until(io, [&] { return t.live_sandboxes() == 0; }, 2s));
    const auto posted = shared.posted.load();
    run_until(io, [] { return false; }, 1500ms);
    CHECK(shared.posted == posted);
    t.stop();
    run_until(io, [] { return false; }, 50ms);
}

TEST_CASE("a rotated proxy key file is picked up without a restart", "[auth][integration]") {
    asio::io_context io;
    control_plane cp{io};
    char path[] = "/tmp/edgegate-proxy-key-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    ::close(fd);
    std::ofstream(path) << proxy_key << "\n";
    key_holder keys("PROXY_API_KEY", "", path, 0ms);
    auth_shared shared(keys);
    shared.oidc.set_not_configured();
    worker w(io, cp, shared);

    const std::string new_key = "dtn_" + std::string(64, 'e');
    cp.dev_call("POST", "/_dev/keys", R"({"proxyApiKey": ")" + new_key + R"("})");
    // The API refuses the old key: that is unavailability (503), not an invalid token (401).
    request r{pairs{{"X-Daytona-Preview-Token", preview_token}}};
    auto d = decide(io, w.auth, r);
    CHECK(d.resp.status == 503);
    CHECK(d.resp.message.find("regenerated") != std::string::npos);

    std::ofstream(path) << new_key << "\n"; // what an operator (or a secret mount) does
    auto d2 = decide(io, w.auth, r);
    CHECK(d2.allowed());
    CHECK(keys.key() == new_key);
    std::remove(path);
}

TEST_CASE("OIDC login round trip against the stand-in", "[auth][integration][oidc]") {
    asio::io_context io;
    control_plane cp{io};
    auto idp = start_python("oidc_standin.py", {"--client-id", "daytona"});
    const auto idp_port = idp->listening_port();
    const std::string issuer = "http://127.0.0.1:" + std::to_string(idp_port);
    cp.dev_call("POST", "/_dev/oidc", R"({"issuer": ")" + issuer + R"(", "clientId": "daytona",
                                          "audience": "daytona"})");
    key_holder keys("PROXY_API_KEY", proxy_key);
    auth_shared shared(keys);
    worker w(io, cp, shared);

    // Settings from GET /api/config, then discovery (an empty environment).
    edge::conf::config cfg;
    CHECK(shared.oidc.current() == oidc_store::status::loading);
    request browser{pairs{{"Accept", "text/html,application/xhtml+xml"}}};
    CHECK(decide(io, w.auth, browser).resp.status == 503); // not ready yet: says so
    await_void(io, load_oidc(w.api, cfg, shared.oidc, 50ms));
    REQUIRE(shared.oidc.ready());
    CHECK(shared.oidc.get()->token_endpoint == issuer + "/token");

    browser.target = "/app?x=%40";
    auto d = decide(io, w.auth, browser);
    REQUIRE(d.resp.status == 307);
    const auto location = header(d.resp, "Location");
    const auto pkce = header(d.resp, "Set-Cookie");
    REQUIRE(location.starts_with(issuer + "/authorize?"));
    REQUIRE(pkce.starts_with("pkce_verifier="));

    // The non-browser cases get 401 even now (Daytona issue #4117).
    for (auto tweak : {0, 1, 2}) {
        request r{pairs{{"Accept", tweak == 2 ? "application/json" : "text/html"}}};
        if (tweak == 0)
            r.websocket = true;
        if (tweak == 1)
            r.method = "POST";
        CHECK(decide(io, w.auth, r).resp.status == 401);
    }

    // The browser follows the 307: the stand-in logs the user in and sends it to /callback.
    control_plane_client browser_client(io.get_executor(), local(idp_port), {});
    auto authorize_target = location.substr(issuer.size());
    control_plane_client::call_options co;
    co.expect_json = false;
    co.tries = 1;
    auto at = await(io, browser_client.call(authorize_target, "", "authorize", co));
    REQUIRE(at.has_value());
    REQUIRE(at->status == 302);
    const std::string callback_prefix = "http://proxy.localhost:4000/callback?";
    REQUIRE(at->location.starts_with(callback_prefix));
    const std::string callback_target = at->location.substr(at->location.find("/callback"));

    login_options lo{"http", cookie_policy{}};
    oidc_login login(io.get_executor(), w.api, shared.oidc, keys, lo, 5s);
    auto callback = [&](std::string target, pairs h) {
        request r{std::move(h)};
        r.mode = request_mode::toolbox; // the base host: no preview label
        r.host = "proxy.localhost:4000";
        r.target = std::move(target);
        auto v = r.view();
        return await(io, login.callback(v));
    };
    const pairs with_cookie{{"Cookie", pkce.substr(0, pkce.find(';'))}};

    SECTION("the round trip: 302 to returnTo with the sandbox cookie, which then authenticates") {
        auto res = callback(callback_target, with_cookie);
        REQUIRE(res.status == 302);
        CHECK(header(res, "Location") == "http://3000-" + private_id + ".proxy.localhost:4000/app?x=%40");
        std::string auth_cookie;
        for (auto& [k, v] : res.headers)
            if (k == "Set-Cookie" && v.starts_with("daytona-sandbox-auth-"))
                auth_cookie = v;
        REQUIRE_FALSE(auth_cookie.empty());
        CHECK(auth_cookie.find("Domain=proxy.localhost") != std::string::npos);
        request next{pairs{{"Cookie", auth_cookie.substr(0, auth_cookie.find(';'))}}};
        auto nd = w.auth.ready(next.view());
        REQUIRE(nd);
        CHECK(nd->method == auth_method::cookie);

        // A code works once.
        auto again = callback(callback_target, with_cookie);
        CHECK(again.status == 401);
    }
    SECTION("no pkce_verifier cookie, or one from another login") {
        CHECK(callback(callback_target, {}).status == 400);
        auto other = decide(io, w.auth, browser);
        auto other_cookie = header(other.resp, "Set-Cookie");
        CHECK(callback(callback_target, {{"Cookie", other_cookie.substr(0, other_cookie.find(';'))}})
                  .status == 400);
    }
    SECTION("a returnTo on another site is refused") {
        auto state = *query_param(callback_target, "state");
        auto st = *decode_state(state);
        st.return_to = "https://evil.example/steal";
        auto tampered = "/callback?code=" + *query_param(callback_target, "code") +
                        "&state=" + query_escape(encode_state(st));
        CHECK(callback(tampered, with_cookie).status == 400);
    }
    SECTION("a user without access to the sandbox gets 403") {
        cp.dev_call("POST", "/_dev/reset");
        control_plane_client idp_dev(io.get_executor(), local(idp_port), {});
        control_plane_client::call_options u;
        u.method = "POST";
        u.body = R"({"accessToken": ")" + user_without_access + R"("})";
        u.content_type = "application/json";
        REQUIRE(await(io, idp_dev.call("/_dev/user", "", "dev", u)).has_value());
        auto d2 = decide(io, w.auth, browser);
        auto loc = header(d2.resp, "Location");
        auto c2 = header(d2.resp, "Set-Cookie");
        auto at2 = await(io, browser_client.call(loc.substr(issuer.size()), "", "authorize", co));
        REQUIRE(at2.has_value());
        auto res = callback(at2->location.substr(at2->location.find("/callback")),
                            {{"Cookie", c2.substr(0, c2.find(';'))}});
        CHECK(res.status == 403);
    }
    SECTION("the provider says no") {
        CHECK(callback("/callback?error=access_denied&error_description=nope", with_cookie).status ==
              401);
    }
}
