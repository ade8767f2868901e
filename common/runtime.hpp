#pragma once
// The Asio runtime: one io_context per worker thread (shared nothing). A connection stays on
// the worker that accepted it. Created and run from main; run() blocks until stop().
#include <boost/asio/io_context.hpp>

#include <memory>
#include <thread>
#include <vector>

namespace edge {
class runtime {
  public:
    explicit runtime(unsigned workers);
    runtime(const runtime&) = delete;
    runtime& operator=(const runtime&) = delete;
    ~runtime();

    unsigned size() const noexcept { return static_cast<unsigned>(contexts_.size()); }
    boost::asio::io_context& worker(unsigned i) { return *contexts_[i]; }

    // Runs worker 0 on the calling thread and the others on their own threads.
    void run();
    void stop();
    // After run(): destroys every pending handler and coroutine (the io_contexts stay, so the
    // sockets and timers owned elsewhere can still be destroyed afterwards). Call it before
    // destroying what those coroutines refer to.
    void shutdown();

  private:
    std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
    std::vector<std::thread> threads_;
};
} // namespace edge
