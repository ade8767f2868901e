#include "proxy/h1_codec.hpp"

#include <array>
#include <bit>
#include <charconv>
#include <cstdint>
#include <cstring>

namespace edge::proxy::h1 {
namespace {

constexpr std::array<bool, 256> make_tchar_table() {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c)
        t[c] = true;
    for (int c = 'a'; c <= 'z'; ++c)
        t[c] = true;
    for (int c = 'A'; c <= 'Z'; ++c)
        t[c] = true;
    for (char c : std::string_view("!#$%&'*+-.^_`|~"))
        t[static_cast<unsigned char>(c)] = true;
    return t;
}
constexpr auto tchar_table = make_tchar_table();

bool is_tchar(char c) {
    return tchar_table[static_cast<unsigned char>(c)];
}

// Field values and reasons: visible characters, spaces, tabs and obs-text; no other control.
bool is_value_char(char c) {
    auto u = static_cast<unsigned char>(c);
    return u == '\t' || (u >= 0x20 && u != 0x7f);
}

// The first byte at or after p that is below `low` or is DEL, eight bytes per step (values and
// targets are mostly long runs of allowed bytes); `end` when there is none.
template <unsigned char low> const char* skip_to_control(const char* p, const char* end) {
    constexpr std::uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (end - p >= 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        const std::uint64_t del = w ^ (ones * 0x7F);
        // A byte below `low` (exact for low <= 0x80), or a zero byte of w ^ DEL. A borrow can
        // mark bytes after a marked one, never before: the lowest mark is the first such byte
        // (the word's first bytes are its low ones).
        const std::uint64_t marks = ((w - ones * low) & ~w & highs) | ((del - ones) & ~del & highs);
        if (marks)
            return p + (std::countr_zero(marks) >> 3);
        p += 8;
    }
    while (p != end) {
        const auto u = static_cast<unsigned char>(*p);
        if (u < low || u == 0x7F)
            break;
        ++p;
    }
    return p;
}

char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

parse_result bad(unsigned status, std::string_view message) {
    return {parse_status::bad, status, message};
}

// Reads one CRLF-terminated line at `pos`; false when the line is not complete yet. A bare LF
// is malformed (`bare_lf` set).
bool next_line(std::string_view in, std::size_t& pos, std::string_view& line, bool& bare_lf) {
    auto nl = in.find('\n', pos);
    if (nl == std::string_view::npos)
        return false;
    if (nl == pos || in[nl - 1] != '\r') {
        bare_lf = true;
        return true;
    }
    line = in.substr(pos, nl - 1 - pos);
    pos = nl + 1;
    return true;
}

bool parse_version(std::string_view v, unsigned& version) {
    if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
        v[7] < '0' || v[7] > '9')
        return false;
    version = static_cast<unsigned>((v[5] - '0') * 10 + (v[7] - '0'));
    return true;
}

bool parse_length(std::string_view v, std::uint64_t& out) {
    if (v.empty() || v.size() > 18)
        return false;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    return ec == std::errc{} && end == v.data() + v.size();
}

