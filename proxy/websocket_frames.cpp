#include "proxy/websocket_frames.hpp"

#include <openssl/rand.h>

#include <algorithm>

namespace edge::proxy {

void ws_frame_tracker::feed(std::string_view bytes) {
    while (!bytes.empty()) {
        if (remaining_ > 0) {
            const auto n =
                static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, bytes.size()));
            remaining_ -= n;
            bytes.remove_prefix(n);
            continue;
        }
        header_[have_++] = static_cast<unsigned char>(bytes.front());
        bytes.remove_prefix(1);
        if (have_ < 2)
            continue;
        const unsigned len7 = header_[1] & 0x7F;
        const unsigned need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) +
                              ((header_[1] & 0x80) ? 4 : 0);
        if (have_ < need)
            continue;
        std::uint64_t len = len7;
        if (len7 == 126)
            len = (std::uint64_t{header_[2]} << 8) | header_[3];
        else if (len7 == 127)
            for (int i = 0; i < 8; ++i)
                len = (len << 8) | header_[2 + i];
        remaining_ = len;
        have_ = 0;
    }
}

std::string ws_going_away_frame(bool from_client) {
    static constexpr std::string_view reason = "edgegate is restarting";
    std::string payload;
    payload.push_back(static_cast<char>(1001 >> 8));
    payload.push_back(static_cast<char>(1001 & 0xFF));
    payload.append(reason);
    std::string frame;
    frame.push_back(static_cast<char>(0x88)); // FIN, close
    frame.push_back(static_cast<char>((from_client ? 0x80 : 0) | payload.size()));
    if (from_client) {
        unsigned char key[4];
        RAND_bytes(key, sizeof key);
        frame.append(reinterpret_cast<const char*>(key), 4);
        for (std::size_t i = 0; i < payload.size(); ++i)
            payload[i] = static_cast<char>(payload[i] ^ key[i % 4]);
    }
    frame.append(payload);
    return frame;
}

} // namespace edge::proxy
