"""METRICS_PORT: /metrics in the Prometheus text format (parsed strictly), /ready and /live, and
counts that match the traffic sent (API calls as the control plane saw them, route cache, auth
decisions, process metrics); /ready turns 503 as soon as a drain starts."""
import json
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
import prom  # noqa: E402
from prom import ops_get, scrape  # noqa: E402
from client import curl, curl_path  # noqa: E402
from stack import StackTestCase, free_port, wait_until  # noqa: E402

SKIP_ACTIVITY = ("-H", "X-Daytona-Skip-Last-Activity-Update: true")


class MetricsTest(StackTestCase):
    edgegate_env = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # No OIDC issuer: the settings are known (absent) at once, so /ready can be 200.
        cls.stack._json(cls.stack.cp, "POST", "/_dev/oidc", {"issuer": ""})
        cls.metrics_port = free_port()
        cls.eg = cls.stack.start_edgegate({"METRICS_PORT": cls.metrics_port,
                                           "EDGEGATE_WORKERS": 2})

    def wait_ready(self, port):
        wait_until(lambda: ops_get(port, "/ready")[0] == 200, 20, "/ready to answer 200")

    def test_exposition_parses_and_has_process_metrics(self):
        m, headers = scrape(self.metrics_port)
        self.assertEqual(headers.get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        self.assertGreater(m.value("process_cpu_seconds_total"), 0)
        self.assertGreater(m.value("process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(m.value("process_virtual_memory_bytes"), 1 << 20)
        fds = m.value("process_open_fds")
        self.assertGreater(fds, 3)
        self.assertLessEqual(fds, len(os.listdir(f"/proc/{self.eg.pid}/fd")) + 8)
        self.assertGreaterEqual(m.value("process_max_fds"), fds)
        self.assertGreater(m.value("process_start_time_seconds"), 1.6e9)
        info = m.series("edgegate_build_info")
        self.assertEqual(len(info), 1, info)
        self.assertRegex(info[0][0]["version"], r"^\d+\.\d+\.\d+")
        self.assertEqual(info[0][1], 1)
        self.assertEqual(m.value("edgegate_workers"), 2)
        self.assertEqual(m.value("edgegate_draining"), 0)
        for name in ("edgegate_route_cache_lookups_total", "edgegate_api_calls_total",
                     "edgegate_auth_decisions_total", "edgegate_open_connections"):
            self.assertIn(name, m.families, f"{name} missing")
        self.assertEqual(m.families["edgegate_api_call_duration_seconds"].type, "histogram")

    def test_labels_hold_no_ids_tokens_or_addresses(self):
        st = self.stack
        sid = st.sandbox_id("public")
        for _ in range(2):
            self.preview("/labels", *SKIP_ACTIVITY)
        text = ops_get(self.metrics_port, "/metrics")[2].decode()
        for secret in (sid, st.proxy_api_key, st.runner_api_key, "127.0.0.1", "/labels"):
            self.assertNotIn(secret, text)
        m = prom.parse(text)
        for fam in m.families.values():
            self.assertLessEqual(len(fam.samples), 400, f"{fam.name}: unbounded labels?")

    def test_live_and_ready(self):
        status, headers, body = ops_get(self.metrics_port, "/live")
        self.assertEqual((status, json.loads(body)), (200, {"status": "live"}))
        self.wait_ready(self.metrics_port)
        status, headers, body = ops_get(self.metrics_port, "/ready")
        self.assertEqual(json.loads(body), {"status": "ready"})
        self.assertEqual(scrape(self.metrics_port)[0].value("edgegate_ready"), 1)
        status, headers, body = ops_get(self.metrics_port, "/ready", method="HEAD")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(ops_get(self.metrics_port, "/nope")[0], 404)
        self.assertEqual(ops_get(self.metrics_port, "/metrics", method="POST")[0], 405)

    def test_counts_match_the_traffic(self):
        st = self.stack
        sid = st.add_sandbox(public=True)  # nothing about it is cached anywhere
        host = f"{st.app_port}-{sid}.proxy.localhost"
        before, _ = scrape(self.metrics_port)
        st.cp_reset()
        n = 6
        for i in range(n):
            r = self.preview(f"/count/{i}", *SKIP_ACTIVITY, host=host)
            self.assertEqual(r.status, 200, r)
        private = st.sandbox("private")
        for _ in range(2):  # a wrong preview token: denied (401, not a browser)
            r = self.preview("/x", "-H", "X-Daytona-Preview-Token: not-a-valid-token",
                             *SKIP_ACTIVITY, sandbox="private")
            self.assertEqual(r.status, 401, r)
        r = self.preview("/x", "-H", f"X-Daytona-Preview-Token: {private['previewTokens'][0]}",
                         *SKIP_ACTIVITY, sandbox="private")
        self.assertEqual(r.status, 200, r)
        calls = st.cp_calls()
        after, _ = scrape(self.metrics_port)

        def delta(name, **labels):
            return after.total(name, **labels) - before.total(name, **labels)

        # Every API call edgegate made is one the control plane received, and the reverse.
        answered = sum(delta("edgegate_api_calls_total", outcome=o)
                       for o in ("2xx", "3xx", "4xx", "5xx"))
        self.assertEqual(answered, len(calls), json.dumps(calls, indent=1)[:3000])
        self.assertEqual(delta("edgegate_api_call_duration_seconds_count"), answered)
        by_sandbox = [c for c in calls if c["path"].startswith(f"/api/runners/by-sandbox/{sid}")]
        self.assertEqual(len(by_sandbox), 1, "the route of a new sandbox is looked up once")
        self.assertEqual(
            delta("edgegate_api_calls_total", endpoint="runners/by-sandbox"),
            sum(1 for c in calls if c["path"].startswith("/api/runners/by-sandbox/")))
        # The route cache: the new sandbox missed, then hit for the other requests.
        self.assertGreaterEqual(delta("edgegate_route_cache_lookups_total", result="miss"), 1)
        self.assertGreaterEqual(delta("edgegate_route_cache_lookups_total", result="hit"), n - 1)
        # HTTP exchanges: every request sent, by status class, with its duration and bytes.
        self.assertEqual(delta("edgegate_http_requests_total", protocol="h1", method="GET",
                               status_class="2xx"), n + 1)
        self.assertEqual(delta("edgegate_http_requests_total", protocol="h1", method="GET",
                               status_class="4xx"), 2)
        self.assertEqual(delta("edgegate_http_request_duration_seconds_count", protocol="h1"),
                         n + 3)
        self.assertEqual(delta("edgegate_http_upstream_duration_seconds_count", protocol="h1"),
                         n + 1)
        self.assertGreater(delta("edgegate_http_response_body_bytes_total", protocol="h1"), 0)
        # Auth decisions: one per request that needed one (a public sandbox needs none).
        self.assertEqual(delta("edgegate_auth_decisions_total", method="none",
                               outcome="denied"), 2)
        self.assertEqual(delta("edgegate_auth_decisions_total", method="preview-token-header",
                               outcome="allowed"), 1)
        self.assertGreater(after.value("process_cpu_seconds_total"),
                           before.value("process_cpu_seconds_total") - 1e-9)


class DrainReadinessTest(StackTestCase):
    edgegate_env = None

    def test_ready_is_503_during_a_drain_while_metrics_and_live_still_answer(self):
        st = self.stack
        st._json(st.cp, "POST", "/_dev/oidc", {"issuer": ""})
        port = free_port()
        eg = st.start_edgegate({"METRICS_PORT": port, "SHUTDOWN_TIMEOUT_SEC": 30,
                                "UPSTREAM_RESPONSE_TIMEOUT_SEC": 20})
        wait_until(lambda: ops_get(port, "/ready")[0] == 200, 20, "/ready to answer 200")
        inflight = subprocess.Popen(
            [curl_path(), "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30",
             "-H", f"Host: {st.preview_host('public')}", "-H", "X-Test-Id: drain-ready",
             f"http://127.0.0.1:{eg.port}/slow?ms=4000"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(inflight.kill)
        wait_until(lambda: st.runner_requests_with("drain-ready"), 10,
                   "the slow request to reach the runner")
        eg.popen.send_signal(signal.SIGTERM)
        wait_until(lambda: "draining" in eg.output(), 5, "the drain to start")
        status, headers, body = ops_get(port, "/ready")
        self.assertEqual(status, 503, body)
        self.assertIn("draining", json.loads(body)["reason"])
        self.assertEqual(headers.get("Retry-After"), "5")
        self.assertEqual(ops_get(port, "/live")[0], 200)
        m, _ = scrape(port)
        self.assertEqual(m.value("edgegate_draining"), 1)
        self.assertEqual(m.value("edgegate_ready"), 0)
        self.assertEqual(m.value("edgegate_open_connections", listener="http"), 1)
        out, err = inflight.communicate(timeout=30)
        self.assertEqual(out, "200", err)
        eg.popen.wait(20)
        self.assertEqual(eg.popen.returncode, 0, eg.describe())


class NoMetricsPortTest(StackTestCase):
    edgegate_env = {}

    def test_without_metrics_port_there_is_no_listener_and_metrics_stay_off_traffic_ports(self):
        r = curl(f"http://127.0.0.1:{self.eg.port}/metrics", "-H",
                 f"Host: 127.0.0.1:{self.eg.port}")
        self.assertEqual(r.status, 404, r)
        self.assertNotIn("/live on", self.eg.output())


if __name__ == "__main__":
    unittest.main()
