"""HTTP/1.1 framing at the edge, over raw sockets: pipelining, request smuggling attempts,
re-framing between versions. What a client sees and what reaches the runner."""
import json
import os
import socket
import sys
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
from stack import StackTestCase  # noqa: E402


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)


class RawConnection:
    """A client connection that sends exact bytes and reads responses one by one."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head_request=False):
        status_line = self._line()
        status = int(status_line.split(" ")[1])
        headers = []
        while True:
            line = self._line()
            if not line:
                break
            name, value = line.split(":", 1)
            headers.append((name, value.strip()))
        resp = Response(status, headers, b"")
        if head_request or status in (204, 304) or 100 <= status < 200:
            return resp
        te = resp.header("Transfer-Encoding")
        if te and "chunked" in te.lower():
            body = b""
            while True:
                size = int(self._line().split(";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exact(size)
                self._exact(2)
            resp.body = body
        elif resp.header("Content-Length") is not None:
            resp.body = self._exact(int(resp.header("Content-Length")))
        else:
            try:
                while True:
                    self._fill()
            except EOFError:
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def closed_by_peer(self):
        """True when the server closed the connection (nothing more to read)."""
        try:
            self.sock.settimeout(5)
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


class FramingTest(StackTestCase):
    def setUp(self):
        self.test_id = uuid.uuid4().hex
        self.host = self.stack.preview_host("public")
        self.conn = RawConnection(self.eg.port)
        self.addCleanup(self.conn.close)

    def request(self, method="GET", path="/echo", headers=(), body=b"", version="1.1"):
        lines = [f"{method} {path} HTTP/{version}", f"Host: {self.host}",
                 f"X-Test-Id: {self.test_id}"]
        lines += [f"{k}: {v}" for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def runner_saw(self):
        return self.stack.runner_requests_with(self.test_id)

    def test_pipelined_requests_are_answered_in_order(self):
        self.conn.send(self.request(path="/echo/one") + self.request(path="/echo/two") +
                       self.request(method="POST", path="/echo/three",
                                    headers=[("Content-Length", "5")], body=b"hello") +
                       self.request(path="/echo/four"))
        paths = []
        for _ in range(4):
            resp = self.conn.read_response()
            self.assertEqual(resp.status, 200, resp.body)
            paths.append(resp.json()["path"])
        self.assertEqual(paths, ["/echo/one", "/echo/two", "/echo/three", "/echo/four"])

    def test_a_pipelined_request_after_a_chunked_body_is_not_lost(self):
        body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        self.conn.send(self.request(method="POST", path="/echo/a",
                                    headers=[("Transfer-Encoding", "chunked")], body=body) +
                       self.request(path="/echo/b"))
        first = self.conn.read_response()
        self.assertEqual(first.status, 200, first.body)
        self.assertEqual(first.json()["bodyLength"], 11)
        second = self.conn.read_response()
        self.assertEqual(second.json()["path"], "/echo/b")

    def test_content_length_with_transfer_encoding_is_refused_and_nothing_is_forwarded(self):
        self.conn.send(self.request(method="POST", headers=[
            ("Content-Length", "4"), ("Transfer-Encoding", "chunked")],
            body=b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"))
        resp = self.conn.read_response()
        self.assertEqual(resp.status, 400)
        self.assertIn("Content-Length and Transfer-Encoding", resp.json()["message"])
        self.assertEqual(resp.header("Connection"), "close")
        self.assertTrue(self.conn.closed_by_peer())
        self.assertEqual(self.runner_saw(), [])

    def test_malformed_heads_get_clear_errors(self):
        cases = [
            (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400, "folding"),
            (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400, "header field name"),
            (b"GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n", 400, "Host"),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "Transfer-Encoding"),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400,
             "Content-Length"),
            (b"GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505, "HTTP/1.0 and HTTP/1.1"),
        ]
        for raw, status, words in cases:
            with self.subTest(raw=raw):
                conn = RawConnection(self.eg.port)
                try:
                    conn.send(raw)
                    resp = conn.read_response()
                    self.assertEqual(resp.status, status)
                    self.assertIn(words, resp.json()["message"])
                    self.assertTrue(conn.closed_by_peer())
                finally:
                    conn.close()

    def test_a_broken_chunked_body_ends_the_exchange_with_400(self):
        self.conn.send(self.request(method="POST", headers=[("Transfer-Encoding", "chunked")],
                                    body=b"5\r\nhelloXX\r\n0\r\n\r\n"))
        resp = self.conn.read_response()
        self.assertEqual(resp.status, 400)
        self.assertIn("chunked", resp.json()["message"])
        self.assertTrue(self.conn.closed_by_peer())

    def test_http10_client_gets_a_chunked_response_unchunked_then_close(self):
        self.conn.send(self.request(path="/chunked?n=3", version="1.0"))
        resp = self.conn.read_response()
        self.assertEqual(resp.status, 200)
        self.assertIsNone(resp.header("Transfer-Encoding"))
        self.assertEqual(resp.body, b"chunk 0\nchunk 1\nchunk 2\n")
        self.assertEqual(resp.header("Connection"), "close")

    def test_http10_keep_alive_is_honoured(self):
        self.conn.send(self.request(path="/echo/1", version="1.0",
                                    headers=[("Connection", "keep-alive")]))
        resp = self.conn.read_response()
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("Connection"), "keep-alive")
        self.conn.send(self.request(path="/echo/2", version="1.0",
                                    headers=[("Connection", "keep-alive")]))
        self.assertEqual(self.conn.read_response().json()["path"], "/echo/2")

    def test_empty_lines_between_requests_are_tolerated(self):
        self.conn.send(self.request(path="/echo/1") + b"\r\n" + self.request(path="/echo/2"))
        self.assertEqual(self.conn.read_response().json()["path"], "/echo/1")
        self.assertEqual(self.conn.read_response().json()["path"], "/echo/2")


if __name__ == "__main__":
    unittest.main()
