#pragma once
// The transport-independent view of a request that preview authentication reads, and the
// response it may answer with instead of forwarding. Built by the HTTP/1.1 session and the
// HTTP/2 stream alike from what they parsed; nothing here owns the request's bytes.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace edge::auth {

// Read access to the request's header fields. Names are matched case-insensitively; repeated
// fields (several Cookie lines, HTTP/2's split cookies) are all visible through each_value.
class header_lookup {
  public:
    virtual ~header_lookup() = default;
    // The first field named `name`, if any.
    virtual std::optional<std::string_view> first(std::string_view name) const = 0;
    // Calls `f(value)` for each field named `name`, in order, until it returns true.
    template <class F> bool any(std::string_view name, F&& f) const {
        struct thunk_state {
            F* fn;
        } st{&f};
        return each_value(name, &st, [](void* p, std::string_view v) {
            return (*static_cast<thunk_state*>(p)->fn)(v);
        });
    }

  protected:
    virtual bool each_value(std::string_view name, void* ctx,
                            bool (*f)(void*, std::string_view)) const = 0;
};

// A header_lookup over a list of pairs (tests, and HTTP/2 header blocks kept as pairs).
class pair_header_lookup final : public header_lookup {
  public:
    using pairs = std::vector<std::pair<std::string, std::string>>;
    explicit pair_header_lookup(const pairs& p) : p_(p) {}
    std::optional<std::string_view> first(std::string_view name) const override;

  protected:
    bool each_value(std::string_view name, void* ctx,
                    bool (*f)(void*, std::string_view)) const override;

  private:
    const pairs& p_;
};

bool iequals(std::string_view a, std::string_view b) noexcept;

// A header_lookup over any range of elements with `name` and `value` string_views, e.g. the
// HTTP/1.1 codec's `head::fields` or an HTTP/2 stream's decoded header list. No copy.
template <class Fields> class fields_lookup final : public header_lookup {
  public:
    explicit fields_lookup(const Fields& f) : f_(f) {}
    std::optional<std::string_view> first(std::string_view name) const override {
        for (const auto& x : f_)
            if (iequals(x.name, name))
                return std::string_view(x.value);
        return std::nullopt;
    }

  protected:
    bool each_value(std::string_view name, void* ctx,
                    bool (*f)(void*, std::string_view)) const override {
        for (const auto& x : f_)
            if (iequals(x.name, name) && f(ctx, std::string_view(x.value)))
                return true;
        return false;
    }

  private:
    const Fields& f_;
};

enum class request_mode {
    preview, // {port}-{idOrToken}.{base host}
    toolbox, // {base host}/toolbox/{id}/...: always authenticated, no login redirect
};

struct request_view {
    std::string_view method;    // "GET", ...
    std::string_view host;      // Host / :authority as received
    std::string_view target;    // path + query as received (origin-form)
    std::string_view id;        // sandbox id, or a signed preview token (preview mode only)
    std::string_view base_host; // preview: the host after the first label; toolbox: `host`
    std::uint16_t port = 0;     // preview: the sandbox port; toolbox: 2280
    request_mode mode = request_mode::preview;
    bool websocket = false;     // an Upgrade: websocket (or an RFC 8441 CONNECT)
    bool sandbox_public = false; // the route's public status (ignored for reserved ports)
    std::string_view client_ip; // appended to X-Forwarded-For on the user's access check
    std::string_view traceparent; // W3C trace context for the API calls this request makes
    const header_lookup* headers = nullptr;
};

// A complete answer made by edgegate instead of forwarding.
struct response {
    unsigned status = 0;
    // Extra fields: Location, Set-Cookie (one entry per cookie), Retry-After, CSP ...
    std::vector<std::pair<std::string, std::string>> headers;
    // When `body` is empty and `message` is not, the session renders its JSON error body
    // (proxy::error_body(status, message, target, method)) with Content-Type application/json.
    std::string message;
    std::string body;
    std::string content_type; // for `body`
};

// Reserved ports (contract §2): always authenticated, never a warning page.
constexpr bool is_reserved_port(std::uint16_t port) noexcept {
    return port == 22222 || port == 2280 || port == 33333;
}

// Does the request want an HTML page (a browser navigation)? `Accept` contains text/html.
bool accepts_html(const header_lookup& h);

} // namespace edge::auth
