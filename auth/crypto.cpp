#include "auth/crypto.hpp"

#include "common/base64.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstring>
#include <stdexcept>

namespace edge::auth {
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

std::string base64url(std::string_view bytes) {
    return base64::encode(bytes, base64::alphabet::url, false);
}
std::string base64url_padded(std::string_view bytes) {
    return base64::encode(bytes, base64::alphabet::url, true);
}
std::optional<std::string> base64url_decode(std::string_view text) {
    return base64::decode(text, base64::alphabet::url, base64::rules::strict);
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
