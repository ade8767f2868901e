#!/usr/bin/env python3
"""A stand-in for a Daytona runner's HTTP API (contract section 9).

    python3 tests/support/runner_standin.py --port P --api-key K \
        (--fixture F --runner-id runner-1 | --sandbox ID[:STATE] ...) [--app-host 127.0.0.1]

WebSocket upgrades are tunneled to the app byte for byte after the app's answer.
Auth: `X-Daytona-Authorization: Bearer K` (when absent, `Authorization: Bearer K`), else 401 JSON.
  ANY /sandboxes/{id}/toolbox/proxy/{port}/{rest}  reverse proxy to http://APP_HOST:{port}/{rest}
      (path and query bytes unchanged, bodies streamed both ways, response headers kept with
      duplicates). Unknown sandbox 404, not started 400, app port refused 502 (JSON).
  ANY /sandboxes/{id}/toolbox/{rest}  a tiny toolbox: GET /version, GET /files?path=,
      GET /files/download?path=, ANY /echo..., GET /redirect?to=URL (302)
  GET /snapshots/logs?snapshotRef=R  a few build-log lines
Test controls, without auth:
  GET  /_dev/requests[?limit=N]  the last requests as received: [{connId, clientPort, method,
                                 target, headers [[name, value]...], status}]; bytes that did
                                 not parse as a request have "malformed": true; a streamed
                                 response whose proxy connection closed, "clientGone": true
  POST /_dev/reset               clear that list
  POST /_dev/close-idle          close every idle keep-alive connection (as an idle timeout)
  POST /_dev/sandbox/{id}        JSON patch, e.g. {"state": "stopped"} (created when unknown)
"""
import argparse
import collections
import hashlib
import http.client
import json
import os
import re
import select
import socket
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture as fixture_mod  # noqa: E402
import httputil  # noqa: E402

TOOLBOX_RX = re.compile(r"/sandboxes/(?P<sid>[^/?]+)/toolbox(?P<rest>[/?].*)?\Z", re.S)
PROXY_RX = re.compile(r"/proxy/(?P<port>[^/?]*)(?P<tail>.*)\Z", re.S)
CONNECT_TIMEOUT = 10


class State:
    def __init__(self, api_key, sandboxes, app_host):
        self.lock = threading.Lock()
        self.api_key = api_key
        self.sandboxes = sandboxes  # id -> {"state": ...}
        self.app_host = app_host
        self.requests = collections.deque(maxlen=2000)
        self.idle = set()  # handlers of keep-alive connections between requests
        self.files = {"/home/daytona/hello.txt": b"hello world\n",
                      "/home/daytona/project/README.md": b"# project\n"}


class RunnerError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 404: "NOT_FOUND", 502: "BAD_GATEWAY"}


