"""HTTP/1.1 plumbing shared by the dev control plane, the runner stand-in and the echo app.

Python's http.server gives keep-alive and Expect: 100-continue but neither decodes chunked
request bodies nor keeps the raw request target (it folds a leading '//'). This module adds
both, streams every body in 64 KiB pieces, and runs a server until SIGTERM/SIGINT.
"""
import datetime
import http.server
import itertools
import json
import os
import signal
import socket
import socketserver
import sys
import threading

CHUNK = 64 * 1024

# Hop-by-hop headers (RFC 9110 7.6.1) plus Proxy-Connection, which old clients still send.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in ("Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
              "Proxy-Authorization", "TE", "Trailer", "Transfer-Encoding", "Upgrade")
)


def now_rfc3339():
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hop_by_hop(headers):
    """The lower-cased names a proxy must not forward: the fixed set plus what Connection lists."""
    names = set(HOP_BY_HOP)
    for value in headers.get_all("Connection") or []:
        names.update(t.strip().lower() for t in value.split(",") if t.strip())
    return names


def is_chunked(headers):
    te = ",".join(headers.get_all("Transfer-Encoding") or [])
    return "chunked" in te.lower()


def read_exactly(rfile, n, size, short):
    """Yields the next `n` bytes of `rfile` in pieces of at most `size`."""
    while n > 0:
        data = rfile.read1(min(n, size))
        if not data:
            raise ConnectionError(short)
        n -= len(data)
        yield data


def read_chunked(rfile, size, trailers):
    """Yields a chunked body's data from `rfile`; its trailer fields go to `trailers`."""
    while True:
        line = rfile.readline(1024)
        if not line.endswith(b"\n"):
            raise ConnectionError("body ended inside a chunk header")
        n = int(line.split(b";", 1)[0].strip(), 16)
        if n == 0:
            while (line := rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                trailers.append([name, value.strip()])
            return
        yield from read_exactly(rfile, n, size, "body ended inside a chunk")
        if rfile.readline(3) not in (b"\r\n", b"\n"):
            raise ConnectionError("chunk not followed by CRLF")


def trailer_lines(fields):
    """The last chunk and a trailer section with `fields` ([(name, value)])."""
    return b"0\r\n" + b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in fields) + b"\r\n"


class Handler(http.server.BaseHTTPRequestHandler):
    """A keep-alive handler that accepts any method (dispatch()) and knows its connection."""

    protocol_version = "HTTP/1.1"
    quiet = False
    _conn_ids = itertools.count(1)

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes; without this Nagle + delayed ACK add 40 ms
        # to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn_id = next(Handler._conn_ids)

    def __getattr__(self, name):
        if name.startswith("do_"):
            return self.dispatch
        raise AttributeError(name)

    def dispatch(self):
        raise NotImplementedError

    @property
    def target(self):
        """The request target exactly as received (http.server rewrites a leading '//')."""
        parts = self.requestline.split(" ")
        return parts[1] if len(parts) >= 2 else self.path

    @property
    def path_only(self):
        return self.target.split("?", 1)[0]

    @property
    def query(self):
        t = self.target
        return t.split("?", 1)[1] if "?" in t else ""

    def header_pairs(self):
        return [[k, v] for k, v in self.headers.items()]

    def log_message(self, fmt, *args):
        if not self.quiet:
            sys.stderr.write("%s [%d] %s\n" % (type(self).__name__, self.conn_id, fmt % args))

    # --- request bodies --------------------------------------------------------------------
    request_trailers = ()  # [[name, value]] of a chunked request body's trailer section

    def iter_body(self, size=CHUNK):
        """Yields the request body (Content-Length or chunked) in pieces of at most `size`; a
        chunked body's trailer fields are in self.request_trailers afterwards."""
        rfile = self.rfile
        self.request_trailers = []
        if is_chunked(self.headers):
            yield from read_chunked(rfile, size, self.request_trailers)
        else:
            n = int(self.headers.get("Content-Length") or 0)
            yield from read_exactly(rfile, n, size, "request body shorter than Content-Length")

    def drain_body(self):
        total = 0
        for data in self.iter_body():
            total += len(data)
        return total

    # --- responses -------------------------------------------------------------------------
    def send_bytes(self, status, body, content_type="application/octet-stream", headers=()):
        """A complete response. body=None sends no Content-Length (204, 304)."""
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, obj, headers=()):
        body = json.dumps(obj).encode()
        self.send_bytes(status, body, "application/json; charset=utf-8", headers)

    def begin_chunked(self, status, headers=(), content_type=None):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_chunk(self, data):
        if data and self.command != "HEAD":
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunked(self, trailers=()):
        if self.command != "HEAD":
            self.wfile.write(trailer_lines(trailers))

    def drop_connection(self):
        """Closes the TCP connection without an answer."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def server_bind(self):
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall on a box
        # without DNS; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the peer went away mid-exchange: normal for a proxy's upstream
        super().handle_error(request, client_address)


def serve(server, on_stop=None):
    """Prints the `listening on` line, serves until SIGTERM or SIGINT, then stops cleanly.

    Must be called from the main thread before any other thread is started, so that every
    thread inherits the blocked signals and sigwait() below is the one place they arrive."""
    signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    thread = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    print(f"listening on {host}:{port}", flush=True)
    signal.sigwait(signals)
    if on_stop:
        on_stop()
    # Handler threads are daemons and may be parked (hang mode, slow apps); closing the
    # listener and leaving at once is the clean stop here. server.shutdown() would only add
    # serve_forever's poll interval.
    server.server_close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def add_common_args(parser):
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--quiet", action="store_true", help="no per-request log on stderr")
