#pragma once
// Header rules between client and runner (contract §2), applied while the outgoing head is
// written: the parsed head (views into the read buffer) goes out field by field, without a
// field container in between.
#include "proxy/h1_codec.hpp"

#include <span>
#include <string>
#include <string_view>

namespace edge::proxy {

struct forward_context {
    std::string_view original_host; // the client's Host, for X-Forwarded-Host
    std::string_view client_ip;     // appended to X-Forwarded-For
    std::string_view proto;         // "http" or "https", for X-Forwarded-Proto
    std::string_view upstream_host; // the runner's host[:port], the new Host
    std::string_view runner_key;    // X-Daytona-Authorization: Bearer <runner_key>
    // Further request fields to drop (e.g. the credential that authenticated the request).
    std::span<const std::string_view> also_strip = {};
    // When set, these replace whatever the client sent: the exchange's X-Request-Id and the
    // W3C traceparent naming edgegate's span.
    std::string_view request_id = {};
    std::string_view traceparent = {};
};

// True for hop-by-hop fields (RFC 9110 §7.6.1): Connection, Keep-Alive, Proxy-*, TE,
// Transfer-Encoding, Upgrade, and whatever the head's Connection fields list (never Host).
// Content-Length is framing and handled by the writers, not here.
bool is_hop_by_hop(const h1::head& h, std::string_view name);

// Client request → runner request head: `{method} {target parts...} HTTP/1.1`, Host set to the
// runner, hop-by-hop fields and Daytona's private headers removed, the runner's credential SET
// (a client-sent X-Daytona-Authorization never passes), X-Forwarded-*, `TE: trailers` kept, and
// the framing of `req.body` (Content-Length or chunked). `Expect` is the proxy's business and is
// not forwarded. A WebSocket upgrade keeps `Connection: Upgrade` and `Upgrade: websocket`.
void write_request_head(std::string& out, const h1::head& req,
                        std::span<const std::string_view> target_parts,
                        const forward_context& c);

// What edgegate adds to or changes in a runner's response head.
struct response_edits {
    std::span<const h1::field> add = {}; // appended fields (Set-Cookie, CORS)
    // Toolbox mode: a 3xx Location that does not start with this prefix gets it in front.
    std::string_view location_prefix = {};
};

// Receives a response's fields one by one; a value may come in up to three pieces (a rewritten
// Location), to be joined.
struct response_field_sink {
    virtual void field(std::string_view name, std::string_view value_a, std::string_view value_b,
                       std::string_view value_c) = 0;

  protected:
    ~response_field_sink() = default;
};

// The end-to-end fields of a runner's response as the client gets them, whatever its protocol:
// hop-by-hop fields and Content-Length (framing) left out, the toolbox Location rewrite applied,
// `edits.add` appended.
void visit_response_fields(const h1::head& res, const response_edits& edits,
                           response_field_sink& sink);

// Runner response → client response head: the runner's status and reason, every end-to-end
// field in order (duplicates kept), the framing `body` chosen for the client (a HEAD answer or
// 304 keeps the runner's Content-Length), and Connection as `keep_alive` and the client's
// version require.
void write_response_head(std::string& out, const h1::head& res, h1::body_kind body,
                         bool keep_alive, unsigned client_version,
                         const response_edits& edits = {});

// A runner's `101 Switching Protocols` to a WebSocket upgrade, for the client: its end-to-end
// fields (Sec-WebSocket-*) and `Connection: Upgrade`, `Upgrade: websocket`.
void write_upgrade_response_head(std::string& out, const h1::head& res,
                                 const response_edits& edits = {});

// Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2).
std::string websocket_accept(std::string_view key);

// Status line, Content-Type, Content-Length, Connection and extra fields for an answer edgegate
// makes itself (the body is appended too).
void write_local_response(std::string& out, unsigned status, std::string_view content_type,
                          std::string_view body, bool keep_alive, bool head_only,
                          std::span<const h1::field> extra = {});

// The standard reason phrase of a status code.
std::string_view reason_phrase(unsigned status);

} // namespace edge::proxy
