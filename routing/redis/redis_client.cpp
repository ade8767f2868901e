#include "routing/redis/redis_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <exception>
#include <mutex>
#include <new>
#include <optional>
#include <random>

namespace edge::routing::redis {
using boost::system::error_code;
using boost::system::result;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// Sans-io: hiredis formats commands and parses RESP2; its objects never leave this file.

std::string format_command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.reserve(args.size());
    lens.reserve(args.size());
    for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    char* raw = nullptr;
    int n = redisFormatCommandArgv(&raw, static_cast<int>(args.size()), argv.data(), lens.data());
    std::unique_ptr<char, decltype(&redisFreeCommand)> cmd(raw, &redisFreeCommand);
    if (n < 0 || !cmd)
        throw std::bad_alloc(); // hiredis fails only when out of memory
    return std::string(cmd.get(), static_cast<std::size_t>(n));
}

namespace {
reply convert(const redisReply& r) {
    reply out;
    switch (r.type) {
    case REDIS_REPLY_STRING:
        out.type = reply::kind::string;
        out.str.assign(r.str, r.len);
        break;
    case REDIS_REPLY_STATUS:
        out.type = reply::kind::status;
        out.str.assign(r.str, r.len);
        break;
    case REDIS_REPLY_ERROR:
        out.type = reply::kind::error;
        out.str.assign(r.str, r.len);
        break;
    case REDIS_REPLY_INTEGER:
        out.type = reply::kind::integer;
        out.integer = r.integer;
        break;
    case REDIS_REPLY_ARRAY:
        out.type = reply::kind::array;
        out.elements.reserve(r.elements);
        for (std::size_t i = 0; i < r.elements; ++i)
            out.elements.push_back(convert(*r.element[i]));
        break;
    default: out.type = reply::kind::nil; break;
    }
    return out;
}

error_code protocol_error() {
    return boost::system::errc::make_error_code(boost::system::errc::protocol_error);
}
} // namespace

struct resp_parser::impl {
    std::unique_ptr<redisReader, decltype(&redisReaderFree)> reader{redisReaderCreate(),
                                                                    &redisReaderFree};
    std::deque<reply> ready;
    bool failed = false;
    std::string error;

    void fail() {
        failed = true;
        error = reader->errstr[0] ? reader->errstr : "protocol error";
    }
};

resp_parser::resp_parser() : impl_(std::make_unique<impl>()) {
    if (!impl_->reader)
        throw std::bad_alloc();
}

resp_parser::~resp_parser() = default;

// Replies are parsed as soon as they are complete, so that a corrupt stream is reported by the
// feed that brought it.
bool resp_parser::feed(std::string_view bytes) {
    auto& p = *impl_;
    if (p.failed)
        return false;
    if (redisReaderFeed(p.reader.get(), bytes.data(), bytes.size()) != REDIS_OK) {
        p.fail();
        return false;
    }
    for (;;) {
        void* raw = nullptr;
        if (redisReaderGetReply(p.reader.get(), &raw) != REDIS_OK) {
            p.fail();
            return false;
        }
        if (!raw)
            return true;
        std::unique_ptr<void, decltype(&freeReplyObject)> owned(raw, &freeReplyObject);
        p.ready.push_back(convert(*static_cast<const redisReply*>(raw)));
    }
}

bool resp_parser::next(reply& out) {
    auto& p = *impl_;
    if (p.failed || p.ready.empty())
        return false;
    out = std::move(p.ready.front());
    p.ready.pop_front();
    return true;
}

bool resp_parser::failed() const noexcept {
    return impl_->failed;
}

const std::string& resp_parser::error() const noexcept {
    return impl_->error;
}

// ---------------------------------------------------------------------------------------------
// What the command client and the invalidation listener share: one socket, its handshake under
// one deadline (resolve, connect, AUTH, PING and any extra commands), reconnect backoff, and
// the bookkeeping of failures.

namespace detail {
struct connection_base : std::enable_shared_from_this<connection_base> {
    connection_base(asio::any_io_executor ex, options o, std::string_view role)
        : ex_(ex), opts_(std::move(o)),
          name_(std::string(role) + " " + opts_.host + ":" + std::to_string(opts_.port)),
          socket_(ex), resolver_(ex), deadline_(ex), backoff_timer_(ex),
          backoff_(opts_.min_backoff), rng_(std::random_device{}()) {}
    virtual ~connection_base() = default;

