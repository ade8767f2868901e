"""Preview authentication through the proxy, end to end (contract sections 2-4,
docs/authentication.md): curl -> edgegate -> runner stand-in -> echo app, with the dev control
plane deciding who may do what, and an OIDC stand-in for the browser login.

One dev stack, three edgegates: the main one (OIDC settings served by /api/config), one with
PREVIEW_WARNING_ENABLED=true, and one that only the API-outage tests use (so that its circuit
breaker and caches are theirs alone).
"""
import base64
import concurrent.futures
import json
import os
import shutil
import sys
import tempfile
import time
import unittest
import urllib.parse
import uuid

SUPPORT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support")
sys.path.insert(0, SUPPORT)
import client  # noqa: E402
from client import assert_error  # noqa: E402
from stack import DEFAULT_FIXTURE, PYTHON, StackTestCase, start_process, wait_until  # noqa: E402

USER = "user-token-699866d4e82b52d924978391a5f5fd00"          # may use "public" and "private"
NO_ACCESS_USER = "user-token-without-access-6e3dc1a3cfafe607"  # may use nothing
PRIVATE_TOKEN = "ed08887e4a77970acaaea751159391a9"           # "private"'s preview token
# Added to a copy of fixtures/test.json: a signed preview token for a second echo app's port,
# and private sandboxes that USER may use and that nothing else touches (fresh cache entries).
SIGNED = "sgn" + uuid.uuid4().hex
FRESH_BEARER_IDS = [str(uuid.uuid4()) for _ in range(2)]
CHROME_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/126.0.0.0 Safari/537.36")
RESERVED_PORTS = (22222, 2280, 33333)


def values(pairs, name):
    return [v for k, v in pairs if k.lower() == name.lower()]


def cookie_pair(set_cookie):
    """'name=value; Path=/; ...' -> ('name', 'value')."""
    name, _, value = set_cookie.split(";", 1)[0].partition("=")
    return name.strip(), value.strip()


