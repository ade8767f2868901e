#!/usr/bin/python3
"""Holds N idle WebSockets open through a proxy, for bench/websockets-idle.sh.

    ws_idle_client.py --port P --host-header H --count N --ready-file F --stop-file S
                      [--h2 [--connections C] [--tls-ca CERT]]

HTTP/1.1 (default): N connections, each an `Upgrade: websocket` (python3-websockets), opened in
batches of --batch.
--h2: C HTTP/2 connections (h2c with prior knowledge, or TLS with ALPN h2 given --tls-ca), each
carrying about N/C WebSockets as RFC 8441 extended CONNECT streams (`:method CONNECT`,
`:protocol websocket`), as a browser does with one connection to a host; python3-h2 over asyncio.
Every WebSocket must open (HTTP 101, or :status 200 on HTTP/2) or the client fails.

With --warm BYTES every WebSocket then makes one round trip of a BYTES-long binary message (a
socket that was busy once, then idle). Once all N are open it writes "open N" to the ready file and waits, answering the app's pings,
until the stop file exists; then it sends a text message on every WebSocket, waits for its echo
and prints one JSON line: {"opened": N, "alive": M, "dropped": D, "seconds_to_open": T} where
"dropped" counts WebSockets closed or reset while held. Exit status 1 unless alive == N.
"""
import argparse
import asyncio
import collections
import json
import os
import socket
import ssl
import sys
import time

import websockets.client

import ws_frames

MESSAGE = b"ping"


# --- HTTP/1.1 ------------------------------------------------------------------------------
async def h1_open_one(args):
    sock = socket.create_connection(("127.0.0.1", args.port))
    return await websockets.client.connect(f"ws://{args.host_header}/echo", sock=sock,
                                           open_timeout=60, ping_interval=None,
                                           compression=None, max_queue=1)


async def h1_alive(ws, message=MESSAGE.decode()):
    try:
        await ws.send(message)
        return await asyncio.wait_for(ws.recv(), 30) == message
    except Exception:
        return False


async def h1_run(args, ready):
    conns = []
    for i in range(0, args.count, args.batch):
        n = min(args.batch, args.count - i)
        conns += await asyncio.gather(*(h1_open_one(args) for _ in range(n)))
    if args.warm:
        for i in range(0, len(conns), args.batch):
            if not all(await asyncio.gather(*(h1_alive(ws, os.urandom(args.warm))
                                              for ws in conns[i:i + args.batch]))):
                raise SystemExit(f"no echo of the {args.warm}-byte warm-up message")
    await ready(len(conns))
    dropped = sum(ws.closed for ws in conns)
    ok = 0
    for i in range(0, len(conns), args.batch):
        ok += sum(await asyncio.gather(*(h1_alive(ws) for ws in conns[i:i + args.batch])))
    for ws in conns:
        ws.transport.abort()
    return len(conns), ok, dropped


# --- HTTP/2, RFC 8441 ------------------------------------------------------------------------
class WsStream:
    def __init__(self, loop):
        self.opened = loop.create_future()   # the :status
        self.echo = loop.create_future()     # the first text message
        self.buf = bytearray()
        self.closed = None                   # why, once the stream or WebSocket ended
        for f in (self.opened, self.echo):      # (an exception nobody awaited is not news)
            f.add_done_callback(lambda f: f.cancelled() or f.exception())

    def end(self, why):
        if self.closed is None:
            self.closed = why
        for f in (self.opened, self.echo):
            if not f.done():
                f.set_exception(ConnectionError(why))


class H2WebSockets(asyncio.Protocol):
    """One HTTP/2 connection carrying many WebSockets."""

    def __init__(self, loop):
        import h2.config
        import h2.connection
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.loop = loop
        self.settings = loop.create_future()
        self.streams = {}
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.h2.initiate_connection()
        self.flush()

    def flush(self):
        data = self.h2.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc):
        for s in self.streams.values():
            s.end(f"connection lost ({exc})")
        if not self.settings.done():
            self.settings.set_exception(ConnectionError("connection lost"))

    def data_received(self, data):
        import h2.events
        import h2.exceptions
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self.transport.close()
            for s in self.streams.values():
                s.end(f"HTTP/2 protocol error: {e!r}")
            return
        for ev in events:
            s = self.streams.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                if not self.settings.done():
                    self.settings.set_result(dict(self.h2.remote_settings))
            elif isinstance(ev, h2.events.ResponseReceived) and s:
                if not s.opened.done():
                    s.opened.set_result(int(dict(ev.headers)[":status"]))
            elif isinstance(ev, h2.events.DataReceived):
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if s:
                    s.buf += ev.data
                    self.frames(ev.stream_id, s)
            elif isinstance(ev, h2.events.StreamEnded) and s:
                s.end("stream ended by the server")
            elif isinstance(ev, h2.events.StreamReset) and s:
                s.end(f"stream reset ({ev.error_code!r})")
            elif isinstance(ev, h2.events.ConnectionTerminated):
                for st in self.streams.values():
                    st.end(f"GOAWAY ({ev.error_code!r})")
        self.flush()

    def frames(self, sid, s):
        """Consumes the complete server frames in s.buf: answers pings, takes the echo."""
        while (f := ws_frames.take(s.buf)) is not None:
            _, opcode, payload = f
            if opcode == 9 and s.closed is None:  # ping → pong
                self.h2.send_data(sid, ws_frames.encode(10, payload, True))
            elif opcode == 8:
                s.end(f"WebSocket closed by the server ({payload[:2].hex()})")
            elif opcode in (1, 2) and not s.echo.done():
                s.echo.set_result(payload)

    def open(self, authority, path, scheme):
        sid = self.h2.get_next_available_stream_id()
        s = self.streams[sid] = WsStream(self.loop)
        self.h2.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                                   (":scheme", scheme), (":path", path),
                                   (":authority", authority), ("sec-websocket-version", "13")])
        return sid, s

    def send(self, sid, payload, opcode=1):
        frame = ws_frames.encode(opcode, payload, True)
        while frame:  # (within the frame size limit; windows: one stream at a time is below them)
            n = min(len(frame), self.h2.max_outbound_frame_size)
            self.h2.send_data(sid, frame[:n])
            frame = frame[n:]


