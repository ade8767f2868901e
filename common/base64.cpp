#include "common/base64.hpp"

#include <array>
#include <cstdint>

namespace edge::base64 {
namespace {

constexpr std::string_view standard_chars =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view url_chars =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr std::uint8_t invalid = 0xFF;

// Byte -> 6-bit value, `invalid` for bytes outside the alphabet.
constexpr std::array<std::uint8_t, 256> reverse(std::string_view chars) {
    std::array<std::uint8_t, 256> t{};
    t.fill(invalid);
    for (std::size_t i = 0; i < chars.size(); ++i)
        t[static_cast<unsigned char>(chars[i])] = static_cast<std::uint8_t>(i);
    return t;
}
constexpr auto standard_values = reverse(standard_chars);
constexpr auto url_values = reverse(url_chars);

bool skipped_when_lenient(char c) {
    return c == '=' || c == '\n' || c == '\r' || c == ' ';
}

} // namespace

std::string encode(std::string_view bytes, alphabet a, bool pad) {
    const auto chars = a == alphabet::url ? url_chars : standard_chars;
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    auto at = [&](std::size_t k) { return static_cast<unsigned char>(bytes[k]); };
    std::size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        unsigned v = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
        out.push_back(chars[(v >> 18) & 63]);
        out.push_back(chars[(v >> 12) & 63]);
        out.push_back(chars[(v >> 6) & 63]);
        out.push_back(chars[v & 63]);
    }
    std::size_t left = bytes.size() - i;
    if (left == 0)
        return out;
    unsigned v = at(i) << 16;
    if (left == 2)
        v |= at(i + 1) << 8;
    out.push_back(chars[(v >> 18) & 63]);
    out.push_back(chars[(v >> 12) & 63]);
    if (left == 2)
        out.push_back(chars[(v >> 6) & 63]);
    if (pad)
        out.append(3 - left, '=');
    return out;
}

std::optional<std::string> decode(std::string_view text, alphabet a, rules r) {
    const auto& values = a == alphabet::url ? url_values : standard_values;
    if (r == rules::strict)
        while (!text.empty() && text.back() == '=')
            text.remove_suffix(1);
    std::string out;
    out.reserve(text.size() * 3 / 4);
    unsigned buf = 0;
    int bits = 0;
    for (char c : text) {
        if (r == rules::lenient && skipped_when_lenient(c))
            continue;
        auto v = values[static_cast<unsigned char>(c)];
        if (v == invalid)
            return std::nullopt;
        buf = (buf << 6) | v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((buf >> bits) & 0xFF));
        }
    }
    if (r == rules::strict && bits >= 6) // a single leftover character cannot encode a byte
        return std::nullopt;
    return out;
}

} // namespace edge::base64
