"""A small synchronous WebSocket client (RFC 6455) on a plain socket, standard library only, for
tests that must hold sockets open while the test thread does other things (poll the control
plane, count TCP connections) and for the Chromium DevTools protocol.

    ws = WsClient.connect("127.0.0.1", port, host="8080-id.proxy.localhost", path="/echo",
                          headers=[("X-Daytona-Preview-Token", t)])
    ws.send_text("hi"); assert ws.recv_text() == "hi"
    ws.close()            # close frame, waits for the peer's, then closes the socket
"""
import base64
import collections
import hashlib
import os
import select
import socket
import struct

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload, opcode=1):
    """One masked client frame (FIN set): for tunnels that are not a socket (an HTTP/2 stream)."""
    if isinstance(payload, str):
        payload = payload.encode()
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def pong_pings(frames, send):
    """Sends a pong for each ping among `frames` [(opcode, payload)] with send(bytes)."""
    for op, data in frames:
        if op == 9:
            send(frame(data, 10))


def parse_frames(data):
    """The (opcode, payload) of the complete unmasked frames at the start of `data`."""
    out, i = [], 0
    while i + 2 <= len(data):
        n, at = data[i + 1] & 0x7F, i + 2
        if n == 126:
            if i + 4 > len(data):
                break
            n, at = struct.unpack("!H", data[i + 2:i + 4])[0], i + 4
        elif n == 127:
            if i + 10 > len(data):
                break
            n, at = struct.unpack("!Q", data[i + 2:i + 10])[0], i + 10
        if at + n > len(data):
            break
        out.append((data[i] & 0x0F, bytes(data[at:at + n])))
        i = at + n
    return out


class HandshakeError(Exception):
    def __init__(self, status_line, head):
        super().__init__(f"WebSocket handshake refused: {status_line!r}\n{head}")
        self.status_line = status_line
        self.head = head


class Closed(Exception):
    """The peer sent a close frame (code, reason) or closed the connection (code None)."""

    def __init__(self, code=None, reason=""):
        super().__init__(f"closed: {code} {reason!r}")
        self.code = code
        self.reason = reason


class WsClient:
    def __init__(self, sock, buffered=b""):
        self.sock = sock
        self.buf = bytearray(buffered)
        self.closed = False
        self.close_code = None
        self.pending = collections.deque()
        self._parts = []
        self._first_op = None

    @classmethod
    def connect(cls, addr, port, host, path, headers=(), timeout=20):
        """HTTP/1.1 upgrade on a new TCP connection to addr:port with `Host: host`. Checks the
        101 and its Sec-WebSocket-Accept; raises HandshakeError otherwise."""
        sock = socket.create_connection((addr, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: Upgrade",
                 "Upgrade: websocket", "Sec-WebSocket-Version: 13", f"Sec-WebSocket-Key: {key}"]
        lines += [f"{k}: {v}" for k, v in headers]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                sock.close()
                raise HandshakeError("(connection closed)", data.decode("latin-1"))
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        text = head.decode("latin-1")
        status_line = text.split("\r\n", 1)[0]
        fields = {}
        for line in text.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            fields[k.strip().lower()] = v.strip()
        expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if status_line.split(" ")[1:2] != ["101"] or fields.get("sec-websocket-accept") != expected:
            sock.close()
            raise HandshakeError(status_line, text)
        client = cls(sock, rest)
        client.response_head = text
        return client

    # frames
    def send(self, payload, opcode=1):
        """One masked frame (FIN set) carrying `payload` (bytes or str)."""
        self.sock.sendall(frame(payload, opcode))

    def send_text(self, text):
        self.send(text, 1)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed(None, "connection closed")
            self.buf += chunk

    def _frame(self):
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n, at = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, at = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
        if b1 & 0x80:  # a masked server frame: not allowed, but decode it anyway
            self._need(at + 4)
            mask, at = bytes(self.buf[at:at + 4]), at + 4
        else:
            mask = None
        self._need(at + n)
        data = bytes(self.buf[at:at + n])
        del self.buf[:at + n]
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return bool(b0 & 0x80), b0 & 0x0F, data

    def _complete_frame_buffered(self):
        if len(self.buf) < 2:
            return False
        n, at = self.buf[1] & 0x7F, 2
        if n == 126:
            if len(self.buf) < 4:
                return False
            n, at = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            if len(self.buf) < 10:
                return False
            n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
        return len(self.buf) >= at + (4 if self.buf[1] & 0x80 else 0) + n

    def _handle(self, fin, op, data):
        """A message (opcode, bytes) once complete, else None; answers pings; raises Closed."""
        if op == 9:            # ping: a pong, as a browser does
            self.send(data, 10)
            return None
        if op == 10:           # pong
            return None
        if op == 8:
            code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
            self.close_code = code
            if not self.closed:
                self.closed = True
                self.send(data[:2], 8)
            raise Closed(code, data[2:].decode("utf-8", "replace"))
        if op != 0:
            self._first_op = op
        self._parts.append(data)
        if not fin:
            return None
        msg = (self._first_op, b"".join(self._parts))
        self._parts = []
        return msg

    def pump(self):
        """Handles what has arrived without blocking: answers pings (the server's keepalive)
        and queues messages for recv(). Call it while holding an idle socket open."""
        while select.select([self.sock], [], [], 0)[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        while self._complete_frame_buffered():
            msg = self._handle(*self._frame())
            if msg is not None:
                self.pending.append(msg)

    def recv(self):
        """The next message as (opcode, bytes); answers pings; raises Closed on a close."""
        if self.pending:
            return self.pending.popleft()
        while True:
            msg = self._handle(*self._frame())
            if msg is not None:
                return msg

    def recv_text(self):
        op, data = self.recv()
        if op != 1:
            raise ValueError(f"expected a text message, got opcode {op}")
        return data.decode()

    def close(self, code=1000, timeout=10):
        """Sends a close frame, reads until the peer's close (or EOF), closes the socket.
        Returns the peer's close code (None when it just closed the connection)."""
        try:
            if not self.closed:
                self.closed = True
                self.send(struct.pack("!H", code), 8)
                self.sock.settimeout(timeout)
                while True:
                    self.recv()
        except Closed as c:
            return c.code
        except OSError:
            return None
        finally:
            self.sock.close()
