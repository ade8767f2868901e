"""Runners whose proxyUrl is https: edgegate verifies their certificate (system CAs plus
RUNNER_CA_FILE) and host name, reuses the TLS connections, and says why when it cannot."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
import certs  # noqa: E402
from client import assert_error, curl, curl_many  # noqa: E402
from stack import (DEFAULT_FIXTURE, PYTHON, StackTestCase, clean_env, edgegate_bin,  # noqa: E402
                   start_process)

SUPPORT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support")


class RunnerTlsTest(StackTestCase):
    edgegate_env = None

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="edgegate-runner-tls-")
        cls.ca = certs.make_ca(cls.dir)
        cert, key = certs.make_server_cert(cls.dir, "runner", ["localhost"])
        # The fixture's "runner-down" (with the sandbox "on-down-runner") becomes an HTTPS
        # runner at https://localhost:PORT.
        cls.tls_runner = start_process(
            [PYTHON, os.path.join(SUPPORT, "runner_standin.py"), "--port", "0", "--fixture",
             DEFAULT_FIXTURE, "--runner-id", "runner-down", "--tls-cert", cert, "--tls-key", key],
            name="tls-runner", log_dir=cls.dir)
        cls.addClassCleanup(cls.tls_runner.stop)
        cls.stack_args = {"runner_urls": {
            "runner-down": f"https://localhost:{cls.tls_runner.port}"}}
        super().setUpClass()
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.eg = cls.stack.start_edgegate({"RUNNER_CA_FILE": cls.ca})

    def runner_requests(self):
        r = curl(f"https://localhost:{self.tls_runner.port}/_dev/requests", "--cacert", self.ca)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def test_requests_reach_an_https_runner_and_reuse_its_connection(self):
        r1 = self.preview("/echo/one", sandbox="on-down-runner")
        self.assertEqual(r1.status, 200, r1)
        self.assertEqual(r1.json()["path"], "/echo/one")
        r2 = self.preview("/upload", "--data-binary", "x" * 100000, sandbox="on-down-runner")
        self.assertEqual((r2.status, r2.json()["bytes"]), (200, 100000), r2)
        # Two requests on one client connection (one worker, one pool): one runner connection.
        host = self.stack.preview_host("on-down-runner")
        urls = [f"http://127.0.0.1:{self.eg.port}/echo/reuse-{i}" for i in range(2)]
        infos, _, err = curl_many(urls, "-H", f"Host: {host}")
        self.assertEqual([i["http_code"] for i in infos], [200, 200], err)
        seen = [e for e in self.runner_requests() if "/echo/reuse-" in e["target"]]
        self.assertEqual(len(seen), 2, seen)
        self.assertEqual(seen[0]["connId"], seen[1]["connId"], "the TLS connection was not reused")

    def test_http2_client_to_https_runner(self):
        host = self.stack.preview_host("on-down-runner")
        r = curl(f"http://{host}:{self.eg.port}/echo", "--http2-prior-knowledge",
                 "--resolve", f"{host}:{self.eg.port}:127.0.0.1")
        self.assertEqual((r.status, r.info.get("http_version")), (200, "2"), r)

    def test_unknown_ca_is_refused_with_the_reason(self):
        eg = self.stack.start_edgegate({})  # no RUNNER_CA_FILE: the test CA is not trusted
        r = curl(f"http://127.0.0.1:{eg.port}/echo", "-H",
                 f"Host: {self.stack.preview_host('on-down-runner')}")
        body = assert_error(self, r, 502, "BAD_GATEWAY", path="/echo")
        self.assertIn("certificate verification failed", body["message"])
        self.assertIn(f"localhost:{self.tls_runner.port}", body["message"])

    def test_check_config_names_an_unreadable_ca_file(self):
        env = self.stack.edgegate_env({"RUNNER_CA_FILE": "/nonexistent/ca.pem"})
        p = subprocess.run([edgegate_bin(), "--check-config"], env=env, capture_output=True,
                           text=True, timeout=20)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("RUNNER_CA_FILE", p.stdout + p.stderr)
        self.assertIn("/nonexistent/ca.pem", p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()
