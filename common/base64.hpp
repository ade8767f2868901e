#pragma once
// Base64 (RFC 4648) encoding and decoding, standard (§4, '+' '/') and URL-safe (§5, '-' '_')
// alphabets. One decoder with two rule sets, for the two kinds of input we read:
//  - strict: tokens we produced or a peer computed (cookies' MACs, the OIDC state): '='
//    padding is optional but only at the end, any other character is refused, and so is a
//    final lone character (6 bits cannot encode a byte);
//  - lenient: what an operator pasted into the environment (`base64 -w0 < key`, or the
//    wrapped output of plain `base64`): '=', CR, LF and space are skipped wherever they are,
//    a final lone character is dropped.
// Both refuse any character outside the alphabet. Pure functions; thread-safe.
#include <optional>
#include <string>
#include <string_view>

namespace edge::base64 {

enum class alphabet { standard, url };
enum class rules { strict, lenient };

std::string encode(std::string_view bytes, alphabet a, bool pad);
std::optional<std::string> decode(std::string_view text, alphabet a, rules r);

} // namespace edge::base64
