#include "conf/config.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <unistd.h>

using edge::conf::key_values;
using edge::conf::load;

namespace {
const std::string secret = "dtn_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

key_values valid_env() {
    return {{"PROXY_API_KEY", secret}, {"DAYTONA_API_URL", "http://127.0.0.1:3001/api"}};
}

bool mentions(const std::vector<std::string>& problems, const std::string& text) {
    for (auto& p : problems)
        if (p.find(text) != std::string::npos)
            return true;
    return false;
}

std::string temp_file(const std::string& text) {
    char name[] = "/tmp/edgegate-conf-XXXXXX";
    int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    ::close(fd);
    std::ofstream(name) << text;
    return name;
}
} // namespace

TEST_CASE("defaults follow Daytona's", "[config]") {
    auto r = load(valid_env(), {});
    REQUIRE(r.problems.empty());
    CHECK(r.cfg.proxy_port == 4000);
    CHECK(r.cfg.bind_address == "0.0.0.0");
    CHECK(r.cfg.proxy_protocol == "http");
    CHECK(r.cfg.api_client_timeout_sec == 60);
    CHECK(r.cfg.shutdown_timeout_sec == 3600);
    CHECK(r.cfg.ssh_gateway_port == 2222);
    CHECK(r.cfg.redis_port == 6379);
    CHECK(r.cfg.api.host == "127.0.0.1");
    CHECK(r.cfg.api.port == 3001);
    CHECK(r.cfg.api.path == "/api");
}

TEST_CASE("each bad value is one problem naming the variable", "[config]") {
    SECTION("missing key") {
        auto env = valid_env();
        env.erase("PROXY_API_KEY");
        auto r = load(env, {});
        REQUIRE(r.problems.size() == 1);
        CHECK(mentions(r.problems, "PROXY_API_KEY"));
    }
    SECTION("port not a number") {
        auto env = valid_env();
        env["PROXY_PORT"] = "abc";
        auto r = load(env, {});
        REQUIRE(r.problems.size() == 1);
        CHECK(mentions(r.problems, "PROXY_PORT=\"abc\""));
        CHECK(mentions(r.problems, "1 to 65535"));
    }
    SECTION("port out of range") {
        auto env = valid_env();
        env["PROXY_PORT"] = "70000";
        CHECK(mentions(load(env, {}).problems, "PROXY_PORT"));
    }
    SECTION("api url without scheme") {
        auto env = valid_env();
        env["DAYTONA_API_URL"] = "localhost:3000";
        auto r = load(env, {});
        REQUIRE(r.problems.size() == 1);
        CHECK(mentions(r.problems, "DAYTONA_API_URL=\"localhost:3000\""));
    }
    SECTION("unreadable TLS files") {
        auto env = valid_env();
        env["ENABLE_TLS"] = "true";
        env["TLS_CERT_FILE"] = "/nonexistent/cert.pem";
        auto r = load(env, {});
        CHECK(mentions(r.problems, "TLS_CERT_FILE=\"/nonexistent/cert.pem\""));
        CHECK(mentions(r.problems, "TLS_KEY_FILE: missing"));
    }
    SECTION("booleans") {
        auto env = valid_env();
        env["TOOLBOX_ONLY_MODE"] = "yes";
        CHECK(mentions(load(env, {}).problems, "TOOLBOX_ONLY_MODE"));
        env["TOOLBOX_ONLY_MODE"] = "1";
        auto r = load(env, {});
        CHECK(r.problems.empty());
        CHECK(r.cfg.toolbox_only_mode);
    }
    SECTION("redis tls is refused with a way out") {
        auto env = valid_env();
        env["REDIS_TLS"] = "true";
        CHECK(mentions(load(env, {}).problems, "stunnel"));
    }
    SECTION("ssh keys must be base64 PEM, and the value is never shown") {
        auto env = valid_env();
        env["SSH_PRIVATE_KEY"] = "not-a-key-secret-value";
        auto r = load(env, {});
        REQUIRE(r.problems.size() == 1);
        CHECK(mentions(r.problems, "SSH_PRIVATE_KEY"));
        CHECK_FALSE(mentions(r.problems, "not-a-key-secret-value"));
    }
    SECTION("several problems at once") {
        key_values env{{"PROXY_PORT", "abc"}, {"LOG_LEVEL", "loud"}};
        CHECK(load(env, {}).problems.size() == 4);
    }
}

