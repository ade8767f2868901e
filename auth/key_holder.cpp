#include "auth/key_holder.hpp"

#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/stat.h>

namespace edge::auth {

std::string trim_key(std::string text) {
    auto space = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
    while (!text.empty() && space(text.back()))
        text.pop_back();
    std::size_t i = 0;
    while (i < text.size() && space(text[i]))
        ++i;
    return text.substr(i);
}

bool key_holder::read_key(const std::string& path, std::string& out, file_stamp& stamp) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    std::ifstream f(path);
    if (!f)
        return false;
    std::ostringstream text;
    text << f.rdbuf();
    out = trim_key(text.str());
    stamp = {static_cast<long long>(st.st_size),
             static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec,
             static_cast<unsigned long long>(st.st_ino)};
    return !out.empty();
}

key_holder::key_holder(std::string name, std::string value, std::string file,
                       std::chrono::milliseconds check_interval)
    : name_(std::move(name)), file_(std::move(file)), check_interval_(check_interval) {
    if (!file_.empty()) {
        std::string k;
        if (!read_key(file_, k, stamp_))
            throw std::runtime_error(name_ + "_FILE " + file_ + ": not a readable, non-empty file");
        value = std::move(k);
    }
    keys_ = std::make_shared<const key_set>(key_set{std::move(value), {}});
    next_check_ = clock::now() + check_interval_;
}

std::string key_holder::key() const {
    std::lock_guard lock(mutex_);
    return keys_->current;
}

std::shared_ptr<const key_set> key_holder::keys() const {
    std::lock_guard lock(mutex_);
    return keys_;
}

key_holder::reload_result key_holder::reload() {
    if (file_.empty())
        return reload_result::no_file;
    std::string k;
    file_stamp stamp;
    if (!read_key(file_, k, stamp)) {
        std::lock_guard lock(mutex_);
        next_check_ = clock::now() + check_interval_;
        spdlog::error("{}_FILE {}: unreadable or empty; keeping the current key", name_, file_);
        return reload_result::failed;
    }
    std::lock_guard lock(mutex_);
    stamp_ = stamp;
    next_check_ = clock::now() + check_interval_;
    if (k == keys_->current)
        return reload_result::unchanged;
    keys_ = std::make_shared<const key_set>(key_set{std::move(k), keys_->current});
    // Never the key itself: only that it changed.
    spdlog::info("{}: new key loaded from {}", name_, file_);
    return reload_result::changed;
}

key_holder::reload_result key_holder::check_file() {
    if (file_.empty())
        return reload_result::no_file;
    {
        std::lock_guard lock(mutex_);
        auto now = clock::now();
        if (now < next_check_)
            return reload_result::unchanged;
        next_check_ = now + check_interval_;
    }
    struct stat st {};
    if (::stat(file_.c_str(), &st) != 0)
        return reload_result::failed;
    file_stamp seen{static_cast<long long>(st.st_size),
                    static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec,
                    static_cast<unsigned long long>(st.st_ino)};
    {
        std::lock_guard lock(mutex_);
        if (seen == stamp_)
            return reload_result::unchanged;
    }
    return reload();
}

} // namespace edge::auth
