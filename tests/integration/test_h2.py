"""HTTP/2 at the edge: h2c with prior knowledge and h2 over TLS (ALPN) with real curl, nghttp and
h2load; frame-level checks (per-stream :authority, RFC 8441 WebSockets, resets) with python3-h2."""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
import certs  # noqa: E402
import payload  # noqa: E402
from client import assert_error, curl, curl_many  # noqa: E402
from stack import StackTestCase, wait_until, start_ws_app  # noqa: E402

try:
    import h2client  # noqa: E402
except ImportError:  # pragma: no cover - the suite runs on Debian's python3
    h2client = None

PRIVATE_TOKEN = "ed08887e4a77970acaaea751159391a9"
SIZE = 100 * 1024 * 1024
MAX_RSS_MIB = int(os.environ.get("EDGEGATE_TEST_MAX_RSS_MIB", "64"))


@unittest.skipIf(h2client is None, "needs python3-h2 (run with /usr/bin/python3)")
class H2cTest(StackTestCase):
    edgegate_env = {"UPSTREAM_RESPONSE_TIMEOUT_SEC": 120}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="edgegate-h2-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.ws = start_ws_app()
        cls.addClassCleanup(cls.ws.stop)

    def h2(self, path="/echo", *args, sandbox="public", **kw):
        host = self.stack.preview_host(sandbox)
        return curl(f"http://{host}:{self.eg.port}{path}", "--http2-prior-knowledge",
                    "--resolve", f"{host}:{self.eg.port}:127.0.0.1", *args, **kw)

    def client(self):
        c = h2client.H2Client(self.eg.port)
        self.addCleanup(c.close)
        return c

    def test_prior_knowledge_request_reaches_the_runner_as_http11(self):
        r = self.h2("/echo/a?b=1", "-H", "X-Test: yes")
        self.assertEqual((r.status, r.info.get("http_version")), (200, "2"), r)
        seen = r.json()
        self.assertEqual(seen["path"], "/echo/a?b=1")
        headers = {k.lower(): v for k, v in seen["headers"]}
        self.assertEqual(headers.get("x-test"), "yes")
        self.assertEqual(headers.get("x-forwarded-proto"), "http")
        self.assertEqual(headers.get("x-forwarded-host"),
                         f"{self.stack.preview_host('public')}:{self.eg.port}")

    def test_upgrade_h2c_is_not_honoured(self):
        host = self.stack.preview_host("public")
        r = curl(f"http://{host}:{self.eg.port}/echo", "--http2",
                 "--resolve", f"{host}:{self.eg.port}:127.0.0.1")
        self.assertEqual((r.status, r.info.get("http_version")), (200, "1.1"), r)
        self.assertNotIn("101", r.stderr.split("Switching")[0][-20:])

    def test_errors_and_base_host_over_h2(self):
        host = "3000-00000000-0000-4000-8000-000000000000.proxy.localhost"
        r = curl(f"http://{host}:{self.eg.port}/echo", "--http2-prior-knowledge",
                 "--resolve", f"{host}:{self.eg.port}:127.0.0.1")
        assert_error(self, r, 404, "NOT_FOUND", path="/echo")
        r = curl(f"http://127.0.0.1:{self.eg.port}/health", "--http2-prior-knowledge")
        self.assertEqual((r.status, r.info.get("http_version")), (200, "2"), r)
        self.assertEqual(r.json()["status"], "ok")
        r = self.h2("/echo", sandbox="private")
        assert_error(self, r, 401, "UNAUTHORIZED", path="/echo")

    def test_settings_announced(self):
        host = self.stack.preview_host("public")
        out = subprocess.run(["nghttp", "-nv", f"http://127.0.0.1:{self.eg.port}/echo",
                              "-H", f":authority: {host}"],
                             capture_output=True, text=True, timeout=20).stdout
        server = out.split("recv SETTINGS frame", 1)[1].split("send SETTINGS frame", 1)[0]
        self.assertIn("[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):128]", server, out)
        self.assertIn("[SETTINGS_INITIAL_WINDOW_SIZE(0x04):262144]", server, out)
        self.assertIn("[SETTINGS_MAX_HEADER_LIST_SIZE(0x06):65536]", server, out)
        self.assertIn("(0x08):1]", server, out)  # SETTINGS_ENABLE_CONNECT_PROTOCOL
        self.assertRegex(out, r"recv \(stream_id=\d+\) :status: 200")

    def test_each_stream_is_authorized_by_its_own_authority(self):
        """One connection carries a private sandbox with its token and another sandbox: the
        token for the first does not open the second (connection coalescing)."""
        c = self.client()
        private = self.stack.preview_host("private")
        public = self.stack.preview_host("public")
        other = self.stack.sandbox_id("public-2")
        token = [("x-daytona-preview-token", PRIVATE_TOKEN)]
        a = c.response(c.request("GET", private, "/echo", token))
        self.assertEqual(a.status, 200, a.data)
        self.assertNotIn("x-daytona-preview-token", a.data.decode().lower())
        b = c.response(c.request("GET", f"22222-{other}.proxy.localhost", "/echo", token))
        self.assertEqual(b.status, 401, b.data)
        self.assertEqual(json.loads(b.data)["code"], "UNAUTHORIZED")
        d = c.response(c.request("GET", public, "/echo"))
        self.assertEqual(d.status, 200, d.data)
        # and the first still works on the same connection afterwards
        e = c.response(c.request("GET", private, "/echo", token))
        self.assertEqual(e.status, 200, e.data)

    def test_many_concurrent_streams_with_h2load(self):
        host = self.stack.preview_host("public")
        out = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10",
                              "-H", f":authority: {host}",
                              f"http://127.0.0.1:{self.eg.port}/echo"],
                             capture_output=True, text=True, timeout=120).stdout
        self.assertRegex(out, r"requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, "
                              r"0 failed, 0 errored", out)
        self.assertRegex(out, r"status codes: 2000 2xx", out)

    def test_upload_and_download_100_mib_with_flat_memory(self):
        f = os.path.join(self.tmp, "up.bin")
        sha = payload.write_file(f, SIZE, "h2-upload")
        r = self.h2("/upload", "--data-binary", f"@{f}", "-H", "Content-Type: application/x",
                    timeout=180)
        self.assertEqual((r.status, r.exit_code), (200, 0), r)
        self.assertEqual(r.json(), {"bytes": SIZE, "sha256": sha})
        # and with an unknown length (chunked toward the runner)
        with open(f, "rb") as stdin:
            r = self.h2("/upload", "-T", "-", "-X", "POST", stdin=stdin, timeout=180)
        self.assertEqual(r.json(), {"bytes": SIZE, "sha256": sha}, r)
        for query in ("", "&chunked=1"):
            out = os.path.join(self.tmp, "down.bin")
            r = self.h2(f"/download?size={SIZE}&seed=h2{query}", output=out, timeout=180)
            self.assertEqual((r.status, r.exit_code), (200, 0), r)
            with open(out, "rb") as fh:
                self.assertEqual(hashlib.sha256(fh.read()).hexdigest(),
                                 payload.sha256_hex(SIZE, "h2"), query)
        with open(f"/proc/{self.eg.pid}/maps") as fh:
            if "libasan" in fh.read():
                return
        with open(f"/proc/{self.eg.pid}/status") as fh:
            hwm = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:"))
        self.assertLess(hwm / 1024, MAX_RSS_MIB, "edgegate buffered a body")

    def test_reset_mid_upload_cancels_the_runner_request(self):
        c = self.client()
        host = self.stack.preview_host("public")
        self.stack.runner_reset()
        s = c.request("POST", host, "/upload", [("x-test-id", "h2-reset")], end_stream=False)
        c.send(s.id, b"x" * 100000)
        # The runner has the request (its head and part of the body) before the reset.
        wait_until(lambda: self.stack.runner_requests_with("h2-reset"), 10,
                   "the runner to receive the upload")
        c.reset(s.id)
        # The runner's connection for it is closed: its request ends unfinished.
        wait_until(lambda: self.stack.runner_requests_with("h2-reset")[0].get("status")
                   is not None, 10, "the runner to see the upload end")
        seen = self.stack.runner_requests_with("h2-reset")[0]
        self.assertNotEqual(seen.get("status"), 200, seen)
        # the connection still serves
        ok = c.response(c.request("GET", host, "/echo"))
        self.assertEqual(ok.status, 200)

    def test_websocket_over_h2_extended_connect(self):
        c = self.client()
        c.wait(lambda: 8 in c.server_settings)
        self.assertEqual(c.server_settings[8], 1)  # SETTINGS_ENABLE_CONNECT_PROTOCOL
        host = self.stack.preview_host("public", self.ws.port)
        s = c.request("CONNECT", host, "/echo?hello=1", [("sec-websocket-version", "13"),
                                                 ("sec-websocket-protocol", "chat.v1")],
                      end_stream=False, extra_pseudo=[(":protocol", "websocket")])
        c.wait(lambda: s.headers is not None or s.reset is not None)
        self.assertEqual(s.status, 200, (s.headers, s.data))
        self.assertIsNone(s.header("sec-websocket-accept"))
        self.assertEqual(s.header("sec-websocket-protocol"), "chat.v1")
        c.wait(lambda: h2client.ws_parse(s.data))  # the app's hello: what it saw of the handshake
        hello = json.loads(h2client.ws_parse(s.data)[0][1])
        self.assertEqual(hello["subprotocol"], "chat.v1")
        c.send(s.id, h2client.ws_frame(b"hello over h2"))
        c.wait(lambda: len(h2client.ws_parse(s.data)) >= 2)
        self.assertEqual(h2client.ws_parse(s.data)[1], (1, b"hello over h2"))
        # close: a close frame both ways, then the stream ends
        c.send(s.id, h2client.ws_frame(b"\x03\xe8", opcode=8), end_stream=True)
        c.wait(lambda: s.ended or s.reset is not None)
        self.assertIn(8, [op for op, _ in h2client.ws_parse(s.data)])

    def test_websocket_over_h2_ends_when_the_app_closes(self):
        # The app closes first (close frame 4001, then its TCP connection): the stream must end
        # although the client keeps its side open, as the HTTP/1.1 tunnel closes.
        c = self.client()
        host = self.stack.preview_host("public", self.ws.port)
        s = c.request("CONNECT", host, "/close?code=4001", [("sec-websocket-version", "13")],
                      end_stream=False, extra_pseudo=[(":protocol", "websocket")])
        c.wait(lambda: s.headers is not None or s.reset is not None)
        self.assertEqual(s.status, 200, (s.headers, s.data))
        c.wait(lambda: any(op == 8 for op, _ in h2client.ws_parse(s.data)))
        close = next(p for op, p in h2client.ws_parse(s.data) if op == 8)
        self.assertEqual(int.from_bytes(close[:2], "big"), 4001)
        c.send(s.id, h2client.ws_frame(close[:2], opcode=8))  # the close reply, no END_STREAM
        c.sock.settimeout(15)
        c.wait(lambda: s.ended or s.reset is not None)
        self.assertIn(s.reset, (None, 0))  # END_STREAM, then at most RST_STREAM(NO_ERROR)
        # The connection stays usable for other streams.
        ok = c.response(c.request("GET", self.stack.preview_host("public"), "/echo"))
        self.assertEqual(ok.status, 200)

    def test_plain_connect_is_refused(self):
        c = self.client()
        c.wait(lambda: 8 in c.server_settings)
        s = c.response(c.request("CONNECT", self.stack.preview_host("public"), "/",
                                 extra_pseudo=[(":protocol", "smtp")]))
        self.assertEqual(s.status, 501, s.data)
        self.assertIn("websocket", json.loads(s.data)["message"])

    def test_sse_events_arrive_as_sent(self):
        host = self.stack.preview_host("public")
        c = self.client()
        s = c.request("GET", host, "/sse?n=5&ms=200")
        arrivals = []
        while not s.ended:
            before = len(s.data)
            c.read_once()
            if len(s.data) > before:
                arrivals.append(time.monotonic())
        events = [e for e in s.data.decode().split("\n\n") if e.strip()]
        self.assertEqual(len(events), 5, s.data)
        self.assertGreaterEqual(len(arrivals), 5, "events were batched")
        self.assertGreater(arrivals[-1] - arrivals[0], 0.6)

    def test_drain_sends_goaway_and_finishes_the_stream(self):
        eg = self.stack.start_edgegate({"SHUTDOWN_TIMEOUT_SEC": 20})
        host = self.stack.preview_host("public")
        self.stack.runner_reset()
        nghttp = subprocess.Popen(["nghttp", "-v", f"http://127.0.0.1:{eg.port}/slow?ms=1500",
                                   "-H", f":authority: {host}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(nghttp.kill)
        wait_until(lambda: any("/slow" in (e.get("target") or "")
                               for e in self.stack.runner_requests()), 10, "the slow request")
        eg.popen.send_signal(15)
        out, _ = nghttp.communicate(timeout=20)
        self.assertRegex(out, r"recv \(stream_id=\d+\) :status: 200", out)
        self.assertRegex(out, r"recv GOAWAY frame[^\n]*\n[^\n]*error_code=NO_ERROR", out)
        self.assertRegex(out, r"recv DATA frame[^\n]*\n\s*; END_STREAM", out)
        self.assertEqual(eg.popen.wait(20), 0)
        # new connections are refused
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", eg.port), timeout=2).recv(1)


@unittest.skipIf(h2client is None, "needs python3-h2 (run with /usr/bin/python3)")
class H2TlsTest(StackTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="edgegate-h2tls-")
        cls.ca = certs.make_ca(cls.dir)
        cert, key = certs.make_server_cert(cls.dir, "edge", ["*.proxy.localhost",
                                                             "proxy.localhost"])
        cls.edgegate_env = {"ENABLE_TLS": "true", "TLS_CERT_FILE": cert, "TLS_KEY_FILE": key,
                            "PROXY_PROTOCOL": "https"}
        super().setUpClass()
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)

    def https(self, *args, sandbox="public"):
        host = self.stack.preview_host(sandbox)
        return curl(f"https://{host}:{self.eg.port}/echo", "--cacert", self.ca,
                    "--resolve", f"{host}:{self.eg.port}:127.0.0.1", *args)

    def test_alpn_h2_and_http11(self):
        r = self.https("--http2")
        self.assertEqual((r.status, r.info.get("http_version")), (200, "2"), r)
        self.assertEqual({k.lower(): v for k, v in r.json()["headers"]}["x-forwarded-proto"],
                         "https")
        r = self.https("--http1.1")
        self.assertEqual((r.status, r.info.get("http_version")), (200, "1.1"), r)

    def test_one_connection_for_many_requests(self):
        host = self.stack.preview_host("public")
        urls = [f"https://{host}:{self.eg.port}/echo/{i}" for i in range(5)]
        infos, bodies, err = curl_many(urls, "--http2", "--cacert", self.ca,
                                       "--resolve", f"{host}:{self.eg.port}:127.0.0.1")
        self.assertEqual([i["http_code"] for i in infos], [200] * 5, err)
        self.assertEqual(err.count("SSL connection using"), 1, err)

    def test_h2load_over_tls(self):
        host = self.stack.preview_host("public")
        out = subprocess.run(["h2load", "-n", "500", "-c", "2", "-m", "10",
                              "--connect-to", f"127.0.0.1:{self.eg.port}",
                              f"https://{host}:{self.eg.port}/echo"],
                             capture_output=True, text=True, timeout=120).stdout
        self.assertIn("Application protocol: h2", out)
        self.assertRegex(out, r"500 succeeded, 0 failed", out)

    def test_zz_certificate_reload_under_load(self):
        """SIGHUP reloads the certificate five times while h2load keeps 8 connections busy:
        no request fails, and new connections keep working."""
        host = self.stack.preview_host("public")
        load = subprocess.Popen(["h2load", "-D", "8", "-c", "8", "-m", "4",
                                 "--connect-to", f"127.0.0.1:{self.eg.port}",
                                 f"https://{host}:{self.eg.port}/echo"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(load.kill)
        mark = self.eg.mark()
        reloads = 0
        while load.poll() is None and reloads < 5:
            os.kill(self.eg.pid, signal.SIGHUP)
            reloads += 1
            wait_until(lambda: self.eg.output(mark).count("TLS certificate reloaded") >= reloads,
                       10, "the reload to be logged")
            self.assertEqual(self.https("--http2").status, 200)
        out, _ = load.communicate(timeout=60)
        self.assertEqual(reloads, 5, "h2load ended before the reloads were done\n" + out)
        self.assertRegex(out, r"requests: \d+ total, \d+ started, (\d+) done, \1 succeeded, "
                              r"0 failed, 0 errored", out)


if __name__ == "__main__":
    unittest.main()
