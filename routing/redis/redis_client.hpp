#pragma once
// A Redis client for one worker thread: hiredis 0.14 used only to format commands and parse
// RESP2 (redisFormatCommandArgv, redisReader); the socket is Asio's. Commands from many coroutines
// are pipelined on one connection and answered in order. Our own connect and command timeouts
// (hiredis 0.14 has none); on failure the connection is dropped and re-opened in the background
// with jittered exponential backoff; AUTH (with username when set) after every connect.
// Not thread-safe: use it from the executor it was made with.
#include "common/async.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace edge::routing::redis {

// One RESP2 reply.
struct reply {
    enum class kind { string, status, error, integer, nil, array };
    kind type = kind::nil;
    std::string str;             // string, status, error
    long long integer = 0;       // integer
    std::vector<reply> elements; // array
};

struct options {
    std::string host;
    std::uint16_t port = 6379;
    std::string username; // AUTH username password when set (Redis 6 ACL), else AUTH password
    std::string password;
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds command_timeout{500};
    std::chrono::milliseconds min_backoff{100};
    std::chrono::milliseconds max_backoff{5000};
};

enum class state { connecting, connected, disconnected };

class client {
  public:
    client(boost::asio::any_io_executor ex, options opts);
    ~client();
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    // Starts connecting (and keeps reconnecting until stop()). Once: stop() is final; it fails
    // the pending commands with operation_aborted. The destructor stops.
    void start();
    void stop();

    // Sends one command; completes with its reply, or an error: not connected (fails at once,
    // never waits for a reconnect), timeout (command_timeout), or connection lost. A Redis error
    // reply is a reply of kind::error, not an error code.
    awaitable<boost::system::result<reply>> command(std::vector<std::string> args);

    state current_state() const noexcept;
    // Why the last connect or command failed (e.g. "WRONGPASS invalid username-password pair"),
    // for logs and health details. Never contains the password.
    std::string last_error() const;

    // Called (on the client's executor) each time a connection is established and authenticated,
    // e.g. to re-enable tracking and revalidate caches after a reconnect.
    void on_connect(std::function<void()> f);

    // Counters for metrics.
    std::uint64_t errors() const noexcept;

  private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

// A connection that SUBSCRIBEs to Redis' invalidation channel for client-side caching:
// after connecting it learns its CLIENT ID and subscribes to `__redis__:invalidate`; the owner
// then enables tracking on a command connection with
// `CLIENT TRACKING ON REDIRECT <id> BCAST PREFIX <prefix>`. Each invalidation message calls
// `on_invalidate(keys)`; an empty list means "flush everything" (FLUSHALL, or a lost connection:
// invalidations may have been missed, so after a reconnect the owner must drop its cache).
// Reconnects like client.
class invalidation_listener {
  public:
    invalidation_listener(boost::asio::any_io_executor ex, options opts);
    ~invalidation_listener();
    invalidation_listener(const invalidation_listener&) = delete;
    invalidation_listener& operator=(const invalidation_listener&) = delete;

    // `on_ready(client_id)` is called after each (re)subscribe; `on_invalidate(keys)` per message.
    void start(std::function<void(long long client_id)> on_ready,
               std::function<void(const std::vector<std::string>& keys)> on_invalidate);
    void stop();
    state current_state() const noexcept;

  private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

// Sans-io pieces, exposed for unit tests.
std::string format_command(const std::vector<std::string>& args);

class resp_parser {
  public:
    resp_parser();
    ~resp_parser();
    resp_parser(const resp_parser&) = delete;
    resp_parser& operator=(const resp_parser&) = delete;
    // Feeds bytes; false on a protocol error (the connection must be dropped).
    bool feed(std::string_view bytes);
    // The next complete reply, if any; false when the stream is corrupt (see failed()).
    bool next(reply& out);
    bool failed() const noexcept;
    // Why the stream is corrupt (hiredis' message), for logs.
    const std::string& error() const noexcept;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace edge::routing::redis
