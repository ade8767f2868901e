"""The OIDC browser login through edgegate in a real headless Chromium (contract section 3,
docs/authentication.md "Browser login"):

    Chromium -> http://{port}-{private sandbox}.proxy.localhost:{edgegate}/some/path, no credential
      307 -> the OIDC stand-in's /authorize (logs the user in at once, no form)
      302 -> http://proxy.localhost:{edgegate}/callback?code=&state=
             edgegate exchanges the code, checks /api/preview/{id}/access with the user's token,
             sets the sandbox cookie on .proxy.localhost
      302 -> the original URL, now with the cookie -> the echo app's JSON

Chromium resolves *.localhost to the loopback itself; --host-resolver-rules pins it to
127.0.0.1 (edgegate listens there only) and makes every other name unresolvable, so nothing
leaves the machine.
"""
import html
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

SUPPORT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support")
sys.path.insert(0, SUPPORT)
import client  # noqa: E402
from stack import PYTHON, StackTestCase, clean_env, wait_until  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
USER = "user-token-699866d4e82b52d924978391a5f5fd00"  # the fixture's user with access to "private"
CHROMIUM_TIMEOUT = 25


@unittest.skipUnless(os.access(CHROMIUM, os.X_OK), f"needs {CHROMIUM} (Debian package chromium)")
class BrowserLoginTest(StackTestCase):
    edgegate_env = None  # started in setUpClass, once /api/config names the OIDC stand-in

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        st = cls.stack
        cls.oidc = st._start([PYTHON, os.path.join(SUPPORT, "oidc_standin.py"), "--port", "0",
                              "--client-id", "daytona", "--access-token", USER], "oidc")
        st._json(st.cp, "POST", "/_dev/oidc", {"issuer": cls.oidc.url, "clientId": "daytona",
                                                 "audience": "daytona"})
        cls.eg = st.start_edgegate({"LOG_LEVEL": "debug"})

    def setUp(self):
        self.private = self.stack.sandbox_id("private")
        self.base_host = f"proxy.localhost:{self.eg.port}"
        self.host = f"{self.stack.app_port}-{self.private}.{self.base_host}"
        self.profile = tempfile.mkdtemp(prefix="edgegate-chromium-")
        self.addCleanup(shutil.rmtree, self.profile, True)

    def wait_for_login_ready(self):
        """edgegate loads the OIDC settings at start; until then a login is 503."""
        def ready():
            r = client.curl(f"http://127.0.0.1:{self.eg.port}/probe", "-H", f"Host: {self.host}",
                            "-H", "Accept: text/html")
            return r if r.status != 503 else None
        r = wait_until(ready, 15, "the OIDC settings to load")
        self.assertEqual(r.status, 307, r)

    def chromium(self, url):
        """Chromium's DOM of `url` once loaded (after every redirect), and its process result."""
        cmd = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", f"--user-data-dir={self.profile}",
               "--no-first-run", "--no-default-browser-check", "--no-proxy-server",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-extensions", "--disable-default-apps",
               "--host-resolver-rules=MAP localhost 127.0.0.1, MAP *.localhost 127.0.0.1, "
               "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
               "--dump-dom", url]
        env = clean_env({"HOME": self.profile, "XDG_CONFIG_HOME": self.profile,
                         "XDG_CACHE_HOME": self.profile})
        start = time.monotonic()
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=CHROMIUM_TIMEOUT)
        self.chromium_seconds = time.monotonic() - start
        return proc

    def test_login_round_trip_in_a_real_browser(self):
        st = self.stack
        self.wait_for_login_ready()
        st.cp_reset()
        self.oidc_call("POST", "/_dev/reset")
        url = f"http://{self.host}/some/path"

        proc = self.chromium(url)
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace")
        what = (f"chromium exit {proc.returncode} after {self.chromium_seconds:.1f}s\n"
                f"--- dumped DOM ---\n{out[:3000]}\n--- stderr ---\n{err[-3000:]}")
        self.assertEqual(proc.returncode, 0, what)

        # The page is the echo app's JSON answer to the original path, reached after the login.
        dom = html.unescape(out)
        start = dom.find('{"method"')
        self.assertGreaterEqual(start, 0, "the page is not the echo app's answer\n" + what)
        seen, _ = json.JSONDecoder().raw_decode(dom, start)
        self.assertEqual(seen["method"], "GET", what)
        self.assertEqual(seen["path"], "/some/path", what)
        # Set by the callback on proxy.localhost: the browser sends it to the preview host only
        # because its Domain is the base domain (a host-only cookie would stay on the base host).
        cookies = "; ".join(v for k, v in seen["headers"] if k.lower() == "cookie")
        self.assertIn(f"daytona-sandbox-auth-{self.private}=", cookies,
                      "the browser did not send the sandbox cookie minted by the login")

        # The provider was used once each way: authorize (302 back) and the code exchange.
        idp = [(c["method"], c["path"], c["status"]) for c in self.oidc_call("GET", "/_dev/calls")]
        self.assertIn(("GET", "/authorize", 302), idp)
        self.assertEqual([c for c in idp if c[1] == "/token"], [("POST", "/token", 200)], idp)

        # The access check was made with the token the login gave, and allowed.
        access = [c for c in st.cp_calls()
                  if c["method"] == "GET" and c["path"] == f"/api/preview/{self.private}/access"]
        self.assertTrue(access, "no access check was made")
        for c in access:
            self.assertEqual([v for k, v in c["headerList"] if k.lower() == "authorization"],
                             [f"Bearer {USER}"], c)
            self.assertEqual(c["status"], 200, c)

        # The runner received the page request for the sandbox, without the login's token.
        reached = [e for e in st.runner_requests()
                   if e["target"] == f"/sandboxes/{self.private}/toolbox/proxy/"
                                     f"{st.app_port}/some/path"]
        self.assertEqual(len(reached), 1, reached)
        self.assertNotIn(USER, json.dumps(reached[0]["headers"]))

    def oidc_call(self, method, path):
        r = client.curl(f"{self.oidc.url}{path}", "-X", method)
        self.assertEqual(r.status, 200, r)
        return r.json()


if __name__ == "__main__":
    unittest.main()