    asio::any_io_executor ex_;
    options opts_;
    std::string name_; // for logs: "redis 10.0.0.5:6379"
    tcp::socket socket_;
    tcp::resolver resolver_;
    asio::steady_timer deadline_;
    asio::steady_timer backoff_timer_;
    std::optional<resp_parser> parser_;
    std::vector<char> rbuf_ = std::vector<char>(16 * 1024);

    std::atomic<state> state_{state::disconnected}; // read by /health on any worker
    bool started_ = false;
    bool stopped_ = true;       // also before start()
    std::uint64_t gen_ = 0;     // one per connection: its reader and writer end when it changes
    std::uint64_t attempt_ = 0; // one per handshake, for the deadline
    bool opening_ = false;
    bool open_expired_ = false;
    std::string last_error_;         // written on the client's thread only...
    mutable std::mutex error_mutex_; // ...but read by /health on any worker
    std::atomic<std::uint64_t> errors_{0}; // read by metrics scrapes on another worker
    std::chrono::milliseconds backoff_;
    std::minstd_rand rng_;

    // Server messages do not echo AUTH arguments, but last_error_ ends up in health pages:
    // make sure.
    std::string scrub(std::string s) const {
        const auto& pw = opts_.password;
        if (pw.empty())
            return s;
        for (auto pos = s.find(pw); pos != std::string::npos; pos = s.find(pw, pos + 3))
            s.replace(pos, pw.size(), "***");
        return s;
    }

    void set_error(std::string e) {
        std::lock_guard lock(error_mutex_);
        last_error_ = std::move(e);
    }

    void record_failure(std::string why) {
        ++errors_;
        set_error(scrub(std::move(why)));
    }

    void close_socket() {
        error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_both, ignored);
        socket_.close(ignored);
    }

    awaitable<result<reply>> read_reply() {
        reply r;
        while (!parser_->next(r)) {
            if (parser_->failed())
                co_return protocol_error();
            auto [ec, n] = co_await socket_.async_read_some(asio::buffer(rbuf_), use_nothrow);
            if (ec)
                co_return ec;
            if (!parser_->feed({rbuf_.data(), n}))
                co_return protocol_error();
        }
        co_return r;
    }

    // Opens a connection ready for use within connect_timeout: sends AUTH (when configured), PING
    // and `extra` in one write and checks every reply; the replies to `extra` go to `extra_out`.
    // On failure `why` says what went wrong, in words fit for last_error().
    awaitable<error_code> open(const std::vector<std::vector<std::string>>& extra,
                               std::vector<reply>& extra_out, std::string& why) {
        auto attempt = ++attempt_;
        opening_ = true;
        open_expired_ = false;
        state_ = state::connecting;
        deadline_.expires_after(opts_.connect_timeout);
        // A handler, not a raced awaitable: a resolve in progress cannot be cancelled, and the
        // handshake must not wait for it once the deadline has passed.
        deadline_.async_wait([self = shared_from_this(), attempt](error_code ec) {
            if (ec || !self->opening_ || self->attempt_ != attempt)
                return;
            self->open_expired_ = true;
            self->resolver_.cancel();
            self->close_socket();
        });
        auto ec = co_await handshake(extra, extra_out, why);
        opening_ = false;
        deadline_.cancel();
        if (ec && open_expired_) {
            ec = asio::error::timed_out;
            why = "connect timed out after " + std::to_string(opts_.connect_timeout.count()) +
                  " ms (" + why + ")";
        }
        if (ec)
            close_socket();
        co_return ec;
    }

