#pragma once
// The protocol-neutral part of an HTTP exchange: what to do with one request, whichever protocol
// brought it. A request head (HTTP/1.1 parsed in place, or an HTTP/2 stream's fields presented
// the same way) goes through the same routing, access decision, base-host routes and error
// answers; the protocol session only says how a local answer is sent and how the request is
// forwarded to a runner and its answer relayed back.
#include "auth/preview_access.hpp"
#include "common/async.hpp"
#include "proxy/h1_codec.hpp"
#include "proxy/header_rewrite.hpp"
#include "proxy/worker.hpp"
#include "routing/host.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edge::proxy {

// The auth module's read access to a head's fields.
class head_fields final : public auth::header_lookup {
  public:
    explicit head_fields(const h1::head& h) : h_(h) {}
    std::optional<std::string_view> first(std::string_view name) const override;

  protected:
    bool each_value(std::string_view name, void* ctx,
                    bool (*f)(void*, std::string_view)) const override;

  private:
    const h1::head& h_;
};

class exchange {
  public:
    // `cfg`: the configuration snapshot this exchange serves with (a connection keeps the one
    // it started with across SIGHUP reloads); the worker's current one by default.
    explicit exchange(worker_context& ctx, std::shared_ptr<const conf::config> cfg = nullptr)
        : ctx_(ctx), cfg_(cfg ? std::move(cfg) : ctx.cfg) {}
    virtual ~exchange() = default;
    exchange(const exchange&) = delete;
    exchange& operator=(const exchange&) = delete;

  protected:
    // Answers or forwards the request in req_, whose head is complete: a bad Host, the warning
    // page's accept endpoint, the base host's routes (/health, /ready, /toolbox, build logs,
    // the login callback), preview hosts. True when the connection may carry another request.
    // The caller brackets it with begin_exchange() and end_exchange() (in its own coroutine:
    // a frame less per request than a coroutine of the three).
    awaitable<bool> dispatch();

    // --- observability: one access-log line and the metrics of each exchange ---
    // "h1" or "h2", for logs and metrics.
    virtual std::string_view protocol() const = 0;
    // Starts the record: the clock, the request id (the client's X-Request-Id when sane, else
    // a new one) and the traceparent toward the runner (the client's trace, a span of ours).
    void begin_exchange();
    // Writes the access-log line and counts the exchange.
    void end_exchange();
    // The runner is being asked / has answered with its head.
    void upstream_started(const routing::runner_route& r);
    void upstream_answered();
    std::string_view request_id() const { return request_id_; }
    std::string_view traceparent() const { return {traceparent_, traceparent_size_}; }

    struct record {
        std::chrono::steady_clock::time_point start, upstream_start;
        double upstream_seconds = -1; // to the runner's response head; < 0: not asked
        unsigned status = 0;          // what the client got; 0: nothing (it left)
        std::uint64_t bytes_in = 0;   // request body bytes forwarded
        std::uint64_t bytes_out = 0;  // response body bytes sent
        std::string upstream;         // the runner's host:port
        bool websocket = false;       // a tunnel was opened
    } rec_;

    // --- what each protocol provides ---
    // Sends an answer edgegate made itself (status, Content-Type, body, extra fields). The
    // connection is kept only when `keep_allowed` (HTTP/1.1's business).
    virtual awaitable<bool> send_local(unsigned status, std::string_view content_type,
                                       std::string_view body, std::span<const h1::field> extra,
                                       bool keep_allowed) = 0;
    // Forwards the request to {runner base path}{tail...} and relays the answer. `id` names the
    // sandbox whose runner this is (for the runner's "no such sandbox" / "not started"
    // answers); empty for requests not about one sandbox's route (build logs).
    virtual awaitable<bool> forward_to(std::shared_ptr<const routing::runner_route> route,
                                       std::string_view id,
                                       std::span<const std::string_view> tail) = 0;

    // --- answers, for both ---
    awaitable<bool> reply(unsigned status, std::string body, std::string_view retry_after = {},
                          bool keep_allowed = true);
    awaitable<bool> reply_auth(const auth::response& r);
    awaitable<bool> reply_error(unsigned status, std::string message, bool keep_allowed = true);
    awaitable<bool> reply_unavailable(const std::string& detail);

    // "Allowed, nothing to change", reusing the members' storage (no allocation per request).
    void reset_decision();
    // The fields edgegate adds to the runner's response (`upstream` is the runner's head):
    // the decision's cookies and CORS; and the toolbox Location prefix.
    response_edits edits_for_response(const h1::head& upstream);
    bool is_head_request() const { return req_.method == "HEAD"; }

