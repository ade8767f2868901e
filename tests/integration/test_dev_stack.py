"""The dev stack itself (control plane, runner stand-in, echo app), without edgegate: when an
edgegate test fails, this file tells whether the stand-ins can be trusted."""
import hashlib
import http.client
import json
import os
import select
import shutil
import socket
import sys
import tempfile
import time
import unittest

SUPPORT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support")
sys.path.insert(0, SUPPORT)
import payload  # noqa: E402
from client import curl  # noqa: E402
from stack import (DEFAULT_FIXTURE, PYTHON, StackTestCase, free_port, start_process,  # noqa: E402
                   wait_until)


class ControlPlaneTest(StackTestCase):
    edgegate_env = None

    def setUp(self):
        self.stack.cp_reset()

    def api(self, path, token=None, method="GET"):
        args = ["-X", method] if method != "GET" else []
        if token:
            args += ["-H", f"Authorization: Bearer {token}"]
        return curl(f"{self.stack.api_url}{path}", *args)

    def test_public_check_needs_the_proxy_key(self):
        st = self.stack
        pub, priv = st.sandbox_id("public"), st.sandbox_id("private")
        r = self.api(f"/preview/{pub}/public", st.proxy_api_key)
        self.assertEqual((r.status, r.body), (200, b"true"), r)
        r = self.api(f"/preview/{priv}/public", st.proxy_api_key)
        self.assertEqual((r.status, r.body), (200, b"false"), r)
        r = self.api("/preview/no-such-sandbox/public", st.proxy_api_key)
        self.assertEqual(r.status, 404, r)
        self.assertIn("no-such-sandbox", r.json()["message"])
        for token in (None, "wrong", st.fixture["sshGatewayApiKey"]):
            r = self.api(f"/preview/{pub}/public", token)
            self.assertEqual(r.status, 401, r)
            body = r.json()
            self.assertEqual(set(body), {"path", "timestamp", "statusCode", "error", "message"})
            self.assertEqual(body["statusCode"], 401)
            self.assertEqual(body["path"], f"/api/preview/{pub}/public")

    def test_config_is_public(self):
        r = self.api("/config")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["oidc"]["clientId"], "daytona")

    def test_access_uses_the_callers_bearer(self):
        st = self.stack
        priv = st.sandbox_id("private")
        users = st.fixture["userTokens"]
        alice = next(t for t, ids in users.items() if priv in ids)
        nobody = next(t for t, ids in users.items() if not ids)
        self.assertEqual(self.api(f"/preview/{priv}/access", alice).status, 200)
        self.assertEqual(self.api(f"/preview/{priv}/access", nobody).status, 403)
        self.assertEqual(self.api(f"/preview/{priv}/access", st.proxy_api_key).status, 401)
        self.assertEqual(self.api(f"/sandbox/{priv}", alice).json()["state"], "started")
        self.assertEqual(self.api(f"/sandbox/{priv}", st.proxy_api_key).status, 401)
        self.assertEqual(self.api("/snapshots/test:1", alice).json()["ref"],
                         "registry.local/daytona/test:1")

    def test_preview_token_and_signed_url(self):
        st = self.stack
        priv = st.sandbox("private")
        key = st.proxy_api_key
        tok = priv["previewTokens"][0]
        self.assertEqual(self.api(f"/preview/{priv['id']}/validate/{tok}", key).body, b"true")
        self.assertEqual(self.api(f"/preview/{priv['id']}/validate/bad", key).status, 404)
        signed, entry = next(iter(st.fixture["signedPreviewTokens"].items()))
        r = self.api(f"/preview/{signed}/{entry['port']}/sandbox-id", key)
        self.assertEqual((r.status, r.body.decode()), (200, entry["sandboxId"]), r)
        self.assertIn("text/plain", r.header("Content-Type"))
        self.assertEqual(self.api(f"/preview/{signed}/1/sandbox-id", key).status, 403)

    def test_runner_lookup_and_activity(self):
        st = self.stack
        pub = st.sandbox_id("public")
        for key in (st.proxy_api_key, st.fixture["sshGatewayApiKey"]):
            r = self.api(f"/runners/by-sandbox/{pub}", key)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["proxyUrl"], st.runner.url)
            self.assertEqual(r.json()["apiKey"], st.runner_api_key)
        self.assertEqual(self.api("/runners/by-sandbox/nope", st.proxy_api_key).status, 404)
        self.assertEqual(self.api("/runners/runner-1/full", st.proxy_api_key).json()["apiUrl"],
                         st.runner.url)
        r = self.api(f"/sandbox/{pub}/last-activity", st.proxy_api_key, method="POST")
        self.assertEqual((r.status, r.body), (201, b""), r)
        self.assertEqual(r.header("Content-Length"), "0")

    def test_ssh_access_validate(self):
        st = self.stack
        ssh = st.fixture["sshGatewayApiKey"]
        token, sid = next(iter(st.fixture["sshTokens"].items()))
        r = self.api(f"/sandbox/ssh-access/validate?token={token}", ssh)
        self.assertEqual(r.json(), {"valid": True, "sandboxId": sid})
        r = self.api("/sandbox/ssh-access/validate?token=x", ssh)
        self.assertEqual(r.json(), {"valid": False, "sandboxId": None})
        self.assertEqual(self.api(f"/sandbox/{sid}", ssh).json()["runnerId"], "runner-1")
        self.assertEqual(self.api(f"/sandbox/ssh-access/validate?token={token}",
                                  st.proxy_api_key).status, 401)

    def test_call_log_and_keep_alive(self):
        st = self.stack
        pub = st.sandbox_id("public")
        conn = http.client.HTTPConnection("127.0.0.1", st.cp.port, timeout=5)
        self.addCleanup(conn.close)
        for _ in range(2):
            conn.request("GET", f"/api/preview/{pub}/public?x=1",
                         headers={"Authorization": f"Bearer {st.proxy_api_key}"})
            self.assertEqual(conn.getresponse().read(), b"true")
        calls = st.cp_calls()
        self.assertEqual([c["path"] for c in calls], [f"/api/preview/{pub}/public?x=1"] * 2)
        self.assertEqual(calls[0]["status"], 200)
        self.assertEqual(calls[0]["headers"]["Authorization"], f"Bearer {st.proxy_api_key}")

    def test_failure_modes(self):
        st = self.stack
        pub = st.sandbox_id("public")
        path = f"/preview/{pub}/public"
        st.cp_fail("503", count=1)
        self.assertEqual(self.api(path, st.proxy_api_key).status, 503)
        self.assertEqual(self.api(path, st.proxy_api_key).status, 200)

        st.cp_fail("500", path_prefix="/api/runners")
        self.assertEqual(self.api(path, st.proxy_api_key).status, 200)
        self.assertEqual(self.api(f"/runners/by-sandbox/{pub}", st.proxy_api_key).status, 500)
        st.cp_reset()

        st.cp_fail("close", count=1)
        conn = http.client.HTTPConnection("127.0.0.1", st.cp.port, timeout=5)
        self.addCleanup(conn.close)
        conn.request("GET", f"/api{path}")
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            conn.getresponse()

        st.cp_fail("slow", delay_ms=300, count=1)
        r = self.api(path, st.proxy_api_key)
        self.assertEqual(r.status, 200)
        self.assertGreaterEqual(r.elapsed, 0.3)

        st.cp_fail("hang")
        conn = http.client.HTTPConnection("127.0.0.1", st.cp.port, timeout=0.5)
        self.addCleanup(conn.close)
        conn.request("GET", f"/api{path}")
        with self.assertRaises(TimeoutError):
            conn.getresponse()
        conn = http.client.HTTPConnection("127.0.0.1", st.cp.port, timeout=5)
        self.addCleanup(conn.close)
        conn.request("GET", f"/api{path}")
        wait_until(lambda: any(c["status"] == "hung" for c in st.cp_calls()), 5,
                   "the call to hang")
        st.cp_reset()  # releases the hung call without an answer
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            conn.getresponse()
        self.assertEqual(self.api(path, st.proxy_api_key).status, 200)


