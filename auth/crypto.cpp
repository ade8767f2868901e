#include "auth/crypto.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace edge::auth {
namespace {
constexpr std::string_view b64url_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string encode(std::string_view bytes, bool pad) {
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    auto at = [&](std::size_t k) { return static_cast<unsigned char>(bytes[k]); };
    for (; i + 3 <= bytes.size(); i += 3) {
        unsigned v = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
        out.push_back(b64url_alphabet[(v >> 18) & 63]);
        out.push_back(b64url_alphabet[(v >> 12) & 63]);
        out.push_back(b64url_alphabet[(v >> 6) & 63]);
        out.push_back(b64url_alphabet[v & 63]);
    }
    std::size_t left = bytes.size() - i;
    if (left == 1) {
        unsigned v = at(i) << 16;
        out.push_back(b64url_alphabet[(v >> 18) & 63]);
        out.push_back(b64url_alphabet[(v >> 12) & 63]);
        if (pad)
            out.append("==");
    } else if (left == 2) {
        unsigned v = (at(i) << 16) | (at(i + 1) << 8);
        out.push_back(b64url_alphabet[(v >> 18) & 63]);
        out.push_back(b64url_alphabet[(v >> 12) & 63]);
        out.push_back(b64url_alphabet[(v >> 6) & 63]);
        if (pad)
            out.push_back('=');
    }
    return out;
}
} // namespace

digest sha256(std::string_view data) noexcept {
    digest d{};
    unsigned int n = 0;
    EVP_Digest(data.data(), data.size(), d.data(), &n, EVP_sha256(), nullptr);
    return d;
}

digest hmac_sha256(std::string_view key, std::string_view data) noexcept {
    digest d{};
    unsigned int n = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(data.data()), data.size(), d.data(), &n);
    return d;
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
    // The lengths of a MAC are public; only the contents must not leak through timing.
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string random_bytes(std::size_t n) {
    std::string out(n, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
        throw std::runtime_error("RAND_bytes failed");
    return out;
}

std::string base64url(std::string_view bytes) { return encode(bytes, false); }
std::string base64url_padded(std::string_view bytes) { return encode(bytes, true); }

std::optional<std::string> base64url_decode(std::string_view text) {
    while (!text.empty() && text.back() == '=')
        text.remove_suffix(1);
    std::string out;
    out.reserve(text.size() * 3 / 4);
    unsigned buf = 0;
    int bits = 0;
    for (char c : text) {
        auto pos = b64url_alphabet.find(c);
        if (pos == std::string_view::npos)
            return std::nullopt;
        buf = (buf << 6) | static_cast<unsigned>(pos);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((buf >> bits) & 0xFF));
        }
    }
    if (bits >= 6) // a single leftover character cannot encode a byte
        return std::nullopt;
    return out;
}

std::string hex(const digest& d) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(64);
    for (auto b : d) {
        out.push_back(digits[b >> 4]);
        out.push_back(digits[b & 15]);
    }
    return out;
}

} // namespace edge::auth