    worker_context& ctx_;
    std::shared_ptr<const conf::config> cfg_;
    std::string_view client_ip_; // set by the session (views storage it owns)
    h1::head req_;
    head_fields req_headers_{req_};
    auth::request_view view_;
    auth::decision decision_;
    auth::activity_tracker::handle activity_; // while an exchange with a sandbox lives
    std::string location_prefix_;             // toolbox: /toolbox/{id}
    std::string build_ref_;                   // build logs: the encoded snapshot reference
    std::string_view build_query_;            // build logs: the client's query (views req_)
    std::vector<std::pair<std::string, std::string>> cors_fields_;
    std::vector<h1::field> extra_fields_;

  private:
    std::string request_id_;
    char traceparent_[56];
    std::size_t traceparent_size_ = 0;
    std::array<std::string_view, 4> forward_tail_; // forward()'s target parts

    auth::request_view make_view(const routing::host_target& t, auth::request_mode mode);
    std::string health_body() const;
    std::string_view oidc_state() const;
    awaitable<bool> serve_base();
    awaitable<bool> serve_toolbox(const routing::toolbox_target& tb);
    awaitable<bool> serve_build_logs(bool snapshot, std::string_view id);
    awaitable<bool> serve_preview(const routing::host_target& t);
    // The access decision for view_, into decision_: true when the request may go on. At once
    // when there is nothing to check or auth has the answer at hand (most requests, without a
    // coroutine frame); otherwise empty, and decide() asks.
    std::optional<bool> decide_now();
    awaitable<bool> decide();
    awaitable<bool> forward(std::shared_ptr<const routing::runner_route> route,
                            std::string_view id, std::string_view kind_path,
                            std::string_view target);
};

class http_metrics;
// The calling worker thread's HTTP metrics (proxy/http_metrics.hpp).
http_metrics& exchange_metrics();

// --- the runner side, shared by the protocol sessions ---

// A relay buffer borrowed from the worker's pool for one exchange.
struct leased_buffer {
    explicit leased_buffer(worker_context& c) : ctx(c) {
        buf.adopt(ctx.take_buffer(), worker_context::relay_buffer_size);
    }
    ~leased_buffer() { give_back(); }
    // Returns the memory to the pool now (the buffer is empty afterwards).
    void give_back() {
        if (auto mem = buf.release(worker_context::relay_buffer_size))
            ctx.give_back(std::move(mem));
    }
    leased_buffer(const leased_buffer&) = delete;
    leased_buffer& operator=(const leased_buffer&) = delete;

    worker_context& ctx;
    byte_buffer buf;
};

// Reads the runner's response head into `res` (views into `buf`), skipping interim answers
// (1xx other than 101: those are the proxy's to give). `need_more` with `ec` set when the read
// failed (timeout: beast::error::timeout) before a head arrived.
awaitable<h1::parse_result> read_response_head(timed_socket& up, byte_buffer& buf, h1::head& res,
                                               bool head_request,
                                               boost::system::error_code& ec);

// What a runner's small JSON error answer means.
enum class runner_verdict { other, not_started, lacks_sandbox, broken };
// Reads the whole body of a small JSON answer (small_json(res)) into `buf` after its head
// (`res` re-parsed: reading may move it), then tells what it says; `said` gets the runner's
// message for not_started. `broken` when the runner did not deliver it.
awaitable<runner_verdict> read_runner_error(timed_socket& up, byte_buffer& buf, h1::head& res,
                                            bool head_request, std::string& said);

// Methods whose request may be sent again on a fresh connection (RFC 9110 §9.2.2).
bool idempotent(std::string_view method);
// A runner's own errors are small JSON documents with a Content-Length.
bool small_json(const h1::head& res);
// The runner's message when its JSON body says the sandbox is not started, else empty.
std::string runner_not_started(std::string_view body);
// True when the runner's JSON body says it has no such sandbox.
bool runner_lacks_sandbox(std::string_view body);
// Opens a new connection to the runner into `out` (within UPSTREAM_CONNECT_TIMEOUT_SEC), with
// TLS when its proxyUrl is https (`detail` then says why a handshake failed).
awaitable<boost::system::error_code> connect_runner(worker_context& ctx,
                                                    const routing::runner_route& r,
                                                    std::optional<timed_socket>& out,
                                                    std::string& detail,
                                                    unsigned connect_timeout_sec);
// An idle pooled connection to the route's runner into `out` (with its TLS state); false when
// there is none. `check_open`: see tcp_pool::take.
bool take_pooled(worker_context& ctx, const routing::runner_route& r, bool check_open,
                 std::optional<timed_socket>& out);
// Gives the runner connection in `up` back to the pool (after a clean exchange) and empties it.
void pool_upstream(worker_context& ctx, const routing::runner_route& r,
                   std::optional<timed_socket>& up);
// The pool's key for connections to the route's runner ("host:port", "https://" in front for
// TLS); `scratch` may hold it.
std::string_view pool_key(const routing::runner_route& r, std::string& scratch);
// TCP keepalive on a tunneled socket: a peer that vanished (NAT drop, sleep) is found within
// about two minutes instead of never.
void keep_alive_probes(boost::asio::ip::tcp::socket& s);

} // namespace edge::proxy
