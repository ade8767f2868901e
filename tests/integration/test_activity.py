"""Last-activity heartbeats for long-lived WebSockets (issue #5 item 9, contract section 4):
`POST /api/sandbox/{id}/last-activity` when a request starts and every 50 s while it or its
WebSocket lives, at most once per 45 s per sandbox; nothing more once it has ended.

The interval (50 s, activity_tracker::options::interval) and the gap (45 s, activity_shared)
are Daytona's figures and edgegate has no setting for them (auth/activity.hpp,
auth/preview_access.cpp build the tracker with its defaults), so this test runs on real time:
about two and a half minutes. It waits on events it can see (the dev control plane's record of
the calls) rather than sleeping: one timeline, three sandboxes:

    A  private, WebSocket over HTTP/1.1 (preview token), open for the whole test
    C  private, WebSocket over HTTP/1.1, closed after its first heartbeat tick
    D  private, WebSocket over HTTP/2 (h2c, RFC 8441 extended CONNECT), closed likewise

A shows the heartbeats go on while a socket lives (and are ~50 s apart, never closer than
45 s even with a burst of plain requests to it); C and D show that they stop when it closes:
after two more heartbeats of A (the second proves that every worker's tick after the close
has come and gone), C and D have had no call since they closed.
"""
import os
import select
import sys
import time
import unittest
import uuid

SUPPORT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support")
sys.path.insert(0, SUPPORT)
from client import curl_many  # noqa: E402
from stack import StackTestCase, wait_until, start_ws_app  # noqa: E402
import wsclient  # noqa: E402

try:
    import h2client  # noqa: E402
except ImportError:  # pragma: no cover - the suite runs on Debian's python3
    h2client = None

PRIVATE_TOKEN = "ed08887e4a77970acaaea751159391a9"  # fixtures/test.json, sandbox "private"
INTERVAL = 50   # seconds between heartbeats while a request lives (not configurable)
MIN_GAP = 45    # at most one call per sandbox per MIN_GAP seconds
SLACK = 10      # a loaded machine: timers fire late, polls see calls late


class H2WebSocket:
    """A WebSocket on an RFC 8441 stream of h2client: what echo() and pump() need."""

    def __init__(self, client, stream):
        self.c, self.s = client, stream
        self.handled = 0        # frames of stream.data already looked at
        self.pending = []

    def _take(self):
        frames = wsclient.parse_frames(self.s.data)
        new, self.handled = frames[self.handled:], len(frames)
        wsclient.pong_pings(new, lambda data: self.c.send(self.s.id, data))
        self.pending += [(op, data) for op, data in new if op in (1, 2, 8)]

    def pump(self):
        while not self.c.closed and select.select([self.c.sock], [], [], 0)[0]:
            self.c.read_once()
        self._take()

    def send_text(self, text):
        self.c.send(self.s.id, wsclient.frame(text))

    def recv_text(self):
        self._take()
        while not self.pending:
            if self.s.ended or self.s.reset is not None:
                raise wsclient.Closed(None, "stream ended")
            self.c.read_once()
            self._take()
        op, data = self.pending.pop(0)
        if op != 1:
            raise wsclient.Closed(None, f"opcode {op}: {data!r}")
        return data.decode()

    def close(self):
        """A close frame with END_STREAM; returns the frames the app sent after it."""
        self.c.send(self.s.id, wsclient.frame(b"\x03\xe8", opcode=8), end_stream=True)
        self.c.wait(lambda: self.s.ended or self.s.reset is not None)
        self._take()
        return self.pending


@unittest.skipIf(h2client is None, "needs python3-h2 and python3-websockets "
                                   "(run with /usr/bin/python3)")
