// edgegate: the Daytona custom region's preview proxy (and, later, SSH gateway) in one process.
// main wires the modules together: config → runtime → per-worker route sources and listeners.
#include "auth/api_route_source.hpp"
#include "auth/preview_access.hpp"
#include "auth/control_plane_client.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/ops_server.hpp"
#include "common/runtime.hpp"
#include "conf/config.hpp"
#include "conf/reload.hpp"
#include "proxy/listener.hpp"
#include "proxy/tls.hpp"
#include "routing/cached_route_source.hpp"
#include "routing/redis/redis_client.hpp"
#include "routing/redis_route_source.hpp"
#include "routing/redis_tracking.hpp"
#include "sshgw/gateway.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>

namespace {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr const char* usage = R"(edgegate )" EDGE_VERSION R"( - Daytona custom-region preview proxy

Usage: edgegate [--config FILE] [--check-config] [--list-config-keys] [--version] [--help]

  --config FILE    read settings from a flat TOML file (KEY = value, keys are the
                   environment variable names below); the environment wins over the file.
                   SIGHUP re-reads it (and the key and certificate files)
  --check-config   validate the configuration, print one line per problem, exit 0 if valid
  --list-config-keys  print every variable edgegate reads, one per line
  --version        print the version
  --help           this text

Settings (environment, Daytona's names; see docs/configuration.md):
  PROXY_API_KEY (required)      the region's proxy API key (or PROXY_API_KEY_FILE)
  DAYTONA_API_URL (required)    Daytona API base, e.g. https://app.daytona.io/api (alias API_URL)
  PROXY_PORT=4000               HTTP listen port          BIND_ADDRESS=0.0.0.0
  PROXY_PROTOCOL=http           scheme of preview URLs (http|https)
  API_CLIENT_TIMEOUT_SEC=60     per-call timeout toward the API
  ENABLE_TLS=false, TLS_CERT_FILE, TLS_KEY_FILE, TLS_SNI_CERTS (more certificates chosen by
  SNI: CERT:KEY,CERT:KEY), RUNNER_CA_FILE (CAs for https runners)
  REDIS_HOST, REDIS_PORT=6379, REDIS_USERNAME, REDIS_PASSWORD, REDIS_TLS=false,
  REDIS_TIMEOUT_MS=500, ROUTE_LOOKUP_TIMEOUT_MS=2000, ROUTE_STALE_MAX_SEC=300,
  ROUTE_CACHE_MAX_ENTRIES=1000000, ROUTE_CACHE_MAX_MB=256
  AUTH_LOOKUP_TIMEOUT_MS=5000, AUTH_CACHE_MAX_ENTRIES=200000
  COOKIE_DOMAIN, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_DOMAIN, OIDC_PUBLIC_DOMAIN, OIDC_AUDIENCE
  TOOLBOX_ONLY_MODE=false, PREVIEW_WARNING_ENABLED=false, SHUTDOWN_TIMEOUT_SEC=3600, METRICS_PORT
  SSH_GATEWAY_PORT=2222, SSH_GATEWAY_API_KEY (alias API_KEY), SSH_GATEWAY_API_KEY_FILE,
  SSH_PRIVATE_KEY, SSH_HOST_KEY,
  SSH_PRIVATE_KEY_FILE, SSH_HOST_KEY_FILE, RUNNER_SSH_PORT=2220, SSH_KNOWN_HOSTS_FILE,
  SSH_RUNNER_HOST_KEY_CHECK=tofu, SSH_LOGIN_GRACE_SEC=30, SSH_MAX_UNAUTHENTICATED=256,
  SSH_TOKEN_CACHE_SEC=10  (the SSH gateway runs when SSH_GATEWAY_API_KEY and a private key are set)
  EDGEGATE_WORKERS=0 (one per core), UPSTREAM_CONNECT_TIMEOUT_SEC=5,
  UPSTREAM_RESPONSE_TIMEOUT_SEC=60, LOG_LEVEL=info, LOG_FORMAT=json (json|text)
)";

// Reads the file (when given) and the environment, validates; problems are appended.
std::shared_ptr<const edge::conf::config> load_config(const std::string& config_file,
                                                      std::vector<std::string>& problems) {
    edge::conf::key_values file;
    if (!config_file.empty())
        file = edge::conf::read_config_file(config_file, problems);
    auto loaded = edge::conf::load(edge::conf::environment(), file);
    problems.insert(problems.end(), loaded.problems.begin(), loaded.problems.end());
    if (!problems.empty())
        return nullptr;
    return std::make_shared<const edge::conf::config>(std::move(loaded.cfg));
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
    std::string out;
    for (auto& s : v) {
        if (!out.empty())
            out += sep;
        out += s;
    }
    return out;
}

struct worker {
    std::unique_ptr<edge::auth::control_plane_client> api;
    std::unique_ptr<edge::auth::api_route_source> api_routes;
    std::unique_ptr<edge::routing::redis::client> redis;
    std::unique_ptr<edge::routing::redis_route_source> redis_routes;
    std::unique_ptr<edge::routing::cached_route_source> routes;
    std::unique_ptr<edge::auth::access_worker> access;
    std::unique_ptr<edge::proxy::worker_context> ctx;
    std::unique_ptr<tcp::acceptor> acceptor;
    std::unique_ptr<edge::sshgw::gateway> ssh;
};
} // namespace