    awaitable<error_code> handshake(const std::vector<std::vector<std::string>>& extra,
                                    std::vector<reply>& extra_out, std::string& why) {
        close_socket();
        parser_.emplace();
        auto [rec, endpoints] =
            co_await resolver_.async_resolve(opts_.host, std::to_string(opts_.port), use_nothrow);
        if (rec) {
            why = "resolve " + opts_.host + ": " + rec.message();
            co_return rec;
        }
        error_code cec = asio::error::host_not_found;
        for (const auto& e : endpoints) {
            if (open_expired_ || stopped_)
                break;
            close_socket();
            auto [ec] = co_await socket_.async_connect(e.endpoint(), use_nothrow);
            cec = ec;
            if (!cec)
                break;
        }
        if (cec) {
            why = "connect: " + cec.message();
            co_return cec;
        }
        error_code ignored;
        socket_.set_option(tcp::no_delay(true), ignored);

        std::string request;
        bool auth = !opts_.password.empty() || !opts_.username.empty();
        if (auth) {
            request += opts_.username.empty()
                           ? format_command({"AUTH", opts_.password})
                           : format_command({"AUTH", opts_.username, opts_.password});
        }
        request += format_command({"PING"});
        for (const auto& cmd : extra)
            request += format_command(cmd);
        auto [wec, wn] = co_await asio::async_write(socket_, asio::buffer(request), use_nothrow);
        if (wec) {
            why = "write: " + wec.message();
            co_return wec;
        }

        std::size_t expected = (auth ? 1 : 0) + 1 + extra.size();
        extra_out.clear();
        for (std::size_t i = 0; i < expected; ++i) {
            auto r = co_await read_reply();
            if (!r) {
                why = r.error() == protocol_error()   ? "protocol error: " + parser_->error()
                      : r.error() == asio::error::eof ? "connection closed by the server"
                                                      : "read: " + r.error().message();
                co_return r.error();
            }
            // The first error is the one that explains the others (NOAUTH after WRONGPASS).
            if (r->type == reply::kind::error) {
                why = r->str;
                bool denied = (auth && i == 0) || why.starts_with("NOAUTH") ||
                              why.starts_with("WRONGPASS") || why.starts_with("NOPERM");
                co_return boost::system::errc::make_error_code(
                    denied ? boost::system::errc::permission_denied
                           : boost::system::errc::protocol_error);
            }
            if (i + 1 + extra.size() > expected)
                extra_out.push_back(std::move(*r));
        }
        co_return error_code{};
    }

    // Jittered exponential backoff between connection attempts.
    awaitable<void> wait_backoff() {
        auto hi = std::max<long long>(backoff_.count(), 1);
        std::uniform_int_distribution<long long> pick(hi / 2, hi);
        backoff_timer_.expires_after(std::chrono::milliseconds(pick(rng_)));
        co_await backoff_timer_.async_wait(use_nothrow);
        backoff_ = std::min(backoff_ * 2, opts_.max_backoff);
    }

    void log_connect_failure(const std::string& why) {
        // One line per change of cause, not one per attempt during a long outage.
        auto scrubbed = scrub(why);
        if (scrubbed != last_error_)
            spdlog::warn("{}: {}", name_, scrubbed);
        else
            spdlog::debug("{}: {}", name_, scrubbed);
        record_failure(why);
    }

    // Ends the current connection (if `gen` is still it).
    bool drop(std::uint64_t gen, const std::string& why) {
        if (gen != gen_ || stopped_)
            return false;
        ++gen_;
        state_ = state::disconnected;
        spdlog::warn("{}: {}", name_, scrub(why));
        record_failure(why);
        close_socket();
        return true;
    }

    void stop_base() {
        stopped_ = true;
        ++gen_;
        state_ = state::disconnected;
        close_socket();
        resolver_.cancel();
        deadline_.cancel();
        backoff_timer_.cancel();
    }

    std::string read_failure(error_code ec) const {
        if (ec == protocol_error())
            return "protocol error: " + parser_->error();
        if (ec == asio::error::eof)
            return "connection closed by the server";
        return "read: " + ec.message();
    }
};

template <class F, class... Args> void call_guarded(const char* what, F& f, Args&&... args) {
    if (!f)
        return;
    try {
        f(std::forward<Args>(args)...);
    } catch (const std::exception& e) {
        spdlog::error("redis {} callback threw: {}", what, e.what());
    } catch (...) {
        spdlog::error("redis {} callback threw", what);
    }
}
} // namespace detail

// ---------------------------------------------------------------------------------------------
// client

