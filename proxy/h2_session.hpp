#pragma once
// HTTP/2 connections (RFC 9113): over TLS when ALPN chose h2, and h2c with prior knowledge on the
// plaintext port (found by the connection preface). nghttp2 runs sans-io: bytes read are fed to
// it, what it wants to send is written by one writer coroutine. Each stream is an exchange of its
// own (same routing, auth, header rules and errors as HTTP/1.1) forwarded to the runner over
// HTTP/1.1, with end-to-end flow control: the client's window opens only as its bytes reach the
// runner, and response data is sent as the runner delivers it. RFC 8441 extended CONNECT
// (`:protocol websocket`) becomes an HTTP/1.1 upgrade toward the runner.
#include "common/async.hpp"
#include "proxy/worker.hpp"

#include <string_view>

namespace edge::proxy {

// The client connection preface of HTTP/2 (the start of every h2c connection).
inline constexpr std::string_view h2_preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Serves an HTTP/2 connection on `client` (its TLS handshake done when it has one) until it
// closes. `preread` holds bytes already read from it (the preface, on h2c). Never throws.
awaitable<void> serve_h2(timed_socket& client, std::string_view preread, worker_context& ctx,
                         std::string_view client_ip);

} // namespace edge::proxy
