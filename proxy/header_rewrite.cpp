#include "proxy/header_rewrite.hpp"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <charconv>

namespace edge::proxy {
using h1::iequals;
using h1::lower_equals;
using namespace std::string_view_literals;

namespace {

bool starts_with_proxy(std::string_view name) {
    return name.size() >= 6 && lower_equals(name.substr(0, 6), "proxy-");
}

// Writes a head at the end of a string through a pointer. std::string::append costs about
// thirty instructions a piece and a head has dozens of pieces; here the string is grown ahead
// (by more than most heads need, then one check per field), a piece is one copy (a literal's a
// few moves), and the string is cut to what was written when the writer goes away.
class head_writer {
  public:
    explicit head_writer(std::string& out) : out_(out), at_(out.size()) { room(512); }
    ~head_writer() { out_.resize(at_); }
    head_writer(const head_writer&) = delete;
    head_writer& operator=(const head_writer&) = delete;

    // Makes room for `n` more bytes: that many may follow through raw() without a check.
    head_writer& room(std::size_t n) {
        if (out_.size() - at_ < n) [[unlikely]]
            grow(n);
        return *this;
    }
    head_writer& raw(std::string_view s) {
        std::char_traits<char>::copy(out_.data() + at_, s.data(), s.size()); // (s may be null)
        at_ += s.size();
        return *this;
    }
    head_writer& put(std::string_view s) { return room(s.size()).raw(s); }
    head_writer& field(std::string_view name, std::string_view value) {
        return room(name.size() + value.size() + 4).raw(name).raw(": "sv).raw(value).raw("\r\n"sv);
    }
    // `HTTP/1.1 {status} {reason}` and its CRLF; a status has three digits (the parser's
    // and edgegate's own), written without to_chars.
    head_writer& status_line(unsigned status, std::string_view reason) {
        const char code[] = {static_cast<char>('0' + status / 100 % 10),
                             static_cast<char>('0' + status / 10 % 10),
                             static_cast<char>('0' + status % 10), ' '};
        return room(15 + reason.size())
            .raw("HTTP/1.1 "sv)
            .raw({code, sizeof code})
            .raw(reason)
            .raw("\r\n"sv);
    }
    head_writer& number(std::uint64_t n) {
        room(20);
        auto [end, ec] = std::to_chars(out_.data() + at_, out_.data() + at_ + 20, n);
        at_ = static_cast<std::size_t>(end - out_.data());
        return *this;
    }

  private:
    [[gnu::noinline]] void grow(std::size_t n) { out_.resize(std::max(out_.size() * 2, at_ + n)); }

