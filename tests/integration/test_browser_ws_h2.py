"""A WebSocket over HTTP/2 (RFC 8441) from a real headless Chromium through edgegate over TLS
(issue #4):

    Chromium --TLS, ALPN h2--> edgegate --HTTP/1.1--> runner stand-in --> ws_app.py
      GET  https://{port}-{public sandbox}.proxy.localhost:{edgegate}/ws-page   (the page)
      CONNECT :protocol=websocket /echo?hello=1       (on the same HTTP/2 connection)
                                    -> GET /echo Upgrade: websocket (edgegate's own key)

The page (ws_app.py's /ws-page) opens a WebSocket to its own origin, sends a message and keeps
the socket open; the test reads the outcome through the DevTools protocol while the socket is
open, and lists the TCP connections to edgegate's port with `ss` before and while the socket is
open: the WebSocket adds none. A WebSocket over HTTP/1.1 would need a new TCP connection,
because an HTTP/2 connection cannot be upgraded and Chromium gives each HTTP/1.1 WebSocket a
connection of its own. (Counting "exactly one" is not reliable: Chromium sometimes preconnects
a second connection for the navigation, which then stays idle.)

Chromium (156 here) uses WebSockets over HTTP/2 by default for wss: URLs when an HTTP/2
connection to the origin is already open and the server announced
SETTINGS_ENABLE_CONNECT_PROTOCOL=1 (HttpStreamFactory's try_websocket_over_http2: wss, no proxy,
enable_websocket_over_http2); it never opens a new HTTP/2 connection for a WebSocket and never
does it for ws: (cleartext), hence TLS. No flag is passed: current Chromium has it on by default
(older releases needed --enable-websocket-over-http2). With --disable-http2 the WebSocket gets a
connection of its own and this test fails, as it should.

Trust: Chromium is told the SHA-256 of the test certificate's public key with
--ignore-certificate-errors-spki-list (honoured only with --user-data-dir), so the certificate
made by tests/support/certs.py is accepted as valid (no interstitial, no "insecure" state that
would change connection reuse) without an NSS database.
"""
import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest
import urllib.request

SUPPORT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support")
sys.path.insert(0, SUPPORT)
import certs  # noqa: E402
from stack import StackTestCase, clean_env, wait_until, start_ws_app  # noqa: E402
from wsclient import WsClient  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
TIMEOUT = 30