async def h2_connect(args, n, ctx):
    """An HTTP/2 connection that may carry n extended CONNECT streams."""
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(
        lambda: H2WebSockets(loop), "127.0.0.1", args.port, ssl=ctx,
        server_hostname=args.host_header if ctx else None)
    settings = await asyncio.wait_for(proto.settings, 30)
    if settings.get(8) != 1:
        raise SystemExit(f"the server does not offer SETTINGS_ENABLE_CONNECT_PROTOCOL: {settings}")
    limit = settings.get(3)  # SETTINGS_MAX_CONCURRENT_STREAMS
    if limit is not None and n > limit:
        raise SystemExit(f"{n} streams per connection, the server allows {limit}: "
                         f"use more --connections")
    return proto


async def h2_opened(sid, s):
    try:
        status = await asyncio.wait_for(asyncio.shield(s.opened), 120)
    except Exception as e:
        raise SystemExit(f"stream {sid}: WebSocket not opened: {e!r}")
    if status != 200:
        raise SystemExit(f"stream {sid}: :status {status}, not 200")


async def h2_alive(proto, sid, s, message=MESSAGE, opcode=1):
    if s.closed:
        return False
    s.echo = asyncio.get_running_loop().create_future()
    s.echo.add_done_callback(lambda f: f.cancelled() or f.exception())
    proto.send(sid, message, opcode)
    proto.flush()
    try:
        return await asyncio.wait_for(asyncio.shield(s.echo), 30) == message
    except Exception:
        return False


async def h2_warm(proto, streams, size):
    """One round trip of `size` bytes on each stream of a connection, one stream at a time."""
    for sid, s in streams:
        if not await h2_alive(proto, sid, s, os.urandom(size), 2):
            raise SystemExit(f"stream {sid}: no echo of the {size}-byte warm-up message")


async def h2_run(args, ready):
    ctx = None
    if args.tls_ca:
        ctx = ssl.create_default_context(cafile=args.tls_ca)
        ctx.set_alpn_protocols(["h2"])
    per = [args.count // args.connections + (i < args.count % args.connections)
           for i in range(args.connections)]
    protos = await asyncio.gather(*(h2_connect(args, n, ctx) for n in per))
    # Streams round-robin over the connections, --batch of them opening at a time.
    slots = [protos[i] for k in range(max(per)) for i in range(len(protos)) if k < per[i]]
    streams = {p: [] for p in protos}
    for i in range(0, len(slots), args.batch):
        wave = [(p, *p.open(args.host_header, "/echo", "https" if ctx else "http"))
                for p in slots[i:i + args.batch]]
        for p in {p for p, _, _ in wave}:
            p.flush()
        await asyncio.gather(*(h2_opened(sid, s) for _, sid, s in wave))
        for p, sid, s in wave:
            streams[p].append((sid, s))
    conns = list(streams.items())
    if args.warm:
        await asyncio.gather(*(h2_warm(p, st, args.warm) for p, st in conns))
    opened = sum(len(streams) for _, streams in conns)
    await ready(opened)
    dropped = sum(1 for _, streams in conns for _, s in streams if s.closed)
    ok = 0
    for proto, streams in conns:
        ok += sum(await asyncio.gather(*(h2_alive(proto, sid, s) for sid, s in streams)))
    why = collections.Counter(s.closed for _, streams in conns for _, s in streams if s.closed)
    for reason, n in why.most_common():
        print(f"{n} WebSockets closed: {reason}", file=sys.stderr)
    for proto, _ in conns:
        proto.transport.abort()
    return opened, ok, dropped


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host-header", required=True)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--h2", action="store_true")
    p.add_argument("--connections", type=int, default=100)
    p.add_argument("--tls-ca")
    p.add_argument("--warm", type=int, default=0,
                   help="before the measurement, one round trip of this many bytes on each")
    p.add_argument("--ready-file", required=True)
    p.add_argument("--stop-file", required=True)
    args = p.parse_args()
    started = time.monotonic()
    took = 0.0

    async def ready(n):
        nonlocal took
        took = time.monotonic() - started
        with open(args.ready_file, "w") as f:
            f.write(f"open {n}\n")
        while not os.path.exists(args.stop_file):
            await asyncio.sleep(0.2)

    opened, ok, dropped = await (h2_run(args, ready) if args.h2 else h1_run(args, ready))
    print(json.dumps({"opened": opened, "alive": ok, "dropped": dropped,
                      "seconds_to_open": round(took, 2)}), flush=True)
    return 0 if opened == ok == args.count else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