namespace {
// One command in flight. Its waiter sleeps on `timer` (the command deadline); the reader sets
// `outcome` and cancels the timer. A waiter that timed out leaves the slot in the FIFO: the
// reply, when it comes, is matched to it and discarded.
struct pending {
    pending(const asio::any_io_executor& ex, steady::time_point now, steady::duration timeout)
        : timer(ex, now + timeout), sent(now) {}
    asio::steady_timer timer;
    steady::time_point sent;
    std::optional<result<reply>> outcome;
};
} // namespace

struct client::impl final : detail::connection_base {
    impl(asio::any_io_executor ex, options o)
        : connection_base(ex, std::move(o), "redis"), write_wake_(ex), watchdog_(ex) {}

    std::deque<std::shared_ptr<pending>> pending_;
    std::string out_; // formatted commands not yet handed to the socket
    asio::steady_timer write_wake_;
    asio::steady_timer watchdog_;
    std::function<void()> on_connect_;

    void fail_pending(error_code ec) {
        auto failed = std::move(pending_);
        pending_.clear();
        for (auto& p : failed) {
            if (!p->outcome)
                p->outcome.emplace(ec);
            p->timer.cancel();
        }
    }

    void lose(std::uint64_t gen, error_code ec, const std::string& why) {
        if (!drop(gen, why))
            return;
        out_.clear();
        write_wake_.cancel();
        watchdog_.cancel();
        fail_pending(ec);
    }

    void stop() {
        if (stopped_)
            return;
        stop_base();
        out_.clear();
        write_wake_.cancel();
        watchdog_.cancel();
        fail_pending(asio::error::operation_aborted);
    }

    static awaitable<void> run(std::shared_ptr<impl> self) {
        auto live = [&] { return !self->stopped_; };
        std::vector<reply> none;
        while (live()) {
            std::string why;
            auto ec = co_await self->open({}, none, why);
            if (!live())
                break;
            if (ec) {
                self->state_ = state::disconnected;
                self->log_connect_failure(why);
                co_await self->wait_backoff();
                continue;
            }
            self->state_ = state::connected;
            self->backoff_ = self->opts_.min_backoff;
            auto gen = ++self->gen_;
            spdlog::info("{}: connected", self->name_);
            asio::co_spawn(self->ex_, read_loop(self, gen), asio::detached);
            asio::co_spawn(self->ex_, write_loop(self, gen), asio::detached);
            detail::call_guarded("on_connect", self->on_connect_);
            co_await self->watch(gen);
            if (!live())
                break;
            co_await self->wait_backoff();
        }
    }

    // Replies complete the oldest pending command, in order.
    static awaitable<void> read_loop(std::shared_ptr<impl> self, std::uint64_t gen) {
        for (;;) {
            auto [ec, n] =
                co_await self->socket_.async_read_some(asio::buffer(self->rbuf_), use_nothrow);
            if (self->gen_ != gen)
                co_return;
            if (!ec && !self->parser_->feed({self->rbuf_.data(), n}))
                ec = protocol_error();
            if (ec) {
                self->lose(gen, ec, self->read_failure(ec));
                co_return;
            }
            reply r;
            while (self->parser_->next(r)) {
                if (self->pending_.empty()) {
                    self->lose(gen, protocol_error(), "reply to no command");
                    co_return;
                }
                auto p = std::move(self->pending_.front());
                self->pending_.pop_front();
                p->outcome.emplace(std::move(r));
                p->timer.cancel();
            }
        }
    }

    // Everything queued while a write was in flight goes out in the next write.
    static awaitable<void> write_loop(std::shared_ptr<impl> self, std::uint64_t gen) {
        std::string buf;
        while (self->gen_ == gen) {
            if (self->out_.empty()) {
                self->write_wake_.expires_at(asio::steady_timer::time_point::max());
                co_await self->write_wake_.async_wait(use_nothrow);
                continue;
            }
            buf.clear();
            std::swap(buf, self->out_);
            auto [ec, n] =
                co_await asio::async_write(self->socket_, asio::buffer(buf), use_nothrow);
            if (self->gen_ != gen)
                co_return;
            if (ec) {
                self->lose(gen, ec, "write: " + ec.message());
                co_return;
            }
        }
    }

