"""TLS at the edge: curl, openssl s_client and a WebSocket client over HTTPS with a test CA;
protocol versions, ALPN, resumption, large bodies, certificate reload on SIGHUP."""
import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
import certs  # noqa: E402
import payload  # noqa: E402
from client import curl  # noqa: E402
from stack import StackTestCase, wait_until, start_ws_app  # noqa: E402

try:
    import websockets.client  # noqa: E402
except ImportError:  # pragma: no cover - the suite runs on Debian's python3
    websockets = None


class TlsTest(StackTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="edgegate-tls-")
        cls.ca = certs.make_ca(cls.dir)
        first = certs.make_server_cert(cls.dir, "first", ["*.proxy.localhost", "proxy.localhost"],
                                       cn="first.proxy.localhost")
        cls.second = certs.make_server_cert(cls.dir, "second",
                                            ["*.proxy.localhost", "proxy.localhost"],
                                            key_type="rsa", cn="second.proxy.localhost")
        cls.cert, cls.key = os.path.join(cls.dir, "live.pem"), os.path.join(cls.dir, "live.key")
        shutil.copy(first[0], cls.cert)
        shutil.copy(first[1], cls.key)
        cls.edgegate_env = {"ENABLE_TLS": "true", "TLS_CERT_FILE": cls.cert,
                            "TLS_KEY_FILE": cls.key, "PROXY_PROTOCOL": "https",
                            "UPSTREAM_RESPONSE_TIMEOUT_SEC": 60}
        super().setUpClass()
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)

    def host(self):
        return self.stack.preview_host("public")

    def https(self, path="/echo", *args, **kw):
        host = self.host()
        return curl(f"https://{host}:{self.eg.port}{path}", "--cacert", self.ca,
                    "--resolve", f"{host}:{self.eg.port}:127.0.0.1", *args, **kw)

    def s_client(self, *args, input_data=b"Q\n"):
        proc = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{self.eg.port}", "-servername",
             self.host(), "-CAfile", self.ca, *args],
            input=input_data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        return proc.returncode, proc.stdout.decode("latin-1")

    def served_subject(self):
        ctx = ssl.create_default_context(cafile=self.ca)
        with socket.create_connection(("127.0.0.1", self.eg.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=self.host()) as tls:
                return dict(x[0] for x in tls.getpeercert()["subject"])["commonName"]

    def test_a_preview_request_over_https_reaches_the_app(self):
        resp = self.https("/echo/over-tls?a=%2F")
        self.assertEqual(resp.status, 200, resp)
        seen = resp.json()
        self.assertEqual(seen["path"], "/echo/over-tls?a=%2F")
        headers = {k.lower(): v for k, v in seen["headers"]}
        self.assertEqual(headers["x-forwarded-proto"], "https")

    def test_keep_alive_over_tls(self):
        host = self.host()
        url = f"https://{host}:{self.eg.port}/echo/"
        resp = curl(url + "1", "--cacert", self.ca, "--resolve", f"{host}:{self.eg.port}:127.0.0.1",
                    "--next", "--cacert", self.ca, "--resolve",
                    f"{host}:{self.eg.port}:127.0.0.1", url + "2")
        self.assertEqual(resp.status, 200)
        self.assertIn("Re-using existing connection", resp.stderr)

    def test_large_bodies_both_ways(self):
        size = 20 * 1024 * 1024
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "up.bin")
            digest = payload.write_file(src, size, "tls-up")
            resp = self.https("/upload", "-T", src, "-X", "POST", timeout=120)
            self.assertEqual(resp.status, 200, resp)
            self.assertEqual(resp.json(), {"bytes": size, "sha256": digest})
            out = os.path.join(tmp, "down.bin")
            resp = self.https(f"/download?size={size}&seed=tls-dl", output=out, timeout=120)
            self.assertEqual((resp.status, resp.exit_code), (200, 0), resp)
            self.assertEqual(payload.file_sha256(out), payload.sha256_hex(size, "tls-dl"))

    def test_versions_below_tls12_are_refused(self):
        code, out = self.s_client("-tls1_1")
        self.assertNotEqual(code, 0, out)
        for flag, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            with self.subTest(flag=flag):
                code, out = self.s_client(flag)
                self.assertEqual(code, 0, out)
                self.assertIn(f"New, {name}, Cipher", out)
                self.assertIn("Verify return code: 0 (ok)", out)

    def test_alpn_prefers_h2_then_http11(self):
        for offer, chosen in (("h2,http/1.1", "h2"), ("http/1.1,h2", "h2"),
                              ("http/1.1", "http/1.1"), ("h2", "h2")):
            with self.subTest(offer=offer):
                code, out = self.s_client("-alpn", offer)
                self.assertEqual(code, 0, out)
                self.assertIn(f"ALPN protocol: {chosen}\n", out)
        code, out = self.s_client("-alpn", "spdy/3")
        self.assertEqual(code, 0, out)
        self.assertIn("No ALPN negotiated", out)

    def test_sessions_resume(self):
        with tempfile.TemporaryDirectory() as tmp:
            sess = os.path.join(tmp, "session")
            code, out = self.s_client("-tls1_2", "-sess_out", sess)
            self.assertEqual(code, 0, out)
            code, out = self.s_client("-tls1_2", "-sess_in", sess)
            self.assertEqual(code, 0, out)
            self.assertIn("Reused, TLSv1.2", out)

    def test_plain_http_on_the_tls_port_is_told_to_use_https(self):
        resp = curl(f"http://127.0.0.1:{self.eg.port}/echo", "-H", f"Host: {self.host()}")
        self.assertEqual(resp.status, 400, resp)
        self.assertIn("use https://", resp.json()["message"])

    @unittest.skipIf(websockets is None, "needs python3-websockets")
    def test_websocket_over_tls(self):
        app = start_ws_app()
        self.addCleanup(app.stop)
        host = self.stack.preview_host("public", app.port)
        ctx = ssl.create_default_context(cafile=self.ca)

        async def go():
            sock = socket.create_connection(("127.0.0.1", self.eg.port))
            async with websockets.client.connect(f"wss://{host}/echo", sock=sock, ssl=ctx,
                                                 server_hostname=host,
                                                 open_timeout=10) as ws:
                await ws.send("over tls")
                self.assertEqual(await ws.recv(), "over tls")
        asyncio.run(asyncio.wait_for(go(), 30))

    def test_zz_certificate_reload_on_sighup(self):
        self.assertEqual(self.served_subject(), "first.proxy.localhost")
        # A broken certificate is refused; the current one keeps serving.
        with open(self.cert, "w") as f:
            f.write("not a certificate\n")
        mark = self.eg.mark()
        os.kill(self.eg.pid, signal.SIGHUP)
        wait_until(lambda: "certificate refused" in self.eg.output(mark), 10,
                   "edgegate to log that it refused the broken certificate")
        self.assertEqual(self.served_subject(), "first.proxy.localhost")
        # A good one replaces it for new connections.
        shutil.copy(self.second[0], self.cert)
        shutil.copy(self.second[1], self.key)
        os.kill(self.eg.pid, signal.SIGHUP)
        wait_until(lambda: self.served_subject() == "second.proxy.localhost", 10,
                   "new connections to get the reloaded certificate")
        self.assertEqual(self.https().status, 200)


if __name__ == "__main__":
    unittest.main()
