// The interposed recv() and poll() must not meet glibc's fortified inline versions.
#ifdef _FORTIFY_SOURCE
#undef _FORTIFY_SOURCE
#endif

#include "sshgw/readahead.hpp"

#include <algorithm>
#include <cstring>
#include <ctime>

#include <sys/socket.h>

namespace edge::sshgw::detail {

namespace {
thread_local readahead* installed = nullptr;
constexpr std::size_t pool_keep = 8; // free buffers a worker keeps (2 MiB)
} // namespace

std::unique_ptr<char[]> readahead_pool::get() {
    if (free_.empty())
        return std::unique_ptr<char[]>(new char[buffer_size]);
    auto b = std::move(free_.back());
    free_.pop_back();
    return b;
}

void readahead_pool::put(std::unique_ptr<char[]> b) noexcept {
    if (b && free_.size() < pool_keep) {
        try {
            free_.push_back(std::move(b));
        } catch (...) { // no room to keep it: it is freed
        }
    }
}

readahead::~readahead() {
    for (auto& s : slots_)
        pool_.put(std::move(s.data));
}

void readahead::forget(int which) noexcept {
    auto& s = slots_[which];
    s.fd = -1;
    s.begin = s.end = 0;
    pool_.put(std::move(s.data));
}

std::size_t readahead::buffered() const noexcept {
    return (slots_[0].end - slots_[0].begin) + (slots_[1].end - slots_[1].begin);
}

void readahead::release_idle() noexcept {
    for (auto& s : slots_)
        if (s.data && s.begin == s.end) {
            s.begin = s.end = 0;
            pool_.put(std::move(s.data));
        }
}

readahead::scope::scope(readahead& r) noexcept : previous_(installed) {
    installed = &r;
}

readahead::scope::~scope() {
    installed = previous_;
}

readahead* readahead::current() noexcept {
    return installed;
}

bool readahead::recv(int fd, void* buf, std::size_t len, ssize_t& result) noexcept {
    if (fd < 0)
        return false;
    source* s = fd == slots_[0].fd ? &slots_[0] : fd == slots_[1].fd ? &slots_[1] : nullptr;
    if (!s)
        return false;
    if (s->begin == s->end) {
        if (!s->data) {
            try {
                s->data = pool_.get();
            } catch (...) {
                return false; // out of memory: libssh reads its 4 KiB itself
            }
        }
        ssize_t n = ::recvfrom(fd, s->data.get(), readahead_pool::buffer_size, 0, nullptr, nullptr);
        if (n <= 0) { // EOF or an error (errno is libssh's to read)
            result = n;
            return true;
        }
        s->begin = 0;
        s->end = static_cast<std::size_t>(n);
    }
    std::size_t k = std::min(len, s->end - s->begin);
    std::memcpy(buf, s->data.get() + s->begin, k);
    s->begin += k;
    result = static_cast<ssize_t>(k);
    return true;
}

bool readahead::poll(pollfd* fds, nfds_t n, int& result) const noexcept {
    auto has_bytes = [this](const pollfd& p) {
        if (p.fd < 0 || !(p.events & POLLIN))
            return false;
        for (const auto& s : slots_)
            if (s.fd == p.fd && s.begin != s.end)
                return true;
        return false;
    };
    if (buffered() == 0 || std::none_of(fds, fds + n, has_bytes))
        return false;
    int ready = 0;
    for (nfds_t i = 0; i < n; ++i) {
        bool r = has_bytes(fds[i]);
        fds[i].revents = r ? POLLIN : 0;
        ready += r ? 1 : 0;
    }
    result = ready;
    return true;
}

} // namespace edge::sshgw::detail

// The interposed libc functions (the executable's definitions take precedence over libc's for
// every library in the process, libssh included). Without an installed read-ahead, or for
// descriptors it does not watch, they do what libc's do (recv is recvfrom without an address;
// poll is ppoll with the timeout converted).
extern "C" ssize_t recv(int fd, void* buf, size_t len, int flags) {
    using edge::sshgw::detail::readahead;
    if (auto* r = readahead::current(); r && flags == 0) {
        ssize_t result = 0;
        if (r->recv(fd, buf, len, result))
            return result;
    }
    return ::recvfrom(fd, buf, len, flags, nullptr, nullptr);
}

extern "C" int poll(struct pollfd* fds, nfds_t n, int timeout) {
    using edge::sshgw::detail::readahead;
    if (auto* r = readahead::current()) {
        int result = 0;
        if (r->poll(fds, n, result))
            return result;
    }
    if (timeout < 0)
        return ::ppoll(fds, n, nullptr, nullptr);
    timespec ts{timeout / 1000, static_cast<long>(timeout % 1000) * 1000000L};
    return ::ppoll(fds, n, &ts, nullptr);
}
