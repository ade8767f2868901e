"""WebSockets over HTTP/1.1 through edgegate: client (python3-websockets) -> edgegate -> runner
stand-in -> WebSocket app. Tunneled only after the runner's valid 101."""
import asyncio
import json
import os
import socket
import sys
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
from stack import StackTestCase, start_ws_app  # noqa: E402


try:
    import websockets  # noqa: E402
    import websockets.client  # noqa: E402
    import websockets.exceptions  # noqa: E402
except ImportError:  # pragma: no cover - the suite runs on Debian's python3
    websockets = None


@unittest.skipIf(websockets is None, "needs python3-websockets (run with /usr/bin/python3)")
class WebSocketTest(StackTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.app = start_ws_app()
        cls.addClassCleanup(cls.app.stop)

    def host(self, port=None):
        return self.stack.preview_host("public", port or self.app.port)

    def connect(self, path, **kw):
        """A websockets.connect over a socket to edgegate, with the preview host in the URI (the
        Host header). Use with `async with` or `await`."""
        sock = socket.create_connection(("127.0.0.1", self.eg.port))
        return websockets.client.connect(f"ws://{self.host()}{path}", sock=sock,
                                               open_timeout=10, max_size=None,
                                               compression=None, **kw)

    def run_async(self, coro):
        return asyncio.run(asyncio.wait_for(coro, 30))

    def test_messages_flow_both_ways(self):
        async def go():
            async with self.connect("/echo") as ws:
                await ws.send("hello")
                self.assertEqual(await ws.recv(), "hello")
                blob = os.urandom(300_000)
                await ws.send(blob)
                self.assertEqual(await ws.recv(), blob)
        self.run_async(go())

    def test_subprotocol_and_headers_reach_the_app(self):
        async def go():
            async with self.connect("/echo?hello=1", subprotocols=["chat.v1"],
                                          extra_headers={"X-App-Header": "kept"}) as ws:
                self.assertEqual(ws.subprotocol, "chat.v1")
                hello = json.loads(await ws.recv())
                self.assertEqual(hello["subprotocol"], "chat.v1")
                names = {k.lower(): v for k, v in hello["headers"]}
                self.assertEqual(names.get("x-app-header"), "kept")
                self.assertEqual(names.get("upgrade", "").lower(), "websocket")
        self.run_async(go())

    def test_server_messages_and_close_code_arrive(self):
        async def go():
            ws = await self.connect("/ticker?n=5&ms=10")
            got = [await ws.recv() for _ in range(5)]
            self.assertEqual(got, [f"tick {i}" for i in range(5)])
            with self.assertRaises(websockets.exceptions.ConnectionClosedOK):
                await ws.recv()
            self.assertEqual(ws.close_code, 1000)
            self.assertEqual(ws.close_reason, "done")
        self.run_async(go())

    def test_app_close_code_passes_through(self):
        async def go():
            ws = await self.connect("/close?code=4001")
            with self.assertRaises(websockets.exceptions.ConnectionClosed):
                await ws.recv()
            self.assertEqual(ws.close_code, 4001)
        self.run_async(go())

    def test_many_parallel_tunnels(self):
        async def one(i):
            async with self.connect("/echo") as ws:
                for j in range(20):
                    await ws.send(f"{i}-{j}")
                    self.assertEqual(await ws.recv(), f"{i}-{j}")

        async def go():
            await asyncio.gather(*(one(i) for i in range(50)))
        self.run_async(go())

    def raw_upgrade(self, path, port=None):
        """Sends an upgrade by hand; returns (status line, whole response) once the head is in,
        or the whole response when the server closes after it."""
        with socket.create_connection(("127.0.0.1", self.eg.port), timeout=10) as s:
            s.sendall((f"GET {path} HTTP/1.1\r\nHost: {self.host(port)}\r\n"
                       "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" not in data:
                    continue
                head, body = data.split(b"\r\n\r\n", 1)
                if b" 101 " in head.split(b"\r\n", 1)[0]:
                    break  # a tunnel: nothing ends it from here
                length = [line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= int(length[0]):
                    break  # a whole response on a connection that stays open
            text = data.decode("latin-1")
            return text.split("\r\n")[0], text

    def test_valid_accept_is_relayed(self):
        status, head = self.raw_upgrade("/echo")
        self.assertIn(" 101 ", status)
        self.assertIn("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head)

    def test_app_refusing_the_upgrade_is_a_normal_response(self):
        for path, code in (("/reject-200", 200), ("/reject-426", 426)):
            with self.subTest(path=path):
                status, head = self.raw_upgrade(path)
                self.assertIn(f" {code} ", status)

    def test_runner_101_with_a_bad_accept_is_502_and_not_tunneled(self):
        server = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(server.close)
        port = server.getsockname()[1]

        def bad_app():
            conn, _ = server.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n")
                conn.recv(1)

        t = threading.Thread(target=bad_app, daemon=True)
        t.start()
        status, head = self.raw_upgrade("/echo", port=port)
        self.assertIn(" 502 ", status)
        self.assertIn("invalid handshake", head)


if __name__ == "__main__":
    unittest.main()