// The fields after the start line, up to the empty line; then what they say about framing and
// the connection.
parse_result parse_fields(std::string_view in, std::size_t pos, head& h, bool is_request,
                          bool head_request) {
    bool close = false, keep = false, te = false, te_chunked_last = false, te_other = false,
         has_length = false, host_seen = false, connection_upgrade = false;
    const char* const begin = in.data();
    const char* const end = begin + in.size();
    auto need_more = [&] {
        if (in.size() >= max_head_size)
            return bad(431, "the request header is larger than 64 KiB");
        return parse_result{parse_status::need_more, 0, {}};
    };
    const char* p = begin + pos;
    for (;;) {
        // One pass per line: the name's characters, optional whitespace, the value's characters,
        // then CRLF; anything else is malformed.
        if (p == end)
            return need_more();
        if (*p == '\r') {
            if (p + 1 == end)
                return need_more();
            if (p[1] != '\n')
                return bad(400, "a bare CR in the header");
            p += 2;
            break;
        }
        if (*p == ' ' || *p == '\t')
            return bad(400, "obsolete line folding in a header field");
        const char* name_begin = p;
        while (p != end && is_tchar(*p))
            ++p;
        if (p == end)
            return need_more();
        if (*p != ':' || p == name_begin)
            return bad(400, *p == '\n' ? std::string_view("a header line ends with a bare LF")
                                        : std::string_view("malformed header field name"));
        std::string_view name(name_begin, static_cast<std::size_t>(p - name_begin));
        ++p;
        while (p != end && (*p == ' ' || *p == '\t'))
            ++p;
        const char* value_begin = p;
        for (;;) { // (tabs are allowed controls)
            p = skip_to_control<0x20>(p, end);
            if (p == end || *p != '\t')
                break;
            ++p;
        }
        if (p == end || (*p == '\r' && p + 1 == end))
            return need_more();
        if (*p != '\r')
            return bad(400, *p == '\n' ? std::string_view("a header line ends with a bare LF")
                                        : std::string_view("invalid character in a header field value"));
        if (p[1] != '\n')
            return bad(400, "a bare CR in the header");
        const char* value_end = p;
        while (value_end != value_begin && (value_end[-1] == ' ' || value_end[-1] == '\t'))
            --value_end;
        std::string_view value(value_begin, static_cast<std::size_t>(value_end - value_begin));
        p += 2;
        if (h.fields.size() == max_fields)
            return bad(431, "too many header fields");
        h.fields.push_back({name, value});

        switch (name.size()) {
        case 4:
            if (is_request && lower_equals(name, "host")) {
                if (host_seen)
                    return bad(400, "more than one Host field");
                host_seen = true;
                h.host = value;
            }
            break;
        case 6:
            if (is_request && lower_equals(name, "expect")) {
                if (iequals(value, "100-continue"))
                    h.expect_continue = true;
                else
                    h.expect_unknown = true;
            }
            break;
        case 10:
            if (lower_equals(name, "connection"))
                for_each_token(value, [&](std::string_view t) {
                    if (iequals(t, "close"))
                        close = true;
                    else if (iequals(t, "keep-alive"))
                        keep = true;
                    else
                        h.connection_lists = true;
                    if (iequals(t, "upgrade"))
                        connection_upgrade = true;
                });
            break;
        case 14:
            if (lower_equals(name, "content-length")) {
                std::uint64_t n = 0;
                if (!parse_length(value, n))
                    return bad(400, "invalid Content-Length");
                if (has_length && n != h.content_length)
                    return bad(400, "conflicting Content-Length fields");
                has_length = true;
                h.content_length = n;
            }
            break;
        case 17:
            if (lower_equals(name, "transfer-encoding")) {
                te = true;
                for_each_token(value, [&](std::string_view t) {
                    if (te_chunked_last)
                        te_other = true; // chunked applied twice, or something after it
                    if (iequals(t, "chunked"))
                        te_chunked_last = true;
                    else
                        te_other = true;
                });
            }
            break;
        default: break;
        }
    }
    h.size = static_cast<std::size_t>(p - begin);
    h.keep_alive = h.version >= 11 ? !close : (keep && !close);
    if (connection_upgrade && h.version >= 11) {
        for (const auto& f : h.fields)
            if (lower_equals(f.name, "upgrade"))
                for_each_token(f.value, [&](std::string_view t) {
                    h.upgrade_websocket |= iequals(t.substr(0, t.find('/')), "websocket");
                });
    }

    if (is_request) {
        if (te && has_length)
            return bad(400, "both Content-Length and Transfer-Encoding");
        if (te && (te_other || !te_chunked_last))
            return bad(501, "unsupported Transfer-Encoding (only chunked is accepted)");
        if (te && h.version < 11)
            return bad(400, "Transfer-Encoding in an HTTP/1.0 request");
        h.body = te ? body_kind::chunked
                    : (has_length && h.content_length > 0 ? body_kind::length : body_kind::none);
        return {parse_status::done, 0, {}};
    }
    if (head_request || h.status < 200 || h.status == 204 || h.status == 304) {
        h.body = body_kind::none;
    } else if (te) {
        if (te_other || !te_chunked_last)
            return bad(502, "unsupported Transfer-Encoding in the runner's response");
        h.body = body_kind::chunked;
    } else if (has_length) {
        h.body = h.content_length > 0 ? body_kind::length : body_kind::none;
    } else {
        h.body = body_kind::until_close;
    }
    if (!has_length || te)
        h.content_length = 0;
    return {parse_status::done, 0, {}};
}

} // namespace