    // Until the connection is lost: a server that answers nothing for a long time (stopped,
    // hung, or a half-open connection) is given up on, so that callers fail fast with
    // not_connected instead of each waiting out its timeout.
    awaitable<void> watch(std::uint64_t gen) {
        auto timeout = opts_.command_timeout;
        auto tick = std::max<std::chrono::milliseconds>(timeout / 2, 5ms);
        auto hung_after = 3 * timeout; // overdue by 2x command_timeout past its own deadline
        while (!stopped_ && gen_ == gen) {
            watchdog_.expires_after(tick);
            co_await watchdog_.async_wait(use_nothrow);
            if (stopped_ || gen_ != gen)
                break;
            if (!pending_.empty() && steady::now() - pending_.front()->sent > hung_after) {
                lose(gen, asio::error::timed_out,
                     "no reply for " + std::to_string(hung_after.count()) +
                         " ms, dropping the connection");
            }
        }
    }
};

client::client(asio::any_io_executor ex, options opts)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(opts))) {}

client::~client() {
    impl_->stop();
}

void client::start() {
    if (impl_->started_)
        return;
    impl_->started_ = true;
    impl_->stopped_ = false;
    asio::co_spawn(impl_->ex_, impl::run(impl_), asio::detached);
}

void client::stop() {
    impl_->stop();
}

awaitable<result<reply>> client::command(std::vector<std::string> args) {
    auto self = impl_; // `this` may be gone when the reply comes; only `self` is used after
    if (args.empty())
        co_return boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
    if (self->state_ != state::connected) {
        ++self->errors_;
        co_return asio::error::not_connected;
    }
    auto p = std::make_shared<pending>(self->ex_, steady::now(), self->opts_.command_timeout);
    self->out_ += format_command(args);
    self->pending_.push_back(p);
    self->write_wake_.cancel();

    auto [ec] = co_await p->timer.async_wait(use_nothrow);
    if (p->outcome) {
        if (!*p->outcome)
            ++self->errors_;
        co_return std::move(*p->outcome);
    }
    ++self->errors_;
    if (ec == asio::error::operation_aborted)
        co_return ec; // the caller cancelled the wait
    self->set_error("command timed out after " +
                    std::to_string(self->opts_.command_timeout.count()) + " ms");
    co_return asio::error::timed_out;
}

state client::current_state() const noexcept {
    return impl_->state_;
}

std::string client::last_error() const {
    std::lock_guard lock(impl_->error_mutex_);
    return impl_->last_error_;
}

void client::on_connect(std::function<void()> f) {
    impl_->on_connect_ = std::move(f);
}

std::uint64_t client::errors() const noexcept {
    return impl_->errors_;
}

// ---------------------------------------------------------------------------------------------
// invalidation_listener

namespace {
constexpr std::string_view invalidate_channel = "__redis__:invalidate";

bool is_bulk(const reply& r, std::string_view s) {
    return (r.type == reply::kind::string || r.type == reply::kind::status) && r.str == s;
}
} // namespace

struct invalidation_listener::impl final : detail::connection_base {
    impl(asio::any_io_executor ex, options o)
        : connection_base(ex, std::move(o), "redis invalidation listener"), heartbeat_(ex) {}

    std::function<void(long long)> on_ready_;
    std::function<void(const std::vector<std::string>&)> on_invalidate_;
    asio::steady_timer heartbeat_;
    bool ping_outstanding_ = false;

    void stop() {
        if (stopped_)
            return;
        stop_base();
        heartbeat_.cancel();
    }

    void lose(std::uint64_t gen, const std::string& why) {
        if (drop(gen, why))
            heartbeat_.cancel();
    }

