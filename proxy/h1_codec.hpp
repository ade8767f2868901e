#pragma once
// HTTP/1.1 message heads and chunked framing, parsed in place (RFC 9112): no allocation per
// field, no copy of a name or value; a head's views point into the caller's buffer. Strict where
// a proxy must be (request smuggling): bare LF, obs-fold, whitespace before a colon, a
// Content-Length beside Transfer-Encoding, conflicting lengths and unknown codings are refused.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace edge::proxy::h1 {

struct field {
    std::string_view name;
    std::string_view value; // without surrounding whitespace
};

// How a message's body is delimited.
enum class body_kind : std::uint8_t { none, length, chunked, until_close };

struct head {
    std::string_view method; // requests
    std::string_view target; // requests
    unsigned status = 0;     // responses
    std::string_view reason; // responses
    unsigned version = 11;   // 10 or 11
    std::vector<field> fields;

    // Derived from the fields while parsing.
    body_kind body = body_kind::none;
    std::uint64_t content_length = 0;
    bool keep_alive = true;        // Connection and version
    bool expect_continue = false;  // requests: `Expect: 100-continue`
    bool expect_unknown = false;   // requests: another expectation (417)
    bool connection_lists = false; // Connection names fields beyond close/keep-alive
    bool upgrade_websocket = false; // `Connection: upgrade` with `Upgrade: websocket` (HTTP/1.1)
    std::string_view host;         // requests: the one Host field
    std::size_t size = 0;          // bytes of the head, final empty line included

    void clear();
};

enum class parse_status : std::uint8_t { done, need_more, bad };

struct parse_result {
    parse_status status;
    unsigned http_status = 0;  // for `bad`: 400, 431, 501 or 505
    std::string_view message;  // for `bad`: what is wrong, for the error body and the log
};

constexpr std::size_t max_head_size = 64 * 1024;
constexpr std::size_t max_fields = 200;

// Parses a request head from the front of `in`. `need_more` until the empty line arrives (and
// `bad` with 431 once `in` holds max_head_size bytes without one).
parse_result parse_request(std::string_view in, head& h);
// Parses a response head; `head_request` when it answers a HEAD (no body whatever it says).
parse_result parse_response(std::string_view in, head& h, bool head_request);

namespace detail {
inline std::uint64_t load8(const char* p) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
}
inline std::uint64_t load4(const char* p) {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    return w;
}
// The ASCII capitals of eight bytes lowercased, other bytes unchanged.
inline std::uint64_t lower8(std::uint64_t w) {
    constexpr std::uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    const std::uint64_t seven = w & ~highs; // (no carry between bytes in the sums below)
    const std::uint64_t from_a = seven + ones * (0x80 - 'A'); // high bit: >= 'A'
    const std::uint64_t past_z = seven + ones * (0x7F - 'Z'); // high bit: > 'Z'
    return w | (((from_a ^ past_z) & ~w & highs) >> 2);
}
// Whether f(a) == f(b) for two strings of the same size `n`, eight (or four) bytes at a time:
// `f` maps a word to its canonical form (overlapping words at the end, bytes below four).
// Always inlined: with a literal `b` of known size, all but a few instructions fold away.
template <class F>
[[gnu::always_inline]] inline bool words_equal(const char* a, const char* b, std::size_t n, F f) {
    if (n >= 8) {
        for (std::size_t i = 0; i + 8 < n; i += 8)
            if (f(load8(a + i)) != f(load8(b + i)))
                return false;
        return f(load8(a + n - 8)) == f(load8(b + n - 8));
    }
    if (n >= 4)
        return f(load4(a)) == f(load4(b)) && f(load4(a + n - 4)) == f(load4(b + n - 4));
    for (std::size_t i = 0; i < n; ++i)
        if (f(static_cast<unsigned char>(a[i])) != f(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}
} // namespace detail

// ASCII case-insensitive equality (field names, tokens). Inline and a word at a time: it runs
// for fields of every head.
inline bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() &&
           detail::words_equal(a.data(), b.data(), a.size(), detail::lower8);
}
// Equality of a field name with a lowercase name made of letters, digits and '-' (cheaper than
// iequals; for comparisons with known names, whose words the compiler folds). Setting bit 5
// lowercases ASCII letters (and leaves the lowercase name as it is); it also maps a few
// non-letters onto others, none of which occur in the lowercase names this is used with.
inline bool lower_equals(std::string_view name, std::string_view lower) {
    return name.size() == lower.size() &&
           detail::words_equal(name.data(), lower.data(), name.size(),
                               [](std::uint64_t w) { return w | 0x2020202020202020ULL; });
}
// Appends `s` with ASCII letters lowercased (field names for HTTP/2, DNS names).
void append_lower(std::string& out, std::string_view s);
// The first field named `name`, or empty.
std::string_view find(const head& h, std::string_view name);
// Calls f(token) for each element of a comma-separated list, whitespace trimmed.
template <class F> void for_each_token(std::string_view list, F&& f) {
    while (!list.empty()) {
        auto comma = list.find(',');
        auto token = list.substr(0, comma);
        while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
            token.remove_prefix(1);
        while (!token.empty() && (token.back() == ' ' || token.back() == '\t'))
            token.remove_suffix(1);
        if (!token.empty())
            f(token);
        if (comma == std::string_view::npos)
            break;
        list.remove_prefix(comma + 1);
    }
}