def spki_sha256_b64(cert_pem_path):
    """base64(SHA-256(SubjectPublicKeyInfo DER)) of the first certificate in a PEM file."""
    pub = subprocess.run(["openssl", "x509", "-in", cert_pem_path, "-noout", "-pubkey"],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         check=True, capture_output=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def established_to(port):
    """The established TCP connections whose remote end is 127.0.0.1:`port` (client side):
    {local port: `ss` line with the owning process}."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return {int(line.split()[2].rsplit(":", 1)[1]): line
            for line in out.splitlines() if line.strip()}


class Cdp:
    """A minimal Chromium DevTools protocol client over one page target."""

    def __init__(self, ws_url):
        rest = ws_url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.ws = WsClient.connect(host, int(port), hostport, "/" + path, timeout=TIMEOUT)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send_text(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv_text())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"CDP {method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def close(self):
        self.ws.close()


@unittest.skipUnless(os.access(CHROMIUM, os.X_OK), f"needs {CHROMIUM} (Debian package chromium)")
@unittest.skipUnless(shutil.which("ss"), "needs ss (iproute2)")
class BrowserWebSocketOverH2Test(StackTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="edgegate-browser-h2-")
        certs.make_ca(cls.dir)
        cls.cert, key = certs.make_server_cert(cls.dir, "edge", ["*.proxy.localhost",
                                                                 "proxy.localhost"])
        cls.edgegate_env = {"ENABLE_TLS": "true", "TLS_CERT_FILE": cls.cert,
                            "TLS_KEY_FILE": key, "PROXY_PROTOCOL": "https"}
        super().setUpClass()
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.ws_app = start_ws_app()
        cls.addClassCleanup(cls.ws_app.stop)

    def setUp(self):
        self.profile = tempfile.mkdtemp(prefix="edgegate-chromium-")
        self.addCleanup(shutil.rmtree, self.profile, True)

    def start_chromium(self):
        """Headless Chromium with remote debugging on a port it picks; returns a Cdp on its
        blank page."""
        cmd = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", f"--user-data-dir={self.profile}",
               "--no-first-run", "--no-default-browser-check", "--no-proxy-server",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-extensions", "--disable-default-apps",
               "--host-resolver-rules=MAP localhost 127.0.0.1, MAP *.localhost 127.0.0.1, "
               "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
               f"--ignore-certificate-errors-spki-list={spki_sha256_b64(self.cert)}",
               "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
               "about:blank"]
        env = clean_env({"HOME": self.profile, "XDG_CONFIG_HOME": self.profile,
                         "XDG_CACHE_HOME": self.profile})
        log = open(os.path.join(self.profile, "chromium.log"), "wb")
        self.addCleanup(log.close)
        # Its own process group: Chromium's helper processes are ended with it.
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.chromium_proc = proc

        def stop():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.addCleanup(stop)

        active = os.path.join(self.profile, "DevToolsActivePort")

        def devtools_port():
            if proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {proc.returncode}\n"
                                   + self.chromium_log())
            try:
                with open(active) as f:
                    lines = f.read().split("\n")
                return int(lines[0]) if len(lines) >= 2 and lines[0].strip() else None
            except OSError:
                return None
        port = wait_until(devtools_port, TIMEOUT, "Chromium's DevTools port")

        def page_target():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                return next((t for t in json.load(r) if t.get("type") == "page"), None)
        target = wait_until(page_target, TIMEOUT, "Chromium's page target")
        cdp = Cdp(target["webSocketDebuggerUrl"])
        self.addCleanup(cdp.close)
        return cdp

    def chromium_log(self):
        try:
            with open(os.path.join(self.profile, "chromium.log"), "rb") as f:
                return f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def test_page_and_websocket_share_one_http2_connection(self):
        st = self.stack
        host = st.preview_host("public", self.ws_app.port)
        url = f"https://{host}:{self.eg.port}/ws-page?manual=1"
        self.assertEqual(established_to(self.eg.port), {}, "something is already connected")
        st.runner_reset()

        cdp = self.start_chromium()
        cdp.call("Network.enable")
        cdp.call("Page.enable")
        cdp.call("Page.navigate", url=url)
        wait_until(lambda: cdp.evaluate("document.title") == "ws ready", TIMEOUT,
                   "the page to load")
        # The browser's connections once the page is in: usually one; Chromium may also have
        # preconnected a second, which then stays idle.
        before = established_to(self.eg.port)
        self.assertTrue(before, "no connection from the browser to edgegate")
        cdp.evaluate("wsOpen()")

        def outcome():
            title = cdp.evaluate("document.title")
            return title if title == "ws ok" or (title or "").startswith("ws error") else None
        try:
            title = wait_until(outcome, TIMEOUT, "the page to report its WebSocket", interval=0.1)
        except TimeoutError as e:
            self.fail(f"{e}\npage: {cdp.evaluate('JSON.stringify(window.wsResult || null)')}\n"
                      f"--- chromium ---\n{self.chromium_log()}")
        result = cdp.evaluate("JSON.stringify(window.wsResult)")
        res = json.loads(result)
        what = f"title {title!r}\n{json.dumps(res, indent=1)}\n--- chromium ---\n" \
               f"{self.chromium_log()}"

        # The page came over HTTP/2 (ALPN h2) and the WebSocket echoed the page's message.
        self.assertEqual(title, "ws ok", what)
        self.assertEqual(res["page"]["protocol"], "h2", what)
        self.assertEqual(res["echo"], res["sent"], what)
        self.assertEqual(res["events"], ["open"], what)

        # While the socket is open: no new TCP connection from the browser to edgegate, the
        # WebSocket is a stream on the page's HTTP/2 connection. (Chromium never pools a
        # WebSocket over HTTP/1.1 with other requests: it would be a new connection.)
        during = established_to(self.eg.port)
        self.assertTrue(during, what)
        self.assertEqual(set(during) - set(before), set(),
                         "new connections for the WebSocket:\n" + "\n".join(during.values())
                         + "\nbefore it:\n" + "\n".join(before.values()) + "\n" + what)

        # Chromium's own view of the handshake: an extended CONNECT (no key of its own, so the
        # key the app saw is edgegate's) answered with 200, not a 101.
        def events(method):
            return [e["params"] for e in cdp.events if e["method"] == method]
        # (DevTools events come on their own schedule: read until the handshake's is in)
        wait_until(lambda: cdp.evaluate("1") and events(
            "Network.webSocketHandshakeResponseReceived"), TIMEOUT, "the handshake's events")
        handshakes = events("Network.webSocketWillSendHandshakeRequest")
        responses = events("Network.webSocketHandshakeResponseReceived")
        self.assertEqual(len(handshakes), 1, cdp.events)
        browser_headers = {k.lower(): v for k, v in handshakes[0]["request"]["headers"].items()}
        self.assertNotIn("sec-websocket-key", browser_headers, handshakes)
        self.assertEqual(len(responses), 1, cdp.events)
        self.assertEqual(responses[0]["response"]["status"], 200, responses)

        # What the app received: an HTTP/1.1 upgrade with a Sec-WebSocket-Key the browser never
        # sent, through the runner, with the page's origin and X-Forwarded-Proto https.
        app_saw = {}
        for k, v in res["hello"]["headers"]:
            app_saw.setdefault(k.lower(), v)
        self.assertEqual(app_saw.get("upgrade", "").lower(), "websocket", res["hello"])
        self.assertTrue(app_saw.get("sec-websocket-key"), res["hello"])
        self.assertNotEqual(app_saw["sec-websocket-key"],
                            browser_headers.get("sec-websocket-key"), (browser_headers, app_saw))
        self.assertEqual(app_saw.get("origin"), f"https://{host}:{self.eg.port}", app_saw)
        self.assertEqual(app_saw.get("x-forwarded-proto"), "https", app_saw)
        upgrades = [e for e in st.runner_requests()
                    if e["target"] == f"/sandboxes/{st.sandbox_id('public')}/toolbox/proxy/"
                                      f"{self.ws_app.port}/echo?hello=1"]
        self.assertEqual(len(upgrades), 1, st.runner_requests())
        self.assertEqual(upgrades[0]["method"], "GET", upgrades)

        # The page closes its socket: the close handshake completes through edgegate, and the
        # HTTP/2 connection stays (it is the page's), still the only one.
        cdp.evaluate("wsClose()")
        wait_until(lambda: "close 1000" in json.loads(
            cdp.evaluate("JSON.stringify(window.wsResult)"))["events"], TIMEOUT,
            "the WebSocket to close with 1000")
        self.assertLessEqual(set(established_to(self.eg.port)), set(before))
        # A second WebSocket from the page: a new stream on the same connection.
        again = cdp.call("Runtime.evaluate", awaitPromise=True, returnByValue=True,
                         expression="""new Promise((resolve) => {
            const ws = new WebSocket("wss://" + location.host + "/echo");
            ws.onopen = () => ws.send("again");
            ws.onmessage = (e) => { resolve(e.data); ws.close(1000); };
            ws.onerror = () => resolve("error event");
        })""")
        self.assertEqual(again["result"].get("value"), "again", again)
        self.assertLessEqual(set(established_to(self.eg.port)), set(before))
        self.assertEqual(len([e for e in st.runner_requests()
                              if e["target"].endswith(f"/{self.ws_app.port}/echo")]), 1)

if __name__ == "__main__":
    unittest.main()
