"""Trailer fields (RFC 9110 §6.5) through edgegate, both ways: a runner's chunked response
trailers to HTTP/1.1 clients (in the last chunk) and HTTP/2 clients (a final HEADERS frame, as
gRPC's grpc-status needs); a client's request trailers (HTTP/1.1 chunked or HTTP/2 HEADERS after
DATA) to the app as chunked trailers. Fields that must not be trailers (framing, routing,
authentication, Daytona's own) are dropped on the way."""
import json
import os
import socket
import subprocess
import sys
import unittest
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
from stack import StackTestCase  # noqa: E402

try:
    import h2client  # noqa: E402
except ImportError:  # pragma: no cover - the suite runs on Debian's python3
    h2client = None

# What the app sends as trailers: two that pass, and ones that must not be trailers.
SENT = [("grpc-status", "0"), ("X-Checksum", "sha256=abc"), ("Content-Length", "5"),
        ("Set-Cookie", "a=b"), ("Host", "evil.example"), ("X-Daytona-Authorization", "x"),
        ("Transfer-Encoding", "gzip")]
PASSED = [("grpc-status", "0"), ("X-Checksum", "sha256=abc")]


class ChunkedReader:
    """A raw HTTP/1.1 client connection: exact bytes out, responses with their trailers in."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def _exact(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _fields(self):
        fields = []
        while line := self._line():
            name, _, value = line.partition(":")
            fields.append((name, value.strip()))
        return fields

    def response(self):
        """(status, headers, body, trailers)"""
        status = int(self._line().split(" ")[1])
        headers = self._fields()
        h = {k.lower(): v for k, v in headers}
        body, trailers = b"", []
        if "chunked" in h.get("transfer-encoding", ""):
            while (size := int(self._line().split(";")[0], 16)) > 0:
                body += self._exact(size)
                if self._exact(2) != b"\r\n":
                    raise ValueError("chunk data not followed by CRLF")
            trailers = self._fields()
        else:
            body = self._exact(int(h.get("content-length", "0")))
        return status, headers, body, trailers


@unittest.skipIf(h2client is None, "needs python3-h2 (run with /usr/bin/python3)")
class TrailersTest(StackTestCase):

    def trailers_path(self, fields=SENT):
        return "/trailers?" + urllib.parse.urlencode(fields)

    def raw(self):
        c = ChunkedReader(self.eg.port)
        self.addCleanup(c.close)
        return c

    def test_http11_response_trailers_pass_in_the_last_chunk(self):
        c = self.raw()
        host = self.stack.preview_host("public")
        request = (f"GET {self.trailers_path()} HTTP/1.1\r\nHost: {host}\r\n"
                   f"TE: trailers\r\n\r\n").encode()
        c.sock.sendall(request)
        status, headers, body, trailers = c.response()
        self.assertEqual((status, body), (200, b"hello\n"))
        self.assertEqual(trailers, PASSED)
        # The announcement passes too; the connection goes on with the next request.
        self.assertIn("grpc-status", dict((k.lower(), v) for k, v in headers)["trailer"])
        c.sock.sendall(f"GET /echo HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        status, _, body, _ = c.response()
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["method"], "GET")

    def test_curl_shows_response_trailers(self):
        r = self.preview(self.trailers_path(), "--raw")
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"grpc-status: 0\r\nX-Checksum: sha256=abc\r\n\r\n", r.body, r)
        self.assertNotIn(b"evil.example", r.body, r)

    def test_http11_request_trailers_reach_the_app(self):
        c = self.raw()
        host = self.stack.preview_host("public")
        c.sock.sendall((f"POST /echo HTTP/1.1\r\nHost: {host}\r\nTE: trailers\r\n"
                        f"Trailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n"
                        f"5\r\nhello\r\n0\r\nX-Checksum: sha256=abc\r\nHost: evil.example\r\n"
                        f"Content-Length: 3\r\nX-Daytona-Authorization: Bearer x\r\n\r\n"
                        ).encode())
        status, _, body, _ = c.response()
        self.assertEqual(status, 200, body)
        echo = json.loads(body)
        self.assertEqual(echo["bodyLength"], 5)
        self.assertEqual(echo["trailers"], [["X-Checksum", "sha256=abc"]])
        sent = {k.lower(): v for k, v in echo["headers"]}
        self.assertEqual(sent.get("te"), "trailers")
        self.assertEqual(sent.get("trailer"), "X-Checksum")

    def test_malformed_request_trailer_is_refused(self):
        c = self.raw()
        host = self.stack.preview_host("public")
        c.sock.sendall((f"POST /echo HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
                        f"\r\n5\r\nhello\r\n0\r\nno colon here\r\n\r\n").encode())
        status, _, body, _ = c.response()
        self.assertEqual(status, 400, body)
        self.assertIn("malformed chunked request body", json.loads(body)["message"])

    def h2(self):
        c = h2client.H2Client(self.eg.port)
        self.addCleanup(c.close)
        return c

    def test_http2_response_trailers_end_the_stream(self):
        c = self.h2()
        host = self.stack.preview_host("public")
        s = c.response(c.request("GET", host, self.trailers_path(), [("te", "trailers")]))
        self.assertEqual((s.status, bytes(s.data)), (200, b"hello\n"))
        self.assertEqual(s.trailers, [(k.lower(), v) for k, v in PASSED])
        self.assertTrue(s.ended)

    def test_nghttp_shows_grpc_status_trailer(self):
        host = self.stack.preview_host("public")
        out = subprocess.run(["nghttp", "-v", f"http://127.0.0.1:{self.eg.port}"
                              f"{self.trailers_path()}", "-H", f":authority: {host}",
                              "-H", "te: trailers"],
                             capture_output=True, text=True, timeout=20).stdout
        # The response's HEADERS, its DATA, then a second HEADERS that ends the stream.
        before, after = out.rsplit("recv DATA frame", 1)
        self.assertIn("hello", before, out)
        self.assertRegex(after, r"recv \(stream_id=\d+\) grpc-status: 0\n.*"
                                r"recv \(stream_id=\d+\) x-checksum: sha256=abc\n.*"
                                r"recv HEADERS frame <[^>]*>\n *; END_STREAM", out)
        self.assertNotIn("evil.example", after)

    def test_http2_request_trailers_reach_the_app(self):
        c = self.h2()
        host = self.stack.preview_host("public")
        s = c.request("POST", host, "/echo", [("te", "trailers")], body=b"hello",
                      end_stream=False)
        c.send_trailers(s.id, [("x-checksum", "sha256=abc"), ("x-daytona-authorization", "x"),
                               ("host", "evil.example")])
        s = c.response(s)
        self.assertEqual(s.status, 200, bytes(s.data))
        echo = json.loads(bytes(s.data))
        self.assertEqual(echo["bodyLength"], 5)
        self.assertEqual(echo["trailers"], [["x-checksum", "sha256=abc"]])
        self.assertEqual({k.lower(): v for k, v in echo["headers"]}.get("te"), "trailers")

    def test_http2_request_with_length_and_announced_trailers_goes_chunked(self):
        c = self.h2()
        host = self.stack.preview_host("public")
        s = c.request("POST", host, "/echo", [("content-length", "5"),
                                              ("trailer", "x-checksum")],
                      body=b"hello", end_stream=False)
        c.send_trailers(s.id, [("x-checksum", "sha256=abc")])
        echo = json.loads(bytes(c.response(s).data))
        self.assertEqual((echo["bodyLength"], echo["trailers"]),
                         (5, [["x-checksum", "sha256=abc"]]))
        sent = {k.lower(): v for k, v in echo["headers"]}
        self.assertEqual(sent.get("transfer-encoding"), "chunked")
        self.assertNotIn("content-length", sent)


if __name__ == "__main__":
    unittest.main()