    std::string& out_;
    std::size_t at_; // the end of what was written
};

void append_framing(head_writer& out, h1::body_kind body, std::uint64_t length) {
    if (body == h1::body_kind::length)
        out.put("Content-Length: "sv).number(length).put("\r\n"sv);
    else if (body == h1::body_kind::chunked)
        out.put("Transfer-Encoding: chunked\r\n"sv);
}

void append_end_to_end(head_writer& out, const h1::head& res, const response_edits& edits);

// `value` is `prefix` itself or continues it with '/' or '?' (a path-segment boundary).
bool under_prefix(std::string_view value, std::string_view prefix) {
    return value.starts_with(prefix) &&
           (value.size() == prefix.size() || value[prefix.size()] == '/' ||
            value[prefix.size()] == '?');
}

bool listed_in_connection(const h1::head& h, std::string_view name) {
    if (!h.connection_lists || lower_equals(name, "host"))
        return false;
    bool listed = false;
    for (const auto& f : h.fields)
        if (lower_equals(f.name, "connection"))
            h1::for_each_token(f.value, [&](std::string_view t) { listed |= iequals(t, name); });
    return listed;
}

} // namespace

bool is_hop_by_hop(const h1::head& h, std::string_view name) {
    switch (name.size()) {
    case 2: return lower_equals(name, "te");
    case 7: // (Trailer is not: it announces trailers, which pass end to end)
        if (lower_equals(name, "upgrade"))
            return true;
        break;
    case 10:
        if (lower_equals(name, "connection") || lower_equals(name, "keep-alive"))
            return true;
        break;
    case 17:
        if (lower_equals(name, "transfer-encoding"))
            return true;
        break;
    default: break;
    }
    return starts_with_proxy(name) || listed_in_connection(h, name);
}

void write_request_head(std::string& into, const h1::head& req,
                        std::span<const std::string_view> target_parts,
                        const forward_context& c) {
    head_writer out(into);
    out.put(req.method).put(" "sv);
    for (auto part : target_parts)
        out.put(part);
    out.put(" HTTP/1.1\r\n"sv).field("Host"sv, c.upstream_host);

    std::string_view first_xff;
    bool more_xff = false, te_trailers = false;
    for (const auto& f : req.fields) {
        const auto name = f.name;
        switch (name.size()) {
        case 2:
            if (lower_equals(name, "te"))
                h1::for_each_token(f.value, [&](std::string_view t) {
                    te_trailers |= iequals(t.substr(0, t.find(';')), "trailers");
                });
            break;
        case 4:
            if (lower_equals(name, "host"))
                continue;
            break;
        case 6:
            if (lower_equals(name, "expect"))
                continue;
            break;
        case 11:
            if (!c.traceparent.empty() && lower_equals(name, "traceparent"))
                continue;
            break;
        case 12:
            if (!c.request_id.empty() && lower_equals(name, "x-request-id"))
                continue;
            break;
        case 14:
            if (lower_equals(name, "content-length"))
                continue;
            break;
        case 15:
            if (lower_equals(name, "x-forwarded-for")) {
                if (first_xff.data() == nullptr)
                    first_xff = f.value;
                else
                    more_xff = true;
                continue;
            }
            break;
        case 16:
            if (lower_equals(name, "x-forwarded-host"))
                continue;
            break;
        case 17:
            if (lower_equals(name, "x-forwarded-proto"))
                continue;
            break;
        case 22:
            if (lower_equals(name, "x-daytona-disable-cors"))
                continue;
            break;
        case 23:
            if (lower_equals(name, "x-daytona-preview-token") ||
                lower_equals(name, "x-daytona-authorization"))
                continue;
            break;
        default: break;
        }
        if (is_hop_by_hop(req, name))
            continue;
        bool strip = false;
        for (auto s : c.also_strip)
            strip |= iequals(s, name);
        if (strip)
            continue;
        out.field(name, f.value);
    }
    if (te_trailers)
        out.put("TE: trailers\r\n"sv);

    out.put("X-Forwarded-For: "sv);
    if (first_xff.data() != nullptr) {
        out.put(first_xff);
        if (more_xff) {
            bool first = true;
            for (const auto& f : req.fields) {
                if (!lower_equals(f.name, "x-forwarded-for"))
                    continue;
                if (first) {
                    first = false;
                    continue;
                }
                out.put(", "sv).put(f.value);
            }
        }
        out.put(", "sv);
    }
    out.put(c.client_ip).put("\r\n"sv);
    out.field("X-Forwarded-Host"sv, c.original_host);
    out.field("X-Forwarded-Proto"sv, c.proto);
    out.put("X-Daytona-Authorization: Bearer "sv).put(c.runner_key).put("\r\n"sv);
    if (!c.request_id.empty())
        out.field("X-Request-Id"sv, c.request_id);
    if (!c.traceparent.empty())
        out.field("traceparent"sv, c.traceparent);
    if (req.upgrade_websocket)
        out.put("Connection: Upgrade\r\nUpgrade: websocket\r\n"sv);
    if (req.body == h1::body_kind::none && !find(req, "content-length").empty())
        out.put("Content-Length: 0\r\n"sv);
    append_framing(out, req.body, req.content_length);
    out.put("\r\n"sv);
}

void visit_response_fields(const h1::head& res, const response_edits& edits,
                           response_field_sink& sink) {
    const bool redirect = res.status >= 300 && res.status < 400 && !edits.location_prefix.empty();
    for (const auto& f : res.fields) {
        if (f.name.size() == 14 && lower_equals(f.name, "content-length"))
            continue;
        if (is_hop_by_hop(res, f.name))
            continue;
        if (redirect && f.name.size() == 8 && lower_equals(f.name, "location") &&
            !under_prefix(f.value, edits.location_prefix)) {
            const bool slash = !f.value.empty() && f.value.front() != '/';
            sink.field(f.name, edits.location_prefix, slash ? "/"sv : ""sv, f.value);
            continue;
        }
        sink.field(f.name, f.value, {}, {});
    }
    for (const auto& f : edits.add)
        sink.field(f.name, f.value, {}, {});
}

namespace {
void append_end_to_end(head_writer& out, const h1::head& res, const response_edits& edits) {
    struct sink final : response_field_sink {
        head_writer& out;
        explicit sink(head_writer& o) : out(o) {}
        void field(std::string_view name, std::string_view a, std::string_view b,
                   std::string_view c) override {
            out.room(name.size() + a.size() + b.size() + c.size() + 4)
                .raw(name).raw(": "sv).raw(a).raw(b).raw(c).raw("\r\n"sv);
        }
    } s(out);
    visit_response_fields(res, edits, s);
}
} // namespace

void write_response_head(std::string& into, const h1::head& res, h1::body_kind body,
                         bool keep_alive, unsigned client_version, const response_edits& edits) {
    head_writer out(into);
    out.status_line(res.status, res.reason.empty() ? reason_phrase(res.status) : res.reason);
    append_end_to_end(out, res, edits);
    if (body == h1::body_kind::none) {
        // HEAD and 304 describe the representation: the runner's length stays.
        if (res.status >= 200 && res.status != 204) {
            auto length = find(res, "content-length");
            if (!length.empty())
                out.field("Content-Length"sv, length);
        }
    } else {
        append_framing(out, body, res.content_length);
    }
    if (!keep_alive)
        out.put("Connection: close\r\n"sv);
    else if (client_version < 11)
        out.put("Connection: keep-alive\r\n"sv);
    out.put("\r\n"sv);
}

void write_upgrade_response_head(std::string& into, const h1::head& res,
                                 const response_edits& edits) {
    head_writer out(into);
    out.status_line(101, res.reason.empty() ? reason_phrase(101) : res.reason);
    append_end_to_end(out, res, edits);
    out.put("Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"sv);
}

std::string websocket_accept(std::string_view key) {
    static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    std::string text;
    text.reserve(key.size() + guid.size());
    text.append(key).append(guid);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
    unsigned char encoded[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
    int n = EVP_EncodeBlock(encoded, digest, SHA_DIGEST_LENGTH);
    return std::string(reinterpret_cast<const char*>(encoded), static_cast<std::size_t>(n));
}

void write_local_response(std::string& into, unsigned status, std::string_view content_type,
                          std::string_view body, bool keep_alive, bool head_only,
                          std::span<const h1::field> extra) {
    head_writer out(into);
    out.status_line(status, reason_phrase(status));
    if (!content_type.empty())
        out.field("Content-Type"sv, content_type);
    for (const auto& f : extra)
        out.field(f.name, f.value);
    out.put("Content-Length: "sv).number(body.size());
    out.put(keep_alive ? "\r\n\r\n"sv : "\r\nConnection: close\r\n\r\n"sv);
    if (!head_only)
        out.put(body);
}

std::string_view reason_phrase(unsigned status) {
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

} // namespace edge::proxy
