"""SIGTERM with work in flight: a streaming response finishes, an open WebSocket gets a close
frame 1001 ("going away") shortly before SHUTDOWN_TIMEOUT_SEC, new connections are refused at
once, and edgegate exits 0."""
import os
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
from client import curl_path  # noqa: E402
from stack import StackTestCase, wait_until, start_ws_app  # noqa: E402
from wsclient import Closed, WsClient  # noqa: E402

try:
    import h2client  # noqa: E402
except ImportError:  # pragma: no cover - the suite runs on Debian's python3
    h2client = None



def refuses(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


class DrainTest(StackTestCase):
    edgegate_env = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ws_app = start_ws_app()
        cls.addClassCleanup(cls.ws_app.stop)

    def test_sigterm_finishes_streams_and_closes_websockets_politely(self):
        eg = self.stack.start_edgegate({"SHUTDOWN_TIMEOUT_SEC": 8,
                                        "UPSTREAM_RESPONSE_TIMEOUT_SEC": 30})
        self.stack.runner_reset()
        stream = subprocess.Popen(
            [curl_path(), "-sS", "-N", "--max-time", "30", "-H",
             f"Host: {self.stack.preview_host('public')}",
             f"http://127.0.0.1:{eg.port}/chunked?n=6&ms=1000"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(stream.kill)
        ws = WsClient.connect("127.0.0.1", eg.port,
                              host=self.stack.preview_host("public", self.ws_app.port),
                              path="/echo")
        self.addCleanup(ws.sock.close)
        ws.send_text("before")
        self.assertEqual(ws.recv_text(), "before")
        wait_until(lambda: any("/chunked" in (e.get("target") or "")
                               for e in self.stack.runner_requests()), 10,
                   "the streaming request to reach the runner")

        start = time.monotonic()
        eg.popen.send_signal(signal.SIGTERM)
        wait_until(lambda: refuses(eg.port), 3, "new connections to be refused")
        ws.send_text("during the drain")  # the tunnel still works
        self.assertEqual(ws.recv_text(), "during the drain")

        ws.sock.settimeout(20)
        with self.assertRaises(Closed) as closed:
            while True:
                ws.recv()
        waited = time.monotonic() - start
        self.assertEqual(closed.exception.code, 1001, closed.exception)
        self.assertIn("restarting", closed.exception.reason)
        # 4 s before the 8 s deadline (half the timeout when under 10 s), not at once.
        self.assertGreater(waited, 3.0)

        out, err = stream.communicate(timeout=30)
        self.assertEqual(stream.returncode, 0, err)
        self.assertEqual(out.decode().splitlines(), [f"chunk {i}" for i in range(6)])
        self.assertEqual(eg.popen.wait(20), 0)
        self.assertIn("signal 15: draining", eg.output())


    @unittest.skipIf(h2client is None, "needs python3-h2 (run with /usr/bin/python3)")
    def test_sigterm_closes_websockets_over_http2_politely(self):
        eg = self.stack.start_edgegate({"SHUTDOWN_TIMEOUT_SEC": 8})
        c = h2client.H2Client(eg.port)
        self.addCleanup(c.close)
        s = c.request("CONNECT", self.stack.preview_host("public", self.ws_app.port), "/echo",
                      end_stream=False, extra_pseudo=[(":protocol", "websocket")])
        c.wait(lambda: s.headers is not None or s.reset is not None)
        self.assertEqual(s.status, 200, (s.headers, s.data))
        c.send(s.id, h2client.ws_frame(b"before"))
        c.wait(lambda: (1, b"before") in h2client.ws_parse(s.data))

        start = time.monotonic()
        eg.popen.send_signal(signal.SIGTERM)
        # The shutdown notice first (GOAWAY NO_ERROR): no new streams, this one goes on.
        c.wait(lambda: c.goaway is not None)
        self.assertEqual(c.goaway[1], 0)
        c.send(s.id, h2client.ws_frame(b"during the drain"))
        c.wait(lambda: (1, b"during the drain") in h2client.ws_parse(s.data))
        # Then, before the deadline, a close frame 1001 on the stream, and the stream ends.
        c.sock.settimeout(20)
        c.wait(lambda: any(op == 8 for op, _ in h2client.ws_parse(s.data)))
        waited = time.monotonic() - start
        close = next(p for op, p in h2client.ws_parse(s.data) if op == 8)
        self.assertEqual(int.from_bytes(close[:2], "big"), 1001, close)
        self.assertIn(b"restarting", close[2:])
        self.assertGreater(waited, 3.0)  # 4 s before the 8 s deadline, not at once
        self.assertLess(waited, 8.0)
        # The stream ends with the tunnel (edgegate does not wait for the close reply while
        # it drains); the process then exits cleanly.
        c.wait(lambda: s.ended or s.reset is not None)
        self.assertEqual(eg.popen.wait(20), 0)


if __name__ == "__main__":
    unittest.main()
