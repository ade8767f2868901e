#pragma once
// POST /api/sandbox/{id}/last-activity for live SSH sessions, at most once per 45 s per sandbox
// across the whole process (every worker shares the clock below). One reporter per worker;
// the shared part is thread-safe. Plain-HTTP control planes only for now (an https API URL
// is logged once and skipped).
#include "conf/config.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>

namespace edge::sshgw {

class activity_clock {
  public:
    // True when the caller should report now (and records that it does).
    bool due(const std::string& sandbox_id, std::chrono::steady_clock::time_point now);

  private:
    std::mutex mu_;
    std::unordered_map<std::string, std::chrono::steady_clock::time_point> last_;
};

class activity_reporter {
  public:
    activity_reporter(boost::asio::any_io_executor ex, const conf::config& cfg,
                      activity_clock& clock)
        : ex_(std::move(ex)), cfg_(cfg), clock_(clock) {}
    void touch(const std::string& sandbox_id);

  private:
    boost::asio::any_io_executor ex_;
    const conf::config& cfg_;
    activity_clock& clock_;
};

} // namespace edge::sshgw
