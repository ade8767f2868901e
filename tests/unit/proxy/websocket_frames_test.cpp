#include "proxy/websocket_frames.hpp"

#include <catch2/catch.hpp>

#include <string>

using edge::proxy::ws_frame_tracker;
using edge::proxy::ws_going_away_frame;

namespace {
std::string frame(std::size_t payload, bool masked) {
    std::string f;
    f.push_back(static_cast<char>(0x82));
    const char mask_bit = masked ? static_cast<char>(0x80) : 0;
    if (payload < 126) {
        f.push_back(static_cast<char>(mask_bit | static_cast<char>(payload)));
    } else if (payload < 65536) {
        f.push_back(static_cast<char>(mask_bit | 126));
        f.push_back(static_cast<char>(payload >> 8));
        f.push_back(static_cast<char>(payload & 0xFF));
    } else {
        f.push_back(static_cast<char>(mask_bit | 127));
        for (int i = 7; i >= 0; --i)
            f.push_back(static_cast<char>((payload >> (8 * i)) & 0xFF));
    }
    if (masked)
        f.append("\x01\x02\x03\x04", 4);
    f.append(payload, 'x');
    return f;
}
} // namespace

TEST_CASE("ws_frame_tracker: boundaries of frames of every length form, fed in any pieces") {
    const std::string stream = frame(0, false) + frame(5, true) + frame(300, false) +
                               frame(70000, true) + frame(125, false);
    const std::size_t ends[] = {2, 2 + 11, 2 + 11 + 304, 2 + 11 + 304 + 70014, stream.size()};
    for (std::size_t piece : {std::size_t{1}, std::size_t{3}, std::size_t{4096}}) {
        ws_frame_tracker t;
        std::size_t fed = 0;
        while (fed < stream.size()) {
            const std::size_t n = std::min(piece, stream.size() - fed);
            t.feed(std::string_view(stream).substr(fed, n));
            fed += n;
            const bool is_end = std::find(std::begin(ends), std::end(ends), fed) != std::end(ends);
            if (piece == 1)
                CHECK(t.at_boundary() == is_end);
            else if (is_end)
                CHECK(t.at_boundary());
        }
        CHECK(t.at_boundary());
    }
    ws_frame_tracker t;
    t.feed(stream.substr(0, 2 + 11 + 150)); // inside the 300-byte frame
    CHECK_FALSE(t.at_boundary());
}

TEST_CASE("ws_going_away_frame: a close frame with 1001, masked only from the client side") {
    const auto server = ws_going_away_frame(false);
    REQUIRE(server.size() >= 4);
    CHECK(static_cast<unsigned char>(server[0]) == 0x88);
    CHECK((static_cast<unsigned char>(server[1]) & 0x80) == 0);
    CHECK(static_cast<unsigned char>(server[2]) == 0x03);
    CHECK(static_cast<unsigned char>(server[3]) == 0xE9);
    CHECK(server.substr(4) == "edgegate is restarting");

    const auto client = ws_going_away_frame(true);
    REQUIRE(client.size() == server.size() + 4);
    CHECK((static_cast<unsigned char>(client[1]) & 0x80) == 0x80);
    std::string unmasked;
    for (std::size_t i = 6; i < client.size(); ++i)
        unmasked.push_back(static_cast<char>(client[i] ^ client[2 + (i - 6) % 4]));
    CHECK(unmasked == server.substr(2));
    ws_frame_tracker t;
    t.feed(client);
    CHECK(t.at_boundary());
}
