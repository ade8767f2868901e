#pragma once
// Turns a request's Host (or :authority) and target into what it addresses: a sandbox port on a
// preview host, a toolbox path on the base host, or the base host itself (contract §2).
// Pure functions over views of the caller's strings; no allocation.
#include <cstdint>
#include <optional>
#include <string_view>

namespace edge::routing {

enum class host_kind { base, preview, invalid };

struct host_target {
    host_kind kind = host_kind::base;
    std::uint16_t port = 0;     // preview: the sandbox port
    std::string_view id;        // preview: sandbox id or signed preview token, as sent
    std::string_view base_host; // preview: the host after the first label, port suffix kept
    std::string_view error;     // invalid: what is wrong, for the 400 message
};

// `{port}-{id}.{base}` is a preview host. The first label is cut at its first '-'. A part before
// it made only of digits must be a port from 1 to 65535, and the id must not be empty, or the
// host is invalid (400). A first label without '-', or whose part before '-' is not all digits
// (a hyphenated proxy domain such as edge-proxy.example.com), a single label, an IPv6 literal
// or an empty Host all address the base host.
host_target parse_host(std::string_view host) noexcept;

struct toolbox_target {
    std::string_view id;
    std::string_view rest; // from the '/' after the id, query included
};

// A sandbox id or preview token as it may appear in a host label or an API path: letters,
// digits, '-' and '_', at most 128 characters.
bool valid_id(std::string_view id) noexcept;

// `/toolbox/{id}/{rest}`; nullopt when the target is not a toolbox path (including
// `/toolbox/{id}` without the slash, which is a 404).
std::optional<toolbox_target> parse_toolbox_path(std::string_view target) noexcept;

} // namespace edge::routing
