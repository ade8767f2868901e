#pragma once
// The SSH gateway's per-worker listener: accepts on SSH_GATEWAY_PORT (SO_REUSEPORT, one acceptor
// per worker like the HTTP side) and runs every connection on the worker that accepted it. The
// flow of one connection is in README.md. Built and used on its worker's thread only; the
// gateway_shared part (keys, runner host keys, counters) is shared by all workers.
#include "auth/activity.hpp"
#include "auth/control_plane_client.hpp"
#include "auth/key_holder.hpp"
#include "conf/config.hpp"
#include "routing/redis/redis_client.hpp"
#include "routing/route.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace edge::sshgw {

struct gateway_shared;

// Whether the configuration asks for the SSH gateway; `why_not` says what is missing.
bool wanted(const conf::config& cfg, std::string& why_not);

// Loads (or, with no SSH_HOST_KEY/_FILE, generates) the host key and the runner key once for
// the process. Throws std::runtime_error with a readable message on unusable keys.
std::shared_ptr<gateway_shared> make_shared_state(std::shared_ptr<const conf::config> cfg);

class gateway {
  public:
    // `ssh_keys`: the SSH gateway API key; `activity`: the worker's last-activity heartbeats,
    // shared with the HTTP side (one POST per 45 s per sandbox, whoever asks); `redis` (may be
    // null): where runners' host keys are pinned (SSH_RUNNER_HOST_KEY_CHECK=tofu).
    gateway(boost::asio::any_io_executor ex, std::shared_ptr<gateway_shared> shared,
            auth::control_plane_client& api, routing::route_source& routes,
            auth::key_holder& ssh_keys, auth::activity_tracker& activity,
            routing::redis::client* redis = nullptr);
    ~gateway();
    gateway(const gateway&) = delete;
    gateway& operator=(const gateway&) = delete;

    void start(const boost::asio::ip::tcp::endpoint& ep);
    // Stops accepting; live sessions go on until their clients leave.
    void stop_accepting();
    // SIGTERM: stops accepting at once; sessions go on until shortly before `deadline` (at most
    // a second before), when each client is told the gateway is restarting and disconnected, so
    // that the process can exit by the deadline.
    void drain(std::chrono::steady_clock::time_point deadline);
    // Live connections of this worker; readable from any thread.
    std::size_t sessions() const noexcept;

    struct impl;

  private:
    std::unique_ptr<impl> impl_;
};

} // namespace edge::sshgw
