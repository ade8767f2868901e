#pragma once
// Socket read-ahead underneath libssh. libssh 0.10.6 reads its socket 4 KiB at a time
// (MAX_BUF_SIZE), one poll() and one recv() per 4 KiB: at bulk speed that was most of the
// gateway's system time. The process's recv() and poll() are interposed (readahead.cpp); while a
// connection has its `readahead` installed on the thread (`readahead::scope`, around every libssh
// call that may read), recv() on its sockets takes up to 256 KiB from the kernel at once and hands
// libssh its 4 KiB slices from that buffer, and poll() reports the buffered sockets readable
// without a system call. With no scope installed, or for other descriptors, both are the libc
// functions. One per connection, used on its worker's thread only; buffers come from the
// worker's pool and go back as soon as they are empty.
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
    explicit readahead(readahead_pool& pool) : pool_(pool) {}
    readahead(const readahead&) = delete;
    readahead& operator=(const readahead&) = delete;
    ~readahead();

    // Serves `fd` from now on (slot 0: the client's socket, 1: the runner's).
    void watch(int which, int fd) noexcept { slots_[which].fd = fd; }
    // Stops serving the slot's descriptor; buffered bytes are dropped (the socket is closed).
    void forget(int which) noexcept;
    // Bytes taken from the kernel that libssh has not read yet.
    std::size_t buffered() const noexcept;
    // Empty buffers go back to the pool.
    void release_idle() noexcept;

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
    // poll(): true and `result` set when watched descriptors asked for POLLIN have buffered
    // bytes (only those are reported, without a system call); false: do the real poll.
    bool poll(pollfd* fds, nfds_t n, int& result) const noexcept;

  private:
    struct source {
        int fd = -1;
        std::unique_ptr<char[]> data;
        std::size_t begin = 0, end = 0;
    };
    readahead_pool& pool_;
    source slots_[2];
};

} // namespace edge::sshgw::detail
