// The interposed recv() and poll() must not meet glibc's fortified inline versions.
#ifdef _FORTIFY_SOURCE
#undef _FORTIFY_SOURCE
#endif

#include "sshgw/readahead.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>

#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

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

void readahead::watch(int which, int fd) noexcept {
    slots_[which] = source{};
    slots_[which].fd = fd;
}

void readahead::forget(int which) noexcept {
    auto& s = slots_[which];
    pool_.put(std::move(s.data));
    s = source{};
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

readahead::source* readahead::slot(int fd) noexcept {
    if (fd < 0)
        return nullptr;
    return fd == slots_[0].fd ? &slots_[0] : fd == slots_[1].fd ? &slots_[1] : nullptr;
}

bool readahead::refill(source& s) noexcept {
    if (!s.data) {
        try {
            s.data = pool_.get();
        } catch (...) {
            return false;
        }
    }
    ssize_t n = ::recvfrom(s.fd, s.data.get(), readahead_pool::buffer_size, MSG_DONTWAIT, nullptr,
                           nullptr);
    s.begin = s.end = 0;
    if (n > 0) {
        s.end = static_cast<std::size_t>(n);
        // A short read emptied the socket: what arrives later comes with a readiness event.
        s.drained = s.end < readahead_pool::buffer_size;
        return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        s.drained = errno != EINTR;
        return false;
    }
    s.pending_result = true; // the end of the stream or an error: libssh's next recv() gets it
    s.result = n;
    s.error = n < 0 ? errno : 0;
    return true;
}

bool readahead::recv(int fd, void* buf, std::size_t len, ssize_t& result) noexcept {
    source* s = slot(fd);
    if (!s)
        return false;
    if (s->begin == s->end) {
        if (s->pending_result) {
            s->pending_result = false;
            result = s->result;
            if (result < 0)
                errno = s->error;
            return true;
        }
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

bool readahead::poll(pollfd* fds, nfds_t n, int timeout, int& result) noexcept {
    // Batch and flush modes answer for the watched sockets only.
    if (mode_ != mode::plain)
        for (nfds_t i = 0; i < n; ++i)
            if (fds[i].fd >= 0 && !watches(fds[i].fd))
                return poll_plain(fds, n, result);
    switch (mode_) {
    case mode::batch: return poll_batch(fds, n, timeout, result);
    case mode::flush: return poll_flush(fds, n, result);
    case mode::plain: break;
    }
    return poll_plain(fds, n, result);
}

bool readahead::poll_plain(pollfd* fds, nfds_t n, int& result) const noexcept {
    auto has_bytes = [this](const pollfd& p) {
        if (p.fd < 0 || !(p.events & POLLIN))
            return false;
        for (const auto& s : slots_)
            if (s.fd == p.fd && (s.begin != s.end || s.pending_result))
                return true;
        return false;
    };
    if (std::none_of(fds, fds + n, has_bytes))
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

bool readahead::poll_batch(pollfd* fds, nfds_t n, int timeout, int& result) noexcept {
    if (!outer_) {
        if (timeout != 0)
            return false; // a wait: the real poll
        for (nfds_t i = 0; i < n; ++i)
            fds[i].revents = 0;
        result = 0;
        return true;
    }
    outer_ = false;
    int ready = 0;
    for (nfds_t i = 0; i < n; ++i) {
        fds[i].revents = 0;
        source* s = slot(fds[i].fd);
        if (!s || !(fds[i].events & POLLIN))
            continue;
        bool readable = s->begin != s->end || s->pending_result;
        if (!readable && !s->drained) {
            readable = refill(*s);
            if (!readable && !s->data)
                return false; // no buffer (out of memory): the real poll
        }
        if (readable) {
            fds[i].revents = POLLIN;
            ++ready;
        }
    }
    result = ready;
    return true;
}

bool readahead::poll_flush(pollfd* fds, nfds_t n, int& result) noexcept {
    int ready = 0;
    for (nfds_t i = 0; i < n; ++i) {
        source* s = slot(fds[i].fd);
        bool w = s && s->flush && (fds[i].events & POLLOUT);
        fds[i].revents = w ? POLLOUT : 0;
        ready += w ? 1 : 0;
    }
    result = ready;
    return true;
}

} // namespace edge::sshgw::detail

// The interposed libc functions (the executable's definitions take precedence over libc's for
// every library in the process, libssh included). Without an installed read-ahead, or for
// descriptors it does not watch, they do what libc's do (recv is recvfrom without an address,
// send sendto without one; poll is ppoll with the timeout converted).
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
        if (r->poll(fds, n, timeout, result))
            return result;
    }
    if (timeout < 0)
        return ::ppoll(fds, n, nullptr, nullptr);
    timespec ts{timeout / 1000, static_cast<long>(timeout % 1000) * 1000000L};
    return ::ppoll(fds, n, &ts, nullptr);
}

extern "C" ssize_t send(int fd, const void* buf, size_t len, int flags) {
    using edge::sshgw::detail::readahead;
    ssize_t n = ::sendto(fd, buf, len, flags, nullptr, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        // libssh takes a failed send as a dead connection; a full socket buffer is "nothing
        // written" (it keeps the bytes and waits for POLLOUT).
        if (auto* r = readahead::current(); r && r->watches(fd))
            return 0;
    }
    return n;
}

// OpenSSL 3 checks for a fork with getpid() on every RAND_bytes call: libssh draws each packet's
// padding from it, two system calls per relayed packet. The pid only changes in a forked child,
// where the atfork handler clears the cached value.
namespace {
std::atomic<pid_t> cached_pid{0};
void forget_pid() noexcept {
    cached_pid.store(0, std::memory_order_relaxed);
}
[[maybe_unused]] const int pid_handler = ::pthread_atfork(nullptr, nullptr, forget_pid);
} // namespace

extern "C" pid_t getpid() noexcept {
    pid_t pid = cached_pid.load(std::memory_order_relaxed);
    if (pid == 0) {
        pid = static_cast<pid_t>(::syscall(SYS_getpid));
        cached_pid.store(pid, std::memory_order_relaxed);
    }
    return pid;
}
