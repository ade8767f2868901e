#pragma once
// What a SIGHUP reload may change. A freshly loaded and validated configuration is compared
// with the one serving: settings that the running process reads per request or per use take
// the new value; settings baked into listeners, workers, connections pools and caches at
// startup (ports, bind address, worker count, Redis, the API URL...) keep the old value and are
// reported as needing a restart. Pure; the app logs the result and swaps the snapshot.
#include "conf/config.hpp"

#include <string>
#include <vector>

namespace edge::conf {

struct reload_plan {
    config next;                            // what to serve from now on
    std::vector<std::string> applied;       // variables whose new value takes effect
    std::vector<std::string> need_restart;  // variables that changed and were ignored
};

reload_plan plan_reload(const config& serving, const config& fresh);

// The variables plan_reload applies live, and those that need a restart (for docs and tests;
// the aliases API_URL and API_KEY count as DAYTONA_API_URL and SSH_GATEWAY_API_KEY).
const std::vector<std::string>& live_keys();
const std::vector<std::string>& restart_keys();

} // namespace edge::conf
