#pragma once
// Small helpers shared by every coroutine on the data path.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace edge {
namespace asio = boost::asio;

// Completion token for coroutines that handle errors as values: `auto [ec, n] = co_await
// op(use_nothrow)`. The data path never throws.
inline constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

template <class T> using awaitable = asio::awaitable<T>;
} // namespace edge
