"""Proxy API key rotation without a restart, through edgegate, under steady traffic
(docs/authentication.md "Key rotation"): edgegate reads the key from PROXY_API_KEY_FILE, the
file is replaced, SIGHUP makes edgegate re-read it.

Every request of the traffic goes to a new private sandbox with a new preview token, so each
one needs fresh answers from the API made with the proxy key (runners/by-sandbox, preview/public,
preview/validate, then last-activity): nothing can be served from a cache.
"""
import http.client
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest
import uuid

SUPPORT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support")
sys.path.insert(0, SUPPORT)
from stack import StackTestCase, wait_until  # noqa: E402

THREADS = 4


def write_key(path, key):
    """Replaces the file at once, as a Kubernetes secret update does (no half-written file)."""
    tmp = path + ".new"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    os.replace(tmp, path)


def new_key():
    return "dtn_" + secrets.token_hex(32)


class Traffic:
    """THREADS loops, each: a new private sandbox with a new preview token, then one GET through
    edgegate with that token. Records (start, end, sandbox id, status, detail) per request;
    status 0 is a request that got no answer."""

    def __init__(self, stack, eg):
        self.stack, self.eg = stack, eg
        self.lock = threading.Lock()
        self.results = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.loop, name=f"traffic-{i}", daemon=True)
                        for i in range(THREADS)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(30)

    def loop(self):
        while not self.stopping.is_set():
            self.one()

    def one(self):
        start = time.monotonic()
        token = uuid.uuid4().hex
        sid = self.stack.add_sandbox(public=False, previewTokens=[token])
        path = f"/rotation/{sid}"
        status, detail = 0, ""
        conn = http.client.HTTPConnection("127.0.0.1", self.eg.port, timeout=15)
        try:
            conn.request("GET", path, headers={
                "Host": f"{self.stack.app_port}-{sid}.proxy.localhost",
                "X-Daytona-Preview-Token": token, "Accept": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
            status, detail = resp.status, body[:300].decode("utf-8", "replace")
            if status == 200 and f'"path": "{path}"' not in detail:
                status, detail = -1, "200 but not the echo app's answer: " + detail
        except OSError as e:
            detail = f"{type(e).__name__}: {e}"
        finally:
            conn.close()
        with self.lock:
            self.results.append((start, time.monotonic(), sid, status, detail))

    def snapshot(self):
        with self.lock:
            return list(self.results)

    def ok_count(self):
        return sum(1 for r in self.snapshot() if 200 <= r[3] < 300)


class KeyRotationTest(StackTestCase):
    edgegate_env = None  # started in setUpClass with the key in a file

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="edgegate-rotation-test-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.key_file = os.path.join(cls.tmp, "proxy-api-key")
        cls.keys_used = [cls.stack.proxy_api_key]
        write_key(cls.key_file, cls.stack.proxy_api_key)
        cls.eg = cls.stack.start_edgegate({"PROXY_API_KEY": None,
                                           "PROXY_API_KEY_FILE": cls.key_file,
                                           "LOG_LEVEL": "debug"})

    def set_cp_keys(self, key, *extra):
        self.stack._json(self.stack.cp, "POST", "/_dev/keys",
                         {"proxyApiKey": key, "extraProxyApiKeys": list(extra)})

    def proxy_calls(self):
        """The control plane's calls made with the proxy key (any of the test's keys), as
        (path, bearer, status)."""
        out = []
        for c in self.stack.cp_calls():
            auth = [v for k, v in c["headerList"] if k.lower() == "authorization"]
            bearer = auth[0][len("Bearer "):] if auth and auth[0].startswith("Bearer ") else None
            if bearer in self.keys_used:
                out.append((c["path"], bearer, c["status"]))
        return out

    def sighup(self):
        os.kill(self.eg.pid, signal.SIGHUP)

    def assert_no_key_in_log(self):
        log = self.eg.output()
        for i, key in enumerate(self.keys_used):
            self.assertNotIn(key, log, f"edgegate's log shows proxy key #{i}")
            self.assertNotIn(key[4:20], log, f"edgegate's log shows part of proxy key #{i}")

    def test_rotation_with_an_overlap_loses_no_request(self):
        st = self.stack
        old = self.keys_used[-1]
        new = new_key()
        self.keys_used.append(new)
        self.set_cp_keys(old)  # the control plane accepts only the current key
        st.cp_reset()
        log_mark = self.eg.mark()
        with Traffic(st, self.eg) as traffic:
            wait_until(lambda: traffic.ok_count() >= 20, 20, "20 answers before the rotation")
            # The documented procedure, with the old key still valid meanwhile.
            self.set_cp_keys(new, old)           # the control plane accepts both keys
            write_key(self.key_file, new)        # the new key goes into the file
            self.sighup()                        # edgegate re-reads it
            wait_until(lambda: any(b == new for _, b, _ in self.proxy_calls()), 10,
                       "an API call made with the new key")
            rotated_at = time.monotonic()
            served_before_drop = traffic.ok_count()
            self.set_cp_keys(new)                # the control plane drops the old key
            wait_until(lambda: traffic.ok_count() >= served_before_drop + 30, 20,
                       "30 answers after the old key was dropped")
        results = traffic.snapshot()
        calls = self.proxy_calls()

        failed = [r for r in results if not 200 <= r[3] < 300]
        self.assertEqual(failed, [], f"{len(failed)} of {len(results)} requests failed during "
                                     "the rotation")
        refused = [c for c in calls if not (isinstance(c[2], int) and 200 <= c[2] < 300)]
        self.assertEqual(refused, [], "the control plane refused API calls during the rotation")
        # Requests that started once the new key was seen: every call for them used it.
        after = {r[2] for r in results if r[0] >= rotated_at}
        self.assertGreaterEqual(len(after), 30)
        late_old = [c for c in calls if c[1] != new and any(sid in c[0] for sid in after)]
        self.assertEqual(late_old, [], "API calls after the rotation used the old key")
        used_new = [c for c in calls if c[1] == new and any(sid in c[0] for sid in after)]
        self.assertGreaterEqual(len(used_new), 3 * len(after),
                                "each request after the rotation should have made its own "
                                "runners/by-sandbox, preview/public and validate calls")
        # Before the rotation, the old key was used: the traffic did exercise the key.
        self.assertTrue(any(c[1] == old for c in calls), "no API call used the old key")
        log = self.eg.output(log_mark)
        self.assertIn("PROXY_API_KEY: new key loaded from", log)
        self.assert_no_key_in_log()

    def test_without_an_overlap_uncached_checks_are_503_until_the_file_is_updated(self):
        # Daytona's regenerate-proxy-api-key: the old key stops working at once. Until the new
        # key is in the file, checks needing the API are 503 (never 401, never cached as
        # invalid); after SIGHUP the same token works.
        st = self.stack
        old = self.keys_used[-1]
        new = new_key()
        self.keys_used.append(new)
        self.set_cp_keys(new)  # regenerated: the old key is refused from now on
        token = uuid.uuid4().hex
        sid = st.add_sandbox(public=False, previewTokens=[token])
        host = f"{st.app_port}-{sid}.proxy.localhost"
        args = ("-H", f"X-Daytona-Preview-Token: {token}")
        r = self.preview("/before-file", *args, host=host, timeout=20)
        self.assertEqual(r.status, 503, r)
        self.assertTrue(r.header("Retry-After"), r)
        write_key(self.key_file, new)
        self.sighup()

        def served():
            resp = self.preview("/after-file", *args, host=host, timeout=20)
            self.assertIn(resp.status, (200, 503), resp)
            return resp if resp.status == 200 else None
        r = wait_until(served, 15, "the token to work with the new key", interval=0.2)
        self.assertEqual(r.json()["path"], "/after-file")
        self.assertTrue(any(b == old for _, b, _ in self.proxy_calls()))
        self.assert_no_key_in_log()


if __name__ == "__main__":
    unittest.main()
