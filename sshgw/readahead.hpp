#pragma once
// The socket layer underneath libssh. libssh 0.10.6 reads its socket 4 KiB at a time
// (MAX_BUF_SIZE), one poll() and one recv() per 4 KiB, and sends each packet with its own send()
// followed by a poll() for POLLOUT. The process's recv(), send() and poll() are interposed
// (readahead.cpp); while a connection has its `readahead` installed on the thread
// (`readahead::scope`, around every libssh call), its two sockets are served here:
//
// - recv() takes up to 256 KiB from the kernel at once and hands libssh 4 KiB slices of it;
// - poll() answers according to the mode (below), mostly without a system call;
// - send() turns EAGAIN into "0 bytes written" (libssh only sends after poll() said POLLOUT; it
//   takes any send error as fatal, and the flush mode reports POLLOUT without asking the kernel).
//
// With no scope installed, or for other descriptors, the functions are libc's. One per
// connection, used on its worker's thread only; buffers come from the worker's pool and go back
// as soon as they are empty.
#include <cstddef>
#include <memory>
#include <vector>

#include <poll.h>
#include <sys/types.h>

namespace edge::sshgw::detail {

// Read-ahead buffers of one worker, reused by its connections.
class readahead_pool {
  public:
    static constexpr std::size_t buffer_size = 256 * 1024;
    std::unique_ptr<char[]> get();
    void put(std::unique_ptr<char[]> b) noexcept;

  private:
    std::vector<std::unique_ptr<char[]>> free_;
};

class readahead {
  public:
    // How poll() answers for the watched sockets.
    enum class mode {
        // Buffered bytes are reported readable without a system call (and nothing else in that
        // round); otherwise the real poll(). Login, disconnects.
        plain,
        // The relay's input rounds: only the poll() right after expect_outer_poll() (the one of
        // the gateway's own ssh_event_dopoll) reports anything: POLLIN where bytes are buffered,
        // else a non-blocking recv() refills the buffer (no poll() system call); a socket whose
        // last recv() came back short is not tried again until on_readable(). POLLOUT is never
        // reported: libssh keeps its packets in its output buffer until the flush. Every other
        // poll() with a zero timeout (libssh's calls nested in its callbacks, ssh_message_get,
        // ssh_channel_write's flush) answers "nothing" without a system call.
        batch,
        // Only POLLOUT, reported without a system call for the sockets passed to flush_on().
        flush,
    };

    explicit readahead(readahead_pool& pool) : pool_(pool) {}
    readahead(const readahead&) = delete;
    readahead& operator=(const readahead&) = delete;
    ~readahead();

    // Serves `fd` from now on (slot 0: the client's socket, 1: the runner's).
    void watch(int which, int fd) noexcept;
    // Stops serving the slot's descriptor; buffered bytes are dropped (the socket is closed).
    void forget(int which) noexcept;
    // Bytes taken from the kernel that libssh has not read yet.
    std::size_t buffered() const noexcept;
    // Empty buffers go back to the pool.
    void release_idle() noexcept;

    void set_mode(mode m) noexcept { mode_ = m; }
    mode current_mode() const noexcept { return mode_; }
    // Batch mode: true before the gateway's own ssh_event_dopoll (its poll() is the one that
    // reads), false after it.
    void expect_outer_poll(bool yes) noexcept { outer_ = yes; }
    // The socket of the slot was reported readable (by Asio): try recv() on it again.
    void on_readable(int which) noexcept { slots_[which].drained = false; }
    // Flush mode: the slots whose POLLOUT is reported.
    void flush_on(bool slot0, bool slot1) noexcept {
        slots_[0].flush = slot0;
        slots_[1].flush = slot1;
    }

    // Installs `r` as the calling thread's read-ahead until the scope ends (nests).
    class scope {
      public:
        explicit scope(readahead& r) noexcept;
        ~scope();
        scope(const scope&) = delete;
        scope& operator=(const scope&) = delete;

      private:
        readahead* previous_;
    };

    // For the interposed functions: the thread's installed read-ahead, or null.
    static readahead* current() noexcept;
    // recv() on a watched descriptor: true and `result` set; false for any other descriptor.
    bool recv(int fd, void* buf, std::size_t len, ssize_t& result) noexcept;
    // poll(): true and `result` set when answered here; false: do the real poll.
    bool poll(pollfd* fds, nfds_t n, int timeout, int& result) noexcept;
    // Whether `fd` is one of the watched sockets.
    bool watches(int fd) const noexcept { return fd >= 0 && (fd == slots_[0].fd || fd == slots_[1].fd); }

  private:
    struct source {
        int fd = -1;
        std::unique_ptr<char[]> data;
        std::size_t begin = 0, end = 0;
        bool drained = false; // the last recv() found the socket empty (batch mode skips it)
        bool flush = false;
        // A recv() of batch mode's that found the end of the stream (0) or an error (-1, errno
        // in `error`): what libssh's next recv() gets.
        bool pending_result = false;
        ssize_t result = 0;
        int error = 0;
    };
    source* slot(int fd) noexcept;
    // Refills the slot's empty buffer from the kernel: true when libssh has something to read
    // (bytes, the end of the stream or an error).
    bool refill(source& s) noexcept;
    bool poll_plain(pollfd* fds, nfds_t n, int& result) const noexcept;
    bool poll_batch(pollfd* fds, nfds_t n, int timeout, int& result) noexcept;
    bool poll_flush(pollfd* fds, nfds_t n, int& result) noexcept;

    readahead_pool& pool_;
    source slots_[2];
    mode mode_ = mode::plain;
    bool outer_ = false;
};

} // namespace edge::sshgw::detail
