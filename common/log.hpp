#pragma once
// Process-wide logging: one line per record on stderr.
//
// Ordinary messages: code logs through spdlog directly (`spdlog::info("...", ...)`, in .cpp
// files only, to keep headers light). With LOG_FORMAT=json (the default) each record is one JSON
// object:  {"ts":"2026-11-29T08:46:18.123Z","level":"info","msg":"edgegate 0.1.0 listening ..."}
// With LOG_FORMAT=text:  2026-11-29T08:46:18.123Z info edgegate 0.1.0 listening ...
//
// Events (access-log lines, SSH session summaries): one flat record of key/value fields.
//
//     edge::log::access({{"method", "GET"}, {"host", host}, {"sandbox", id}, {"status", 200},
//                        {"bytes_out", n}, {"duration_ms", 1.25}, {"auth", "cookie"}});
//     edge::log::event("ssh_session", {{"sandbox", id}, {"exit_status", 0}});
//
// json:  {"ts":"...","level":"info","msg":"access","method":"GET","host":"...","status":200,...}
// text:  2026-11-29T08:46:18.123Z info access method=GET host=... status=200 ...
//        (a text value holding a space, '"', '=' or a control character is written quoted, with
//        JSON escapes)
// Values: string_view (const char*, std::string), integers, double, bool. Keys are written as
// given (use snake_case literals). Events are logged at level info: LOG_LEVEL=warn or above
// turns them off; check events_enabled() before building expensive fields. Calling with a braced
// list is fine anywhere except inside a co_await expression (g++ 12: build the call outside it).
//
// Thread-safe. Before init() records go to stderr in the text format at level info.
// Never log a token, key, cookie, Authorization value or the query string of an authenticated
// request, in a message or in an event field.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

namespace edge::log {

// Returns false (and changes nothing) when `level` is not one of trace, debug, info, warn,
// error, off or `format` is not json or text.
bool init(std::string_view level, std::string_view format = "json");

// Whether event lines are written at the current level (a relaxed load).
bool events_enabled() noexcept;

class field {
  public:
    enum class type : std::uint8_t { string, int64, uint64, number, boolean, null };

    field(std::string_view k, std::string_view v) noexcept : key(k), type_(type::string), s_(v) {}
    field(std::string_view k, const char* v) noexcept
        : key(k), type_(v ? type::string : type::null), s_(v ? v : "") {}
    field(std::string_view k, const std::string& v) noexcept
        : key(k), type_(type::string), s_(v) {}
    field(std::string_view k, bool v) noexcept : key(k), type_(type::boolean) { u_ = v; }
    field(std::string_view k, double v) noexcept : key(k), type_(type::number) { d_ = v; }
    field(std::string_view k, float v) noexcept : key(k), type_(type::number) { d_ = v; }
    template <class Int>
        requires(std::is_integral_v<Int> && !std::is_same_v<Int, bool> &&
                 !std::is_same_v<Int, char>)
    field(std::string_view k, Int v) noexcept : key(k) {
        if constexpr (std::is_signed_v<Int>) {
            type_ = type::int64;
            i_ = v;
        } else {
            type_ = type::uint64;
            u_ = v;
        }
    }
    // A null value (JSON null; omitted in text lines).
    static field null(std::string_view k) noexcept {
        field f(k, std::string_view{});
        f.type_ = type::null;
        return f;
    }

    std::string_view key;
    type kind() const noexcept { return type_; }
    std::string_view str() const noexcept { return s_; }
    std::int64_t int_value() const noexcept { return i_; }
    std::uint64_t uint_value() const noexcept { return u_; }
    double number() const noexcept { return d_; }

  private:
    type type_;
    std::string_view s_;
    union {
        std::int64_t i_;
        std::uint64_t u_ = 0;
        double d_;
    };
};

using fields = std::initializer_list<field>;

// One event record: `msg` is the event name ("access", "ssh_session").
void event(std::string_view name, fields f);
// An access-log line: event("access", f).
inline void access(fields f) { event("access", f); }

// Formats the fields as the JSON object members (`"k":v,...`, no braces) or text `k=v ...`;
// exposed for tests.
void append_json_fields(std::string& out, fields f);
void append_text_fields(std::string& out, fields f);
// Appends `s` as a JSON string body (no quotes) with JSON escapes.
void append_json_escaped(std::string& out, std::string_view s);

} // namespace edge::log
