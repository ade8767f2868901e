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
from prom import scrape  # noqa: E402
from stack import StackTestCase, free_port, wait_until  # noqa: E402


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
        # Sequential requests on one client connection: the client keeps its runner connection
        # from one request to the next.
        self.assertEqual(len(set(conns)), 1, f"runner connections per request: {conns}")

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


class RunnerConnectionHandBackTest(StackTestCase):
    """A client connection keeps its runner connection between requests, and hands it back to
    the pool when it goes idle (within about half a second) or closes. Each test has its own
    edgegate with one worker (one pool) and an empty pool."""
    edgegate_env = None

    def setUp(self):
        self.metrics_port = free_port()
        self.eg = self.stack.start_edgegate({"EDGEGATE_WORKERS": 1,
                                             "METRICS_PORT": self.metrics_port})
        self.addCleanup(self.eg.stop)
        self.host = self.stack.preview_host("public")

    def pooled(self):
        return scrape(self.metrics_port)[0].value("edgegate_upstream_idle_connections")

    def wait_pooled(self, n, what):
        wait_until(lambda: self.pooled() == n, 10, what)

    def client(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.eg.port, timeout=10)
        self.addCleanup(conn.close)
        return conn

    def runner_connection_of(self, conn, path):
        """Sends GET path on `conn`; the id of the runner connection that carried it."""
        test_id = uuid.uuid4().hex
        conn.request("GET", path, headers={"Host": self.host, "X-Test-Id": test_id})
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        self.assertFalse(r.will_close)
        seen = self.stack.runner_requests_with(test_id)
        self.assertEqual(len(seen), 1, seen)
        return seen[0]["connId"]

    def test_idle_client_hands_its_runner_connection_back(self):
        a = self.client()
        first = self.runner_connection_of(a, "/a1")
        self.assertEqual(self.pooled(), 0, "the client's runner connection is its own")
        self.wait_pooled(1, "the idle client's runner connection back in the pool")
        b = self.client()
        self.assertEqual(self.runner_connection_of(b, "/b1"), first,
                         "a second client did not get the pooled connection")
        self.assertNotEqual(self.runner_connection_of(a, "/a2"), first,
                            "two clients shared one runner connection at once")

    def test_closing_client_hands_its_runner_connection_back(self):
        a, b = self.client(), self.client()
        conns = {self.runner_connection_of(a, "/a1"), self.runner_connection_of(b, "/b1")}
        self.assertEqual(len(conns), 2, "two busy clients need two runner connections")
        a.close()
        b.close()
        # Neither connection is closed with its client: both wait in the pool.
        self.wait_pooled(2, "both runner connections back in the pool")
        c = self.client()
        self.assertIn(self.runner_connection_of(c, "/c1"), conns)


if __name__ == "__main__":
    unittest.main()
