#pragma once
// The client for Daytona's API (DAYTONA_API_URL): GET calls with a bearer key over keep-alive
// HTTP/1.1, a per-try timeout (API_CLIENT_TIMEOUT_SEC) and the contract's retry rule (3 tries,
// 150 ms then 300 ms apart, on network errors, 502/503/504 and non-JSON bodies where JSON is
// expected). POSTs with a body (last-activity, the OIDC token exchange: any HTTP/1.1 server can
// be the base URL). An optional circuit breaker, shared by every worker's client, makes an
// outage fail fast. One per worker thread; not thread-safe.
#include "auth/circuit_breaker.hpp"
#include "common/async.hpp"
#include "common/tcp_pool.hpp"
#include "conf/config.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace edge::auth {

struct api_response {
    unsigned status = 0;
    std::string body;
    std::string location; // the Location field of a redirect (OIDC flows)
};

class control_plane_client {
  public:
    struct options {
        std::chrono::milliseconds timeout{60000};
        std::chrono::milliseconds first_backoff{150};
        int tries = 3;
        // Shared by the workers' clients so that one outage opens it for all; null: none.
        std::shared_ptr<circuit_breaker> breaker;
    };

    struct call_options {
        std::string method = "GET";
        std::string body;         // sent with Content-Length when not empty (or for POST)
        std::string content_type; // of the body
        std::vector<std::pair<std::string, std::string>> headers; // extra fields
        bool expect_json = true;  // a 2xx body that is not JSON is retried
        int tries = 0;            // 0: options::tries; 1 for calls that must not repeat
    };

    control_plane_client(boost::asio::any_io_executor ex, conf::url_parts api, options opts);
    ~control_plane_client();

    // GET {api}{path} with `Authorization: Bearer <bearer>`. `endpoint` names the call in logs
    // (e.g. "runners/by-sandbox"): paths can hold tokens and are never logged. An error means no
    // usable answer after every try (transport failure, timeout, or only retryable answers).
    awaitable<boost::system::result<api_response>>
    get(std::string path, std::string bearer, std::string_view endpoint, bool expect_json = true);

    // Any call: {api}{path} with `Authorization: Bearer <bearer>` (none when empty). Retries as
    // get(); with a breaker set, fails at once with control_plane_errc::circuit_open while it is
    // open. A 5xx or no answer counts as a failure for the breaker, anything else as a success.
    awaitable<boost::system::result<api_response>> call(std::string path, std::string bearer,
                                                        std::string_view endpoint,
                                                        call_options opts);

    // POST {api}{path} with a JSON (or empty) body.
    awaitable<boost::system::result<api_response>>
    post(std::string path, std::string bearer, std::string_view endpoint, std::string body = {},
         bool expect_json = false);

    const conf::url_parts& base() const noexcept { return api_; }

  private:
    struct prepared;
    awaitable<boost::system::result<api_response>> attempt(const prepared& req);

    boost::asio::any_io_executor ex_;
    conf::url_parts api_;
    options opts_;
    std::string pool_key_;
    tcp_pool pool_;
    boost::asio::ip::tcp::resolver resolver_;
    struct tls_state;
    std::unique_ptr<tls_state> tls_;
    // Metric handles per endpoint name (a handful), made on an endpoint's first call.
    struct call_metrics;
    call_metrics& metrics_for(std::string_view endpoint);
    std::vector<std::unique_ptr<call_metrics>> metrics_;
};

} // namespace edge::auth
