#pragma once
// Routes shared by replicas through Redis, in Daytona's own key format (contract §6), so that
// Daytona's API (which writes and deletes these keys) and edgegate replicas see the same routes:
//   proxy:sandbox-runner-info:{id}  {"value":{"apiUrl":"<runner proxyUrl>","apiKey":"..."}}  EX 120
//   proxy:sandbox-public:{id}       {"value":true|false}                                    EX 3600
//   edgegate:ssh-runner:{id}        {"value":{"domain":"...","proxyUrl":"...","apiKey":"..."}} EX
//   120
// A miss (or Redis not connected) goes to `next` (the API), whose answer is written back. Redis
// never delays a request by more than its command timeout, and is skipped at once while it is
// disconnected. One per worker (the Redis client is per worker).
#include "routing/route.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <optional>

namespace edge::routing {
namespace redis {
class client;
}

inline constexpr std::string_view runner_key_prefix = "proxy:sandbox-runner-info:";
inline constexpr std::string_view public_key_prefix = "proxy:sandbox-public:";
inline constexpr std::string_view ssh_key_prefix = "edgegate:ssh-runner:";

class redis_route_source final : public route_source {
  public:
    redis_route_source(boost::asio::any_io_executor ex, redis::client& redis, route_source& next)
        : ex_(std::move(ex)), redis_(redis), next_(next) {}

    awaitable<runner_lookup> runner_for(std::string_view sandbox_id) override;
    awaitable<public_lookup> is_public(std::string_view id_or_token) override;
    awaitable<runner_lookup> ssh_runner_for(std::string_view sandbox_id) override;
    void invalidate(std::string_view sandbox_id) override;

  private:
    awaitable<std::optional<std::string>> get(std::string key);
    void set(std::string key, std::string value, int ttl_sec);

    boost::asio::any_io_executor ex_; // the worker's, where background writes run
    redis::client& redis_;
    route_source& next_;
};

// The JSON forms of the keys above, exposed for tests.
std::string runner_value(const runner_route& r);
std::string ssh_value(const runner_route& r);
runner_lookup parse_runner_value(const std::string& json);
runner_lookup parse_ssh_value(const std::string& json);
std::optional<bool> parse_public_value(const std::string& json);

} // namespace edge::routing