class RunnerStandinTest(StackTestCase):
    edgegate_env = None

    def setUp(self):
        self.stack.runner_reset()
        self.pub = self.stack.sandbox_id("public")
        self.base = f"/sandboxes/{self.pub}/toolbox/proxy/{self.stack.app_port}"
        self.auth = {"X-Daytona-Authorization": f"Bearer {self.stack.runner_api_key}"}

    def conn(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.runner.port, timeout=10)
        self.addCleanup(conn.close)
        return conn

    def runner(self, target, *args):
        key = self.stack.runner_api_key
        return curl(f"{self.stack.runner.url}{target}", "-H",
                    f"X-Daytona-Authorization: Bearer {key}", *args)

    def test_auth(self):
        url = f"{self.stack.runner.url}{self.base}/echo"
        key = self.stack.runner_api_key
        self.assertEqual(curl(url).status, 401)
        self.assertEqual(curl(url, "-H", "X-Daytona-Authorization: Bearer nope").status, 401)
        self.assertEqual(curl(url, "-H", f"X-Daytona-Authorization: {key}").status, 401)
        self.assertEqual(curl(url, "-H", f"Authorization: Bearer {key}").status, 200)
        r = curl(url, "-H", f"X-Daytona-Authorization: Bearer {key}")
        self.assertEqual(r.status, 200, r)
        logged = self.stack.runner_requests()
        self.assertEqual([e["status"] for e in logged], [401, 401, 401, 200, 200])

    def test_paths_arrive_byte_identical(self):
        for path in ("/_next/static/chunks/app/(local)/%40topbar/%5B%5B...slug%5D%5D/page.js",
                     "/files/%2Ftmp%2Ffoo.txt", "/a?b=%2F&c=d%20e", "/x?"):
            r = self.runner(self.base + path)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["path"], path)
        self.assertEqual(self.runner(self.base).json()["path"], "/")
        self.assertEqual(self.runner(self.base + "?q=1").json()["path"], "/?q=1")

    def test_errors(self):
        st = self.stack
        r = self.runner(f"/sandboxes/nope/toolbox/proxy/{st.app_port}/x")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.json()["code"], "NOT_FOUND")
        stopped = st.sandbox_id("stopped")
        self.assertEqual(self.runner(f"/sandboxes/{stopped}/toolbox/proxy/1/x").status, 400)
        r = self.runner(f"/sandboxes/{self.pub}/toolbox/proxy/{free_port()}/x",
                        "--data-binary", "abc")
        self.assertEqual(r.status, 502, r)

    def test_bodies_stream_both_ways(self):
        size = 5 * 1024 * 1024 + 17
        want = payload.sha256_hex(size, "s")
        r = self.runner(f"{self.base}/download?size={size}&seed=s")
        self.assertEqual((r.status, len(r.body)), (200, size), r)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), want)
        r = self.runner(f"{self.base}/download?size={size}&seed=s&chunked=1")
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), want)
        # Uploads from a file: curl streams it with Content-Length, or chunked.
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "body")
            payload.write_file(path, size, "s")
            for extra in ([], ["-H", "Transfer-Encoding: chunked"],
                          ["-H", "Expect: 100-continue"]):
                r = self.runner(f"{self.base}/upload", "--data-binary", f"@{path}", *extra)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json(), {"bytes": size, "sha256": want})
        # Small chunked pieces, each its own read: the case a relay most easily gets wrong.
        r = self.runner(f"{self.base}/upload", "-d", "abc", "-H", "Transfer-Encoding: chunked")
        self.assertEqual(r.json()["bytes"], 3, r)
        r = self.runner(f"{self.base}/chunked?n=5&ms=30")
        self.assertEqual(r.body, b"".join(b"chunk %d\n" % i for i in range(5)), r)
        self.assertEqual([e.get("malformed") for e in self.stack.runner_requests()],
                         [None] * 7)

    def test_keep_alive_head_204_and_duplicate_headers(self):
        c = self.conn()
        c.request("HEAD", f"{self.base}/echo", headers=self.auth)
        r = c.getresponse()
        self.assertEqual((r.status, r.read()), (200, b""))
        self.assertIsNotNone(r.getheader("Content-Length"))
        for code in (204, 304):
            c.request("GET", f"{self.base}/status/{code}", headers=self.auth)
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (code, b""))
            self.assertIsNone(r.getheader("Transfer-Encoding"))
        c.request("GET", f"{self.base}/headers?Set-Cookie=a%3D1&Set-Cookie=b%3D2",
                  headers=self.auth)
        r = c.getresponse()
        r.read()
        self.assertEqual(r.msg.get_all("Set-Cookie"), ["a=1", "b=2"])
        c.request("POST", f"{self.base}/echo", body=iter([b"ab", b"cd"]), headers=self.auth,
                  encode_chunked=True)
        r = c.getresponse()
        self.assertEqual(json.loads(r.read())["bodyLength"], 4)
        c.close()
        conns = {e["connId"] for e in self.stack.runner_requests()}
        self.assertEqual(len(conns), 1, "all requests on one connection")

    def test_idle_close_and_malformed_requests(self):
        with socket.create_connection(("127.0.0.1", self.stack.runner.port), timeout=5) as s:
            s.sendall(f"GET {self.base}/x HTTP/1.1\r\nHost: r\r\nX-Daytona-Authorization: "
                      f"Bearer {self.stack.runner_api_key}\r\n\r\n".encode())
            self.assertIn(b" 200 ", s.recv(65536))

            def closed():  # the handler may not be back to waiting for a request yet
                self.stack.runner_close_idle()
                return select.select([s], [], [], 0.1)[0] and s.recv(100) == b""

            wait_until(closed, 5, "the runner to close the idle connection")
        with socket.create_connection(("127.0.0.1", self.stack.runner.port), timeout=5) as s:
            s.sendall(b"3\r\nabc\r\n0\r\n\r\n")
            self.assertIn(b"400", s.recv(65536))
        self.assertEqual([e.get("malformed") for e in self.stack.runner_requests()], [None, True])

    def test_toolbox(self):
        tb = f"/sandboxes/{self.pub}/toolbox"
        self.assertEqual(self.runner(f"{tb}/version").json(), {"version": "0.0.0-dev"})
        names = [e["name"] for e in self.runner(f"{tb}/files?path=/home/daytona").json()]
        self.assertEqual(names, ["hello.txt", "project"])
        r = self.runner(f"{tb}/echo/x?y=1", "-X", "PUT", "-d", "hi")
        self.assertEqual((r.json()["method"], r.json()["path"], r.json()["bodyLength"]),
                         ("PUT", "/echo/x?y=1", 2))
        r = self.runner(f"{tb}/redirect?to=/elsewhere")
        self.assertEqual((r.status, r.header("Location")), (302, "/elsewhere"))


