#!/usr/bin/env python3
"""One TLS connection per request: tls-handshakes.sh's full-py and resumed-py kinds.

--procs processes, each making connections one after another for --duration seconds: TCP
connect (TCP_NODELAY), TLS handshake (ALPN http/1.1, no certificate check), `GET / HTTP/1.1`
with the preview Host and `Connection: close`, read to EOF, close. With --resume every
connection offers the session ticket the previous one received (TLS 1.3 tickets arrive after
the handshake, so the response is read before the session is kept). Prints one line:

  HSJSON {"connections": N, "resumed": R, "errors": E, "duration_s": S, "latency_mean_ms": L,
          "tls": "TLSv1.3"}

A response other than 200, or a body other than --body-size bytes, counts as an error.
h2load is the faster client (tls-handshakes.sh's full and resumed kinds); this one checks every
body but costs more per connection, so read the server's CPU per handshake, not handshakes/s,
when the client's CPU is the limit.
"""
import argparse
import json
import multiprocessing as mp
import socket
import ssl
import sys
import time


def worker(args, deadline, out):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    request = (f"GET / HTTP/1.1\r\nHost: {args.host_header}\r\nConnection: close\r\n\r\n").encode()
    session = None
    n = resumed = errors = 0
    total_latency = 0.0
    version = None
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            raw = socket.create_connection((args.host, args.port), timeout=5)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with ctx.wrap_socket(raw, server_hostname=args.sni,
                                 session=session if args.resume else None) as s:
                s.sendall(request)
                chunks = []
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    chunks.append(b)
                data = b"".join(chunks)
                head, _, body = data.partition(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200") or len(body) != args.body_size:
                    errors += 1
                n += 1
                resumed += s.session_reused
                version = s.version()
                if args.resume:
                    session = s.session
        except (OSError, ssl.SSLError):
            errors += 1
            session = None
        total_latency += time.monotonic() - t0
    out.put((n, resumed, errors, total_latency, version))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host-header", required=True)
    p.add_argument("--sni", default="proxy.localhost")
    p.add_argument("--procs", type=int, default=16)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--body-size", type=int, required=True)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()
    out = mp.Queue()
    start = time.monotonic()
    deadline = start + args.duration
    procs = [mp.Process(target=worker, args=(args, deadline, out)) for _ in range(args.procs)]
    for pr in procs:
        pr.start()
    results = [out.get() for _ in procs]
    for pr in procs:
        pr.join()
    elapsed = time.monotonic() - start
    n = sum(r[0] for r in results)
    lat = sum(r[3] for r in results)
    print("HSJSON " + json.dumps({
        "connections": n, "resumed": sum(r[1] for r in results),
        "errors": sum(r[2] for r in results), "duration_s": round(elapsed, 3),
        "latency_mean_ms": round(1000 * lat / n, 3) if n else None,
        "tls": next((r[4] for r in results if r[4]), None)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