void head::clear() {
    method = target = reason = host = {};
    status = 0;
    version = 11;
    fields.clear();
    body = body_kind::none;
    content_length = 0;
    keep_alive = true;
    expect_continue = false;
    connection_lists = false;
    upgrade_websocket = false;
    expect_unknown = false;
    size = 0;
}

bool forwardable_trailer(std::string_view name) {
    // Go's net/http refuses the same ones in a declared trailer (plus Upgrade, cookies and
    // Daytona's private and forwarding fields).
    static constexpr std::string_view refused[] = {
        "authorization", "cache-control", "connection", "content-encoding", "content-length",
        "content-range", "content-type", "cookie", "expect", "host", "keep-alive",
        "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization",
        "proxy-connection", "range", "set-cookie", "te", "trailer", "transfer-encoding",
        "upgrade", "www-authenticate"};
    for (auto r : refused)
        if (lower_equals(name, r))
            return false;
    auto starts = [&](std::string_view prefix) {
        return name.size() >= prefix.size() && lower_equals(name.substr(0, prefix.size()), prefix);
    };
    return !starts("x-daytona-") && !starts("x-forwarded-") && !starts("proxy-");
}

void append_trailer_section(std::string& out, std::string_view section) {
    for_each_trailer(section, [&](std::string_view name, std::string_view value) {
        if (forwardable_trailer(name))
            out.append(name).append(": ").append(value).append("\r\n");
    });
    out.append("\r\n");
}

void append_lower(std::string& out, std::string_view s) {
    for (char c : s)
        out.push_back(lower(c));
}

std::string_view find(const head& h, std::string_view name) {
    for (const auto& f : h.fields)
        if (iequals(f.name, name))
            return f.value;
    return {};
}

parse_result parse_request(std::string_view in, head& h) {
    h.clear();
    std::size_t pos = 0;
    // A client may send an empty line or two between requests (RFC 9112 §2.2).
    while (pos + 1 < in.size() && in[pos] == '\r' && in[pos + 1] == '\n' && pos < 8)
        pos += 2;
    std::string_view line;
    bool bare_lf = false;
    if (!next_line(in, pos, line, bare_lf)) {
        if (in.size() >= max_head_size)
            return bad(431, "the request line is longer than 64 KiB");
        return {parse_status::need_more, 0, {}};
    }
    if (bare_lf)
        return bad(400, "the request line ends with a bare LF");
    auto sp1 = line.find(' ');
    auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp1 == 0 || sp2 == std::string_view::npos || sp2 == sp1 + 1)
        return bad(400, "malformed request line");
    h.method = line.substr(0, sp1);
    h.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    for (char c : h.method)
        if (!is_tchar(c))
            return bad(400, "invalid character in the method");
    // Request targets: visible characters and obs-text (bytes pass to the runner unchanged).
    if (const char* t_end = h.target.data() + h.target.size();
        skip_to_control<0x21>(h.target.data(), t_end) != t_end)
        return bad(400, "invalid character in the request target");
    if (!parse_version(line.substr(sp2 + 1), h.version))
        return bad(400, "malformed HTTP version");
    if (h.version != 11 && h.version != 10)
        return bad(505, "only HTTP/1.0 and HTTP/1.1 are served on this connection");
    return parse_fields(in, pos, h, true, false);
}

