"""Keep-alive on both sides of edgegate: the client's connection and the pool to the runner."""
import http.client
import json
import os
import sys
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
from client import curl_many  # noqa: E402
from stack import StackTestCase  # noqa: E402


class KeepAliveTest(StackTestCase):
    def urls(self, n):
        return [f"http://127.0.0.1:{self.eg.port}/k{i}" for i in range(n)]

    def test_client_connection_is_reused(self):
        host = self.stack.preview_host("public")
        infos, bodies, verbose = curl_many(self.urls(2), "-H", f"Host: {host}")
        self.assertEqual([i.get("http_code") for i in infos], [200, 200], verbose)
        self.assertEqual([json.loads(b)["path"] for b in bodies], ["/k0", "/k1"])
        self.assertIn("Re-using existing connection", verbose)
        self.assertEqual([i.get("num_connects") for i in infos], [1, 0], verbose)

    def test_runner_connection_is_reused(self):
        test_id = uuid.uuid4().hex
        host = self.stack.preview_host("public")
        n = 5
        infos, _, verbose = curl_many(self.urls(n), "-H", f"Host: {host}",
                                      "-H", f"X-Test-Id: {test_id}")
        self.assertEqual([i.get("http_code") for i in infos], [200] * n, verbose)
        seen = self.stack.runner_requests_with(test_id)
        self.assertEqual(len(seen), n, seen)
        conns = [e["connId"] for e in seen]
        # Sequential requests on one client connection: a pooled runner connection serves
        # more than one of them (not necessarily all: the pool may not have it back in time).
        self.assertLess(len(set(conns)), n, f"a new runner connection per request: {conns}")

    def test_runner_closing_idle_connections_does_not_fail_requests(self):
        # Runners close idle keep-alive connections (their idle timeout); a pooled connection
        # closed that way must not turn the next request into an error.
        host = self.stack.preview_host("public")
        for i in range(4):
            self.assertEqual(self.preview(f"/warm{i}").status, 200)
        closed = self.stack.runner_close_idle()
        self.assertGreater(closed, 0, "edgegate kept no idle connection to the runner")
        for i in range(6):
            method = ["-d", "replayable body"] if i % 2 else []
            r = self.preview(f"/after-close{i}", *method, host=host)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["path"], f"/after-close{i}")

    def test_connection_survives_proxy_errors_and_empty_responses(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.eg.port, timeout=10)
        self.addCleanup(conn.close)
        public = self.stack.preview_host("public")
        steps = [
            ("proxy.localhost", "/nope", 404),
            (f"{self.stack.app_port}-unknown-sandbox-id.proxy.localhost", "/x", 404),
            ("99999-abc.proxy.localhost", "/x", 400),
            (public, "/status/204", 204),
            (public, "/status/500", 500),
            (public, "/x", 200),
        ]
        local_ports = set()
        for host, path, status in steps:
            with self.subTest(host=host, path=path):
                conn.request("GET", path, headers={"Host": host})
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, status)
                self.assertFalse(r.will_close, f"edgegate closed the connection after {status}")
                local_ports.add(conn.sock.getsockname()[1] if conn.sock else None)
        self.assertEqual(len(local_ports), 1, "one client connection for all requests")


if __name__ == "__main__":
    unittest.main()