class EchoAppTest(StackTestCase):
    edgegate_env = None

    def test_echo_keeps_duplicates_and_raw_target(self):
        r = curl(f"{self.stack.app.url}/echo/%2F?a=%20", "-H", "X-A: 1", "-H", "X-A: 2")
        body = r.json()
        self.assertEqual(body["path"], "/echo/%2F?a=%20")
        self.assertEqual([v for k, v in body["headers"] if k == "X-A"], ["1", "2"])

    def test_slow_and_chunked(self):
        start = time.monotonic()
        r = curl(f"{self.stack.app.url}/slow?ms=200")
        self.assertEqual(r.status, 200)
        self.assertGreaterEqual(time.monotonic() - start, 0.2)
        r = curl(f"{self.stack.app.url}/chunked?n=3")
        self.assertEqual(r.body, b"chunk 0\nchunk 1\nchunk 2\n")
        self.assertEqual(r.header("Transfer-Encoding"), "chunked")

    def test_sigterm_stops_cleanly(self):
        for script in ("echo_app.py", "runner_standin.py", "dev_control_plane.py"):
            with self.subTest(script=script):
                args = {"runner_standin.py": ["--api-key", "k", "--sandbox", "s"],
                        "dev_control_plane.py": ["--fixture", DEFAULT_FIXTURE]}.get(script, [])
                proc = start_process([PYTHON, os.path.join(SUPPORT, script), "--port", "0",
                                      *args], log_dir=self.tmp)
                with socket.create_connection(("127.0.0.1", proc.port), timeout=2):
                    pass
                self.assertEqual(proc.stop(timeout=5), 0, proc.describe())

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="edgegate-devstack-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)


if __name__ == "__main__":
    unittest.main()
