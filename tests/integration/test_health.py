"""The base host: GET /health and the 404 JSON for everything else."""
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
from client import assert_error, curl  # noqa: E402
from stack import StackTestCase, edgegate_bin  # noqa: E402


class HealthTest(StackTestCase):
    def setUp(self):
        self.stack.cp_reset()

    def get(self, path, host, *args):
        return curl(f"http://127.0.0.1:{self.eg.port}{path}", "-H", f"Host: {host}", *args)

    def base_hosts(self):
        return ["proxy.localhost", f"127.0.0.1:{self.eg.port}", "proxy.localhost:4000",
                "localhost", "edge-proxy.example.com"]

    def test_health_answers_ok_on_every_base_host(self):
        for host in self.base_hosts():
            with self.subTest(host=host):
                r = self.get("/health", host)
                self.assertEqual(r.status, 200, r)
                self.assertIn("application/json", r.header("Content-Type") or "", r)
                body = r.json()
                self.assertEqual(body.get("status"), "ok", r)
                self.assertIsInstance(body.get("version"), str, r)
                self.assertTrue(body["version"], r)

    def test_health_reports_the_binary_version(self):
        out = subprocess.run([edgegate_bin(), "--version"], capture_output=True, text=True,
                             timeout=10)
        self.assertEqual(out.returncode, 0, out)
        version = self.get("/health", "proxy.localhost").json()["version"]
        self.assertIn(version, out.stdout + out.stderr)

    def test_health_does_not_depend_on_the_control_plane(self):
        self.stack.cp_fail("hang")
        try:
            r = curl(f"http://127.0.0.1:{self.eg.port}/health", "-H", "Host: proxy.localhost",
                     timeout=3)
            self.assertEqual(r.status, 200, r)
        finally:
            self.stack.cp_reset()

    def test_other_base_host_paths_are_404_json(self):
        for host in ("proxy.localhost", f"127.0.0.1:{self.eg.port}"):
            for path in ("/x", "/", "/healthz", "/health/x", "/api/config", "/sandboxes/x"):
                with self.subTest(host=host, path=path):
                    assert_error(self, self.get(path, host), 404, "NOT_FOUND", path=path)

    def test_404_names_the_method(self):
        r = self.get("/x", "proxy.localhost", "-X", "POST", "-d", "a=b")
        assert_error(self, r, 404, "NOT_FOUND", path="/x", method="POST")

    def test_base_host_needs_no_control_plane_call(self):
        self.get("/health", "proxy.localhost")
        self.get("/x", "proxy.localhost")
        calls = [c["path"] for c in self.stack.cp_calls() if c["path"] != "/api/config"]
        self.assertEqual(calls, [], "base-host requests called the control plane")


class VersionTest(unittest.TestCase):
    def test_version_flag(self):
        out = subprocess.run([edgegate_bin(), "--version"], capture_output=True, text=True,
                             timeout=10)
        self.assertEqual(out.returncode, 0, out)
        self.assertRegex(out.stdout, r"\d+\.\d+\.\d+", out)
        project_version = _cmake_project_version()
        if project_version:
            self.assertIn(project_version, out.stdout)


def _cmake_project_version():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "CMakeLists.txt")
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"project\(\s*edgegate\s+VERSION\s+([0-9][0-9.]*)", text)
    return m.group(1) if m else None


if __name__ == "__main__":
    unittest.main()