// True for a trailer field that may be passed on (RFC 9110 §6.5.1): not framing, routing,
// authentication, request modifiers, response controls or content format (Content-Length,
// Transfer-Encoding, Host, Connection, TE, Trailer, Authorization, Content-Type, Set-Cookie...
// the list is docs/http.md's), not hop-by-hop, not Daytona's or edgegate's own (X-Daytona-*,
// X-Forwarded-*).
bool forwardable_trailer(std::string_view name);

// Calls f(name, value) for each field of a trailer section as chunked_decoder::trailers() holds
// it (`name: value` lines, each ending with CRLF, already checked).
template <class F> void for_each_trailer(std::string_view section, F&& f) {
    while (!section.empty()) {
        auto end = section.find("\r\n");
        auto line = section.substr(0, end);
        auto colon = line.find(':');
        auto value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
            value.remove_prefix(1);
        while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
            value.remove_suffix(1);
        f(line.substr(0, colon), value);
        if (end == std::string_view::npos)
            break;
        section.remove_prefix(end + 2);
    }
}

// Appends the forwardable fields of a trailer section, then the empty line that ends a chunked
// body (after the last chunk's `0\r\n`).
void append_trailer_section(std::string& out, std::string_view section);

// Walks a chunked body: tells how many bytes of the input belong to the message and where its
// data is. Chunk extensions are checked, then skipped; the trailer section is checked and kept
// (trailers()).
class chunked_decoder {
  public:
    struct result {
        std::size_t used = 0; // bytes of `in` consumed (all of it unless the body ended)
        // Bytes of `in` before the trailer section (the last chunk's line included): what a
        // relay that passes the framing as it came sends unchanged.
        std::size_t before_trailers = 0;
        bool done = false;    // the last chunk and the trailer section are through
        bool bad = false;     // malformed framing
    };
    // `on_data(std::string_view)` is called for each piece of chunk data in `in`.
    template <class F> result feed(std::string_view in, F&& on_data) {
        result r;
        bool in_trailers = state_ >= state::trailer_start;
        while (r.used < in.size() && !r.done && !r.bad) {
            if (state_ == state::data) {
                auto n = static_cast<std::size_t>(
                    std::min<std::uint64_t>(remaining_, in.size() - r.used));
                on_data(in.substr(r.used, n));
                r.used += n;
                remaining_ -= n;
                if (remaining_ == 0)
                    state_ = state::data_cr;
                continue;
            }
            step(in[r.used++], r);
            if (!in_trailers && state_ >= state::trailer_start) {
                in_trailers = true;
                r.before_trailers = r.used;
            }
        }
        if (!in_trailers)
            r.before_trailers = r.used;
        return r;
    }
    void reset() { *this = chunked_decoder{}; }
    bool done() const { return state_ == state::done; }
    // The trailer section once done(): `name: value` lines, each ending with CRLF (empty when
    // the body had none).
    std::string_view trailers() const { return trailers_; }

  private:
    enum class state : std::uint8_t {
        size, ext, size_lf, data, data_cr, data_lf, trailer_start, trailer, trailer_lf,
        last_lf, done
    };
    void step(char c, result& r);

    state state_ = state::size;
    std::uint64_t remaining_ = 0;
    unsigned digits_ = 0;
    std::size_t trailer_bytes_ = 0;
    bool trailer_colon_ = false; // the current trailer line's name has ended
    std::string trailers_;
};

} // namespace edge::proxy::h1
