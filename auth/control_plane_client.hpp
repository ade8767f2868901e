#pragma once
// The client for Daytona's API (DAYTONA_API_URL): GET calls with a bearer key over keep-alive
// HTTP/1.1, a per-try timeout (API_CLIENT_TIMEOUT_SEC) and the contract's retry rule (3 tries,
// 150 ms then 300 ms apart, on network errors, 502/503/504 and non-JSON bodies where JSON is
// expected). One per worker thread; not thread-safe.
#include "common/async.hpp"
#include "common/tcp_pool.hpp"
#include "conf/config.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace edge::auth {

struct api_response {
    unsigned status = 0;
    std::string body;
};

class control_plane_client {
  public:
    struct options {
        std::chrono::milliseconds timeout{60000};
        std::chrono::milliseconds first_backoff{150};
        int tries = 3;
    };

    control_plane_client(boost::asio::any_io_executor ex, conf::url_parts api, options opts);
    ~control_plane_client();

    // GET {api}{path} with `Authorization: Bearer <bearer>`. `endpoint` names the call in logs
    // (e.g. "runners/by-sandbox"): paths can hold tokens and are never logged. An error means no
    // usable answer after every try (transport failure, timeout, or only retryable answers).
    awaitable<boost::system::result<api_response>>
    get(std::string path, std::string bearer, std::string_view endpoint, bool expect_json = true);

  private:
    awaitable<boost::system::result<api_response>> attempt(const std::string& target,
                                                           const std::string& bearer);

    boost::asio::any_io_executor ex_;
    conf::url_parts api_;
    options opts_;
    std::string pool_key_;
    tcp_pool pool_;
    boost::asio::ip::tcp::resolver resolver_;
    struct tls_state;
    std::unique_ptr<tls_state> tls_;
};

} // namespace edge::auth
