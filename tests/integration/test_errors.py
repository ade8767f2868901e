"""Errors edgegate answers itself, as JSON, and never by hanging."""
import http.client
import os
import sys
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
from client import assert_error  # noqa: E402
from stack import StackTestCase, wait_until  # noqa: E402

CODES = {502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT"}


class PreviewErrorsTest(StackTestCase):
    edgegate_env = {"UPSTREAM_RESPONSE_TIMEOUT_SEC": 2}

    def test_private_sandbox_without_credentials_is_401(self):
        test_id = uuid.uuid4().hex
        r = self.preview("/x", "-H", f"X-Test-Id: {test_id}", sandbox="private")
        assert_error(self, r, 401, "UNAUTHORIZED", path="/x")
        self.assertEqual(self.stack.runner_requests_with(test_id), [],
                         "a private sandbox was reached without credentials")

    def test_unknown_sandbox_is_404_naming_it(self):
        sid = str(uuid.uuid4())
        r = self.preview("/x", host=f"{self.stack.app_port}-{sid}.proxy.localhost")
        body = assert_error(self, r, 404, "NOT_FOUND", path="/x")
        self.assertIn(sid, body["message"])

    def test_stopped_sandbox_is_503_saying_so(self):
        sid = self.stack.sandbox_id("stopped")
        r = self.preview("/x", sandbox="stopped")
        body = assert_error(self, r, 503, "SERVICE_UNAVAILABLE", path="/x")
        self.assertIn(f"sandbox {sid} is not started", body["message"])
        self.assertIn("state stopped", body["message"])

    def test_an_apps_own_400_passes_through(self):
        r = self.preview("/status/400")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json(), {"status": 400})

    def test_unreachable_runner_is_502(self):
        r = self.preview("/x", sandbox="on-down-runner", timeout=15)
        assert_error(self, r, 502, "BAD_GATEWAY", path="/x")

    def test_slow_upstream_is_504_after_the_response_timeout(self):
        r = self.preview("/slow?ms=5000", timeout=15)
        assert_error(self, r, 504, "GATEWAY_TIMEOUT", path="/slow")
        self.assertGreaterEqual(r.elapsed, 1.5, "answered before UPSTREAM_RESPONSE_TIMEOUT_SEC=2")
        self.assertLess(r.elapsed, 4.5, "waited for the app instead of timing out")
        # The pool must not hand the timed-out connection to the next request.
        ok = self.preview("/after-timeout")
        self.assertEqual(ok.status, 200, ok)
        self.assertEqual(ok.json()["path"], "/after-timeout")

    def test_bad_preview_hosts_are_400(self):
        for host in ("99999-abc.proxy.localhost", "0-abc.proxy.localhost",
                     "-abc.proxy.localhost", "3000-.proxy.localhost",
                     "3000-abc!def.proxy.localhost"):
            with self.subTest(host=host):
                assert_error(self, self.preview("/x", host=host), 400, "BAD_REQUEST", path="/x")

    def test_error_body_names_method_and_path(self):
        r = self.preview("/some/where", "-X", "DELETE", sandbox="private")
        assert_error(self, r, 401, "UNAUTHORIZED", path="/some/where", method="DELETE")


class ControlPlaneDownTest(StackTestCase):
    """The Daytona API failing in every way: edgegate answers 502/503/504 JSON in bounded time."""

    edgegate_env = {"API_CLIENT_TIMEOUT_SEC": 2}
    max_time = 25  # 3 tries of API_CLIENT_TIMEOUT_SEC=2 plus backoff is ~7 s

    def setUp(self):
        self.stack.cp_reset()
        self.addCleanup(self.stack.cp_reset)

    def fresh_host(self):
        return f"{self.stack.app_port}-{self.stack.add_sandbox(public=True)}.proxy.localhost"

    def assert_unavailable(self, resp):
        self.assertNotEqual(resp.exit_code, 28, f"edgegate hung\n{resp}")
        self.assertIn(resp.status, CODES, resp)
        assert_error(self, resp, resp.status, CODES[resp.status], path="/x")

    def test_api_answering_503(self):
        host = self.fresh_host()
        self.stack.cp_fail("503")
        self.assert_unavailable(self.preview("/x", host=host, timeout=self.max_time))

    def test_api_answering_500(self):
        host = self.fresh_host()
        self.stack.cp_fail("500")
        self.assert_unavailable(self.preview("/x", host=host, timeout=self.max_time))

    def test_api_hanging(self):
        host = self.fresh_host()
        self.stack.cp_fail("hang")
        r = self.preview("/x", host=host, timeout=self.max_time)
        self.assert_unavailable(r)
        self.assertLess(r.elapsed, 20)

    def test_api_dropping_connections(self):
        host = self.fresh_host()
        self.stack.cp_fail("close")
        self.assert_unavailable(self.preview("/x", host=host, timeout=self.max_time))

    def test_runner_lookup_failing(self):
        host = self.fresh_host()
        self.stack.cp_fail("503", path_prefix="/api/runners")
        self.assert_unavailable(self.preview("/x", host=host, timeout=self.max_time))

    def test_recovers_when_the_api_is_back(self):
        host = self.fresh_host()
        self.stack.cp_fail("503")
        self.assert_unavailable(self.preview("/x", host=host, timeout=self.max_time))
        self.stack.cp_reset()
        wait_until(lambda: self.preview("/x", host=host).status == 200, 20,
                   "edgegate to serve the sandbox again after the API recovered")

    def get_on(self, conn, host):
        conn.request("GET", "/x", headers={"Host": host})
        r = conn.getresponse()
        r.read()
        return r.status

    def test_known_route_survives_an_api_outage(self):
        host = self.fresh_host()
        conn = http.client.HTTPConnection("127.0.0.1", self.eg.port, timeout=30)
        self.addCleanup(conn.close)
        self.assertEqual(self.get_on(conn, host), 200)
        self.stack.cp_fail("503")
        self.assertEqual(self.get_on(conn, host), 200, "same connection, route known")

    def test_known_route_serves_new_connections_during_an_api_outage(self):
        # The route cache is per process (design.md): whichever worker accepts a new
        # connection knows a route another worker has resolved.
        host = self.fresh_host()
        self.assertEqual(self.preview("/x", host=host).status, 200)
        self.stack.cp_fail("503")
        statuses = [self.preview("/x", host=host, timeout=self.max_time).status
                    for _ in range(8)]
        self.assertEqual(statuses, [200] * 8, "8 new connections while the API is down")

if __name__ == "__main__":
    unittest.main()
