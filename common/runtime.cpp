#include "common/runtime.hpp"

#include "common/metrics.hpp"

#include <boost/asio/executor_work_guard.hpp>

namespace edge {
namespace {
// An io_context whose shutdown (pending handlers destroyed, services shut down) can be asked
// for before its destruction.
struct context final : boost::asio::io_context {
    using io_context::io_context;
    using boost::asio::execution_context::shutdown;
};
} // namespace

void runtime::shutdown() {
    for (auto& c : contexts_)
        static_cast<context&>(*c).shutdown();
}

runtime::runtime(unsigned workers) {
    if (workers == 0)
        workers = std::max(1u, std::thread::hardware_concurrency());
    // One thread per io_context, and a socket is only ever used by the worker that owns it
    // (other threads post to a worker, never touch its sockets): Asio's per-socket locks go.
    for (unsigned i = 0; i < workers; ++i)
        contexts_.push_back(std::make_unique<context>(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO));
}

runtime::~runtime() {
    stop();
    for (auto& t : threads_)
        if (t.joinable())
            t.join();
}

void runtime::run() {
    std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards;
    for (auto& c : contexts_)
        guards.emplace_back(c->get_executor());
    // Each worker counts its metrics in its own shard (no cache line shared between workers).
    for (size_t i = 1; i < contexts_.size(); ++i)
        threads_.emplace_back([ctx = contexts_[i].get(), i] {
            metrics::bind_thread_shard(static_cast<unsigned>(i));
            ctx->run();
        });
    metrics::bind_thread_shard(0);
    contexts_[0]->run();
    for (auto& t : threads_)
        t.join();
    threads_.clear();
}

void runtime::stop() {
    for (auto& c : contexts_)
        c->stop();
}
} // namespace edge
