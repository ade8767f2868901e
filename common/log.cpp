#include "common/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <charconv>
#include <cmath>
#include <ctime>
#include <memory>
#include <mutex>
#include <vector>

namespace edge::log {
namespace {

// Event records go through their own logger (same sink, same formatter): the formatter tells
// them apart by the logger's name, their payload being preformatted members/pairs.
constexpr std::string_view event_logger_name = "edgegate.event";
std::atomic<bool> json_format{false};
std::atomic<bool> events_on{true};
std::atomic<spdlog::logger*> event_logger{nullptr};

constexpr std::string_view level_names[] = {"trace", "debug", "info", "warn",
                                            "error", "critical", "off"};

class line_formatter final : public spdlog::formatter {
  public:
    explicit line_formatter(bool json) : json_(json) {}

    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        std::string line;
        line.reserve(msg.payload.size() + 64);
        auto level = level_names[static_cast<int>(msg.level)];
        std::string_view payload(msg.payload.data(), msg.payload.size());
        bool is_event = std::string_view(msg.logger_name.data(), msg.logger_name.size()) ==
                        event_logger_name;
        if (json_) {
            line += "{\"ts\":\"";
            append_time(line, msg.time);
            line += "\",\"level\":\"";
            line += level;
            line += "\",";
            if (is_event) {
                line += payload;
            } else {
                line += "\"msg\":\"";
                append_json_escaped(line, payload);
                line += '"';
            }
            line += "}\n";
        } else {
            append_time(line, msg.time);
            line += ' ';
            line += level;
            line += ' ';
            line += payload;
            line += '\n';
        }
        dest.append(line.data(), line.data() + line.size());
    }

    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<line_formatter>(json_);
    }

  private:
    // RFC 3339 in UTC with milliseconds: 2026-11-29T08:46:18.123Z
    void append_time(std::string& out, spdlog::log_clock::time_point t) {
        using namespace std::chrono;
        auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
        auto secs = static_cast<std::time_t>(ms / 1000);
        if (secs != cached_secs_) {
            std::tm tm{};
            gmtime_r(&secs, &tm);
            char buf[32];
            std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
            cached_.assign(buf, n);
            cached_secs_ = secs;
        }
        out += cached_;
        char frac[8];
        int m = static_cast<int>(ms % 1000);
        frac[0] = '.';
        frac[1] = static_cast<char>('0' + m / 100);
        frac[2] = static_cast<char>('0' + m / 10 % 10);
        frac[3] = static_cast<char>('0' + m % 10);
        frac[4] = 'Z';
        out.append(frac, 5);
    }

    bool json_;
    std::time_t cached_secs_ = -1;
    std::string cached_;
};

void append_number(std::string& out, double v, bool json) {
    if (!std::isfinite(v)) {
        out += json ? "null" : "NaN";
        return;
    }
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

template <class Int> void append_int(std::string& out, Int v) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

// The length of the valid UTF-8 sequence at s[i], or 0.
std::size_t utf8_len(std::string_view s, std::size_t i) {
    auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    unsigned char c = b(i);
    std::size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (n == 0 || c > 0xF4 || i + n > s.size())
        return 0;
    for (std::size_t k = 1; k < n; ++k)
        if ((b(i + k) & 0xC0) != 0x80)
            return 0;
    if (n == 3 && ((c == 0xE0 && b(i + 1) < 0xA0) || (c == 0xED && b(i + 1) > 0x9F)))
        return 0; // overlong, surrogate
    if (n == 4 && ((c == 0xF0 && b(i + 1) < 0x90) || (c == 0xF4 && b(i + 1) > 0x8F)))
        return 0;
    return n;
}

bool needs_quotes(std::string_view v) {
    if (v.empty())
        return true;
    for (char ch : v) {
        auto c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c == '"' || c == '=' || c == '\\' || c >= 0x7F)
            return true;
    }
    return false;
}

} // namespace

