#pragma once
// Just enough of the WebSocket framing (RFC 6455 §5.2) for a tunnel to end politely: where the
// frames of a relayed byte stream begin and end (so a frame of edgegate's own never lands in the
// middle of one of theirs), and the close frame 1001 "going away" a restarting proxy sends.
#include <cstdint>
#include <string>
#include <string_view>

namespace edge::proxy {

// Follows the frame boundaries of one direction of a tunnel. Only headers are looked at:
// payload bytes are skipped by count.
class ws_frame_tracker {
  public:
    void feed(std::string_view bytes);
    // True between two frames (nothing of a frame pending).
    bool at_boundary() const { return remaining_ == 0 && have_ == 0; }

  private:
    std::uint64_t remaining_ = 0; // payload bytes of the current frame not seen yet
    unsigned char header_[14];
    unsigned have_ = 0; // header bytes of the next frame seen so far
};

// A close frame with status 1001 and a short reason, as the server sends it (unmasked) or as a
// client sends it (masked with a fresh key).
std::string ws_going_away_frame(bool from_client);

} // namespace edge::proxy