int main(int argc, char** argv) {
    // OpenSSL and libssh write to sockets with write(): a peer that went away must be an error
    // code, not a signal that kills the process.
    std::signal(SIGPIPE, SIG_IGN);
    std::string config_file;
    bool check_only = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--help" || a == "-h") {
            std::fputs(usage, stdout);
            return 0;
        }
        if (a == "--version") {
            std::puts("edgegate " EDGE_VERSION);
            return 0;
        }
        if (a == "--list-config-keys") {
            for (auto& k : edge::conf::known_keys())
                std::puts(k.c_str());
            return 0;
        }
        if (a == "--check-config") {
            check_only = true;
        } else if (a == "--config" && i + 1 < argc) {
            config_file = argv[++i];
        } else if (a.starts_with("--config=")) {
            config_file = std::string(a.substr(9));
        } else {
            std::fprintf(stderr, "edgegate: unknown argument %s (see --help)\n", argv[i]);
            return 2;
        }
    }

    std::vector<std::string> problems;
    auto cfg = load_config(config_file, problems);
    if (!cfg) {
        for (auto& p : problems)
            std::fprintf(stderr, "config: %s\n", p.c_str());
        std::fprintf(stderr, "edgegate: %zu configuration problem(s); see --help\n",
                     problems.size());
        return 2;
    }
    if (check_only) {
        std::puts("configuration is valid");
        return 0;
    }
    edge::log::init(cfg->log_level, cfg->log_format);

    try {
        edge::runtime rt(cfg->workers);
        tcp::endpoint ep(asio::ip::make_address(cfg->bind_address), cfg->proxy_port);
        edge::routing::route_cache::options cache_opts;
        cache_opts.stale_max = std::chrono::seconds(cfg->route_stale_max_sec);
        cache_opts.max_entries = cfg->route_cache_max_entries;
        cache_opts.max_bytes = cfg->route_cache_max_mb * 1024 * 1024;
        edge::routing::shared_routes shared_routes(cache_opts);
        edge::routing::cached_route_source::options route_opts;
        route_opts.lookup_timeout = std::chrono::milliseconds(cfg->route_lookup_timeout_ms);

        edge::routing::redis::options redis_opts;
        redis_opts.host = cfg->redis_host;
        redis_opts.port = cfg->redis_port;
        redis_opts.username = cfg->redis_username;
        redis_opts.password = cfg->redis_password;
        redis_opts.command_timeout = std::chrono::milliseconds(cfg->redis_timeout_ms);
        const bool use_redis = !cfg->redis_host.empty();

        // TLS on PROXY_PORT: the certificate must load now; later reloads (SIGHUP) may fail and
        // leave the current one serving.
        std::unique_ptr<edge::proxy::tls_store> tls;
        if (cfg->enable_tls) {
            std::vector<edge::proxy::cert_files> certs{{cfg->tls_cert_file, cfg->tls_key_file}};
            for (const auto& [cert, key] : cfg->tls_sni_pairs)
                certs.push_back({cert, key, "TLS_SNI_CERTS", "TLS_SNI_CERTS"});
            tls = std::make_unique<edge::proxy::tls_store>(std::move(certs));
            std::string error;
            if (!tls->reload(error))
                throw std::runtime_error(error);
            spdlog::info("TLS on port {}: {}", cfg->proxy_port, tls->current()->describe());
        }

        // TLS toward runners whose proxyUrl is https (system CAs plus RUNNER_CA_FILE).
        std::shared_ptr<edge::proxy::tls_client_context> runner_tls;
        {
            std::string error;
            runner_tls = edge::proxy::tls_client_context::load(cfg->runner_ca_file, error);
            if (!runner_tls)
                throw std::runtime_error(error);
        }

        std::vector<worker> workers(rt.size());
        // Preview access: keys (rotating files), the API circuit breaker, decisions, OIDC.
        edge::auth::access_process access(*cfg);
        edge::auth::control_plane_client::options api_opts;
        api_opts.timeout = std::chrono::seconds(cfg->api_client_timeout_sec);
        api_opts.breaker = access.breaker;
        for (unsigned i = 0; i < rt.size(); ++i) {
            auto ex = rt.worker(i).get_executor();
            auto& w = workers[i];
            w.api = std::make_unique<edge::auth::control_plane_client>(ex, cfg->api, api_opts);
            w.api_routes = std::make_unique<edge::auth::api_route_source>(*w.api, access.proxy_keys);
            edge::routing::route_source* behind_cache = w.api_routes.get();
            if (use_redis) {
                w.redis = std::make_unique<edge::routing::redis::client>(ex, redis_opts);
                w.redis_routes = std::make_unique<edge::routing::redis_route_source>(ex, *w.redis,
                                                                                     *w.api_routes);
                behind_cache = w.redis_routes.get();
                w.redis->start();
            }
            w.routes = std::make_unique<edge::routing::cached_route_source>(
                shared_routes, *behind_cache, route_opts);
            w.access = std::make_unique<edge::auth::access_worker>(ex, *cfg, access, *w.api,
                                                                   w.redis.get());
            w.access->activity.run();
            w.ctx = std::make_unique<edge::proxy::worker_context>(ex, cfg, *w.routes);
            w.ctx->tls = tls.get();
            w.ctx->runner_tls = runner_tls.get();
            w.ctx->access = w.access.get();
            w.ctx->api = w.api.get();
            w.ctx->proxy_keys = &access.proxy_keys;
            w.acceptor = std::make_unique<tcp::acceptor>(edge::proxy::open_acceptor(ex, ep));
            asio::co_spawn(ex, edge::proxy::accept_loop(*w.acceptor, *w.ctx), asio::detached);
            asio::co_spawn(ex, edge::proxy::watch_deadlines(*w.ctx), asio::detached);
        }
        asio::co_spawn(rt.worker(0).get_executor(),
                       edge::auth::load_oidc(*workers[0].api, *cfg, access.shared.oidc),
                       asio::detached);
        // The SSH gateway: same workers, same route sources and control-plane clients.
        std::string ssh_off;
        if (edge::sshgw::wanted(*cfg, ssh_off)) {
            auto ssh_shared = edge::sshgw::make_shared_state(cfg);
            tcp::endpoint ssh_ep(asio::ip::make_address(cfg->bind_address),
                                 cfg->ssh_gateway_port);
            for (unsigned i = 0; i < rt.size(); ++i) {
                auto& w = workers[i];
                w.ssh = std::make_unique<edge::sshgw::gateway>(rt.worker(i).get_executor(),
                                                               ssh_shared, *w.api, *w.routes,
                                                               access.ssh_keys,
                                                               w.access->activity,
                                                               w.redis.get());
                w.ssh->start(ssh_ep);
            }
            spdlog::info("ssh gateway listening on {}:{}, runners' SSH on port {}",
                         cfg->bind_address, cfg->ssh_gateway_port, cfg->runner_ssh_port);
        } else if (!cfg->ssh_gateway_api_key.empty() || !cfg->ssh_gateway_api_key_file.empty()) {
            spdlog::warn("ssh gateway off: {}", ssh_off);
        }
        std::unique_ptr<edge::routing::redis_tracking> tracking;
        if (use_redis) {
            for (auto& w : workers)
                for (auto& other : workers)
                    w.ctx->redis_clients.push_back(other.redis.get());
            tracking = std::make_unique<edge::routing::redis_tracking>(
                rt.worker(0).get_executor(), redis_opts, *workers[0].redis, shared_routes);
            tracking->start();
            spdlog::info("redis: routes shared through {}:{}", cfg->redis_host, cfg->redis_port);
        }
        // Operations: process metrics, readiness and drain state, on METRICS_PORT.
        auto& metrics = edge::metrics::global();
        edge::register_process_metrics(metrics);
        std::atomic<bool> listeners_up{false};
        std::atomic<bool> draining_now{false};
        auto readiness = [&]() -> edge::readiness {
            if (draining_now.load())
                return {false, "draining: the process is stopping"};
            if (!listeners_up.load())
                return {false, "starting"};
            if (access.shared.oidc.current() == edge::auth::oidc_store::status::loading)
                return {false, "the OIDC settings are not loaded yet (GET /api/config and "
                               "discovery are retried)"};
            return {true, {}};
        };
        metrics.gauge_fn("edgegate_ready", "1 when /ready answers 200", {},
                         [&] { return readiness().ready ? 1.0 : 0.0; });
        metrics.gauge_fn("edgegate_draining", "1 from SIGTERM/SIGINT until exit", {},
                         [&] { return draining_now.load() ? 1.0 : 0.0; });
        metrics.gauge_fn("edgegate_workers", "Worker threads", {},
                         [n = rt.size()] { return static_cast<double>(n); });
        metrics.gauge_fn("edgegate_open_connections", "Open client connections by listener",
                         {{"listener", "http"}}, [&] {
                             double n = 0;
                             for (auto& w : workers)
                                 n += static_cast<double>(w.ctx->sessions.load());
                             return n;
                         });
        metrics.gauge_fn("edgegate_upstream_idle_connections",
                         "Idle keep-alive connections to runners in the workers' pools", {}, [&] {
                             double n = 0;
                             for (auto& w : workers)
                                 n += static_cast<double>(w.ctx->upstream_pool.idle_total());
                             return n;
                         });
        if (workers[0].ssh)
            metrics.gauge_fn("edgegate_open_connections", "Open client connections by listener",
                             {{"listener", "ssh"}}, [&] {
                                 double n = 0;
                                 for (auto& w : workers)
                                     n += static_cast<double>(w.ssh->sessions());
                                 return n;
                             });
        // Routing and auth counters kept by their modules as process-wide atomics.
        {
            auto& st = edge::routing::stats();
            auto count = [&metrics](const char* name, const char* help, edge::metrics::labels l,
                                    const std::atomic<std::uint64_t>& a) {
                metrics.counter_fn(name, help, l, [&a] { return static_cast<double>(a.load()); });
            };
            constexpr auto lookups = "edgegate_route_cache_lookups_total";
            constexpr auto lookups_help =
                "In-process route cache lookups (runner routes and public status) by result";
            count(lookups, lookups_help, {{"result", "hit"}}, st.cache_hits);
            count(lookups, lookups_help, {{"result", "miss"}}, st.cache_misses);
            count("edgegate_route_stale_serves_total",
                  "Expired routes served because Redis and the API could not refresh them", {},
                  st.stale_serves);
            count("edgegate_route_lookup_timeouts_total",
                  "Route lookups that got no answer within ROUTE_LOOKUP_TIMEOUT_MS", {},
                  st.lookup_timeouts);
            count("edgegate_route_cache_evictions_total",
                  "Routes evicted from the in-process cache by its size bounds", {}, st.evictions);
            count("edgegate_route_invalidations_total",
                  "Route cache invalidations (a runner without the sandbox, Redis invalidation "
                  "messages)",
                  {}, st.invalidations);
            count("edgegate_route_api_lookups_total", "Route lookups that asked the control plane",
                  {}, st.api_lookups);
            count("edgegate_redis_route_hits_total", "Route lookups answered by Redis", {},
                  st.redis_hits);
            metrics.gauge_fn("edgegate_route_cache_entries", "Entries in the in-process route cache",
                             {}, [&] { return static_cast<double>(shared_routes.cache.size()); });
            metrics.gauge_fn("edgegate_route_cache_bytes",
                             "Estimated size of the in-process route cache", {},
                             [&] { return static_cast<double>(shared_routes.cache.bytes()); });
            auto& sh = access.shared;
            count("edgegate_auth_api_checks_total",
                  "Credential checks that asked the control plane (coalesced, not cached)", {},
                  sh.api_checks);
            count("edgegate_auth_redis_hits_total", "Credential checks answered by Redis", {},
                  sh.redis_hits);
            count("edgegate_auth_stale_allows_total",
                  "Requests allowed on an expired positive decision while the API was unavailable",
                  {}, sh.stale_allows);
            if (use_redis) {
                constexpr auto conn = "edgegate_redis_connections";
                constexpr auto conn_help = "Workers' Redis connections by state";
                for (auto [label, want] :
                     {std::pair{"connected", edge::routing::redis::state::connected},
                      std::pair{"connecting", edge::routing::redis::state::connecting},
                      std::pair{"disconnected", edge::routing::redis::state::disconnected}})
                    metrics.gauge_fn(conn, conn_help, {{"state", label}}, [&, want = want] {
                        double n = 0;
                        for (auto& w : workers)
                            n += w.redis->current_state() == want ? 1 : 0;
                        return n;
                    });
                metrics.counter_fn("edgegate_redis_errors_total",
                                   "Redis connection and command failures (connects, timeouts, "
                                   "lost connections)",
                                   {}, [&] {
                                       double n = 0;
                                       for (auto& w : workers)
                                           n += static_cast<double>(w.redis->errors());
                                       return n;
                                   });
                count("edgegate_redis_route_errors_total",
                      "Route reads and writes to Redis that failed (the API was asked instead)", {},
                      st.redis_errors);
            }
        }
        auto reloads_applied = metrics.counter("edgegate_config_reloads_total",
                                               "SIGHUP reloads by result", {{"result", "applied"}});
        auto reloads_refused = metrics.counter("edgegate_config_reloads_total",
                                               "SIGHUP reloads by result", {{"result", "refused"}});
        std::unique_ptr<edge::ops_server> ops;
        if (cfg->metrics_port != 0) {
            ops = std::make_unique<edge::ops_server>(
                rt.worker(0).get_executor(),
                tcp::endpoint(asio::ip::make_address(cfg->bind_address), cfg->metrics_port),
                metrics, readiness);
            ops->start();
            spdlog::info("metrics, /ready and /live on {}:{}", cfg->bind_address,
                         cfg->metrics_port);
        }

        spdlog::info("edgegate {} listening on {}:{} ({} workers), control plane {}", EDGE_VERSION,
                     cfg->bind_address, cfg->proxy_port, rt.size(),
                     cfg->api.scheme + "://" + cfg->api.host + ":" + std::to_string(cfg->api.port) +
                         cfg->api.path);

        // The snapshot serving now (SIGHUP replaces it); touched on worker 0's thread only.
        std::shared_ptr<const edge::conf::config> current = cfg;
        std::vector<std::shared_ptr<const edge::conf::config>> recent_configs;

        // SIGTERM/SIGINT: stop accepting, close idle connections, let exchanges in flight finish
        // (up to SHUTDOWN_TIMEOUT_SEC), then exit 0. A second signal exits at once.
        asio::signal_set signals(rt.worker(0), SIGINT, SIGTERM);
        asio::steady_timer drain_timer(rt.worker(0));
        auto deadline = std::chrono::steady_clock::now();
        bool draining = false;
        bool websockets_told = false;
        std::function<void()> watch_drain = [&] {
            // Shortly before the deadline (5 s, or half the timeout when shorter), open
            // WebSockets get a close frame (1001 "going away") each way.
            const auto notice = std::min<std::chrono::steady_clock::duration>(
                std::chrono::seconds(5), std::chrono::seconds(current->shutdown_timeout_sec) / 2);
            if (!websockets_told && std::chrono::steady_clock::now() >= deadline - notice) {
                websockets_told = true;
                for (unsigned i = 0; i < rt.size(); ++i)
                    asio::post(rt.worker(i),
                               [&w = workers[i]] { w.ctx->websockets_going_away(); });
            }
            std::size_t live = 0;
            for (auto& w : workers)
                live += w.ctx->sessions.load() + (w.ssh ? w.ssh->sessions() : 0);
            if (live == 0 || std::chrono::steady_clock::now() >= deadline) {
                if (live > 0)
                    spdlog::warn("shutdown timeout: closing {} connection(s)", live);
                rt.stop();
                return;
            }
            drain_timer.expires_after(std::chrono::milliseconds(50));
            drain_timer.async_wait([&](const boost::system::error_code& ec) {
                if (!ec)
                    watch_drain();
            });
        };
        std::function<void(const boost::system::error_code&, int)> on_signal =
            [&](const boost::system::error_code& ec, int sig) {
                if (ec)
                    return;
                if (draining) {
                    spdlog::info("signal {} again: stopping now", sig);
                    rt.stop();
                    return;
                }
                draining = true;
                draining_now.store(true);
                deadline = std::chrono::steady_clock::now() +
                           std::chrono::seconds(current->shutdown_timeout_sec);
                spdlog::info("signal {}: draining (up to {} s)", sig,
                             current->shutdown_timeout_sec);
                for (unsigned i = 0; i < rt.size(); ++i)
                    asio::post(rt.worker(i), [&w = workers[i], deadline] {
                        boost::system::error_code ignored;
                        w.acceptor->close(ignored);
                        if (w.ssh) // sessions go on until the deadline, then are told why
                            w.ssh->drain(deadline);
                        w.ctx->begin_drain();
                    });
                signals.async_wait(on_signal);
                watch_drain();
            };
        signals.async_wait(on_signal);

        // SIGHUP: re-read the config file (--config) and the environment, validate everything,
        // re-read the key and certificate files, then give every worker the new snapshot (a
        // connection keeps the snapshot it started with). A configuration with a problem is
        // refused as a whole and the current one keeps serving; settings baked in at startup
        // (ports, workers, Redis, ...) are reported as needing a restart and keep their value.
        asio::signal_set hup(rt.worker(0), SIGHUP);
        std::function<void(const boost::system::error_code&, int)> on_hup =
            [&](const boost::system::error_code& ec, int) {
                if (ec)
                    return;
                hup.async_wait(on_hup);
                std::vector<std::string> bad;
                auto fresh = load_config(config_file, bad);
                if (!fresh) {
                    reloads_refused.inc();
                    spdlog::error("SIGHUP: configuration refused ({} problem(s)), the current one "
                                  "keeps serving: {}",
                                  bad.size(), join(bad, "; "));
                    return;
                }
                std::string tls_error;
                if (tls && !tls->reload(tls_error)) {
                    reloads_refused.inc();
                    spdlog::error("SIGHUP: new TLS certificate refused, the previous one "
                                  "keeps serving (configuration not reloaded): {}",
                                  tls_error);
                    return;
                }
                if (tls)
                    spdlog::info("SIGHUP: TLS certificate reloaded: {}",
                                 tls->current()->describe());
                access.reload_keys();
                auto plan = edge::conf::plan_reload(*current, *fresh);
                for (auto& key : plan.need_restart)
                    spdlog::warn("SIGHUP: {} changed: needs a restart (ignored, the current "
                                 "value stays)",
                                 key);
                if (plan.next.log_level != current->log_level ||
                    plan.next.log_format != current->log_format)
                    edge::log::init(plan.next.log_level, plan.next.log_format);
                current = std::make_shared<const edge::conf::config>(std::move(plan.next));
                // Recent snapshots stay alive a while: code that took a reference into
                // ctx->cfg across a co_await keeps a valid object.
                recent_configs.push_back(current);
                if (recent_configs.size() > 16)
                    recent_configs.erase(recent_configs.begin());
                for (unsigned i = 0; i < rt.size(); ++i)
                    asio::post(rt.worker(i), [&w = workers[i], next = current] {
                        w.ctx->cfg = next;
                    });
                reloads_applied.inc();
                spdlog::info("SIGHUP: configuration reloaded{}{}",
                             plan.applied.empty() ? "" : "; applied: ", join(plan.applied, ", "));
            };
        hup.async_wait(on_hup);
        listeners_up.store(true);
        rt.run();
        // Connections still open (past the drain deadline) are coroutines owned by the
        // io_contexts: they end now, while the workers they refer to still exist.
        rt.shutdown();
        spdlog::info("stopped");
    } catch (const std::exception& e) {
        spdlog::critical("startup failed: {}", e.what());
        if (cfg->log_level == "off")
            std::fprintf(stderr, "edgegate: %s\n", e.what());
        return 1;
    }
    return 0;
}