class RunnerHandler(httputil.Handler):
    state = None  # set in main()
    entry = None  # this request's record in state.requests

    def handle_one_request(self):
        self.entry = None
        with self.state.lock:
            self.state.idle.add(self)  # waiting for a request line
        super().handle_one_request()

    def parse_request(self):
        with self.state.lock:
            self.state.idle.discard(self)
        return super().parse_request()

    def finish(self):
        with self.state.lock:
            self.state.idle.discard(self)
        super().finish()

    def send_response_only(self, code, message=None):
        if self.entry is not None:
            self.entry["status"] = code
        super().send_response_only(code, message)

    def send_error(self, code, message=None, explain=None):
        # Only http.server calls this, for bytes that do not parse as a request: after a
        # proxy's framing error, the next "request" on its connection. Recorded as malformed.
        if self.entry is None:
            self.entry = {"connId": self.conn_id, "clientPort": self.client_address[1],
                          "method": None, "target": getattr(self, "requestline", ""),
                          "headers": [], "status": None, "malformed": True}
            with self.state.lock:
                self.state.requests.append(self.entry)
        super().send_error(code, message, explain)

    def error(self, status, message):
        self.send_json(status, {"statusCode": status, "message": message,
                                "code": CODES.get(status, "ERROR"),
                                "timestamp": httputil.now_rfc3339(), "path": self.path_only,
                                "method": self.command})

    def dispatch(self):
        self.entry = None
        if self.path_only.startswith("/_dev/"):
            return self.dev(self.path_only)
        self.entry = {"connId": self.conn_id, "clientPort": self.client_address[1],
                      "method": self.command, "target": self.target,
                      "headers": self.header_pairs(), "status": None}
        with self.state.lock:
            self.state.requests.append(self.entry)
        body_read = False
        try:
            if not self.authorized():
                raise RunnerError(401, "authorization header missing or invalid")
            m = TOOLBOX_RX.match(self.target)
            if m:
                sid = urllib.parse.unquote(m.group("sid"))
                rest = m.group("rest") or "/"
                with self.state.lock:
                    sandbox = self.state.sandboxes.get(sid)
                if sandbox is None:
                    raise RunnerError(404, f"sandbox container {sid} not found")
                if sandbox.get("state", "started") != "started":
                    raise RunnerError(400, f"sandbox {sid} is not started "
                                           f"(state {sandbox.get('state')})")
                pm = PROXY_RX.match(rest)
                if pm:
                    port = pm.group("port")
                    if not port.isdigit() or not 1 <= int(port) <= 65535:
                        raise RunnerError(400, f"invalid port {port!r}")
                    body_read = True  # from here the body streams to the app
                    return self.proxy(int(port), pm.group("tail"))
                return self.toolbox(rest)
            if self.path_only == "/snapshots/logs":
                return self.build_logs()
            raise RunnerError(404, f"no route for {self.command} {self.path_only}")
        except RunnerError as e:
            if not body_read:
                self.drain_body()
            self.error(e.status, e.message)

    def authorized(self):
        want = "Bearer " + self.state.api_key
        x = self.headers.get_all("X-Daytona-Authorization")
        if x:
            return x[0] == want
        return self.headers.get("Authorization") == want

    # --- reverse proxy to the sandbox app -----------------------------------------------------
    def proxy(self, port, tail):
        if not tail.startswith("/"):
            tail = "/" + tail
        try:
            sock = socket.create_connection((self.state.app_host, port), timeout=CONNECT_TIMEOUT)
        except OSError as e:
            self.drain_body()
            raise RunnerError(502, f"cannot reach port {port} in the sandbox: {e}")
        with sock:
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.is_websocket_upgrade():
                return self.tunnel_upgrade(sock, tail)
            try:
                self.forward_request(sock, tail)
                resp = http.client.HTTPResponse(sock, method=self.command)
                resp.begin()
            except (OSError, http.client.HTTPException) as e:
                self.close_connection = True  # the request body may be half read
                raise RunnerError(502, f"the app on port {port} failed: {e!r}")
            self.forward_response(resp, sock)
            resp.close()

    def is_websocket_upgrade(self):
        connection = ",".join(self.headers.get_all("Connection") or []).lower()
        return ("upgrade" in [t.strip() for t in connection.split(",")] and
                (self.headers.get("Upgrade") or "").lower().startswith("websocket"))

    def tunnel_upgrade(self, sock, target):
        """A WebSocket upgrade, as the daemon's reverse proxy passes it: the request with
        Connection/Upgrade kept, then the app's answer and every byte after it, both ways, until
        both sides close."""
        drop = httputil.hop_by_hop(self.headers)
        lines = [f"{self.command} {target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in self.headers.items() if k.lower() not in drop]
        lines += ["Connection: Upgrade", "Upgrade: websocket"]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.log_request(101)
        self.close_connection = True

        def app_to_client():
            try:
                while data := sock.recv(httputil.CHUNK):
                    self.wfile.write(data)
                    self.wfile.flush()
                self.connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        t = threading.Thread(target=app_to_client, daemon=True)
        t.start()
        try:
            while data := self.rfile.read1(httputil.CHUNK):
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        t.join()

    def forward_request(self, sock, target):
        # As Go's httputil.ReverseProxy (the daemon's): `TE: trailers` kept, trailer fields
        # announced (Trailer) and passed on both ways.
        drop = (httputil.hop_by_hop(self.headers) - {"trailer"}) | {"expect", "content-length"}
        chunked = httputil.is_chunked(self.headers)
        lines = [f"{self.command} {target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in self.headers.items() if k.lower() not in drop]
        if any(t.strip().lower() == "trailers"
               for t in ",".join(self.headers.get_all("TE") or []).split(",")):
            lines.append("TE: trailers")
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        elif self.headers.get("Content-Length") is not None:
            lines.append(f"Content-Length: {self.headers['Content-Length']}")
        lines.append("Connection: close")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        for data in self.iter_body():
            sock.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        if chunked:
            sock.sendall(httputil.trailer_lines(self.request_trailers))

    def watch_client(self, app_sock, done):
        """While a response streams: when the proxy closes its connection, the app's request is
        cancelled at once (as Go's ReverseProxy cancels on the request context), and the
        request's record says so ("clientGone": true)."""
        while not done.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.1)
            if not readable:
                continue
            try:
                gone = not self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError:
                gone = True
            if gone and not done.is_set():
                if self.entry is not None:
                    self.entry["clientGone"] = True
                try:
                    app_sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return  # gone, or bytes of a next request: watched no further

    def forward_response(self, resp, app_sock):
        self.log_request(resp.status)
        self.send_response_only(resp.status, resp.reason)
        drop = (httputil.hop_by_hop(resp.msg) - {"trailer"}) | {"content-length"}
        for k, v in resp.msg.items():
            if k.lower() not in drop:
                self.send_header(k, v)
        length = resp.getheader("Content-Length")
        if self.command == "HEAD" or resp.status in (204, 304):
            if length is not None and resp.status != 204:
                self.send_header("Content-Length", length)
            self.end_headers()
            return
        if length is not None and not resp.chunked:
            self.send_header("Content-Length", length)
            self.end_headers()
            while data := resp.read1(httputil.CHUNK):
                self.wfile.write(data)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        done = threading.Event()
        threading.Thread(target=self.watch_client, args=(app_sock, done), daemon=True).start()
        try:
            self.relay_chunked(resp)
        finally:
            done.set()

    def relay_chunked(self, resp):
        trailers = []
        if resp.chunked:  # (http.client drops trailer fields: read here)
            body = httputil.read_chunked(resp.fp, httputil.CHUNK, trailers)
        else:
            body = iter(lambda: resp.read1(httputil.CHUNK), b"")
        for data in body:
            self.write_chunk(data)
        self.end_chunked(trailers)

    # --- toolbox stand-in ---------------------------------------------------------------------
    def toolbox(self, rest):
        path, _, query = rest.partition("?")
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        if path.startswith("/echo"):
            h = hashlib.sha256()
            n = 0
            for data in self.iter_body():
                h.update(data)
                n += len(data)
            return self.send_json(200, {"method": self.command, "path": rest,
                                        "target": self.target, "headers": self.header_pairs(),
                                        "bodyLength": n, "bodySha256": h.hexdigest()})
        self.drain_body()
        if self.command not in ("GET", "HEAD"):
            raise RunnerError(404, f"no toolbox route for {self.command} {path}")
        if path == "/version":
            return self.send_json(200, {"version": "0.0.0-dev"})
        if path == "/files":
            return self.list_files(params.get("path", ["/home/daytona"])[0])
        if path == "/files/download":
            want = params.get("path", [""])[0]
            with self.state.lock:
                content = self.state.files.get(want)
            if content is None:
                raise RunnerError(404, f"file {want} not found")
            return self.send_bytes(200, content)
        if path == "/redirect":
            to = params.get("to", ["/"])[0]
            return self.send_bytes(302, b"", headers=[("Location", to)])
        raise RunnerError(404, f"no toolbox route for {self.command} {path}")

    def list_files(self, directory):
        directory = directory.rstrip("/") or "/"
        prefix = directory if directory.endswith("/") else directory + "/"
        entries = {}
        with self.state.lock:
            files = dict(self.state.files)
        for p, content in files.items():
            if not p.startswith(prefix):
                continue
            name, sep, _ = p[len(prefix):].partition("/")
            entries[name] = {"name": name, "isDir": bool(sep), "size": 0 if sep else len(content),
                             "mode": "drwxr-xr-x" if sep else "-rw-r--r--",
                             "modTime": "2025-01-01T00:00:00Z", "owner": "daytona",
                             "group": "daytona", "permissions": "0755" if sep else "0644"}
        if not entries:
            raise RunnerError(404, f"directory {directory} not found")
        self.send_json(200, sorted(entries.values(), key=lambda e: e["name"]))

    def build_logs(self):
        self.drain_body()
        ref = urllib.parse.parse_qs(self.query).get("snapshotRef", [""])[0]
        if not ref:
            raise RunnerError(400, "snapshotRef is required")
        self.begin_chunked(200, content_type="text/plain; charset=utf-8")
        for line in (f"Building {ref}", "Step 1/2 : FROM scratch", "Step 2/2 : done",
                     "Successfully built"):
            self.write_chunk((line + "\n").encode())
        self.end_chunked()

    # --- /_dev --------------------------------------------------------------------------------
    def dev(self, path):
        raw = b"".join(self.iter_body())
        st = self.state
        if self.command == "GET" and path == "/_dev/requests":
            limit = int(urllib.parse.parse_qs(self.query).get("limit", ["0"])[0] or 0)
            with st.lock:
                out = [dict(e) for e in st.requests]
            return self.send_json(200, out[-limit:] if limit else out)
        if self.command == "POST" and path == "/_dev/close-idle":
            with st.lock:
                idle = [h for h in st.idle if h is not self]
            for h in idle:
                h.drop_connection()  # as a server's idle timeout does: FIN, no answer
            return self.send_json(200, {"closed": len(idle)})
        if self.command == "POST" and path == "/_dev/reset":
            with st.lock:
                st.requests.clear()
            return self.send_json(200, {"ok": True})
        m = re.fullmatch(r"/_dev/sandbox/([^/]+)", path)
        if self.command == "POST" and m:
            try:
                patch = json.loads(raw) if raw.strip() else {}
            except ValueError as e:
                return self.send_json(400, {"error": f"bad JSON: {e}"})
            sid = urllib.parse.unquote(m.group(1))
            with st.lock:
                sb = st.sandboxes.setdefault(sid, {"state": "started"})
                sb.update(patch)
                return self.send_json(200, dict(sb, id=sid))
        self.send_json(404, {"error": f"no {self.command} {path}"})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--api-key", help="the runner's API key (default: the fixture runner's apiKey)")
    p.add_argument("--fixture", help="serve the sandboxes of --runner-id from this fixture")
    p.add_argument("--runner-id", default="runner-1")
    p.add_argument("--sandbox", action="append", default=[], metavar="ID[:STATE]")
    p.add_argument("--app-host", default="127.0.0.1", help="where sandbox ports are reached")
    p.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (and --tls-key)")
    p.add_argument("--tls-key")
    httputil.add_common_args(p)
    args = p.parse_args(argv)
    sandboxes = {}
    api_key = args.api_key
    if args.fixture:
        try:
            fx = fixture_mod.load(args.fixture)
        except (OSError, ValueError) as e:
            p.error(str(e))
        for s in fx["sandboxes"]:
            if s["runnerId"] == args.runner_id:
                sandboxes[s["id"]] = {"state": s["state"]}
        if api_key is None:
            api_key = next((r.get("apiKey") for r in fx["runners"] if r["id"] == args.runner_id),
                           None)
    for item in args.sandbox:
        sid, _, state = item.partition(":")
        sandboxes[sid] = {"state": state or "started"}
    if not api_key:
        p.error("--api-key is required (or a --fixture whose runner has an apiKey)")
    RunnerHandler.state = State(api_key, sandboxes, args.app_host)
    RunnerHandler.quiet = args.quiet
    server = httputil.Server((args.host, args.port), RunnerHandler)
    if args.tls_cert:  # a runner whose proxyUrl is https
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    httputil.serve(server)


if __name__ == "__main__":
    main()
