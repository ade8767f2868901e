#include "conf/reload.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace edge::conf;

namespace {
bool has(const std::vector<std::string>& v, const std::string& k) {
    return std::find(v.begin(), v.end(), k) != v.end();
}
} // namespace

TEST_CASE("reload: every setting is either live or needs a restart") {
    for (auto& k : known_keys()) {
        if (k == "API_URL" || k == "API_KEY")
            continue; // aliases
        INFO(k);
        CHECK(has(live_keys(), k) != has(restart_keys(), k));
    }
}

TEST_CASE("reload: live settings apply, the others keep their value and are reported") {
    config serving;
    serving.proxy_port = 4000;
    serving.toolbox_only_mode = false;
    serving.log_level = "info";
    config fresh = serving;
    fresh.proxy_port = 4001;
    fresh.workers = 3;
    fresh.toolbox_only_mode = true;
    fresh.log_level = "debug";
    fresh.upstream_response_timeout_sec = 5;
    auto p = plan_reload(serving, fresh);
    CHECK(p.next.proxy_port == 4000);
    CHECK(p.next.workers == serving.workers);
    CHECK(p.next.toolbox_only_mode);
    CHECK(p.next.log_level == "debug");
    CHECK(p.next.upstream_response_timeout_sec == 5);
    CHECK(p.applied ==
          std::vector<std::string>{"TOOLBOX_ONLY_MODE", "UPSTREAM_RESPONSE_TIMEOUT_SEC", "LOG_LEVEL"});
    CHECK(p.need_restart == std::vector<std::string>{"PROXY_PORT", "EDGEGATE_WORKERS"});
}

TEST_CASE("reload: a key file's new contents are no restart; an inline key change is") {
    config serving;
    serving.proxy_api_key_file = "/run/keys/proxy";
    serving.proxy_api_key = "dtn_old";
    config fresh = serving;
    fresh.proxy_api_key = "dtn_new";
    auto p = plan_reload(serving, fresh);
    CHECK(p.need_restart.empty());
    CHECK(p.next.proxy_api_key == "dtn_new");

    config inline_old;
    inline_old.proxy_api_key = "dtn_old";
    config inline_new = inline_old;
    inline_new.proxy_api_key = "dtn_new";
    auto q = plan_reload(inline_old, inline_new);
    CHECK(q.need_restart == std::vector<std::string>{"PROXY_API_KEY"});
    CHECK(q.next.proxy_api_key == "dtn_old");
}
