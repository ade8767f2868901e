#pragma once
// Token login for the SSH gateway: an SSH access token → the sandbox it opens and the runner
// that serves it, with the contract's three calls (ssh-access/validate, the runner route,
// GET /sandbox/{id} whose state must be "started"). Successful answers are cached briefly.
// Concurrent checks of one token are coalesced. One per worker thread; not thread-safe.
#include "auth/control_plane_client.hpp"
#include "auth/key_holder.hpp"
#include "common/async.hpp"
#include "routing/route.hpp"

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>

namespace edge::sshgw {

enum class login_status { ok, invalid_token, not_started, not_found, unavailable };

struct login_result {
    login_status status = login_status::unavailable;
    std::string sandbox_id;
    std::string runner_host; // the runner's domain, where its SSH listens
    std::string message;     // what the user is told when status != ok
    std::string detail;      // for the log (never the token)
};

// The lines a user sees; tests assert them.
inline constexpr const char* msg_invalid_token = "invalid or expired token";
inline constexpr const char* msg_unavailable = "sandbox gateway is temporarily unavailable";

// A token as Daytona issues them (alphanumerics); anything else is refused without an API call.
bool looks_like_token(std::string_view s) noexcept;

class token_validator {
  public:
    // `ssh_keys`: SSH_GATEWAY_API_KEY (or its file, re-read when it changes).
    token_validator(auth::control_plane_client& api, routing::route_source& routes,
                    auth::key_holder& ssh_keys, std::chrono::seconds cache_ttl)
        : api_(api), routes_(routes), keys_(ssh_keys), ttl_(cache_ttl) {}

    awaitable<login_result> validate(std::string token);

  private:
    awaitable<login_result> lookup(const std::string& token);

    auth::control_plane_client& api_;
    routing::route_source& routes_;
    auth::key_holder& keys_;
    std::chrono::seconds ttl_;
    struct cached {
        login_result result;
        std::chrono::steady_clock::time_point expires;
    };
    std::unordered_map<std::string, cached> cache_;
    // Logins with the same token while its check is under way wait for that one check (an IDE
    // opens several connections at once).
    struct flight {
        explicit flight(boost::asio::any_io_executor ex) : done(ex) {}
        boost::asio::steady_timer done; // cancelled when `result` is set
        login_result result;
        bool finished = false;
    };
    std::unordered_map<std::string, std::shared_ptr<flight>> flights_;
};

} // namespace edge::sshgw