    static awaitable<void> run(std::shared_ptr<impl> self) {
        auto live = [&] { return !self->stopped_; };
        const std::vector<std::vector<std::string>> subscribe = {
            {"CLIENT", "ID"}, {"SUBSCRIBE", std::string(invalidate_channel)}};
        std::vector<reply> replies;
        while (live()) {
            std::string why;
            auto ec = co_await self->open(subscribe, replies, why);
            if (!live())
                break;
            if (!ec && (replies.size() != 2 || replies[0].type != reply::kind::integer ||
                        replies[1].type != reply::kind::array || replies[1].elements.empty() ||
                        !is_bulk(replies[1].elements[0], "subscribe"))) {
                ec = protocol_error();
                why = "unexpected reply to CLIENT ID or SUBSCRIBE";
                self->close_socket();
            }
            if (ec) {
                self->state_ = state::disconnected;
                self->log_connect_failure(why);
                co_await self->wait_backoff();
                continue;
            }
            long long id = replies[0].integer;
            self->state_ = state::connected;
            self->backoff_ = self->opts_.min_backoff;
            self->ping_outstanding_ = false;
            auto gen = ++self->gen_;
            spdlog::info("{}: subscribed (client id {})", self->name_, id);
            asio::co_spawn(self->ex_, heartbeat(self, gen), asio::detached);
            // Invalidations sent while we were not subscribed are lost: flush first.
            detail::call_guarded("on_invalidate", self->on_invalidate_, std::vector<std::string>{});
            if (self->gen_ == gen)
                detail::call_guarded("on_ready", self->on_ready_, id);
            co_await self->listen(gen);
            if (!live())
                break;
            co_await self->wait_backoff();
        }
    }

    awaitable<void> listen(std::uint64_t gen) {
        while (gen_ == gen) {
            auto r = co_await read_reply();
            if (gen_ != gen)
                co_return;
            if (!r) {
                lose(gen, read_failure(r.error()));
                co_return;
            }
            dispatch(*r);
        }
    }

    void dispatch(const reply& r) {
        if (r.type != reply::kind::array || r.elements.empty())
            return;
        const auto& e = r.elements;
        if (is_bulk(e[0], "pong")) {
            ping_outstanding_ = false;
            return;
        }
        if (e.size() < 3 || !is_bulk(e[0], "message") || !is_bulk(e[1], invalidate_channel))
            return;
        std::vector<std::string> keys;
        if (e[2].type == reply::kind::array) {
            keys.reserve(e[2].elements.size());
            for (const auto& k : e[2].elements)
                if (k.type == reply::kind::string)
                    keys.push_back(k.str);
            if (keys.empty())
                return; // an empty array would read as "flush everything"
        }
        // nil: FLUSHALL / FLUSHDB, or the server's tracking table overflowed: flush everything.
        detail::call_guarded("on_invalidate", on_invalidate_, keys);
    }

    // A subscribed connection is silent when idle; a PING that is not answered by the next beat
    // means the server or the path to it is gone, and invalidations with it.
    static awaitable<void> heartbeat(std::shared_ptr<impl> self, std::uint64_t gen) {
        auto interval = std::max<std::chrono::milliseconds>(2 * self->opts_.command_timeout, 1s);
        const std::string ping = format_command({"PING"});
        while (self->gen_ == gen) {
            self->heartbeat_.expires_after(interval);
            co_await self->heartbeat_.async_wait(use_nothrow);
            if (self->gen_ != gen)
                co_return;
            if (self->ping_outstanding_) {
                self->lose(gen, "no reply to PING for " + std::to_string(interval.count()) +
                                    " ms, dropping the connection");
                co_return;
            }
            self->ping_outstanding_ = true;
            auto [ec, n] =
                co_await asio::async_write(self->socket_, asio::buffer(ping), use_nothrow);
            if (self->gen_ != gen)
                co_return;
            if (ec) {
                self->lose(gen, "write: " + ec.message());
                co_return;
            }
        }
    }
};

invalidation_listener::invalidation_listener(asio::any_io_executor ex, options opts)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(opts))) {}

invalidation_listener::~invalidation_listener() {
    impl_->stop();
}

void invalidation_listener::start(
    std::function<void(long long client_id)> on_ready,
    std::function<void(const std::vector<std::string>& keys)> on_invalidate) {
    if (impl_->started_)
        return;
    impl_->started_ = true;
    impl_->stopped_ = false;
    impl_->on_ready_ = std::move(on_ready);
    impl_->on_invalidate_ = std::move(on_invalidate);
    asio::co_spawn(impl_->ex_, impl::run(impl_), asio::detached);
}

void invalidation_listener::stop() {
    impl_->stop();
}

state invalidation_listener::current_state() const noexcept {
    return impl_->state_;
}

} // namespace edge::routing::redis