class PreviewAuthTest(StackTestCase):
    edgegate_env = None  # started in setUpClass, after the OIDC settings are in place

    @classmethod
    def setUpClass(cls):
        tmp = tempfile.mkdtemp(prefix="edgegate-auth-test-")
        cls.addClassCleanup(shutil.rmtree, tmp, True)
        # The app behind the signed preview URL: the fixture's token names port 3000, where
        # nothing of ours listens, so a copy of the fixture names this app's port instead.
        cls.signed_app = start_process([PYTHON, os.path.join(SUPPORT, "echo_app.py"), "--port",
                                        "0", "--quiet"], name="signed-echo-app", log_dir=tmp)
        cls.addClassCleanup(cls.signed_app.stop)
        with open(DEFAULT_FIXTURE, encoding="utf-8") as f:
            fx = json.load(f)
        private = next(s["id"] for s in fx["sandboxes"] if s.get("name") == "private")
        fx["signedPreviewTokens"][SIGNED] = {"sandboxId": private, "port": cls.signed_app.port}
        for sid in FRESH_BEARER_IDS:
            fx["sandboxes"].append({"id": sid, "runnerId": "runner-1", "state": "started",
                                    "public": False, "previewTokens": [], "snapshotRef": None})
            fx["userTokens"][USER].append(sid)
        cls.fixture_path = os.path.join(tmp, "fixture.json")
        with open(cls.fixture_path, "w", encoding="utf-8") as f:
            json.dump(fx, f)
        super().setUpClass()
        st = cls.stack
        cls.oidc = st._start([PYTHON, os.path.join(SUPPORT, "oidc_standin.py"), "--port", "0",
                              "--client-id", "daytona"], "oidc")
        st._json(st.cp, "POST", "/_dev/oidc", {"issuer": cls.oidc.url, "clientId": "daytona",
                                                 "audience": "daytona"})
        cls.eg = st.start_edgegate({"API_CLIENT_TIMEOUT_SEC": 2})
        cls.warn_eg = st.start_edgegate({"PREVIEW_WARNING_ENABLED": "true"})
        cls.down_eg = st.start_edgegate({"API_CLIENT_TIMEOUT_SEC": 1})

    def setUp(self):
        self.test_id = uuid.uuid4().hex
        self.private = self.stack.sandbox_id("private")
        self.public = self.stack.sandbox_id("public")

    # --- helpers ------------------------------------------------------------------------------
    def send(self, path="/x", *args, eg=None, host=None, sandbox="private", port=None, **kw):
        """curl to an edgegate (default the main one) with this test's X-Test-Id."""
        eg = eg or self.eg
        host = host or self.stack.preview_host(sandbox, port)
        return client.curl(f"http://127.0.0.1:{eg.port}{path}", "-H", f"Host: {host}",
                           "-H", f"X-Test-Id: {self.test_id}", *args, **kw)

    def base_host(self, eg=None):
        return f"proxy.localhost:{(eg or self.eg).port}"

    def host_of(self, sid, port=None):
        return f"{port or self.stack.app_port}-{sid}.proxy.localhost"

    def reached(self):
        """What the runner received with this test's X-Test-Id."""
        return self.stack.runner_requests_with(self.test_id)

    def assert_not_reached(self):
        self.assertEqual(self.reached(), [], "the runner received a request it must not")

    def assert_401(self, resp, path="/x", method="GET"):
        body = assert_error(self, resp, 401, "UNAUTHORIZED", path=path, method=method)
        self.assertIsNone(resp.header("Location"), resp)
        return body

    def echo(self, resp):
        """The echo app's view of a request that must have reached it."""
        self.assertEqual(resp.status, 200, resp)
        return resp.json()

    def calls(self, method, path):
        return [c for c in self.stack.cp_calls() if c["method"] == method and c["path"] == path]

    def count(self, method, path):
        return len(self.calls(method, path))

    def private_sandbox(self, *tokens):
        """A new private sandbox with these preview tokens: nothing about it is cached yet."""
        return self.stack.add_sandbox(public=False, previewTokens=list(tokens))

    # --- public sandboxes and reserved ports -------------------------------------------------
    def test_public_sandbox_needs_no_credential_and_makes_no_check(self):
        sid = self.stack.add_sandbox(public=True)
        r = self.send("/x", "-H", "Authorization: Bearer the-apps-own-token",
                      host=self.host_of(sid))
        seen = self.echo(r)
        self.assertEqual(values(seen["headers"], "Authorization"),
                         ["Bearer the-apps-own-token"],
                         "on a public sandbox Authorization is the app's: it must arrive")
        checks = [c["path"] for c in self.stack.cp_calls()
                  if c["path"].startswith((f"/api/preview/{sid}/access",
                                           f"/api/preview/{sid}/validate"))]
        self.assertEqual(checks, [], "a public sandbox needs no credential check")

    def test_reserved_ports_need_auth_even_on_a_public_sandbox(self):
        for port in RESERVED_PORTS:
            with self.subTest(port=port):
                self.assert_401(self.send("/x", sandbox="public", port=port))
        self.assert_not_reached()

    def test_reserved_port_with_a_valid_bearer_reaches_the_runner(self):
        self.send("/x", "-H", f"Authorization: Bearer {USER}", sandbox="public", port=22222)
        seen = self.reached()
        self.assertEqual(len(seen), 1, seen)
        self.assertEqual(seen[0]["target"], f"/sandboxes/{self.public}/toolbox/proxy/22222/x")
        self.assertEqual(values(seen[0]["headers"], "Authorization"), [])

    # --- private sandboxes: each credential -------------------------------------------------
    def test_private_sandbox_without_credentials_is_401_naming_the_ways(self):
        body = self.assert_401(self.send("/x"))
        for way in ("Authorization", "X-Daytona-Preview-Token", "DAYTONA_SANDBOX_AUTH_KEY"):
            self.assertIn(way, body["message"])
        self.assert_not_reached()

    def test_bearer_reaches_the_app_and_is_not_forwarded(self):
        seen = self.echo(self.send("/x", "-H", f"Authorization: Bearer {USER}"))
        self.assertEqual(values(seen["headers"], "Authorization"), [])
        runner = self.reached()
        self.assertEqual(len(runner), 1, runner)
        self.assertEqual(values(runner[0]["headers"], "Authorization"), [])
        self.assertEqual(values(runner[0]["headers"], "X-Daytona-Authorization"),
                         [f"Bearer {self.stack.runner_api_key}"])

    def test_bearer_is_checked_with_the_users_own_token_and_cached(self):
        sid = FRESH_BEARER_IDS[0]
        path = f"/api/preview/{sid}/access"
        self.assertEqual(self.count("GET", path), 0)
        self.echo(self.send("/a", "-H", f"Authorization: Bearer {USER}", host=self.host_of(sid)))
        calls = self.calls("GET", path)
        self.assertEqual(len(calls), 1, calls)
        self.assertEqual(values(calls[0]["headerList"], "Authorization"), [f"Bearer {USER}"])
        self.assertIn("127.0.0.1", calls[0]["headers"].get("X-Forwarded-For", ""))
        self.echo(self.send("/b", "-H", f"Authorization: Bearer {USER}", host=self.host_of(sid)))
        self.assertEqual(self.count("GET", path), 1, "the second request asked the API again")

    def test_bearer_without_access_is_401(self):
        body = self.assert_401(self.send("/x", "-H", f"Authorization: Bearer {NO_ACCESS_USER}"))
        self.assertIn("Bearer", body["message"])
        self.assert_not_reached()

    def test_preview_token_header_reaches_the_app_and_is_never_forwarded(self):
        seen = self.echo(self.send("/x", "-H", f"X-Daytona-Preview-Token: {PRIVATE_TOKEN}"))
        self.assertEqual(values(seen["headers"], "X-Daytona-Preview-Token"), [])
        self.assertEqual([h for h in self.reached()[0]["headers"]
                          if h[0].lower() == "x-daytona-preview-token"], [])

    def test_invalid_preview_token_is_401_and_named(self):
        body = self.assert_401(self.send("/x", "-H", "X-Daytona-Preview-Token: not-a-token"))
        self.assertIn("X-Daytona-Preview-Token", body["message"])
        self.assert_not_reached()

    def test_apps_own_authorization_stays_when_a_preview_token_authenticates(self):
        for auth in ("Bearer the-apps-own-token", "Basic dXNlcjpwYXNz"):
            with self.subTest(auth):
                seen = self.echo(self.send("/x", "-H", f"Authorization: {auth}",
                                           "-H", f"X-Daytona-Preview-Token: {PRIVATE_TOKEN}"))
                self.assertEqual(values(seen["headers"], "Authorization"), [auth])

    def test_query_key_is_cut_out_and_every_other_byte_is_kept(self):
        key = f"DAYTONA_SANDBOX_AUTH_KEY={PRIVATE_TOKEN}"
        cases = [
            (f"/x?a=%2F&{key}&b=c%20d", "/x?a=%2F&b=c%20d"),
            (f"/x?{key}&a=(local)&a=%40", "/x?a=(local)&a=%40"),
            (f"/p%40th/%5Bq%5D?z=1&{key}", "/p%40th/%5Bq%5D?z=1"),
            (f"/x?{key}", "/x"),
        ]
        for sent, expected in cases:
            with self.subTest(sent=sent):
                self.test_id = uuid.uuid4().hex
                self.assertEqual(self.echo(self.send(sent))["path"], expected)
                runner = self.reached()
                self.assertEqual(
                    [e["target"] for e in runner],
                    [f"/sandboxes/{self.private}/toolbox/proxy/{self.stack.app_port}{expected}"])

    def test_query_key_is_kept_when_it_did_not_authenticate(self):
        with self.subTest("public sandbox"):
            target = "/x?DAYTONA_SANDBOX_AUTH_KEY=something&a=1"
            self.assertEqual(self.echo(self.send(target, sandbox="public"))["path"], target)
        with self.subTest("the header token authenticated first"):
            target = "/x?a=1&DAYTONA_SANDBOX_AUTH_KEY=other"
            seen = self.echo(self.send(target, "-H", f"X-Daytona-Preview-Token: {PRIVATE_TOKEN}"))
            self.assertEqual(seen["path"], target)

    # --- cookies minted by the proxy ---------------------------------------------------------
    def signed_host(self, port=None):
        return f"{port or self.signed_app.port}-{SIGNED}.proxy.localhost"

    def test_signed_preview_url_reaches_the_app_and_its_cookie_works_alone(self):
        r = self.send("/first", host=self.signed_host())
        self.assertEqual(self.echo(r)["path"], "/first")
        self.assertEqual([e["target"] for e in self.reached()],
                         [f"/sandboxes/{self.private}/toolbox/proxy/{self.signed_app.port}/first"])
        cookies = [c for c in r.header_all("Set-Cookie")
                   if c.startswith(f"daytona-sandbox-auth-{SIGNED}=")]
        self.assertEqual(len(cookies), 1, r)
        self.assertIn("httponly", cookies[0].lower())
        name, value = cookie_pair(cookies[0])
        # The cookie alone, on another edgegate holding the same proxy key, which never checked
        # the signed token: no signed-URL check may be made.
        path = f"/api/preview/{SIGNED}/{self.signed_app.port}/sandbox-id"
        lookups = self.count("GET", path)
        again = self.send("/second", "-H", f"Cookie: {name}={value}", eg=self.warn_eg,
                          host=self.signed_host())
        self.assertEqual(self.echo(again)["path"], "/second")
        self.assertEqual(self.count("GET", path), lookups,
                         "the cookie alone must be enough, without asking the API")
        self.barrier()
        self.assertEqual(self.activity_calls(SIGNED), 0,
                         "activity must be reported for the real sandbox, not the token")

    def test_signed_preview_cookie_opens_only_its_own_port(self):
        minted = self.send("/mint", host=self.signed_host())
        self.assertEqual(minted.status, 200, minted)
        name, value = cookie_pair(next(c for c in minted.header_all("Set-Cookie")
                                       if c.startswith(f"daytona-sandbox-auth-{SIGNED}=")))
        self.test_id = uuid.uuid4().hex  # the minting request did reach the app
        for port in (22222, self.stack.app_port):
            with self.subTest(port=port):
                r = self.send("/other", "-H", f"Cookie: {name}={value}",
                              host=self.signed_host(port=port))
                self.assertIn(r.status, (401, 404), r)
        self.assert_not_reached()

    def test_signed_preview_token_for_another_port_is_refused(self):
        # The token names no sandbox and is not signed for this port: nothing is there.
        r = self.send("/x", host=self.signed_host(port=self.stack.app_port))
        assert_error(self, r, 404, "NOT_FOUND", path="/x")
        self.assert_not_reached()

    def test_forged_and_renamed_cookies_are_refused(self):
        minted = self.send("/mint", host=self.signed_host())
        self.assertEqual(minted.status, 200, minted)
        _, value = cookie_pair(next(c for c in minted.header_all("Set-Cookie")
                                    if c.startswith("daytona-sandbox-auth-")))
        parts = value.split(".")
        forged = ".".join(parts[:-1] + ["A" * len(parts[-1])])
        self.test_id = uuid.uuid4().hex  # the minting request did reach the app
        for label, cookie in (
                ("renamed to the sandbox id", f"daytona-sandbox-auth-{self.private}={value}"),
                ("forged mac", f"daytona-sandbox-auth-{self.private}={forged}"),
                ("garbage", f"daytona-sandbox-auth-{self.private}=v1.9999999999.x.y")):
            with self.subTest(label):
                self.assert_401(self.send("/x", "-H", f"Cookie: {cookie}"))
        self.assert_not_reached()

    def wait_for_login_ready(self, host):
        """edgegate loads the OIDC settings at start; until then a login is 503."""
        def ready():
            r = client.curl(f"http://127.0.0.1:{self.eg.port}/probe", "-H", f"Host: {host}",
                            "-H", "Accept: text/html")
            return r if r.status != 503 else None
        return wait_until(ready, 15, "the OIDC settings to load")

    def test_browser_navigation_redirects_to_the_login(self):
        host = f"{self.stack.app_port}-{self.private}.{self.base_host()}"
        self.wait_for_login_ready(host)
        r = self.send("/page?q=1", "-H", "Accept: text/html,application/xhtml+xml", host=host)
        self.assertEqual(r.status, 307, r)
        location = r.header("Location") or ""
        discovery = client.curl(f"{self.oidc.url}/.well-known/openid-configuration").json()
        authorize = discovery["authorization_endpoint"]
        self.assertTrue(authorize.startswith(self.oidc.url), discovery)
        self.assertTrue(location.startswith(authorize + "?"), location)
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        self.assertEqual(q.get("code_challenge_method"), "S256", q)
        self.assertTrue(q.get("code_challenge"), q)
        self.assertEqual(q.get("client_id"), "daytona", q)
        self.assertEqual(q.get("response_type"), "code", q)
        self.assertEqual(q.get("scope"), "openid profile", q)
        self.assertEqual(q.get("redirect_uri"), f"http://{self.base_host()}/callback", q)
        state = json.loads(base64.urlsafe_b64decode(q["state"] + "=" * (-len(q["state"]) % 4)))
        self.assertEqual(state.get("returnTo"), f"http://{host}/page?q=1", state)
        self.assertEqual(state.get("sandboxId"), self.private, state)
        pkce = [c for c in r.header_all("Set-Cookie") if c.startswith("pkce_verifier=")]
        self.assertEqual(len(pkce), 1, r)
        self.assertIn("httponly", pkce[0].lower())
        self.assertIn("max-age=300", pkce[0].lower().replace(" ", ""))
        self.assert_not_reached()

    def test_login_callback_mints_a_sandbox_cookie_that_works_alone(self):
        host = f"{self.stack.app_port}-{self.private}.{self.base_host()}"
        self.wait_for_login_ready(host)
        r = self.send("/after-login", "-H", "Accept: text/html", host=host)
        self.assertEqual(r.status, 307, r)
        pkce = cookie_pair(next(c for c in r.header_all("Set-Cookie")
                                if c.startswith("pkce_verifier=")))
        idp = client.curl(r.header("Location"))  # the stand-in logs USER in at once
        self.assertEqual(idp.status, 302, idp)
        callback = urllib.parse.urlsplit(idp.header("Location"))
        self.assertEqual(callback.netloc, self.base_host())
        back = client.curl(f"http://127.0.0.1:{self.eg.port}{callback.path}?{callback.query}",
                           "-H", f"Host: {self.base_host()}", "-H", f"Cookie: {pkce[0]}={pkce[1]}")
        self.assertEqual(back.status, 302, back)
        self.assertEqual(back.header("Location"), f"http://{host}/after-login", back)
        auth = [c for c in back.header_all("Set-Cookie")
                if c.startswith(f"daytona-sandbox-auth-{self.private}=")]
        self.assertEqual(len(auth), 1, back)
        name, value = cookie_pair(auth[0])
        seen = self.echo(self.send("/after-login", "-H", f"Cookie: {name}={value}", host=host))
        self.assertEqual(seen["path"], "/after-login")
        with self.subTest("the cookie does not open another sandbox"):
            other = self.private_sandbox(uuid.uuid4().hex)
            self.assert_401(self.send("/x", "-H", f"Cookie: {name}={value}",
                                      "-H", f"Cookie: daytona-sandbox-auth-{other}={value}",
                                      host=self.host_of(other)))

    def test_requests_that_cannot_follow_a_redirect_get_401(self):
        host = f"{self.stack.app_port}-{self.private}.{self.base_host()}"
        self.wait_for_login_ready(host)
        ws = ("-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
              "-H", "Sec-WebSocket-Version: 13",
              "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")
        for label, args, method in (
                ("websocket upgrade", ("-H", "Accept: text/html", *ws), "GET"),
                ("POST", ("-X", "POST", "-H", "Accept: text/html", "--data", "x=1"), "POST"),
                ("API client", ("-H", "Accept: application/json"), "GET"),
                ("no Accept", ("-H", "Accept:"), "GET")):
            with self.subTest(label):
                self.assert_401(self.send("/x", *args, host=host), method=method)
        self.assert_not_reached()

    # --- one sandbox's credentials on another, unknown sandboxes ------------------------------
    def test_credentials_for_one_sandbox_do_not_open_another(self):
        own = uuid.uuid4().hex
        other = self.private_sandbox(own)
        host = self.host_of(other)
        for label, args, target in (
                ("bearer", ("-H", f"Authorization: Bearer {USER}"), "/x"),
                ("preview token", ("-H", f"X-Daytona-Preview-Token: {PRIVATE_TOKEN}"), "/x"),
                ("query key", (), f"/x?DAYTONA_SANDBOX_AUTH_KEY={PRIVATE_TOKEN}")):
            with self.subTest(label):
                r = self.send(target, *args, host=host)
                assert_error(self, r, 401, "UNAUTHORIZED", path="/x")
        self.assert_not_reached()
        # ...while the other sandbox's own token does open it.
        self.echo(self.send("/x", "-H", f"X-Daytona-Preview-Token: {own}", host=host))

    def test_unknown_sandbox_is_404_whatever_the_credentials(self):
        sid = str(uuid.uuid4())
        host = self.host_of(sid)
        for label, args in (("none", ()), ("bearer", ("-H", f"Authorization: Bearer {USER}")),
                            ("browser", ("-H", "Accept: text/html"))):
            with self.subTest(label):
                body = assert_error(self, self.send("/x", *args, host=host), 404, "NOT_FOUND",
                                    path="/x")
                self.assertIn(sid, body["message"])

    # --- caching -------------------------------------------------------------------------------
    def test_valid_preview_token_is_checked_once_even_when_concurrent(self):
        token = uuid.uuid4().hex
        sid = self.private_sandbox(token)
        path = f"/api/preview/{sid}/validate/{token}"
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            rs = list(pool.map(lambda i: self.send(f"/c{i}", "-H",
                                                   f"X-Daytona-Preview-Token: {token}",
                                                   host=self.host_of(sid)), range(20)))
        for r in rs:
            self.assertEqual(r.status, 200, r)
        calls = self.calls("GET", path)
        self.assertEqual(len(calls), 1, "simultaneous checks are not coalesced")
        self.assertEqual(values(calls[0]["headerList"], "Authorization"),
                         [f"Bearer {self.stack.proxy_api_key}"])
        self.echo(self.send("/again", "-H", f"X-Daytona-Preview-Token: {token}",
                            host=self.host_of(sid)))
        self.assertEqual(self.count("GET", path), 1, "the second request asked the API again")

    def test_invalid_token_is_cached_briefly(self):
        token = uuid.uuid4().hex
        sid = self.private_sandbox(uuid.uuid4().hex)
        path = f"/api/preview/{sid}/validate/{token}"
        args = ("-H", f"X-Daytona-Preview-Token: {token}")
        self.assert_401(self.send("/x", *args, host=self.host_of(sid)))
        start = time.monotonic()
        self.assertEqual(self.count("GET", path), 1)
        self.assert_401(self.send("/x", *args, host=self.host_of(sid)))
        self.assertEqual(self.count("GET", path), 1, "an invalid answer is not cached at all")

        def asked_again():
            self.assert_401(self.send("/x", *args, host=self.host_of(sid)))
            return self.count("GET", path) >= 2
        wait_until(asked_again, 15, "the invalid answer to expire", interval=0.25)
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, 3.0, "the invalid answer was cached too briefly")
        self.assertLessEqual(elapsed, 12.0, "the invalid answer was cached too long")

    # --- API outage ------------------------------------------------------------------------------
    def test_api_down_cached_decision_still_serves_and_uncached_is_503(self):
        cached, uncached = uuid.uuid4().hex, uuid.uuid4().hex
        sid = self.private_sandbox(cached, uncached)
        host, bearer_host = self.host_of(sid), self.host_of(FRESH_BEARER_IDS[1])
        token_args = ("-H", f"X-Daytona-Preview-Token: {cached}")
        bearer_args = ("-H", f"Authorization: Bearer {USER}")
        self.echo(self.send("/x", *token_args, eg=self.down_eg, host=host))
        self.echo(self.send("/x", *bearer_args, eg=self.down_eg, host=bearer_host))
        self.addCleanup(self.stack.cp_reset)
        self.stack.cp_fail("503")
        for label, args, h in (("cached preview token", token_args, host),
                               ("cached bearer", bearer_args, bearer_host)):
            with self.subTest(label):
                self.assertEqual(self.echo(self.send("/y", *args, eg=self.down_eg, host=h))["path"],
                                 "/y")
        for label, args in (("preview token", ("-H", f"X-Daytona-Preview-Token: {uncached}")),
                            ("bearer", bearer_args)):
            with self.subTest(label):
                self.test_id = uuid.uuid4().hex
                r = self.send("/x", *args, eg=self.down_eg, host=host, timeout=20)
                body = assert_error(self, r, 503, "SERVICE_UNAVAILABLE", path="/x")
                self.assertTrue(r.header("Retry-After"), r)
                self.assertIn("unavailable", body["message"])
                self.assert_not_reached()
        self.assertTrue(any(c["path"] == f"/api/preview/{sid}/validate/{uncached}"
                            for c in self.stack.cp_calls()), "the uncached token was not asked")

    # --- toolbox mode ----------------------------------------------------------------------------
    def toolbox(self, path, *args):
        return self.send(path, *args, host=self.base_host())

    def test_toolbox_always_needs_auth_on_any_base_host(self):
        for host in (self.base_host(), f"127.0.0.1:{self.eg.port}"):
            for sandbox in ("public", "private"):
                with self.subTest(host=host, sandbox=sandbox):
                    path = f"/toolbox/{self.stack.sandbox_id(sandbox)}/version"
                    self.assert_401(self.send(path, "-H", "Accept: text/html", host=host),
                                    path=path)
        self.assert_not_reached()

    def test_toolbox_with_a_bearer_or_a_preview_token_reaches_the_toolbox(self):
        with self.subTest("bearer, 127.0.0.1 host"):
            r = self.send(f"/toolbox/{self.private}/version", "-H", f"Authorization: Bearer {USER}",
                          host=f"127.0.0.1:{self.eg.port}")
            self.assertEqual(self.echo(r), {"version": "0.0.0-dev"})
        with self.subTest("preview token"):
            r = self.toolbox(f"/toolbox/{self.private}/echo/a%2Fb?x=1&y=%20",
                             "-H", f"X-Daytona-Preview-Token: {PRIVATE_TOKEN}")
            seen = self.echo(r)
            self.assertEqual(seen["target"],
                             f"/sandboxes/{self.private}/toolbox/echo/a%2Fb?x=1&y=%20")
            self.assertEqual(values(seen["headers"], "X-Daytona-Preview-Token"), [])
        with self.subTest("query key"):
            r = self.toolbox(f"/toolbox/{self.private}/echo?x=1&"
                             f"DAYTONA_SANDBOX_AUTH_KEY={PRIVATE_TOKEN}")
            self.assertEqual(self.echo(r)["path"], "/echo?x=1")

    def test_toolbox_redirect_stays_under_the_toolbox_prefix(self):
        r = self.toolbox(f"/toolbox/{self.private}/redirect?to=/files",
                         "-H", f"Authorization: Bearer {USER}")
        self.assertEqual(r.status, 302, r)
        self.assertEqual(r.header("Location"), f"/toolbox/{self.private}/files")

    # --- CORS ------------------------------------------------------------------------------------
    ORIGIN = "https://other.example"

    def test_foreign_preflight_is_answered_by_the_proxy(self):
        for sandbox in ("public", "private"):  # browsers send preflights without credentials
            with self.subTest(sandbox=sandbox):
                r = self.send("/api/thing", "-X", "OPTIONS", "-H", f"Origin: {self.ORIGIN}",
                              "-H", "Access-Control-Request-Method: POST",
                              "-H", "Access-Control-Request-Headers: content-type,x-custom",
                              sandbox=sandbox)
                self.assertEqual(r.status, 204, r)
                self.assertEqual(r.header_all("Access-Control-Allow-Origin"), [self.ORIGIN])
                self.assertEqual(r.header("Access-Control-Allow-Credentials"), "true")
                self.assertIn("POST", r.header("Access-Control-Allow-Methods") or "")
                self.assertIn("x-custom", (r.header("Access-Control-Allow-Headers") or "").lower())
                self.assertEqual(r.header("Access-Control-Max-Age"), "43200")
        self.assert_not_reached()

    def test_foreign_origin_get_is_reflected_with_credentials(self):
        r = self.send("/x", "-H", f"Origin: {self.ORIGIN}", sandbox="public")
        self.echo(r)
        self.assertEqual(r.header_all("Access-Control-Allow-Origin"), [self.ORIGIN])
        self.assertEqual(r.header_all("Access-Control-Allow-Credentials"), ["true"])
        self.assertIn("origin", ",".join(r.header_all("Vary")).lower())

    def test_same_origin_gets_no_cors_headers(self):
        host = self.stack.preview_host("public")
        r = self.send("/x", "-H", f"Origin: http://{host}", sandbox="public")
        self.echo(r)
        self.assertEqual(r.header_all("Access-Control-Allow-Origin"), [])

    def test_apps_own_cors_headers_are_not_duplicated(self):
        q = urllib.parse.urlencode({"Access-Control-Allow-Origin": "https://app.example",
                                    "Access-Control-Allow-Credentials": "false"})
        r = self.send(f"/headers?{q}", "-H", f"Origin: {self.ORIGIN}", sandbox="public")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header_all("Access-Control-Allow-Origin"), ["https://app.example"])
        self.assertEqual(r.header_all("Access-Control-Allow-Credentials"), ["false"])

    def test_disable_cors_header_turns_cors_off_and_is_not_forwarded(self):
        with self.subTest("GET"):
            r = self.send("/x", "-H", f"Origin: {self.ORIGIN}",
                          "-H", "X-Daytona-Disable-CORS: true", sandbox="public")
            seen = self.echo(r)
            self.assertEqual(r.header_all("Access-Control-Allow-Origin"), [])
            self.assertEqual(values(seen["headers"], "X-Daytona-Disable-CORS"), [])
        with self.subTest("preflight goes to the app"):
            r = self.send("/pre", "-X", "OPTIONS", "-H", f"Origin: {self.ORIGIN}",
                          "-H", "Access-Control-Request-Method: POST",
                          "-H", "X-Daytona-Disable-CORS: true", sandbox="public")
            seen = self.echo(r)
            self.assertEqual(seen["method"], "OPTIONS")
            self.assertEqual(r.header_all("Access-Control-Allow-Origin"), [])

    # --- activity --------------------------------------------------------------------------------
    def activity_calls(self, sid):
        return self.count("POST", f"/api/sandbox/{sid}/last-activity")

    def barrier(self):
        """A request to a fresh sandbox, and its activity call seen: calls made before it for
        requests that already finished have had their chance to arrive."""
        sid = self.stack.add_sandbox(public=True)
        self.echo(self.send("/barrier", host=self.host_of(sid)))
        wait_until(lambda: self.activity_calls(sid) >= 1, 10, "the barrier's activity call")

    def fire(self, sid, n, *args):
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            rs = list(pool.map(lambda i: self.send(f"/a{i}", *args, host=self.host_of(sid)),
                               range(n)))
        for r in rs:
            self.assertEqual(r.status, 200, r)

    def test_activity_is_reported_once_for_many_concurrent_requests(self):
        sid = self.stack.add_sandbox(public=True)
        self.fire(sid, 50)
        wait_until(lambda: self.activity_calls(sid) >= 1, 10, "a last-activity call")
        self.barrier()
        calls = self.calls("POST", f"/api/sandbox/{sid}/last-activity")
        self.assertEqual(len(calls), 1, calls)
        self.assertEqual(calls[0]["status"], 201, calls)
        self.assertEqual(values(calls[0]["headerList"], "Authorization"),
                         [f"Bearer {self.stack.proxy_api_key}"])

    def test_skip_last_activity_header_makes_no_call(self):
        sid = self.stack.add_sandbox(public=True)
        self.fire(sid, 10, "-H", "X-Daytona-Skip-Last-Activity-Update: true")
        self.barrier()
        self.assertEqual(self.activity_calls(sid), 0)

    def test_refused_requests_report_no_activity(self):
        sid = self.private_sandbox(uuid.uuid4().hex)
        for args in ((), ("-H", "X-Daytona-Preview-Token: wrong")):
            self.assert_401(self.send("/x", *args, host=self.host_of(sid)))
        self.barrier()
        self.assertEqual(self.activity_calls(sid), 0,
                         "an unauthenticated client kept a private sandbox alive")

    # --- the preview warning page (edgegate with PREVIEW_WARNING_ENABLED=true) -------------------
    def warn(self, path="/x", *args, **kw):
        kw.setdefault("sandbox", "public")
        return self.send(path, *args, eg=self.warn_eg, **kw)

    def test_warning_page_for_browsers(self):
        r = self.warn("/x?q=<script>alert(1)</script>", "-H", f"User-Agent: {CHROME_UA}")
        self.assertEqual(r.status, 200, r)
        self.assertTrue((r.header("Content-Type") or "").startswith("text/html"), r)
        self.assertEqual(r.header("Content-Security-Policy"),
                         "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        page = r.body.decode()
        self.assertIn("/accept-daytona-preview-warning", page)
        self.assertNotIn("<script>", page, "the URL shown is not HTML-escaped")
        self.assertIn("&lt;script&gt;", page)
        self.assert_not_reached()

    def test_warning_page_is_skipped(self):
        for label, args in (
                ("skip header", ("-H", f"User-Agent: {CHROME_UA}",
                                 "-H", "X-Daytona-Skip-Preview-Warning: true")),
                ("accepted cookie", ("-H", f"User-Agent: {CHROME_UA}",
                                     "-H", "Cookie: a=b; daytona-preview-page-accepted=true")),
                ("not a browser", ("-H", "User-Agent: curl/8.0"))):
            with self.subTest(label):
                self.assertEqual(self.echo(self.warn("/x", *args))["path"], "/x")

    def accept(self, redirect, host=None):
        q = urllib.parse.quote(redirect, safe="")
        return self.warn(f"/accept-daytona-preview-warning?redirect={q}", "-X", "POST",
                         host=host)

    def test_accepting_the_warning_sets_the_cookie_and_redirects_safely(self):
        host = self.stack.preview_host("public")
        for redirect, expected in (
                (f"http://{host}/page?a=1", f"http://{host}/page?a=1"),
                ("/page?a=%2F", "/page?a=%2F"),
                ("https://evil.com/x", "/"),
                ("//evil.com/x", "/"),
                ("/\\evil.com", "/"),
                ("\\\\evil.com", "/"),
                (f"https://{host}@evil.com", "/"),
                ("https://host@evil.com", "/"),
                (f"http://{host}.evil.com/", "/"),
                ("javascript:alert(1)", "/"),
                ("data:text/html,x", "/"),
                ("/\t/evil.com", "/")):
            with self.subTest(redirect=redirect):
                r = self.accept(redirect, host=host)
                self.assertEqual(r.status, 302, r)
                self.assertEqual(r.header("Location"), expected, r)
                cookie = [c for c in r.header_all("Set-Cookie")
                          if c.startswith("daytona-preview-page-accepted=true")]
                self.assertEqual(len(cookie), 1, r)
                self.assertIn("max-age=86400", cookie[0].lower().replace(" ", ""))
        self.assert_not_reached()

    def test_accept_endpoint_works_on_the_base_host(self):
        r = self.accept("/", host=self.base_host(self.warn_eg))
        self.assertEqual(r.status, 302, r)
        self.assertEqual(r.header("Location"), "/")


if __name__ == "__main__":
    unittest.main()
