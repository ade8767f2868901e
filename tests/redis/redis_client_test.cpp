// The Redis client and invalidation listener against a real redis-server that each test starts on
// 127.0.0.1 (a free port, no persistence) and kills at the end. No sleeps: the io_context runs
// until a condition holds or a deadline passes.
#include "routing/redis/redis_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

#include <csignal>
#include <fcntl.h>
#include <optional>
#include <ostream>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

using namespace edge::routing::redis;
using namespace std::chrono_literals;
using namespace std::string_literals;
namespace asio = boost::asio;
using boost::system::result;
using steady = std::chrono::steady_clock;

// For Catch's messages (it prints result<reply> values).
namespace edge::routing::redis {
std::ostream& operator<<(std::ostream& os, const reply& r) {
    switch (r.type) {
    case reply::kind::string: return os << '"' << r.str << '"';
    case reply::kind::status: return os << '+' << r.str;
    case reply::kind::error: return os << '-' << r.str;
    case reply::kind::integer: return os << ':' << r.integer;
    case reply::kind::nil: return os << "nil";
    case reply::kind::array:
        os << '[';
        for (const auto& e : r.elements)
            os << e << ' ';
        return os << ']';
    }
    return os;
}
} // namespace edge::routing::redis

namespace {

std::uint16_t free_port() {
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    return a.local_endpoint().port();
}

// One redis-server process. start() returns once it says it accepts connections.
class redis_server {
  public:
    explicit redis_server(std::vector<std::string> extra = {})
        : port_(free_port()), extra_(std::move(extra)) {
        start();
    }
    ~redis_server() { kill(); }
    redis_server(const redis_server&) = delete;
    redis_server& operator=(const redis_server&) = delete;

    void start() {
        REQUIRE(pid_ < 0);
        std::vector<std::string> args{
            "redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no",     "--daemonize",         "no"};
        args.insert(args.end(), extra_.begin(), extra_.end());
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
        int rc = ::posix_spawnp(&pid_, "redis-server", &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        ::close(fds[1]);
        out_ = fds[0];
        REQUIRE(rc == 0);
        wait_for_output("Ready to accept connections", 10s);
    }

    // SIGKILL: the server vanishes as in a crash.
    void kill() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
        if (out_ >= 0) {
            ::close(out_);
            out_ = -1;
        }
    }
    void pause() { ::kill(pid_, SIGSTOP); }
    void resume() { ::kill(pid_, SIGCONT); }

    options client_options() const {
        options o;
        o.host = "127.0.0.1";
        o.port = port_;
        o.connect_timeout = 300ms;
        o.command_timeout = 300ms;
        o.min_backoff = 10ms;
        o.max_backoff = 100ms;
        return o;
    }

  private:
    // Reads the server's log (kept in a pipe: it writes little after start-up) until `what`.
    void wait_for_output(std::string_view what, std::chrono::milliseconds timeout) {
        auto deadline = steady::now() + timeout;
        std::string log;
        while (log.find(what) == std::string::npos) {
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
            pollfd p{out_, POLLIN, 0};
            if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
                FAIL("redis-server did not become ready:\n" << log);
            char buf[4096];
            auto n = ::read(out_, buf, sizeof buf);
            if (n <= 0)
                FAIL("redis-server exited:\n" << log);
            log.append(buf, static_cast<std::size_t>(n));
        }
    }

