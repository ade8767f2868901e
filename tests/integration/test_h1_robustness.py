"""HTTP/1.1 connection endings: an early error answer to a client still uploading is read by
the client (lingering close, no reset), and a client that leaves a slow stream (SSE) cancels
the runner's request at once instead of at the next event."""
import os
import socket
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
from client import assert_error  # noqa: E402
from stack import StackTestCase, temp_dir, wait_until  # noqa: E402

UPLOAD = 16 * 1024 * 1024  # far more than the socket buffers hold


class LingeringCloseTest(StackTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ctx = temp_dir()
        cls.tmp = ctx.__enter__()
        cls.addClassCleanup(ctx.__exit__, None, None, None)
        cls.big = os.path.join(cls.tmp, "big.bin")
        with open(cls.big, "wb") as f:
            f.write(os.urandom(1024 * 1024) * (UPLOAD // (1024 * 1024)))

    def upload(self, host):
        # No `Expect: 100-continue`: curl sends the body at once, and is still sending when
        # the answer comes.
        return self.preview("/upload", "--data-binary", f"@{self.big}", "-H", "Expect:",
                            "-H", "Content-Type: application/octet-stream", host=host)

    def test_401_to_a_large_upload_reaches_the_client(self):
        host = self.stack.preview_host("private")
        for _ in range(3):
            r = self.upload(host)
            assert_error(self, r, 401, "UNAUTHORIZED", path="/upload", method="POST")
            self.assertEqual(r.exit_code, 0, r)
            self.assertNotIn("reset by peer", r.stderr, r)

    def test_404_to_a_large_upload_reaches_the_client(self):
        host = f"{self.stack.app_port}-{uuid.uuid4()}.proxy.localhost"
        for _ in range(3):
            r = self.upload(host)
            assert_error(self, r, 404, "NOT_FOUND", path="/upload", method="POST")
            self.assertEqual(r.exit_code, 0, r)

    def test_raw_client_reads_the_answer_after_sending_its_body(self):
        """A client that writes its whole request before reading (no early-answer check):
        edgegate keeps reading until the client is done, then the answer is there."""
        host = self.stack.preview_host("private")
        body = b"x" * (8 * 1024 * 1024)
        with socket.create_connection(("127.0.0.1", self.eg.port), timeout=20) as s:
            s.sendall(f"POST /upload HTTP/1.1\r\nHost: {host}\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 401 "), data[:200])
        self.assertIn(b'"statusCode":401', data.replace(b" ", b""))


class ClientGoneTest(StackTestCase):

    def sse(self, test_id, ms):
        s = socket.create_connection(("127.0.0.1", self.eg.port), timeout=20)
        host = self.stack.preview_host("public")
        s.sendall(f"GET /sse?n=3&ms={ms} HTTP/1.1\r\nHost: {host}\r\nX-Test-Id: {test_id}\r\n"
                  f"Accept: text/event-stream\r\n\r\n".encode())
        data = b""
        while b"data: event 0" not in data:
            chunk = s.recv(65536)
            self.assertTrue(chunk, data)
            data += chunk
        return s, data

    def test_client_leaving_a_stream_closes_the_runner_connection_at_once(self):
        test_id = str(uuid.uuid4())
        s, _ = self.sse(test_id, 10000)  # the next event would come in 10 s
        left = time.monotonic()
        s.close()
        wait_until(lambda: any(e.get("clientGone")
                               for e in self.stack.runner_requests_with(test_id)),
                   3, "the runner to see its connection closed")
        self.assertLess(time.monotonic() - left, 2.5)
        wait_until(lambda: "left during a response" in self.eg.output(), 5,
                   "edgegate to log the client's leaving")

    def test_pipelined_request_during_a_stream_is_not_taken_for_leaving(self):
        test_id = str(uuid.uuid4())
        s, data = self.sse(test_id, 1000)
        self.addCleanup(s.close)
        host = self.stack.preview_host("public")
        s.sendall(f"GET /echo HTTP/1.1\r\nHost: {host}\r\nX-Test-Id: {test_id}\r\n\r\n".encode())
        while b'"method": "GET"' not in data:
            chunk = s.recv(65536)
            self.assertTrue(chunk, data)
            data += chunk
        self.assertIn(b"data: event 2", data)
        self.assertLess(data.index(b"data: event 2"), data.index(b'"method": "GET"'))
        self.assertFalse(any(e.get("clientGone")
                             for e in self.stack.runner_requests_with(test_id)))


if __name__ == "__main__":
    unittest.main()