TEST_CASE("API_URL and API_KEY are aliases", "[config]") {
    key_values env{{"PROXY_API_KEY", secret},
                   {"API_URL", "https://app.daytona.io/api"},
                   {"API_KEY", "sshkey"}};
    auto r = load(env, {});
    REQUIRE(r.problems.empty());
    CHECK(r.cfg.api.scheme == "https");
    CHECK(r.cfg.api.port == 443);
    CHECK(r.cfg.ssh_gateway_api_key == "sshkey");
}

TEST_CASE("the config file is flat TOML and the environment wins", "[config]") {
    auto path =
        temp_file("# edgegate\nproxy_port = 5000\nDAYTONA_API_URL = \"http://api:3000/api\"\n"
                  "PROXY_API_KEY = 'from-file'\nTOOLBOX_ONLY_MODE = true # trailing\n");
    std::vector<std::string> problems;
    auto file = edge::conf::read_config_file(path, problems);
    std::remove(path.c_str());
    REQUIRE(problems.empty());
    auto r = load({{"PROXY_PORT", "6000"}}, file);
    REQUIRE(r.problems.empty());
    CHECK(r.cfg.proxy_port == 6000);
    CHECK(r.cfg.proxy_api_key == "from-file");
    CHECK(r.cfg.api.host == "api");
    CHECK(r.cfg.toolbox_only_mode);
}

TEST_CASE("config file mistakes name the line", "[config]") {
    auto path = temp_file("NOPE = 1\n[section]\nPROXY_PORT = \"unterminated\nPROXY_PORT 12\n");
    std::vector<std::string> problems;
    edge::conf::read_config_file(path, problems);
    std::remove(path.c_str());
    REQUIRE(problems.size() == 4);
    CHECK(problems[0].find(":1: unknown key NOPE") != std::string::npos);
    CHECK(problems[1].find(":2:") != std::string::npos);
    CHECK(problems[2].find(":3: PROXY_PORT: unterminated string") != std::string::npos);
    CHECK(problems[3].find(":4: expected KEY = value") != std::string::npos);

    problems.clear();
    edge::conf::read_config_file("/nonexistent/edgegate.toml", problems);
    CHECK(problems.size() == 1);
}

TEST_CASE("PROXY_API_KEY_FILE and SSH_GATEWAY_API_KEY_FILE hold the keys", "[config]") {
    auto path = temp_file(secret + "\n");
    auto ssh_path = temp_file("  ssh-key-from-file\n");
    SECTION("the file replaces the plain variable, trimmed") {
        auto env = valid_env();
        env.erase("PROXY_API_KEY");
        env["PROXY_API_KEY_FILE"] = path;
        env["SSH_GATEWAY_API_KEY_FILE"] = ssh_path;
        auto r = load(env, {});
        REQUIRE(r.problems.empty());
        CHECK(r.cfg.proxy_api_key == secret);
        CHECK(r.cfg.proxy_api_key_file == path);
        CHECK(r.cfg.ssh_gateway_api_key == "ssh-key-from-file");
    }
    SECTION("one or the other") {
        auto env = valid_env();
        env["PROXY_API_KEY_FILE"] = path;
        auto r = load(env, {});
        REQUIRE(r.problems.size() == 1);
        CHECK(mentions(r.problems, "PROXY_API_KEY_FILE"));
        CHECK(mentions(r.problems, "one or the other"));
        CHECK_FALSE(mentions(r.problems, secret)); // never the key itself
    }
    SECTION("unreadable or empty file") {
        auto env = valid_env();
        env.erase("PROXY_API_KEY");
        env["PROXY_API_KEY_FILE"] = "/nonexistent/key";
        auto r = load(env, {});
        REQUIRE(r.problems.size() == 1);
        CHECK(mentions(r.problems, "PROXY_API_KEY_FILE=\"/nonexistent/key\""));
        env["PROXY_API_KEY_FILE"] = temp_file("\n");
        r = load(env, {});
        REQUIRE(r.problems.size() == 1);
        CHECK(mentions(r.problems, "empty"));
    }
    SECTION("auth lookup bounds") {
        auto env = valid_env();
        env["AUTH_LOOKUP_TIMEOUT_MS"] = "5";
        env["AUTH_CACHE_MAX_ENTRIES"] = "lots";
        auto r = load(env, {});
        CHECK(r.problems.size() == 2);
        CHECK(mentions(r.problems, "AUTH_LOOKUP_TIMEOUT_MS"));
        CHECK(mentions(r.problems, "AUTH_CACHE_MAX_ENTRIES"));
        CHECK(load(valid_env(), {}).cfg.auth_lookup_timeout_ms == 5000);
    }
}

