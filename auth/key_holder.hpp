#pragma once
// One API key (the proxy's or the SSH gateway's) that can change without a restart: given as a
// plain value (PROXY_API_KEY) or as a file (PROXY_API_KEY_FILE) that is re-read by reload()
// (SIGHUP) and by check_file() (at most once per `check_interval`, when the file's size, mtime
// or inode changed). The previous key is kept so that cookies signed before a rotation stay
// valid until they expire. Process-wide; thread-safe: readers copy a snapshot under a mutex.
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

namespace edge::auth {

struct key_set {
    std::string current;
    std::string previous; // empty until the first rotation
};

class key_holder {
  public:
    using clock = std::chrono::steady_clock;

    // `name` is the variable name, for log lines ("PROXY_API_KEY"). With a non-empty `file` the
    // key is read from it at once (the file wins over `value`; an unreadable file throws).
    key_holder(std::string name, std::string value, std::string file = {},
               std::chrono::milliseconds check_interval = std::chrono::seconds(5));

    // The key for the next API call.
    std::string key() const;
    std::shared_ptr<const key_set> keys() const;

    enum class reload_result { unchanged, changed, no_file, failed };
    // Re-reads the file now. A missing, unreadable or empty file keeps the current key (logged).
    reload_result reload();
    // Re-reads the file when it looks changed; cheap enough to call on every API call.
    reload_result check_file();

    const std::string& file() const noexcept { return file_; }

  private:
    struct file_stamp {
        long long size = -1;
        long long mtime_ns = -1;
        unsigned long long inode = 0;
        bool operator==(const file_stamp&) const = default;
    };
    static bool read_key(const std::string& path, std::string& out, file_stamp& stamp);

    std::string name_;
    std::string file_;
    std::chrono::milliseconds check_interval_;
    mutable std::mutex mutex_;
    std::shared_ptr<const key_set> keys_;
    file_stamp stamp_;
    clock::time_point next_check_{};
};

// The key text from a file: surrounding whitespace (a trailing newline) removed.
std::string trim_key(std::string text);

} // namespace edge::auth
