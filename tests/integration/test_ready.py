"""GET /ready on the proxy's base host: not ready (503) until the OIDC settings are known, so a
load balancer does not send browsers that would need the login; /health says why."""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))
from client import curl  # noqa: E402
from stack import PYTHON, StackTestCase, wait_until  # noqa: E402

SUPPORT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support")


class ReadyTest(StackTestCase):
    edgegate_env = None  # started by the test, after the control plane is set up

    def get(self, eg, path):
        return curl(f"http://127.0.0.1:{eg.port}{path}", "-H", f"Host: 127.0.0.1:{eg.port}")

    def test_not_ready_until_the_oidc_settings_load(self):
        st = self.stack
        oidc = st._start([PYTHON, os.path.join(SUPPORT, "oidc_standin.py"), "--port", "0",
                          "--client-id", "daytona"], "oidc")
        st._json(st.cp, "POST", "/_dev/oidc", {"issuer": oidc.url, "clientId": "daytona",
                                                "audience": "daytona"})
        st.cp_fail(503, path_prefix="/api/config")
        eg = st.start_edgegate({})
        ready = self.get(eg, "/ready")
        self.assertEqual(ready.status, 503, ready)
        self.assertIn("OIDC", ready.json()["reason"])
        self.assertEqual(ready.header("Retry-After"), "5")
        health = self.get(eg, "/health")
        self.assertEqual(health.status, 200, health)  # alive, just not ready
        self.assertEqual(health.json()["oidc"], "loading")

        st.cp_reset()
        wait_until(lambda: self.get(eg, "/ready").status == 200, 20,
                   "edgegate to become ready once /api/config answers")
        self.assertEqual(self.get(eg, "/ready").json(), {"status": "ready"})
        self.assertEqual(self.get(eg, "/health").json()["oidc"], "ready")


if __name__ == "__main__":
    unittest.main()
