#include "auth/crypto.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstring>
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

// The low-level SHA-256 functions are deprecated in OpenSSL 3 in favour of EVP, whose
// per-call setup costs several times the hash of a 100-byte input; they remain supported.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static_assert(sizeof(SHA256_CTX) <= 128);
sha256_stream::sha256_stream() noexcept {
    SHA256_Init(reinterpret_cast<SHA256_CTX*>(state_));
}

sha256_stream& sha256_stream::update(std::string_view data) noexcept {
    SHA256_Update(reinterpret_cast<SHA256_CTX*>(state_), data.data(), data.size());
    return *this;
}

digest sha256_stream::finish() noexcept {
    digest d{};
    SHA256_Final(d.data(), reinterpret_cast<SHA256_CTX*>(state_));
    OPENSSL_cleanse(state_, sizeof state_);
    return d;
}
#pragma GCC diagnostic pop

digest sha256(std::string_view data) noexcept { return sha256_stream().update(data).finish(); }

digest hmac_sha256(std::string_view key, std::string_view data) noexcept {
    return hmac_sha256(key, {data});
}

// RFC 2104 over sha256_stream: HMAC() would fetch the algorithm on every call.
digest hmac_sha256(std::string_view key, std::initializer_list<std::string_view> pieces) noexcept {
    constexpr std::size_t block = 64;
    unsigned char k[block] = {};
    if (key.size() > block) {
        auto kd = sha256(key);
        std::memcpy(k, kd.data(), kd.size());
    } else {
        std::memcpy(k, key.data(), key.size());
    }
    unsigned char pad[block];
    for (std::size_t i = 0; i < block; ++i)
        pad[i] = k[i] ^ 0x36;
    sha256_stream in;
    in.update({reinterpret_cast<const char*>(pad), block});
    for (auto p : pieces)
        in.update(p);
    auto inner = in.finish();
    for (std::size_t i = 0; i < block; ++i)
        pad[i] = k[i] ^ 0x5c;
    OPENSSL_cleanse(k, sizeof k);
    auto out = sha256_stream()
                   .update({reinterpret_cast<const char*>(pad), block})
                   .update({reinterpret_cast<const char*>(inner.data()), inner.size()})
                   .finish();
    OPENSSL_cleanse(pad, sizeof pad);
    return out;
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