class WebSocketActivityTest(StackTestCase):
    edgegate_env = None  # started last in setUpClass: its heartbeat ticks start with it

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ws_app = start_ws_app()
        cls.addClassCleanup(cls.ws_app.stop)
        cls.eg = cls.stack.start_edgegate({"LOG_LEVEL": "debug"})

    # --- the control plane's record -----------------------------------------------------------
    def setUp(self):
        self.seen = {}      # sandbox id -> [monotonic time each call was first seen]
        self.calls = {}     # sandbox id -> [call records]
        self.pumps = []     # open WebSockets: read while we wait (pings answered, as browsers do)

    def poll(self):
        """Reads the control plane's calls; notes when each last-activity call was first seen.
        Also reads what the HTTP/2 connections received meanwhile (as a browser would)."""
        for ws in self.pumps:
            ws.pump()
        now = time.monotonic()
        by_sid = {}
        for call in self.stack.cp_calls():
            parts = call["path"].split("/")
            if call["method"] == "POST" and len(parts) == 5 and parts[1:3] == ["api", "sandbox"] \
                    and parts[4] == "last-activity":
                by_sid.setdefault(parts[3], []).append(call)
        for sid, calls in by_sid.items():
            times = self.seen.setdefault(sid, [])
            times.extend([now] * (len(calls) - len(times)))
            self.calls[sid] = calls
        return by_sid

    def count(self, sid):
        return len(self.seen.get(sid, []))

    def wait_calls(self, sid, n, timeout, what):
        wait_until(lambda: self.poll() is not None and self.count(sid) >= n, timeout,
                   f"{what}: {n} last-activity calls for {sid} (seen {self.count(sid)})",
                   interval=0.2)

    # --- the sockets ----------------------------------------------------------------------------
    def private_sandbox(self):
        token = uuid.uuid4().hex
        return self.stack.add_sandbox(public=False, previewTokens=[token]), token

    def ws_h1(self, sid, token):
        ws = wsclient.WsClient.connect(
            "127.0.0.1", self.eg.port, self.stack.preview_host(sid, self.ws_app.port), "/echo",
            headers=[("X-Daytona-Preview-Token", token)])
        self.addCleanup(ws.sock.close)
        self.echo(ws)
        self.pumps.append(ws)
        return ws

    def echo(self, ws):
        msg = f"ping {uuid.uuid4().hex}"
        ws.send_text(msg)
        self.assertEqual(ws.recv_text(), msg)

    def ws_h2(self, sid, token):
        c = h2client.H2Client(self.eg.port)
        self.addCleanup(c.close)
        c.wait(lambda: 8 in c.server_settings)
        s = c.request("CONNECT", self.stack.preview_host(sid, self.ws_app.port), "/echo",
                      [("sec-websocket-version", "13"), ("x-daytona-preview-token", token)],
                      end_stream=False, extra_pseudo=[(":protocol", "websocket")])
        c.wait(lambda: s.headers is not None or s.reset is not None)
        self.assertEqual(s.status, 200, (s.headers, s.data, s.reset))
        ws = H2WebSocket(c, s)
        self.echo(ws)
        self.pumps.append(ws)
        return ws

    # --- the test -------------------------------------------------------------------------------
    def test_heartbeats_while_a_websocket_lives_and_none_after_it_closes(self):
        st = self.stack
        a = st.sandbox_id("private")
        c_sid, c_token = self.private_sandbox()
        d_sid, d_token = self.private_sandbox()
        names = {a: "A (h1, stays open)", c_sid: "C (h1, closed)", d_sid: "D (h2, closed)"}

        ws_a = self.ws_h1(a, PRIVATE_TOKEN)
        ws_c = self.ws_h1(c_sid, c_token)
        ws_d = self.ws_h2(d_sid, d_token)
        opened = time.monotonic()

        # One call each as the WebSocket starts.
        for sid in (a, c_sid, d_sid):
            self.wait_calls(sid, 1, 10, f"the start of {names[sid]}")

        # A burst of plain requests to A while its socket is open: no call of their own (the
        # 45 s limit); checked below through the spacing of A's calls.
        host_a = st.preview_host(a, st.app_port)
        infos, _, err = curl_many([f"http://{host_a}:{self.eg.port}/burst/{i}" for i in range(40)],
                                  "-H", f"X-Daytona-Preview-Token: {PRIVATE_TOKEN}",
                                  "--resolve", f"{host_a}:{self.eg.port}:127.0.0.1")
        self.assertEqual([i["http_code"] for i in infos], [200] * 40, err)

        # The sockets stay open past a heartbeat tick: a second call for each. The first tick
        # at which a sandbox is due comes at most INTERVAL + MIN_GAP after it started.
        for sid in (a, c_sid, d_sid):
            self.wait_calls(sid, 2, INTERVAL + MIN_GAP + SLACK - (time.monotonic() - opened),
                            f"a heartbeat of {names[sid]} while its WebSocket is open")
        # ... and the sockets still carry messages after it
        self.echo(ws_a)
        self.echo(ws_c)
        self.echo(ws_d)

        # C and D close (close frames both ways, then the connections).
        self.pumps.remove(ws_c)
        self.pumps.remove(ws_d)
        self.assertEqual(ws_c.close(1000), 1000)
        self.assertIn((8, b"\x03\xe8"), ws_d.close())
        ws_d.c.close()
        self.poll()
        closed = {sid: self.count(sid) for sid in (c_sid, d_sid)}

        # A, still open, gets two more heartbeats (one per tick); by the second, every worker
        # has passed a tick at which C and D, had they still been counted as live, were due.
        n_a = self.count(a)
        self.wait_calls(a, n_a + 1, INTERVAL + SLACK, "the first heartbeat of A after the close")
        self.wait_calls(a, n_a + 2, INTERVAL + SLACK, "the second heartbeat of A after the close")
        self.poll()
        for sid in (c_sid, d_sid):
            self.assertEqual(self.count(sid), closed[sid],
                             f"{names[sid]}: last-activity calls after its WebSocket closed "
                             f"({self.count(sid) - closed[sid]} more; seen at "
                             f"{[round(t - opened, 1) for t in self.seen[sid]]} s)")
        self.echo(ws_a)
        self.assertEqual(ws_a.close(1000), 1000)

        # Every call: the proxy key, answered 201.
        for sid in (a, c_sid, d_sid):
            for call in self.calls[sid]:
                self.assertEqual(call["headers"].get("Authorization"),
                                 f"Bearer {st.proxy_api_key}", call["path"])
                self.assertEqual(call["status"], 201, call)
        # A's calls: never closer than the 45 s limit (the burst added none), and once due, one
        # per 50 s tick.
        times = [round(t - opened, 1) for t in self.seen[a]]
        gaps = [b - a_ for a_, b in zip(self.seen[a], self.seen[a][1:])]
        self.assertGreaterEqual(len(gaps), 3, times)
        self.assertGreaterEqual(min(gaps), MIN_GAP - 1, f"calls for A seen at {times} s")
        for g in gaps[1:]:
            self.assertLess(abs(g - INTERVAL), SLACK, f"calls for A seen at {times} s")


if __name__ == "__main__":
    unittest.main()