void append_json_escaped(std::string& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    for (std::size_t i = 0; i < s.size();) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x80) {
            if (auto n = utf8_len(s, i)) {
                out.append(s.data() + i, n);
                i += n;
            } else {
                out += "\\ufffd"; // not UTF-8: the line must stay valid JSON
                ++i;
            }
            continue;
        }
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20 || c == 0x7F) {
                out += "\\u00";
                out += hex[c >> 4];
                out += hex[c & 15];
            } else {
                out += static_cast<char>(c);
            }
        }
        ++i;
    }
}

void append_json_fields(std::string& out, fields f) {
    bool first = true;
    for (auto& x : f) {
        if (!first)
            out += ',';
        first = false;
        out += '"';
        append_json_escaped(out, x.key);
        out += "\":";
        switch (x.kind()) {
        case field::type::string:
            out += '"';
            append_json_escaped(out, x.str());
            out += '"';
            break;
        case field::type::int64: append_int(out, x.int_value()); break;
        case field::type::uint64: append_int(out, x.uint_value()); break;
        case field::type::number: append_number(out, x.number(), true); break;
        case field::type::boolean: out += x.uint_value() ? "true" : "false"; break;
        case field::type::null: out += "null"; break;
        }
    }
}

void append_text_fields(std::string& out, fields f) {
    bool first = true;
    for (auto& x : f) {
        if (x.kind() == field::type::null)
            continue;
        if (!first)
            out += ' ';
        first = false;
        out += x.key;
        out += '=';
        switch (x.kind()) {
        case field::type::string:
            if (needs_quotes(x.str())) {
                out += '"';
                append_json_escaped(out, x.str());
                out += '"';
            } else {
                out += x.str();
            }
            break;
        case field::type::int64: append_int(out, x.int_value()); break;
        case field::type::uint64: append_int(out, x.uint_value()); break;
        case field::type::number: append_number(out, x.number(), false); break;
        case field::type::boolean: out += x.uint_value() ? "true" : "false"; break;
        case field::type::null: break;
        }
    }
}

bool events_enabled() noexcept { return events_on.load(std::memory_order_relaxed); }

void event(std::string_view name, fields f) {
    if (!events_enabled())
        return;
    std::string payload;
    payload.reserve(256);
    if (json_format.load(std::memory_order_relaxed)) {
        payload += "\"msg\":\"";
        append_json_escaped(payload, name);
        payload += '"';
        if (f.size()) {
            payload += ',';
            append_json_fields(payload, f);
        }
    } else {
        payload += name;
        if (f.size()) {
            payload += ' ';
            append_text_fields(payload, f);
        }
    }
    auto* logger = event_logger.load(std::memory_order_acquire);
    if (!logger) {
        std::string line = payload + "\n";
        std::fwrite(line.data(), 1, line.size(), stderr);
        return;
    }
    logger->log(spdlog::source_loc{}, spdlog::level::info,
                spdlog::string_view_t(payload.data(), payload.size()));
}

bool init(std::string_view level, std::string_view format) {
    auto lvl = spdlog::level::from_str(std::string(level));
    if (lvl == spdlog::level::off && level != "off")
        return false;
    if (format != "json" && format != "text")
        return false;
    const bool json = format == "json";
    // The first call installs the loggers; later ones (SIGHUP) reconfigure them in place: the
    // default logger must not be replaced while other threads log through it.
    static std::mutex mu;
    static std::shared_ptr<spdlog::sinks::stderr_sink_mt> sink;
    static std::shared_ptr<spdlog::logger> logger, events;
    std::lock_guard lock(mu);
    if (!sink) {
        sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
        logger = std::make_shared<spdlog::logger>("edgegate", sink);
        events = std::make_shared<spdlog::logger>(std::string(event_logger_name), sink);
        logger->flush_on(spdlog::level::trace);
        events->flush_on(spdlog::level::trace);
        spdlog::set_default_logger(logger);
        event_logger.store(events.get(), std::memory_order_release);
    }
    sink->set_formatter(std::make_unique<line_formatter>(json)); // under the sink's mutex
    json_format.store(json, std::memory_order_relaxed);
    logger->set_level(lvl);
    events->set_level(lvl);
    events_on.store(lvl <= spdlog::level::info, std::memory_order_relaxed);
    return true;
}

} // namespace edge::log