parse_result parse_response(std::string_view in, head& h, bool head_request) {
    h.clear();
    std::size_t pos = 0;
    std::string_view line;
    bool bare_lf = false;
    if (!next_line(in, pos, line, bare_lf)) {
        if (in.size() >= max_head_size)
            return bad(502, "the runner's status line is longer than 64 KiB");
        return {parse_status::need_more, 0, {}};
    }
    if (bare_lf)
        return bad(502, "the runner's status line ends with a bare LF");
    if (line.size() < 12 || !parse_version(line.substr(0, 8), h.version) || line[8] != ' ' ||
        (h.version != 10 && h.version != 11))
        return bad(502, "malformed status line from the runner");
    unsigned status = 0;
    for (std::size_t i = 9; i < 12; ++i) {
        if (line[i] < '0' || line[i] > '9')
            return bad(502, "malformed status code from the runner");
        status = status * 10 + static_cast<unsigned>(line[i] - '0');
    }
    if (status < 100)
        return bad(502, "malformed status code from the runner");
    if (line.size() > 12 && line[12] != ' ')
        return bad(502, "malformed status line from the runner");
    h.status = status;
    h.reason = line.size() > 13 ? line.substr(13) : std::string_view{};
    for (char c : h.reason)
        if (!is_value_char(c))
            return bad(502, "invalid character in the runner's reason phrase");
    auto r = parse_fields(in, pos, h, false, head_request);
    if (r.status == parse_status::bad && r.http_status != 502)
        return bad(502, "malformed header from the runner");
    return r;
}

void chunked_decoder::step(char c, result& r) {
    auto is_hex = [](char ch, unsigned& v) {
        if (ch >= '0' && ch <= '9')
            v = static_cast<unsigned>(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v = static_cast<unsigned>(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            v = static_cast<unsigned>(ch - 'A' + 10);
        else
            return false;
        return true;
    };
    unsigned v = 0;
    switch (state_) {
    case state::size:
        if (is_hex(c, v)) {
            if (++digits_ > 15) {
                r.bad = true;
                return;
            }
            remaining_ = remaining_ * 16 + v;
        } else if (digits_ > 0 && (c == ';' || c == ' ' || c == '\t')) {
            state_ = state::ext;
        } else if (digits_ > 0 && c == '\r') {
            state_ = state::size_lf;
        } else {
            r.bad = true;
        }
        return;
    case state::ext:
        if (c == '\r')
            state_ = state::size_lf;
        else if (!is_value_char(c))
            r.bad = true;
        return;
    case state::size_lf:
        if (c != '\n') {
            r.bad = true;
            return;
        }
        state_ = remaining_ == 0 ? state::trailer_start : state::data;
        return;
    case state::data: return; // handled in feed()
    case state::data_cr:
        if (c == '\r')
            state_ = state::data_lf;
        else
            r.bad = true;
        return;
    case state::data_lf:
        if (c == '\n') {
            state_ = state::size;
            digits_ = 0;
            remaining_ = 0;
        } else {
            r.bad = true;
        }
        return;
    case state::trailer_start:
        if (c == '\r') {
            state_ = state::last_lf;
        } else if (is_tchar(c)) {
            state_ = state::trailer;
            trailer_colon_ = false;
            trailers_.push_back(c);
        } else {
            r.bad = true;
        }
        return;
    case state::trailer:
        // `name: value`: a token, a colon, then field value characters.
        if (++trailer_bytes_ > max_head_size || (c == '\r' && !trailer_colon_))
            r.bad = true;
        else if (c == '\r')
            state_ = state::trailer_lf;
        else if (!trailer_colon_ && c == ':')
            trailer_colon_ = true;
        else if (trailer_colon_ ? !is_value_char(c) : !is_tchar(c))
            r.bad = true;
        if (!r.bad)
            trailers_.push_back(c);
        return;
    case state::trailer_lf:
        if (c == '\n') {
            state_ = state::trailer_start;
            trailers_.push_back(c);
        } else {
            r.bad = true;
        }
        return;
    case state::last_lf:
        if (c == '\n') {
            state_ = state::done;
            r.done = true;
        } else {
            r.bad = true;
        }
        return;
    case state::done: r.done = true; return;
    }
}

} // namespace edge::proxy::h1
