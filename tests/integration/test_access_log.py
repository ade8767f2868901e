"""One access-log line per HTTP exchange (HTTP/1.1, HTTP/2, WebSocket), X-Request-Id and W3C
traceparent toward the runner, the request id in error bodies, and the exchange metrics."""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
from client import assert_error, curl  # noqa: E402
from prom import scrape  # noqa: E402
from stack import StackTestCase, free_port, wait_until, start_ws_app  # noqa: E402
from wsclient import WsClient  # noqa: E402

PRIVATE_TOKEN = "ed08887e4a77970acaaea751159391a9"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


class AccessLogTest(StackTestCase):
    edgegate_env = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.metrics_port = free_port()
        cls.eg = cls.stack.start_edgegate({"METRICS_PORT": cls.metrics_port,
                                           "LOG_FORMAT": "json"})
        cls.ws_app = start_ws_app()
        cls.addClassCleanup(cls.ws_app.stop)

    def access_lines(self, mark, n):
        """Waits for `n` access lines logged since `mark`; returns them parsed."""
        def lines():
            out = []
            for ln in self.eg.output(mark).splitlines():
                if ln.startswith("{"):
                    rec = json.loads(ln)
                    if rec.get("msg") == "access":
                        out.append(rec)
            return out
        wait_until(lambda: len(lines()) >= n, 10, f"{n} access-log lines")
        return lines()

    def runner_saw(self, test_id):
        seen = self.stack.runner_requests_with(test_id)
        self.assertEqual(len(seen), 1, seen)
        return {k.lower(): v for k, v in seen[0]["headers"]}

    def test_proxied_request_line_and_forwarded_ids(self):
        mark = self.eg.mark()
        r = self.preview("/echo/x?secret=abc", "-H", "X-Test-Id: al-1",
                         "-H", f"traceparent: {TRACEPARENT}", "-H", "X-Request-Id: req-123")
        self.assertEqual(r.status, 200, r)
        headers = self.runner_saw("al-1")
        self.assertEqual(headers["x-request-id"], "req-123")
        tp = headers["traceparent"]
        self.assertRegex(tp, rf"^00-{TRACE}-[0-9a-f]{{16}}-01$")
        self.assertNotEqual(tp.split("-")[2], "00f067aa0ba902b7")  # edgegate's own span
        (line,) = self.access_lines(mark, 1)
        sid = self.stack.sandbox_id("public")
        self.assertEqual(line["protocol"], "h1")
        self.assertEqual(line["method"], "GET")
        self.assertEqual(line["path"], "/echo/x")  # never the query
        self.assertEqual(line["sandbox"], sid)
        self.assertEqual(line["status"], 200)
        self.assertEqual(line["request_id"], "req-123")
        self.assertEqual(line["trace_id"], TRACE)
        self.assertEqual(line["auth"], "public")
        self.assertEqual(line["bytes_out"], len(r.body))
        self.assertGreaterEqual(line["duration_ms"], line["upstream_ms"])
        self.assertRegex(line["runner"], r"^127\.0\.0\.1:\d+$")
        self.assertNotIn("secret", json.dumps(line))

    def test_new_ids_when_the_client_sends_none_or_garbage(self):
        r = self.preview("/echo", "-H", "X-Test-Id: al-2", "-H", "traceparent: 00-zz-yy-01",
                         "-H", "X-Request-Id: " + "x" * 200)
        self.assertEqual(r.status, 200, r)
        headers = self.runner_saw("al-2")
        self.assertRegex(headers["x-request-id"], r"^[0-9a-f]{32}$")
        self.assertRegex(headers["traceparent"], r"^00-[0-9a-f]{32}-[0-9a-f]{16}-00$")

    def test_error_body_carries_the_request_id(self):
        mark = self.eg.mark()
        r = self.preview("/x", sandbox="private")
        body = assert_error(self, r, 401, "UNAUTHORIZED", path="/x")
        self.assertRegex(body["requestId"], r"^[0-9a-f]{32}$")
        (line,) = self.access_lines(mark, 1)
        self.assertEqual((line["status"], line["request_id"]), (401, body["requestId"]))

    def test_trace_context_reaches_the_api(self):
        token = "trace-token-0123456789abcdef"
        sid = self.stack.add_sandbox(public=False, previewTokens=[token])
        self.stack.cp_reset()
        r = self.preview("/echo", "-H", f"X-Daytona-Preview-Token: {token}",
                         "-H", f"traceparent: {TRACEPARENT}",
                         host=self.stack.preview_host(sid))
        self.assertEqual(r.status, 200, r)
        checks = [c for c in self.stack.cp_calls() if "/validate/" in c["path"]]
        self.assertEqual(len(checks), 1, checks)
        headers = {k.lower(): v for k, v in checks[0]["headers"].items()}
        self.assertRegex(headers.get("traceparent", ""), rf"^00-{TRACE}-[0-9a-f]{{16}}-01$")

    def test_websocket_tunnel_is_counted_and_logged_when_it_ends(self):
        before, _ = scrape(self.metrics_port)
        mark = self.eg.mark()
        ws = WsClient.connect("127.0.0.1", self.eg.port,
                              host=self.stack.preview_host("public", self.ws_app.port),
                              path="/echo")
        ws.send_text("x" * 1000)
        self.assertEqual(ws.recv_text(), "x" * 1000)
        during, _ = scrape(self.metrics_port)
        self.assertEqual(during.value("edgegate_websockets", protocol="h1")
                         - before.value("edgegate_websockets", protocol="h1"), 1)
        ws.close()
        (line,) = self.access_lines(mark, 1)
        self.assertEqual((line["protocol"], line["status"]), ("ws", 101))
        self.assertGreater(line["bytes_in"], 1000)
        self.assertGreater(line["bytes_out"], 1000)
        after, _ = scrape(self.metrics_port)
        labels = {"protocol": "ws", "method": "GET", "status_class": "1xx"}
        self.assertEqual(after.value("edgegate_http_requests_total", **labels)
                         - before.value("edgegate_http_requests_total", **labels), 1)
        self.assertEqual(after.value("edgegate_websockets", protocol="h1"),
                         before.value("edgegate_websockets", protocol="h1"))

    def test_token_is_never_logged_and_auth_method_is(self):
        mark = self.eg.mark()
        r = self.preview(f"/echo?DAYTONA_SANDBOX_AUTH_KEY={PRIVATE_TOKEN}", sandbox="private")
        self.assertEqual(r.status, 200, r)
        (line,) = self.access_lines(mark, 1)
        self.assertEqual(line["auth"], "query-key")
        self.assertNotIn(PRIVATE_TOKEN, self.eg.output(mark))

    def test_http2_exchanges_are_logged_and_counted(self):
        before, _ = scrape(self.metrics_port)
        mark = self.eg.mark()
        host = self.stack.preview_host("public")
        r = curl(f"http://{host}:{self.eg.port}/echo", "--http2-prior-knowledge",
                 "--resolve", f"{host}:{self.eg.port}:127.0.0.1")
        self.assertEqual((r.status, r.info.get("http_version")), (200, "2"), r)
        (line,) = self.access_lines(mark, 1)
        self.assertEqual((line["protocol"], line["status"]), ("h2", 200))
        after, _ = scrape(self.metrics_port)
        labels = {"protocol": "h2", "method": "GET", "status_class": "2xx"}
        self.assertEqual(after.value("edgegate_http_requests_total", **labels)
                         - before.value("edgegate_http_requests_total", **labels), 1)
        self.assertEqual(after.families["edgegate_http_request_duration_seconds"].type,
                         "histogram")
        self.assertGreater(after.value("edgegate_http_response_body_bytes_total", protocol="h2"),
                           before.value("edgegate_http_response_body_bytes_total",
                                        protocol="h2"))


if __name__ == "__main__":
    unittest.main()
