"""WebSocket frames (RFC 6455 §5.2) for bench/ws_idle_client.py and bench/ws_echo_backend.py."""
import os


def encode(opcode, payload, masked, fin=0x80):
    """One frame; a client's (`masked`) gets a random mask."""
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head = bytes([fin | opcode, bit | n])
    elif n < 65536:
        head = bytes([fin | opcode, bit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([fin | opcode, bit | 127]) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    key = (mask * (n // 4 + 1))[:n]
    return head + mask + (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def take(buf):
    """(fin, opcode, payload) of the first complete frame in the bytearray `buf`, removed from
    it (unmasked); None while incomplete."""
    if len(buf) < 2:
        return None
    n, at = buf[1] & 0x7F, 2
    if n == 126:
        n, at = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        n, at = int.from_bytes(buf[2:10], "big"), 10
    mask = bytes(buf[at:at + 4]) if buf[1] & 0x80 else None
    at += 4 if mask else 0
    if len(buf) < at + n:
        return None
    fin, opcode, payload = buf[0] & 0x80, buf[0] & 0x0F, bytes(buf[at:at + n])
    del buf[:at + n]
    if mask:
        key = (mask * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return fin, opcode, payload
