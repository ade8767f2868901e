"""Log format: with LOG_FORMAT=json (the default) every line edgegate writes on stderr is one JSON
object with ts, level and msg; with LOG_FORMAT=text every line is `ts level message`. Either
way, no secret of the run (keys, tokens, cookies, Authorization values, authenticated query
strings) appears."""
import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
from stack import StackTestCase, clean_env, edgegate_bin, wait_until  # noqa: E402

TS_RX = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z")
LEVELS = {"trace", "debug", "info", "warn", "error", "critical"}
TEXT_RX = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z "
                     r"(trace|debug|info|warn|error|critical) \S")


class LogRun:
    """Traffic that makes edgegate log at every level it uses, with the fixture's secrets."""

    def drive(self, tc):
        st = tc.stack
        private = st.sandbox("private")
        self.user = next(t for t, ids in st.fixture["userTokens"].items() if private["id"] in ids)
        self.preview_token = private["previewTokens"][0]
        self.signed = next(iter(st.fixture["signedPreviewTokens"]))
        self.cookie = "sess-" + secrets.token_hex(16)
        self.password = "pw-" + secrets.token_hex(8)
        self.basic = base64.b64encode(f"alice:{self.password}".encode()).decode()
        tc.preview("/x", "-H", f"Cookie: session={self.cookie}",
                   "-H", f"Authorization: Basic {self.basic}")
        tc.preview("/x", "-H", f"Authorization: Bearer {self.user}", sandbox="private")
        tc.preview("/x", "-H", f"X-Daytona-Preview-Token: {self.preview_token}",
                   sandbox="private")
        tc.preview(f"/x?DAYTONA_SANDBOX_AUTH_KEY={self.preview_token}&a=1", sandbox="private")
        tc.preview("/x", "-H", "Authorization: Bearer not-a-user-token", sandbox="private")
        tc.preview("/x", host=f"3000-{self.signed}.proxy.localhost")
        tc.preview("/x", sandbox="on-down-runner")          # 502: a warn line
        tc.preview("/x", host="8080-00000000-0000-4000-8000-000000000000.proxy.localhost")
        mark = tc.eg.mark()
        os.kill(tc.eg.pid, signal.SIGHUP)
        wait_until(lambda: "SIGHUP" in tc.eg.output(mark), 10, "the reload to be logged")
        self.code = tc.eg.stop(timeout=15)

    def secrets(self, st):
        return (("proxy API key", st.proxy_api_key), ("runner API key", st.runner_api_key),
                ("SSH gateway key", st.fixture["sshGatewayApiKey"]), ("user token", self.user),
                ("preview token", self.preview_token), ("signed preview token", self.signed),
                ("cookie", self.cookie), ("basic-auth credentials", self.basic),
                ("password", self.password))


def stderr_lines(eg):
    with open(eg.stderr_path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")  # must be UTF-8 as a whole
    return [l for l in text.split("\n") if l != ""]


class JsonLogsTest(StackTestCase):
    edgegate_env = {"LOG_LEVEL": "debug", "LOG_FORMAT": "json"}

    def test_every_line_is_one_json_object_and_no_secret_is_in_it(self):
        run = LogRun()
        run.drive(self)
        self.assertEqual(run.code, 0, self.eg.describe())
        lines = stderr_lines(self.eg)
        self.assertGreater(len(lines), 5)
        levels = set()
        for n, line in enumerate(lines, 1):
            with self.subTest(line=n):
                rec = json.loads(line)
                self.assertIsInstance(rec, dict, line)
                self.assertRegex(rec.get("ts", ""), TS_RX, line)
                self.assertIn(rec.get("level"), LEVELS, line)
                self.assertIsInstance(rec.get("msg"), str, line)
                self.assertEqual(list(rec)[:3], ["ts", "level", "msg"], line)
                levels.add(rec["level"])
        self.assertTrue({"info", "warn"} <= levels, levels)
        msgs = [json.loads(l)["msg"] for l in lines]
        self.assertTrue(any(m.startswith("edgegate ") and "listening" in m for m in msgs), msgs)
        self.assertIn("stopped", msgs)
        logs = self.eg.output()
        for what, secret in run.secrets(self.stack):
            with self.subTest(what=what):
                self.assertNotIn(secret, logs, f"edgegate logged the {what}")


class TextLogsTest(StackTestCase):
    edgegate_env = {"LOG_LEVEL": "debug", "LOG_FORMAT": "text"}

    def test_every_line_is_ts_level_message_and_no_secret_is_in_it(self):
        run = LogRun()
        run.drive(self)
        self.assertEqual(run.code, 0, self.eg.describe())
        lines = stderr_lines(self.eg)
        self.assertGreater(len(lines), 5)
        for n, line in enumerate(lines, 1):
            with self.subTest(line=n):
                self.assertRegex(line, TEXT_RX)
        logs = self.eg.output()
        for what, secret in run.secrets(self.stack):
            with self.subTest(what=what):
                self.assertNotIn(secret, logs, f"edgegate logged the {what}")


class LogFormatConfigTest(unittest.TestCase):
    def test_an_unknown_format_is_a_configuration_problem(self):
        env = clean_env({"PROXY_API_KEY": "dtn_" + "0" * 64,
                         "DAYTONA_API_URL": "http://127.0.0.1:9/api", "LOG_FORMAT": "xml"})
        r = subprocess.run([edgegate_bin(), "--check-config"], env=env, capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(r.returncode, 2, r)
        self.assertIn('LOG_FORMAT="xml": expected json', r.stderr)


if __name__ == "__main__":
    unittest.main()
