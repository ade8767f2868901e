#pragma once
// Header rules between client and runner (contract §2). Framing (Content-Length,
// Transfer-Encoding) is the session's business and is left untouched here.
#include <boost/beast/http/fields.hpp>

#include <string_view>

namespace edge::proxy {

struct forward_context {
    std::string_view original_host; // the client's Host, for X-Forwarded-Host
    std::string_view client_ip;     // appended to X-Forwarded-For
    std::string_view proto;         // "http" or "https", for X-Forwarded-Proto
    std::string_view upstream_host; // the runner's host[:port], the new Host
    std::string_view runner_key;    // X-Daytona-Authorization: Bearer <runner_key>
};

// Removes hop-by-hop fields: those Connection lists, Connection, Keep-Alive, Proxy-*, Trailer,
// Upgrade, and TE (a request keeps `TE: trailers` when the client asked for it).
void strip_hop_by_hop(boost::beast::http::fields& f, bool is_request);

// Client request → runner request: hop-by-hop removed, Daytona's private headers removed, the
// runner's credential SET (a client-sent X-Daytona-Authorization never passes), X-Forwarded-*.
void rewrite_request(boost::beast::http::fields& f, const forward_context& c);

// Runner response → client response: hop-by-hop removed, everything else kept (duplicates too).
void rewrite_response(boost::beast::http::fields& f);

} // namespace edge::proxy