TEST_CASE("SSH gateway settings", "[config]") {
    SECTION("defaults") {
        auto r = load(valid_env(), {});
        REQUIRE(r.problems.empty());
        CHECK(r.cfg.runner_ssh_port == 2220);
        CHECK(r.cfg.ssh_runner_host_key_check == "tofu");
        CHECK(r.cfg.ssh_login_grace_sec == 30);
    }
    SECTION("key files must be readable, and one source per key") {
        auto env = valid_env();
        env["SSH_HOST_KEY_FILE"] = "/nonexistent/host_key";
        env["SSH_PRIVATE_KEY_FILE"] = "/nonexistent/runner_key";
        auto r = load(env, {});
        CHECK(mentions(r.problems, "SSH_HOST_KEY_FILE=\"/nonexistent/host_key\""));
        CHECK(mentions(r.problems, "SSH_PRIVATE_KEY_FILE=\"/nonexistent/runner_key\""));
        auto key = temp_file("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n");
        env = valid_env();
        env["SSH_PRIVATE_KEY_FILE"] = key;
        env["SSH_PRIVATE_KEY"] = "LS0tLS1CRUdJTiBPUEVOU1NIIFBSSVZBVEUgS0VZLS0tLS0K";
        CHECK(mentions(load(env, {}).problems, "one or the other"));
        env.erase("SSH_PRIVATE_KEY");
        CHECK(load(env, {}).problems.empty());
        std::remove(key.c_str());
    }
    SECTION("runner host key policy") {
        auto env = valid_env();
        env["SSH_RUNNER_HOST_KEY_CHECK"] = "sometimes";
        CHECK(mentions(load(env, {}).problems, "tofu"));
        env["SSH_RUNNER_HOST_KEY_CHECK"] = "known-hosts";
        CHECK(mentions(load(env, {}).problems, "SSH_KNOWN_HOSTS_FILE: missing"));
        auto known = temp_file("[runner-1]:2220 ssh-ed25519 AAAA\n");
        env.erase("SSH_RUNNER_HOST_KEY_CHECK");
        env["SSH_KNOWN_HOSTS_FILE"] = known;
        auto r = load(env, {});
        CHECK(r.problems.empty());
        CHECK(r.cfg.ssh_runner_host_key_check == "known-hosts");
        env["SSH_RUNNER_HOST_KEY_CHECK"] = "off";
        CHECK(load(env, {}).cfg.ssh_runner_host_key_check == "off");
        std::remove(known.c_str());
    }
    SECTION("numbers") {
        auto env = valid_env();
        env["RUNNER_SSH_PORT"] = "0";
        env["SSH_LOGIN_GRACE_SEC"] = "0";
        env["SSH_MAX_UNAUTHENTICATED"] = "many";
        auto r = load(env, {});
        CHECK(mentions(r.problems, "RUNNER_SSH_PORT"));
        CHECK(mentions(r.problems, "SSH_LOGIN_GRACE_SEC"));
        CHECK(mentions(r.problems, "SSH_MAX_UNAUTHENTICATED"));
    }
}
