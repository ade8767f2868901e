"""A small synchronous HTTP/2 client over python3-h2 for the tests that need frame-level
control curl does not give: several :authority values on one connection, RFC 8441 extended
CONNECT, a stream reset mid-upload, reading the server's SETTINGS."""
import socket
import ssl

import h2.config
import h2.connection
import h2.events
import h2.settings


def ws_frame(payload_bytes, opcode=1):
    """A masked client WebSocket frame (RFC 6455 §5.2), payload < 126 bytes."""
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload_bytes))
    return bytes([0x80 | opcode, 0x80 | len(payload_bytes)]) + mask + masked


def ws_parse(data):
    """The (opcode, payload) of the complete unmasked server frames in `data` (< 64 KiB)."""
    out, i = [], 0
    while i + 2 <= len(data):
        n, at = data[i + 1] & 0x7F, i + 2
        if n == 126:
            n, at = int.from_bytes(data[i + 2:i + 4], "big"), i + 4
        if at + n > len(data):
            break
        out.append((data[i] & 0x0F, bytes(data[at:at + n])))
        i = at + n
    return out


class Stream:
    def __init__(self, sid):
        self.id = sid
        self.headers = None      # [(name, value)] of the response (str)
        self.data = bytearray()
        self.ended = False
        self.reset = None        # the error code of a RST_STREAM
        self.trailers = None     # [(name, value)] of a trailer section (str)

    @property
    def status(self):
        return int(dict(self.headers)[":status"]) if self.headers else 0

    def header(self, name):
        return next((v for k, v in self.headers or [] if k == name), None)


class _Connection(h2.connection.H2Connection):
    """python3-h2 closes the whole connection on any GOAWAY; RFC 9113 §6.8 lets the streams up
    to its last stream id go on, which a graceful shutdown (NO_ERROR) relies on."""

    def _receive_goaway_frame(self, frame):
        state = self.state_machine.state
        frames, events = super()._receive_goaway_frame(frame)
        if frame.error_code == 0:
            self.state_machine.state = state
        return frames, events


class H2Client:
    def __init__(self, port, host="127.0.0.1", tls_ca=None, server_name=None, timeout=20):
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls_ca:
            ctx = ssl.create_default_context(cafile=tls_ca)
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname=server_name)
            assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        self.sock = sock
        self.conn = _Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.streams = {}
        self.server_settings = {}
        self.goaway = None      # (last_stream_id, error_code) of a GOAWAY received
        self.closed = False
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def request(self, method, authority, path, headers=(), body=None, end_stream=True,
                scheme="http", extra_pseudo=()):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", scheme), (":authority", authority),
                (":path", path), *extra_pseudo, *headers]
        self.conn.send_headers(sid, hdrs, end_stream=end_stream and body is None)
        self.streams[sid] = Stream(sid)
        if body is not None:
            self.send(sid, body, end_stream=end_stream)
        self.flush()
        return self.streams[sid]

    def send(self, sid, data, end_stream=False):
        """Sends `data` as the flow-control windows allow, reading meanwhile."""
        view = memoryview(data)
        while view:
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.read_once()
                continue
            chunk, view = view[:window], view[window:]
            self.conn.send_data(sid, bytes(chunk))
            self.flush()
        if end_stream:
            self.conn.end_stream(sid)
            self.flush()

    def send_trailers(self, sid, fields):
        """Ends the request with a trailer section (HEADERS with END_STREAM)."""
        self.conn.send_headers(sid, list(fields), end_stream=True)
        self.flush()

    def reset(self, sid):
        self.conn.reset_stream(sid)
        self.flush()

    def read_once(self):
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            raise ConnectionError("the server closed the connection")
        for ev in self.conn.receive_data(data):
            self._event(ev)
        self.flush()

    def _event(self, ev):
        s = self.streams.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.ResponseReceived):
            s.headers = ev.headers
        elif isinstance(ev, h2.events.TrailersReceived):
            s.trailers = ev.headers
        elif isinstance(ev, h2.events.DataReceived):
            s.data += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            s.ended = True
        elif isinstance(ev, h2.events.StreamReset):
            if s:
                s.reset = ev.error_code
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            for k, v in ev.changed_settings.items():
                self.server_settings[int(k)] = v.new_value
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = (ev.last_stream_id, ev.error_code)

    def wait(self, cond):
        while not cond():
            self.read_once()

    def response(self, stream):
        """Reads until `stream` ended or was reset."""
        self.wait(lambda: stream.ended or stream.reset is not None)
        return stream
