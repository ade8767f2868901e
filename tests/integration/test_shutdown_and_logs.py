"""SIGTERM (in-flight requests finish, clean exit) and what edgegate's logs must never contain."""
import base64
import os
import secrets
import subprocess
import sys
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
from client import curl_path  # noqa: E402
from stack import StackTestCase, wait_until  # noqa: E402


class ShutdownTest(StackTestCase):
    edgegate_env = None  # one edgegate per test: each test stops it

    def test_sigterm_finishes_the_request_in_flight_and_exits_0(self):
        eg = self.stack.start_edgegate()
        test_id = uuid.uuid4().hex
        inflight = subprocess.Popen(
            [curl_path(), "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20",
             "-H", f"Host: {self.stack.preview_host('public')}", "-H", f"X-Test-Id: {test_id}",
             f"http://127.0.0.1:{eg.port}/slow?ms=1500"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(inflight.kill)
        wait_until(lambda: self.stack.runner_requests_with(test_id), 10,
                   "the slow request to reach the runner")
        code = eg.stop(timeout=15)
        out, err = inflight.communicate(timeout=20)
        self.assertEqual(out, "200", f"the in-flight request was cut: {err}\n{eg.describe()}")
        self.assertEqual(code, 0, eg.describe())

    def test_sigterm_when_idle_exits_promptly(self):
        eg = self.stack.start_edgegate()
        r = subprocess.run([curl_path(), "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                            "-H", f"Host: {self.stack.preview_host('public')}",
                            f"http://127.0.0.1:{eg.port}/x"], capture_output=True, text=True)
        self.assertEqual(r.stdout, "200", r.stderr)
        eg.popen.terminate()
        try:
            eg.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.fail("edgegate did not exit within 10 s of SIGTERM with nothing in flight")
        self.assertEqual(eg.popen.returncode, 0, eg.describe())


class LogHygieneTest(StackTestCase):
    edgegate_env = {"LOG_LEVEL": "debug"}

    def test_logs_hold_no_secrets(self):
        st = self.stack
        private = st.sandbox("private")
        user = next(t for t, ids in st.fixture["userTokens"].items() if private["id"] in ids)
        preview_token = private["previewTokens"][0]
        cookie = "sess-" + secrets.token_hex(16)
        password = "pw-" + secrets.token_hex(8)
        basic = base64.b64encode(f"alice:{password}".encode()).decode()
        self.preview("/x", "-H", f"Cookie: session={cookie}",
                     "-H", f"Authorization: Basic {basic}")
        self.preview("/x", "-H", f"Authorization: Bearer {user}", sandbox="private")
        self.preview("/x", "-H", f"X-Daytona-Preview-Token: {preview_token}", sandbox="private")
        self.preview(f"/x?DAYTONA_SANDBOX_AUTH_KEY={preview_token}", sandbox="private")
        self.preview("/x", "-H", f"Cookie: daytona-sandbox-auth-{private['id']}=forged{cookie}",
                     sandbox="private")
        self.eg.stop(timeout=15)  # flushes whatever the logger buffers
        logs = self.eg.output()
        for what, secret in (("proxy API key", st.proxy_api_key),
                             ("runner API key", st.runner_api_key), ("user token", user),
                             ("preview token", preview_token), ("cookie", cookie),
                             ("basic-auth credentials", basic), ("password", password)):
            with self.subTest(what=what):
                self.assertNotIn(secret, logs, f"edgegate logged the {what}")


if __name__ == "__main__":
    unittest.main()
