"""Preview traffic: client -> edgegate -> runner stand-in -> echo app, and what each hop sees."""
import hashlib
import http.client
import json
import os
import sys
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
import payload  # noqa: E402
from client import curl  # noqa: E402
from stack import StackTestCase, temp_dir  # noqa: E402

ENCODED_PATHS = (
    "/_next/static/chunks/app/(local)/%40topbar/%5B%5B...slug%5D%5D/page.js",
    "/files/%2Ftmp%2Ffoo.txt",
    "/a?b=%2F&c=d%20e",
)


def values(pairs, name):
    return [v for k, v in pairs if k.lower() == name.lower()]


class PreviewProxyTest(StackTestCase):
    def setUp(self):
        self.test_id = uuid.uuid4().hex
        self.sid = self.stack.sandbox_id("public")

    def send(self, path="/x", *args, **kw):
        """A preview request tagged with X-Test-Id, so the runner's view of it can be found."""
        return self.preview(path, "-H", f"X-Test-Id: {self.test_id}", *args, **kw)

    def runner_view(self):
        seen = self.stack.runner_requests_with(self.test_id)
        self.assertEqual(len(seen), 1, f"the runner received {len(seen)} requests: {seen}")
        return seen[0]

    def ok_json(self, resp):
        self.assertEqual(resp.status, 200, resp)
        return resp.json()

    # --- routing ------------------------------------------------------------------------------
    def test_reaches_the_app_through_the_runner(self):
        app = self.ok_json(self.send("/x"))
        self.assertEqual(app["method"], "GET")
        self.assertEqual(app["path"], "/x")
        runner = self.runner_view()
        self.assertEqual(runner["target"],
                         f"/sandboxes/{self.sid}/toolbox/proxy/{self.stack.app_port}/x")

    def test_any_domain_and_a_port_suffix_are_served(self):
        for domain in ("preview.example.com", "proxy.localhost:4000", "a.b.c.example.org"):
            with self.subTest(domain=domain):
                host = self.stack.preview_host("public", domain=domain)
                app = self.ok_json(self.preview("/d", host=host))
                self.assertEqual(app["path"], "/d")

    def test_real_hostname_as_a_user_types_it(self):
        host = self.stack.preview_host("public")
        url = f"http://{host}:{self.eg.port}/hello?who=me"
        r = curl(url, "--resolve", f"{host}:{self.eg.port}:127.0.0.1", "-H",
                 f"X-Test-Id: {self.test_id}")
        self.assertEqual(self.ok_json(r)["path"], "/hello?who=me")
        self.assertEqual(values(self.runner_view()["headers"], "X-Forwarded-Host"),
                         [f"{host}:{self.eg.port}"])

    def test_encoded_paths_arrive_byte_identical(self):
        base = f"/sandboxes/{self.sid}/toolbox/proxy/{self.stack.app_port}"
        for path in ENCODED_PATHS:
            with self.subTest(path=path):
                self.test_id = uuid.uuid4().hex
                self.assertEqual(self.ok_json(self.send(path))["path"], path)
                self.assertEqual(self.runner_view()["target"], base + path)

    # --- request headers ----------------------------------------------------------------------
    def test_runner_key_is_set_once_and_a_client_value_never_reaches_the_runner(self):
        self.ok_json(self.send("/x", "-H", "X-Daytona-Authorization: Bearer client-forged",
                               "-H", "x-daytona-authorization: Bearer client-forged-2"))
        headers = self.runner_view()["headers"]
        self.assertEqual(values(headers, "X-Daytona-Authorization"),
                         [f"Bearer {self.stack.runner_api_key}"])
        self.assertNotIn("client-forged", json.dumps(headers))

    def test_forwarded_headers_and_host(self):
        host = self.stack.preview_host("public")
        self.ok_json(self.send("/x", "-H", "X-Forwarded-For: 10.1.2.3"))
        headers = self.runner_view()["headers"]
        self.assertEqual(values(headers, "X-Forwarded-Host"), [host])
        self.assertEqual(values(headers, "X-Forwarded-Proto"), ["http"])
        chain = [ip.strip() for v in values(headers, "X-Forwarded-For") for ip in v.split(",")]
        self.assertEqual(chain, ["10.1.2.3", "127.0.0.1"], headers)
        self.assertEqual(values(headers, "Host"), [f"127.0.0.1:{self.stack.runner.port}"])

    def test_forwarded_for_without_a_client_value(self):
        self.ok_json(self.send("/x"))
        headers = self.runner_view()["headers"]
        self.assertEqual(values(headers, "X-Forwarded-For"), ["127.0.0.1"])

    def test_hop_by_hop_headers_are_removed(self):
        self.ok_json(self.send(
            "/x", "-H", "Connection: keep-alive, X-Hop-Secret", "-H", "X-Hop-Secret: 1",
            "-H", "Keep-Alive: timeout=5", "-H", "Proxy-Authorization: Basic Zm9vOmJhcg==",
            "-H", "Proxy-Connection: keep-alive", "-H", "TE: gzip", "-H", "Trailer: X-Checksum",
            "-H", "Upgrade: foo/1"))
        headers = self.runner_view()["headers"]
        names = {k.lower() for k, _ in headers}
        for name in ("x-hop-secret", "keep-alive", "proxy-authorization", "proxy-connection",
                     "te", "upgrade"):
            self.assertNotIn(name, names, headers)
        # Trailer is not hop-by-hop (RFC 9110 §7.6.1): it announces trailers, which pass.
        self.assertEqual(values(headers, "Trailer"), ["X-Checksum"], headers)
        for v in values(headers, "Connection"):
            self.assertNotIn("x-hop-secret", v.lower(), headers)

    def test_daytona_control_headers_are_removed(self):
        self.ok_json(self.send("/x", "-H", "X-Daytona-Preview-Token: tok-123",
                               "-H", "X-Daytona-Disable-CORS: true"))
        names = {k.lower() for k, _ in self.runner_view()["headers"]}
        self.assertNotIn("x-daytona-preview-token", names)
        self.assertNotIn("x-daytona-disable-cors", names)

    def test_other_headers_and_cookies_reach_the_app(self):
        app = self.ok_json(self.send(
            "/x", "-H", "Cookie: a=1; b=two", "-H", "X-Custom: one", "-H", "X-Custom: two",
            "-H", "Authorization: Basic dXNlcjpwYXNz", "-H", "Accept-Language: fr",
            "-A", "edgegate-test/1"))
        headers = app["headers"]
        self.assertEqual(values(headers, "Cookie"), ["a=1; b=two"])
        self.assertEqual([x.strip() for v in values(headers, "X-Custom") for x in v.split(",")],
                         ["one", "two"])
        self.assertEqual(values(headers, "Authorization"), ["Basic dXNlcjpwYXNz"],
                         "Authorization that did not authenticate the request is the app's")
        self.assertEqual(values(headers, "Accept-Language"), ["fr"])
        self.assertEqual(values(headers, "User-Agent"), ["edgegate-test/1"])

    def test_runner_never_sees_the_proxy_api_key(self):
        self.ok_json(self.send("/x"))
        self.assertNotIn(self.stack.proxy_api_key, json.dumps(self.runner_view()))

    # --- responses ----------------------------------------------------------------------------
    def test_response_headers_keep_duplicates(self):
        r = self.send("/headers?Set-Cookie=a%3D1%3B%20Path%3D%2F&Set-Cookie=b%3D2&X-Dup=1&X-Dup=2"
                      "&Cache-Control=no-store")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header_all("Set-Cookie"), ["a=1; Path=/", "b=2"], r)
        self.assertEqual([x.strip() for v in r.header_all("X-Dup") for x in v.split(",")],
                         ["1", "2"], r)
        self.assertEqual(r.header("Cache-Control"), "no-store", r)

    def test_upstream_status_codes_pass_through(self):
        for code in (201, 400, 404, 418, 500, 503):
            with self.subTest(code=code):
                r = self.send(f"/status/{code}")
                self.assertEqual(r.status, code, r)
                self.assertEqual(r.json(), {"status": code}, r)

    def test_head_has_no_body(self):
        conn = self.conn()
        conn.request("HEAD", "/x", headers={"Host": self.stack.preview_host("public")})
        r = conn.getresponse()
        self.assertEqual((r.status, r.read()), (200, b""))
        # A body leaked after the HEAD answer would be read as the next status line.
        self.assertEqual(self.get_json(conn, "/after-head")["path"], "/after-head")

    def test_204_and_304_have_no_body(self):
        conn = self.conn()
        for code in (204, 304):
            with self.subTest(code=code):
                conn.request("GET", f"/status/{code}",
                             headers={"Host": self.stack.preview_host("public")})
                r = conn.getresponse()
                self.assertEqual((r.status, r.read()), (code, b""))
                self.assertIsNone(r.getheader("Transfer-Encoding"))
                self.assertIn(r.getheader("Content-Length"), (None, "0"))
                self.assertEqual(self.get_json(conn, f"/after-{code}")["path"], f"/after-{code}")

    def test_chunked_responses_arrive_intact(self):
        # Regression guard: the first upstream read can hold only a chunk header; relaying that
        # as an empty chunk writes "0\r\n\r\n", which ends the body for the client.
        conn = self.conn()
        host = self.stack.preview_host("public")
        size = 300_000
        want = payload.sha256_hex(size, "framing")
        for i in range(40):
            conn.request("GET", f"/download?size={size}&seed=framing&chunked=1",
                         headers={"Host": host})
            r = conn.getresponse()
            body = r.read()
            self.assertEqual((r.status, len(body)), (200, size), f"response {i}")
            self.assertEqual(hashlib.sha256(body).hexdigest(), want, f"response {i}")

    def test_paced_chunks_and_server_sent_events(self):
        r = self.send("/chunked?n=5&ms=30")
        self.assertEqual((r.status, r.exit_code), (200, 0), r)
        self.assertEqual(r.body, b"".join(b"chunk %d\n" % i for i in range(5)), r)
        r = self.send("/sse?n=3&ms=30", "-H", "Accept: text/event-stream")
        self.assertEqual((r.status, r.exit_code), (200, 0), r)
        self.assertEqual(r.header("Content-Type"), "text/event-stream", r)
        self.assertEqual(r.body, b"".join(b"data: event %d\n\n" % i for i in range(3)), r)

    def conn(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.eg.port, timeout=10)
        self.addCleanup(conn.close)
        return conn

    def get_json(self, conn, path):
        conn.request("GET", path, headers={"Host": self.stack.preview_host("public")})
        r = conn.getresponse()
        body = r.read()
        self.assertEqual(r.status, 200, body)
        return json.loads(body)

    # --- request bodies -----------------------------------------------------------------------
    def test_post_with_content_length(self):
        app = self.ok_json(self.send("/echo", "--data-binary", '{"hello":"world"}',
                                     "-H", "Content-Type: application/json"))
        self.assertEqual(app["method"], "POST")
        self.assertEqual(app["bodyLength"], 17)
        self.assertEqual(app["bodySha256"], hashlib.sha256(b'{"hello":"world"}').hexdigest())
        self.assertEqual(values(app["headers"], "Content-Type"), ["application/json"])

    def test_post_with_an_empty_body(self):
        app = self.ok_json(self.send("/echo", "-X", "POST", "-H", "Content-Length: 0"))
        self.assertEqual((app["method"], app["bodyLength"]), ("POST", 0))

    def test_other_methods(self):
        for method in ("PUT", "PATCH", "DELETE", "OPTIONS"):
            with self.subTest(method=method):
                app = self.ok_json(self.send("/echo", "-X", method, "-d", "x=1"))
                self.assertEqual((app["method"], app["bodyLength"]), (method, 3))

    def test_post_chunked(self):
        # A small body makes the first read hold only framing: the case that broke the relay.
        for body in (b"abc", b"x" * 70000):
            with self.subTest(size=len(body)):
                self.test_id = uuid.uuid4().hex
                app = self.ok_json(self.send("/upload", "--data-binary", body.decode(),
                                             "-H", "Transfer-Encoding: chunked"))
                self.assertEqual(app, {"bytes": len(body),
                                       "sha256": hashlib.sha256(body).hexdigest()})
        size = 3 * 1024 * 1024 + 5
        with temp_dir() as tmp:
            path = os.path.join(tmp, "body")
            want = payload.write_file(path, size, "chunked")
            r = self.send("/upload", "--data-binary", f"@{path}",
                          "-H", "Transfer-Encoding: chunked")
        self.assertEqual(self.ok_json(r), {"bytes": size, "sha256": want})
        self.assert_runner_saw_no_garbage()

    def assert_runner_saw_no_garbage(self):
        malformed = [e for e in self.stack.runner_requests() if e.get("malformed")]
        self.assertEqual(malformed, [], "bytes edgegate sent the runner that are not a request")

    def test_expect_100_continue(self):
        size = 2 * 1024 * 1024
        with temp_dir() as tmp:
            path = os.path.join(tmp, "body")
            want = payload.write_file(path, size, "expect")
            # curl waits --expect100-timeout for "100 Continue" before sending the body anyway;
            # with 10 s against --max-time 8, a proxy that never answers 100 fails the test.
            for extra in ([],  # curl's own Expect for a body this size
                          ["-H", "Expect: 100-continue"],
                          ["-H", "Expect: 100-continue", "-H", "Transfer-Encoding: chunked"]):
                with self.subTest(extra=extra):
                    r = self.send("/upload", "--data-binary", f"@{path}", *extra,
                                  "--expect100-timeout", "10", timeout=8)
                    self.assertIn("> Expect: 100-continue", r.stderr)
                    self.assertEqual(self.ok_json(r), {"bytes": size, "sha256": want})
            small = self.send("/upload", "-d", "abc", "-H", "Expect: 100-continue",
                              "--expect100-timeout", "10", timeout=8)
            self.assertEqual(self.ok_json(small)["bytes"], 3)

