#!/usr/bin/env python3
"""The "sandbox app" behind the runner stand-in: tells a test exactly what arrived.

    python3 tests/support/echo_app.py [--host 127.0.0.1] --port P [--quiet]

Any method, any path (HEAD answers headers only):
  /upload                 {"bytes", "sha256"} of the body (Content-Length or chunked), streamed
  /download?size=N&seed=S N bytes of payload.chunks(N, S); &chunked=1 for chunked framing
  /status/{code}          that status with a small JSON body (none for 1xx, 204, 304)
  /slow?ms=N              answers after N ms
  /chunked?n=K[&ms=M]     K chunks "chunk i\\n", M ms apart
  /sse?n=K[&ms=M]         K Server-Sent Events, M ms apart
  /headers?Name=value...  sets those response headers (repeat a name for duplicates)
  /trailers?Name=value... a chunked "hello\n" with those trailer fields (announced in Trailer)
  anything else, /echo... {"method", "path" (raw target), "headers" [[name, value]...],
                           "bodyLength", "bodySha256", "trailers" [[name, value]...] (of a
                           chunked body), "client", "connId"}
"""
import argparse
import hashlib
import os
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httputil  # noqa: E402
import payload  # noqa: E402

STOP = threading.Event()  # set at shutdown: ends /slow and paced streams early


def _int(params, name, default):
    try:
        return int(params.get(name, [default])[0])
    except ValueError:
        return default


class EchoHandler(httputil.Handler):
    def dispatch(self):
        path = self.path_only
        params = urllib.parse.parse_qs(self.query, keep_blank_values=True)
        if path == "/upload":
            return self.upload()
        if path == "/download":
            return self.download(_int(params, "size", 0), params.get("seed", ["0"])[0],
                                 params.get("chunked", ["0"])[0] == "1")
        if path.startswith("/status/") and path[len("/status/"):].isdigit():
            return self.status(int(path[len("/status/"):]))
        if path == "/slow":
            self.drain_body()
            STOP.wait(_int(params, "ms", 1000) / 1000.0)
            return self.send_json(200, {"slept_ms": _int(params, "ms", 1000)})
        if path == "/chunked":
            return self.paced(_int(params, "n", 3), _int(params, "ms", 0), sse=False)
        if path == "/sse":
            return self.paced(_int(params, "n", 3), _int(params, "ms", 0), sse=True)
        if path == "/trailers":
            self.drain_body()
            pairs = urllib.parse.parse_qsl(self.query, keep_blank_values=True)
            announce = ", ".join(dict.fromkeys(k for k, _ in pairs))
            self.begin_chunked(200, [("Trailer", announce)] if announce else [], "text/plain")
            self.write_chunk(b"hello\n")
            return self.end_chunked(pairs)
        if path == "/headers":
            self.drain_body()
            pairs = urllib.parse.parse_qsl(self.query, keep_blank_values=True)
            return self.send_json(200, {"set": pairs}, headers=pairs)
        return self.echo()

    def echo(self):
        h = hashlib.sha256()
        n = 0
        for data in self.iter_body():
            h.update(data)
            n += len(data)
        self.send_json(200, {
            "method": self.command, "path": self.target, "headers": self.header_pairs(),
            "bodyLength": n, "bodySha256": h.hexdigest(), "trailers": self.request_trailers,
            "client": "%s:%d" % self.client_address[:2], "connId": self.conn_id,
        })

    def upload(self):
        h = hashlib.sha256()
        n = 0
        for data in self.iter_body():
            h.update(data)
            n += len(data)
        self.send_json(200, {"bytes": n, "sha256": h.hexdigest()})

    def download(self, size, seed, chunked):
        self.drain_body()
        if chunked:
            self.begin_chunked(200, content_type="application/octet-stream")
            for c in payload.chunks(size, seed):
                self.write_chunk(c)
            return self.end_chunked()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if self.command != "HEAD":
            for c in payload.chunks(size, seed):
                self.wfile.write(c)

    def status(self, code):
        self.drain_body()
        if not 200 <= code <= 599:
            return self.send_json(400, {"error": "status must be from 200 to 599"})
        if code in (204, 304):
            self.send_response(code)
            self.end_headers()
        else:
            self.send_json(code, {"status": code})

    def paced(self, n, ms, sse):
        self.drain_body()
        if sse:
            self.begin_chunked(200, [("Cache-Control", "no-cache")], "text/event-stream")
        else:
            self.begin_chunked(200, content_type="text/plain; charset=utf-8")
        for i in range(n):
            if i and ms:
                STOP.wait(ms / 1000.0)
            self.write_chunk(f"data: event {i}\n\n".encode() if sse else f"chunk {i}\n".encode())
        self.end_chunked()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    httputil.add_common_args(p)
    args = p.parse_args(argv)
    EchoHandler.quiet = args.quiet
    server = httputil.Server((args.host, args.port), EchoHandler)
    httputil.serve(server, on_stop=STOP.set)


if __name__ == "__main__":
    main()