    std::uint16_t port_;
    std::vector<std::string> extra_;
    pid_t pid_ = -1;
    int out_ = -1;
};

// Runs `io` until `pred()` holds; false when `timeout` passes first.
template <class Pred>
bool run_until(asio::io_context& io, Pred pred, std::chrono::milliseconds timeout = 5s) {
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

// Runs one awaitable to completion (within `timeout`) and returns its value.
template <class T>
T await(asio::io_context& io, edge::awaitable<T> a, std::chrono::milliseconds timeout = 5s) {
    std::optional<T> out;
    asio::co_spawn(io, std::move(a), [&](std::exception_ptr e, T v) {
        if (e)
            std::rethrow_exception(e);
        out.emplace(std::move(v));
    });
    REQUIRE(run_until(
        io, [&] { return out.has_value(); }, timeout));
    return std::move(*out);
}

bool connected(const client& c) {
    return c.current_state() == state::connected;
}

void require_status(const result<reply>& r, std::string_view s) {
    REQUIRE(r);
    CHECK(r->type == reply::kind::status);
    CHECK(r->str == s);
}

// Sets its own key, then reads it back into `out`.
edge::awaitable<void> set_then_get(client& c, int k, std::string& out) {
    auto key = "proxy:key:" + std::to_string(k);
    // Named vectors: g++ 12 rejects a braced list of strings inside a co_await expression.
    std::vector<std::string> set{"SET", key, "value-" + std::to_string(k)};
    std::vector<std::string> get{"GET", key};
    auto s = co_await c.command(std::move(set));
    if (!s)
        co_return;
    auto g = co_await c.command(std::move(get));
    if (g && g->type == reply::kind::string)
        out = g->str;
}

} // namespace

TEST_CASE("GET and SET, and replies of every kind", "[redis][integration]") {
    redis_server srv;
    asio::io_context io;
    client c(io.get_executor(), srv.client_options());
    int connects = 0;
    c.on_connect([&] { ++connects; });
    c.start();
    REQUIRE(run_until(io, [&] { return connected(c); }));
    CHECK(connects == 1);

    require_status(await(io, c.command({"SET", "proxy:k", "v\r\n\0x"s})), "OK");
    auto got = await(io, c.command({"GET", "proxy:k"}));
    REQUIRE(got);
    CHECK(got->type == reply::kind::string);
    CHECK(got->str == "v\r\n\0x"s);

    auto missing = await(io, c.command({"GET", "proxy:missing"}));
    REQUIRE(missing);
    CHECK(missing->type == reply::kind::nil);

    auto n = await(io, c.command({"INCR", "proxy:n"}));
    REQUIRE(n);
    CHECK(n->type == reply::kind::integer);
    CHECK(n->integer == 1);

    // A Redis error is a reply, not a failure of the client.
    auto wrong = await(io, c.command({"INCR", "proxy:k"}));
    REQUIRE(wrong);
    CHECK(wrong->type == reply::kind::error);
    CHECK(wrong->str.rfind("ERR", 0) == 0);

    auto arr = await(io, c.command({"MGET", "proxy:k", "proxy:missing"}));
    REQUIRE(arr);
    REQUIRE(arr->type == reply::kind::array);
    REQUIRE(arr->elements.size() == 2);
    CHECK(arr->elements[1].type == reply::kind::nil);

    auto empty = await(io, c.command({}));
    CHECK(empty.error() == boost::system::errc::invalid_argument);
    CHECK(c.errors() == 0);
}

TEST_CASE("1000 concurrent commands are pipelined and answered in order", "[redis][integration]") {
    redis_server srv;
    asio::io_context io;
    client c(io.get_executor(), srv.client_options());
    c.start();
    REQUIRE(run_until(io, [&] { return connected(c); }));

    constexpr int count = 1000;
    // INCR answers tell the order in which the server saw the commands.
    std::vector<std::optional<result<reply>>> incr(count);
    // Each coroutine sets then reads its own key, interleaved with everyone else's.
    std::vector<std::string> got(count);
    int done = 0;
    for (int i = 0; i < count; ++i) {
        asio::co_spawn(io, c.command({"INCR", "proxy:counter"}),
                       [&, i](std::exception_ptr, result<reply> r) {
                           incr[static_cast<std::size_t>(i)] = std::move(r);
                           ++done;
                       });
        asio::co_spawn(io, set_then_get(c, i, got[static_cast<std::size_t>(i)]),
                       [&](std::exception_ptr) { ++done; });
    }
    REQUIRE(run_until(
        io, [&] { return done == 2 * count; }, 10s));
    for (int i = 0; i < count; ++i) {
        const auto& r = incr[static_cast<std::size_t>(i)];
        REQUIRE(r);
        REQUIRE(*r);
        CHECK((*r)->integer == i + 1);
        CHECK(got[static_cast<std::size_t>(i)] == "value-" + std::to_string(i));
    }
    CHECK(c.errors() == 0);
}

TEST_CASE("commands fail at once while not connected", "[redis][integration]") {
    asio::io_context io;
    options o;
    o.host = "127.0.0.1";
    o.port = free_port(); // nobody listens there
    o.min_backoff = 10ms;
    o.max_backoff = 50ms;
    client c(io.get_executor(), o);
    CHECK(await(io, c.command({"PING"})).error() == asio::error::not_connected);
    c.start();
    REQUIRE(run_until(io, [&] { return !c.last_error().empty(); }));
    CHECK(c.current_state() != state::connected);
    CHECK_THAT(c.last_error(), Catch::Contains("refused"));
    auto t0 = steady::now();
    CHECK(await(io, c.command({"PING"})).error() == asio::error::not_connected);
    CHECK(steady::now() - t0 < 100ms);
}

TEST_CASE("AUTH with requirepass and with an ACL user", "[redis][integration]") {
    redis_server srv({"--requirepass", "pw-default-1234"});
    asio::io_context io;

    auto admin_opts = srv.client_options();
    admin_opts.password = "pw-default-1234";
    client admin(io.get_executor(), admin_opts);
    admin.start();
    REQUIRE(run_until(io, [&] { return connected(admin); }));
    require_status(await(io, admin.command({"SET", "proxy:a", "1"})), "OK");
    require_status(await(io, admin.command({"ACL", "SETUSER", "edge", "on", ">pw-edge-5678",
                                            "~proxy:*", "+@all"})),
                   "OK");

    auto user_opts = srv.client_options();
    user_opts.username = "edge";
    user_opts.password = "pw-edge-5678";
    client user(io.get_executor(), user_opts);
    user.start();
    REQUIRE(run_until(io, [&] { return connected(user); }));
    auto a = await(io, user.command({"GET", "proxy:a"}));
    REQUIRE(a);
    CHECK(a->str == "1");
    auto denied = await(io, user.command({"SET", "elsewhere", "1"}));
    REQUIRE(denied);
    CHECK(denied->type == reply::kind::error);
    CHECK_THAT(denied->str, Catch::StartsWith("NOPERM"));

    SECTION("a wrong password is reported without the password") {
        auto bad_opts = srv.client_options();
        bad_opts.username = "edge";
        bad_opts.password = "not-the-password-42";
        client bad(io.get_executor(), bad_opts);
        bad.start();
        REQUIRE(run_until(io, [&] { return !bad.last_error().empty(); }));
        CHECK_THAT(bad.last_error(), Catch::Contains("WRONGPASS"));
        CHECK_THAT(bad.last_error(), !Catch::Contains("not-the-password-42"));
        CHECK(bad.current_state() != state::connected);
        CHECK(await(io, bad.command({"PING"})).error() == asio::error::not_connected);
        CHECK(bad.errors() >= 1);
    }
    SECTION("no password at all is reported as NOAUTH") {
        client anon(io.get_executor(), srv.client_options());
        anon.start();
        REQUIRE(run_until(io, [&] { return !anon.last_error().empty(); }));
        CHECK_THAT(anon.last_error(), Catch::Contains("NOAUTH"));
        CHECK(anon.current_state() != state::connected);
    }
}

TEST_CASE("AUTH with a user defined at start-up (--user)", "[redis][integration]") {
    redis_server srv({"--user", "proxy", "on", ">pw-proxy-9012", "~*", "&*", "+@all", "--user",
                      "default", "off"});
    asio::io_context io;
    auto o = srv.client_options();
    o.username = "proxy";
    o.password = "pw-proxy-9012";
    client c(io.get_executor(), o);
    c.start();
    REQUIRE(run_until(io, [&] { return connected(c); }));
    auto who = await(io, c.command({"ACL", "WHOAMI"}));
    REQUIRE(who);
    CHECK(who->str == "proxy");

    o.password = "pw-proxy-wrong";
    client bad(io.get_executor(), o);
    bad.start();
    REQUIRE(run_until(io, [&] { return !bad.last_error().empty(); }));
    CHECK_THAT(bad.last_error(), Catch::Contains("WRONGPASS"));
    CHECK_THAT(bad.last_error(), !Catch::Contains("pw-proxy-wrong"));
}

TEST_CASE("a stopped server makes commands time out, then the client recovers",
          "[redis][integration]") {
    redis_server srv;
    asio::io_context io;
    auto o = srv.client_options();
    client c(io.get_executor(), o);
    int connects = 0;
    c.on_connect([&] { ++connects; });
    c.start();
    REQUIRE(run_until(io, [&] { return connected(c); }));
    require_status(await(io, c.command({"SET", "proxy:k", "v"})), "OK");

    srv.pause();
    auto t0 = steady::now();
    auto r = await(io, c.command({"GET", "proxy:k"}), 3s);
    auto elapsed = steady::now() - t0;
    REQUIRE(!r);
    CHECK(r.error() == asio::error::timed_out);
    CHECK(elapsed >= o.command_timeout - 10ms);
    CHECK(elapsed < o.command_timeout + 200ms);
    CHECK_THAT(c.last_error(), Catch::Contains("timed out"));

    // A hung server is given up on: callers then fail at once instead of each waiting.
    REQUIRE(run_until(
        io, [&] { return !connected(c); }, 3s));
    t0 = steady::now();
    CHECK(await(io, c.command({"GET", "proxy:k"})).error() == asio::error::not_connected);
    CHECK(steady::now() - t0 < 100ms);
    // Reconnecting is bounded too: the kernel still completes TCP handshakes for the stopped
    // server, so it is the PING that goes unanswered until connect_timeout.
    REQUIRE(run_until(
        io, [&] { return c.last_error().find("connect timed out") == 0; }, 3s));
    CHECK(!connected(c));

    srv.resume();
    REQUIRE(run_until(
        io, [&] { return connected(c); }, 5s));
    CHECK(connects == 2);
    auto after = await(io, c.command({"GET", "proxy:k"}));
    REQUIRE(after);
    CHECK(after->str == "v");
}

TEST_CASE("commands in flight when the connection drops fail, and a late reply is not "
          "given to the next command",
          "[redis][integration]") {
    redis_server srv;
    asio::io_context io;
    auto o = srv.client_options();
    client c(io.get_executor(), o);
    c.start();
    REQUIRE(run_until(io, [&] { return connected(c); }));
    require_status(await(io, c.command({"SET", "proxy:a", "A"})), "OK");
    require_status(await(io, c.command({"SET", "proxy:b", "B"})), "OK");

    // The first GET times out while the server is stopped; its reply comes after the second
    // GET was sent, and must be discarded rather than answer it.
    srv.pause();
    auto first = await(io, c.command({"GET", "proxy:a"}), 3s);
    CHECK(first.error() == asio::error::timed_out);
    std::optional<result<reply>> second;
    asio::co_spawn(io, c.command({"GET", "proxy:b"}),
                   [&](std::exception_ptr, result<reply> v) { second = std::move(v); });
    io.poll(); // the second GET is written
    srv.resume();
    REQUIRE(run_until(
        io, [&] { return second.has_value(); }, 3s));
    REQUIRE(*second);
    CHECK((*second)->str == "B");
}

TEST_CASE("the client reconnects after the server is killed and restarted",
          "[redis][integration]") {
    redis_server srv;
    asio::io_context io;
    client c(io.get_executor(), srv.client_options());
    int connects = 0;
    c.on_connect([&] { ++connects; });
    c.start();
    REQUIRE(run_until(io, [&] { return connected(c); }));
    require_status(await(io, c.command({"SET", "proxy:k", "v"})), "OK");

    // A command in flight when the server dies fails (it never waits for a reconnect).
    std::optional<result<reply>> in_flight;
    asio::co_spawn(io, c.command({"BLPOP", "proxy:list", "0"}),
                   [&](std::exception_ptr, result<reply> v) { in_flight = std::move(v); });
    io.poll();
    srv.kill();
    REQUIRE(run_until(
        io, [&] { return in_flight.has_value(); }, 2s));
    CHECK(!*in_flight);
    REQUIRE(run_until(io, [&] { return !connected(c); }));
    CHECK(await(io, c.command({"GET", "proxy:k"})).error() == asio::error::not_connected);
    // Reconnect attempts fail while nobody listens.
    auto errors_before = c.errors();
    REQUIRE(run_until(io, [&] { return c.errors() > errors_before + 2; }));

    srv.start();
    REQUIRE(run_until(
        io, [&] { return connected(c); }, 5s));
    CHECK(connects == 2);
    auto gone = await(io, c.command({"GET", "proxy:k"}));
    REQUIRE(gone);
    CHECK(gone->type == reply::kind::nil); // a new server, without persistence
    require_status(await(io, c.command({"SET", "proxy:k", "v2"})), "OK");
}

TEST_CASE("stop and destruction fail pending commands and end the background work",
          "[redis][integration]") {
    redis_server srv;
    asio::io_context io;
    std::optional<result<reply>> pending;
    {
        client c(io.get_executor(), srv.client_options());
        c.start();
        REQUIRE(run_until(io, [&] { return connected(c); }));
        asio::co_spawn(io, c.command({"BLPOP", "proxy:never", "0"}),
                       [&](std::exception_ptr, result<reply> v) { pending = std::move(v); });
        io.poll();
    }
    REQUIRE(run_until(
        io, [&] { return pending.has_value(); }, 1s));
    CHECK(pending->error() == asio::error::operation_aborted);
    // Nothing keeps the io_context busy once the client is gone.
    io.restart();
    auto t0 = steady::now();
    io.run_for(2s);
    CHECK(steady::now() - t0 < 1s);
}

TEST_CASE("the invalidation listener reports keys changed by other connections",
          "[redis][integration]") {
    redis_server srv;
    asio::io_context io;
    auto o = srv.client_options();
    client tracker(io.get_executor(), o);
    client writer(io.get_executor(), o);
    invalidation_listener listener(io.get_executor(), o);

    long long id = -1;
    int ready = 0;
    std::vector<std::vector<std::string>> seen;
    listener.start(
        [&](long long client_id) {
            id = client_id;
            ++ready;
            seen.push_back({"<ready>"});
        },
        [&](const std::vector<std::string>& keys) { seen.push_back(keys); });
    tracker.start();
    writer.start();
    REQUIRE(run_until(io, [&] { return connected(tracker) && connected(writer) && id >= 0; }));
    CHECK(listener.current_state() == state::connected);
    // A (re)subscribe flushes first: invalidations may have been missed before it.
    REQUIRE(seen.size() == 2);
    CHECK(seen[0].empty());
    CHECK(seen[1] == std::vector<std::string>{"<ready>"});
    seen.clear();

    require_status(await(io, tracker.command({"CLIENT", "TRACKING", "ON", "REDIRECT",
                                              std::to_string(id), "BCAST", "PREFIX", "proxy:"})),
                   "OK");

    require_status(await(io, writer.command({"SET", "proxy:a", "1"})), "OK");
    REQUIRE(run_until(io, [&] { return seen.size() == 1; }));
    CHECK(seen[0] == std::vector<std::string>{"proxy:a"});

    // Keys outside the prefix are not reported; messages arrive in order, so after the DEL's
    // invalidation there is nothing else.
    require_status(await(io, writer.command({"SET", "other:b", "1"})), "OK");
    auto del = await(io, writer.command({"DEL", "proxy:a"}));
    REQUIRE(del);
    CHECK(del->integer == 1);
    REQUIRE(run_until(io, [&] { return seen.size() == 2; }));
    CHECK(seen[1] == std::vector<std::string>{"proxy:a"});

    require_status(await(io, writer.command({"FLUSHALL"})), "OK");
    REQUIRE(run_until(io, [&] { return seen.size() == 3; }));
    CHECK(seen[2].empty());

    SECTION("after a reconnect: a flush, then a new client id") {
        srv.kill();
        REQUIRE(run_until(io, [&] { return listener.current_state() != state::connected; }));
        srv.start();
        REQUIRE(run_until(
            io, [&] { return ready == 2; }, 5s));
        REQUIRE(seen.size() == 5);
        CHECK(seen[3].empty());
        CHECK(seen[4] == std::vector<std::string>{"<ready>"});
        CHECK(listener.current_state() == state::connected);

        // Tracking is per connection: the owner turns it on again with the new id.
        REQUIRE(run_until(
            io, [&] { return connected(tracker) && connected(writer); }, 5s));
        require_status(
            await(io, tracker.command({"CLIENT", "TRACKING", "ON", "REDIRECT", std::to_string(id),
                                       "BCAST", "PREFIX", "proxy:"})),
            "OK");
        require_status(await(io, writer.command({"SET", "proxy:c", "1"})), "OK");
        REQUIRE(run_until(io, [&] { return seen.size() == 6; }));
        CHECK(seen[5] == std::vector<std::string>{"proxy:c"});
    }
}