class ControlPlaneCallsTest(StackTestCase):
    """What edgegate asks the Daytona API for a preview request, and with which key."""

    def test_calls_carry_the_proxy_key(self):
        sid = self.stack.add_sandbox(public=True)
        self.stack.cp_reset()
        r = self.preview("/x", host=f"{self.stack.app_port}-{sid}.proxy.localhost")
        self.assertEqual(r.status, 200, r)
        calls = [c for c in self.stack.cp_calls() if c["path"] != "/api/config"]
        paths = [c["path"] for c in calls]
        self.assertIn(f"/api/preview/{sid}/public", paths)
        self.assertIn(f"/api/runners/by-sandbox/{sid}", paths)
        for c in calls:
            with self.subTest(path=c["path"]):
                self.assertEqual(values(c["headerList"], "Authorization"),
                                 [f"Bearer {self.stack.proxy_api_key}"])
                self.assertIn("application/json", c["headers"].get("Accept", ""))
                self.assertNotEqual(c["status"], 401)

    def test_second_request_is_served_from_cache(self):
        sid = self.stack.add_sandbox(public=True)
        host = f"{self.stack.app_port}-{sid}.proxy.localhost"
        conn = http.client.HTTPConnection("127.0.0.1", self.eg.port, timeout=10)
        self.addCleanup(conn.close)
        for i in range(2):
            conn.request("GET", f"/{i}", headers={"Host": host})
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            if i == 0:
                self.stack.cp_reset()
        lookups = [c["path"] for c in self.stack.cp_calls()
                   if c["path"].startswith(("/api/preview/", "/api/runners/"))]
        self.assertEqual(lookups, [], "the route and the public status are cached")


if __name__ == "__main__":
    unittest.main()
