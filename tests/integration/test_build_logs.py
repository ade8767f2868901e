"""Build logs on the base host: GET /sandboxes/{id}/build-logs and /snapshots/{id}/build-logs,
authorized with the user's own token, streamed from the runner that built the snapshot."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
from client import assert_error, curl  # noqa: E402
from stack import StackTestCase  # noqa: E402

USER = "user-token-699866d4e82b52d924978391a5f5fd00"
NO_ACCESS = "user-token-without-access-6e3dc1a3cfafe607"
REF = "registry.local/daytona/test:1"


class BuildLogsTest(StackTestCase):
    def get(self, path, *args):
        return curl(f"http://127.0.0.1:{self.eg.port}{path}", "-H",
                    f"Host: proxy.localhost:{self.eg.port}", *args)

    def runner_saw_logs(self):
        return [e for e in self.stack.runner_requests() if e["target"].startswith("/snapshots/logs")]

    def test_sandbox_build_logs_stream_from_the_runner(self):
        self.stack.runner_reset()
        sid = self.stack.sandbox_id("private")
        r = self.get(f"/sandboxes/{sid}/build-logs?follow=true", "-H", f"Authorization: Bearer {USER}")
        self.assertEqual(r.status, 200, r)
        self.assertIn(f"Building {REF}".encode(), r.body)
        seen = self.runner_saw_logs()
        self.assertEqual(len(seen), 1, seen)
        self.assertEqual(seen[0]["target"],
                         "/snapshots/logs?follow=true&snapshotRef=registry.local%2Fdaytona%2Ftest%3A1")
        names = {k.lower(): v for k, v in seen[0]["headers"]}
        self.assertNotIn("authorization", names, "the user's token must not reach the runner")
        self.assertEqual(names["x-daytona-authorization"], f"Bearer {self.stack.runner_api_key}")

    def test_snapshot_build_logs(self):
        r = self.get("/snapshots/snap-test-1/build-logs", "-H", f"Authorization: Bearer {USER}")
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"Successfully built", r.body)

    def test_without_a_token_is_401(self):
        sid = self.stack.sandbox_id("private")
        assert_error(self, self.get(f"/sandboxes/{sid}/build-logs"), 401, "UNAUTHORIZED",
                     path=f"/sandboxes/{sid}/build-logs")

    def test_a_token_without_access_is_403(self):
        sid = self.stack.sandbox_id("private")
        r = self.get(f"/sandboxes/{sid}/build-logs", "-H", f"Authorization: Bearer {NO_ACCESS}")
        assert_error(self, r, 403, "FORBIDDEN", path=f"/sandboxes/{sid}/build-logs")

    def test_a_sandbox_without_a_build_is_404(self):
        sid = self.stack.sandbox_id("public")
        r = self.get(f"/sandboxes/{sid}/build-logs", "-H", f"Authorization: Bearer {USER}")
        body = assert_error(self, r, 404, "NOT_FOUND", path=f"/sandboxes/{sid}/build-logs")
        self.assertIn("no build logs", body["message"])

    def test_an_unknown_snapshot_is_404(self):
        r = self.get("/snapshots/nope/build-logs", "-H", f"Authorization: Bearer {USER}")
        assert_error(self, r, 404, "NOT_FOUND", path="/snapshots/nope/build-logs")


if __name__ == "__main__":
    unittest.main()
