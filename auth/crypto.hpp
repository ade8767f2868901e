#pragma once
// Small cryptographic helpers over OpenSSL 3 for preview authentication: SHA-256, HMAC-SHA256,
// constant-time comparison, random bytes, base64url and hex. Pure functions; thread-safe.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace edge::auth {

using digest = std::array<std::uint8_t, 32>;

digest sha256(std::string_view data) noexcept;

// SHA-256 over several pieces, without joining them (~0.2 µs for a short input: OpenSSL's
// one-shot EVP calls cost more than the hash itself at this size).
class sha256_stream {
  public:
    sha256_stream() noexcept;
    sha256_stream& update(std::string_view data) noexcept;
    digest finish() noexcept;

  private:
    alignas(8) unsigned char state_[128]; // OpenSSL's SHA256_CTX (112 bytes), opaque here
};

digest hmac_sha256(std::string_view key, std::string_view data) noexcept;
// HMAC-SHA256 of the concatenation of `pieces`.
digest hmac_sha256(std::string_view key, std::initializer_list<std::string_view> pieces) noexcept;

// CRYPTO_memcmp: the time taken does not depend on where the inputs differ.
bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

// `n` bytes from the OpenSSL CSPRNG.
std::string random_bytes(std::size_t n);

// RFC 4648 §5 without padding (what PKCE and our cookies use).
std::string base64url(std::string_view bytes);
// Accepts input with or without '=' padding; nullopt on any other character.
std::optional<std::string> base64url_decode(std::string_view text);
// RFC 4648 §5 WITH padding: Go's base64.URLEncoding, which Daytona's OIDC state uses.
std::string base64url_padded(std::string_view bytes);

std::string hex(const digest& d);

} // namespace edge::auth
