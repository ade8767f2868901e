#pragma once
// The operations listener on METRICS_PORT (bound to BIND_ADDRESS, apart from the traffic ports):
//   GET /metrics  Prometheus text exposition of a metrics::registry
//   GET /ready    200 {"status":"ready"} or 503 {"status":"not ready","reason":...} from the
//                 readiness callback (a load balancer's readiness probe)
//   GET /live     200 {"status":"live"} while the process' event loop turns (liveness probe)
// HEAD is answered like GET without the body; anything else is 404/405. HTTP/1.1 keep-alive,
// 10 s to read a request, at most 64 connections at a time.
//
// Runs on one worker (the executor given); the readiness callback and the registry's callbacks
// are called on that worker's thread and must be thread-safe. Construct and start() on startup;
// the object must outlive the executor's run (stop() closes the acceptor, connections end with
// the io_context).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <memory>
#include <string>

namespace edge {
namespace metrics {
class registry;
}

struct readiness {
    bool ready = false;
    std::string reason; // why not, when !ready
};

class ops_server {
  public:
    // Binds and listens (throws on failure: startup only).
    ops_server(boost::asio::any_io_executor ex, const boost::asio::ip::tcp::endpoint& ep,
               metrics::registry& reg, std::function<readiness()> ready);
    ~ops_server();
    ops_server(const ops_server&) = delete;
    ops_server& operator=(const ops_server&) = delete;

    void start();
    void stop();
    unsigned short port() const;

    struct state;

  private:
    std::shared_ptr<state> s_;
};

// Registers process metrics into `reg` (read at scrape time from getrusage and /proc/self):
// process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds, process_start_time_seconds, and
// edgegate_build_info{version}.
void register_process_metrics(metrics::registry& reg);

} // namespace edge
