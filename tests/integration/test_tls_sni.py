"""Several certificates on PROXY_PORT, chosen by the client's SNI (TLS_SNI_CERTS): exact names
before wildcards, the default certificate for anything else, ALPN h2 on every certificate, and
all of them reloaded on SIGHUP."""
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
import certs  # noqa: E402
from client import curl  # noqa: E402
from stack import StackTestCase, wait_until  # noqa: E402


class TlsSniTest(StackTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="edgegate-sni-")
        cls.ca = certs.make_ca(cls.dir)
        default = certs.make_server_cert(cls.dir, "default", ["*.proxy.localhost"],
                                         cn="default.proxy.localhost")
        wildcard = certs.make_server_cert(cls.dir, "wildcard", ["*.preview.test"],
                                          key_type="rsa", cn="wildcard.preview.test")
        exact = certs.make_server_cert(cls.dir, "exact", ["exact.preview.test"],
                                       cn="exact.preview.test")
        cls.replacement = certs.make_server_cert(cls.dir, "replacement", ["*.preview.test"],
                                                 cn="replacement.preview.test")
        # The wildcard certificate is served from files the reload test rewrites.
        cls.live = (os.path.join(cls.dir, "live.pem"), os.path.join(cls.dir, "live.key"))
        shutil.copy(wildcard[0], cls.live[0])
        shutil.copy(wildcard[1], cls.live[1])
        cls.edgegate_env = {
            "ENABLE_TLS": "true", "TLS_CERT_FILE": default[0], "TLS_KEY_FILE": default[1],
            "TLS_SNI_CERTS": f"{cls.live[0]}:{cls.live[1]}, {exact[0]}:{exact[1]}",
            "PROXY_PROTOCOL": "https"}
        super().setUpClass()
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)

    def served(self, server_name, verify=True):
        """The common name of the certificate served for `server_name`, and the ALPN choice."""
        if verify:
            ctx = ssl.create_default_context(cafile=self.ca)
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", self.eg.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
                alpn = tls.selected_alpn_protocol()
        pem = ssl.DER_cert_to_PEM_cert(der)
        path = os.path.join(self.dir, "peer.pem")
        with open(path, "w") as f:
            f.write(pem)
        decoded = ssl._ssl._test_decode_cert(path)  # the stdlib's own PEM decoder
        return dict(x[0] for x in decoded["subject"])["commonName"], alpn

    def test_the_client_s_name_picks_the_certificate(self):
        cases = {
            "8080-abc.preview.test": "wildcard.preview.test",
            "EXACT.preview.test": "exact.preview.test",  # exact name before the wildcard
            "exact.preview.test": "exact.preview.test",
            "3000-abc.proxy.localhost": "default.proxy.localhost",
        }
        for name, subject in cases.items():
            with self.subTest(name=name):
                self.assertEqual(self.served(name), (subject, "h2"))

    def test_an_unknown_name_gets_the_default_certificate(self):
        # A wildcard covers one label only; other domains and no SNI at all get the default.
        for name in ("a.b.preview.test", "preview.test", "example.org", None):
            with self.subTest(name=name):
                subject, _ = self.served(name, verify=False)
                self.assertEqual(subject, "default.proxy.localhost")

    def test_a_preview_request_under_the_second_domain(self):
        host = self.stack.preview_host("public", domain="preview.test")
        for flag in ("--http1.1", "--http2"):
            with self.subTest(flag=flag):
                r = curl(f"https://{host}:{self.eg.port}/echo", flag, "--cacert", self.ca,
                         "--resolve", f"{host}:{self.eg.port}:127.0.0.1")
                self.assertEqual(r.status, 200, r)
                headers = {k.lower(): v for k, v in r.json()["headers"]}
                self.assertEqual(headers["x-forwarded-host"], f"{host}:{self.eg.port}")

    def test_zz_reload_replaces_sni_certificates(self):
        self.assertEqual(self.served("x.preview.test")[0], "wildcard.preview.test")
        # One broken SNI file refuses the whole reload: every certificate keeps serving.
        with open(self.live[0], "w") as f:
            f.write("not a certificate\n")
        mark = self.eg.mark()
        os.kill(self.eg.pid, signal.SIGHUP)
        wait_until(lambda: "certificate refused" in self.eg.output(mark), 10,
                   "edgegate to log that it refused the broken certificate")
        self.assertIn(self.live[0], self.eg.output(mark))
        self.assertEqual(self.served("x.preview.test")[0], "wildcard.preview.test")
        shutil.copy(self.replacement[0], self.live[0])
        shutil.copy(self.replacement[1], self.live[1])
        os.kill(self.eg.pid, signal.SIGHUP)
        wait_until(lambda: self.served("x.preview.test")[0] == "replacement.preview.test", 10,
                   "new connections to get the reloaded SNI certificate")
        self.assertEqual(self.served("exact.preview.test")[0], "exact.preview.test")
        self.assertEqual(self.served("a.proxy.localhost")[0], "default.proxy.localhost")


if __name__ == "__main__":
    unittest.main()
