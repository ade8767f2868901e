#!/usr/bin/python3
"""A minimal WebSocket echo server standing in for the runner, for bench/websockets-idle.sh.

    ws_echo_backend.py [--port 0] [--backlog 4096]

Answers any path's `GET` with `Upgrade: websocket` with 101 and the RFC 6455 Sec-WebSocket-Accept
(so it answers edgegate's /sandboxes/{id}/toolbox/proxy/{port}/... and nginx's plain path
alike), then echoes text and binary messages, answers pings and close frames. It sends nothing
on its own (no keepalive pings): an idle WebSocket stays idle. One socket per WebSocket, a few
hundred bytes of Python state each, so that 10,000 WebSockets open quickly on a busy 2-core
machine (python3-websockets' app pings every connection every 20 s and accepts about 60
upgrades a second there). Prints `listening on 127.0.0.1:PORT`; stops on SIGTERM.
"""
import argparse
import asyncio
import base64
import hashlib
import signal

import ws_frames

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.buf = bytearray()
        self.open = False

    def data_received(self, data):
        self.buf += data
        if not self.open:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            del self.buf[:end + 4]
            headers = {k.strip().lower(): v.strip()
                       for k, _, v in (line.partition(":") for line in head[1:])}
            key = headers.get("sec-websocket-key")
            if headers.get("upgrade", "").lower() != "websocket" or not key:
                self.t.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
                self.t.close()
                return
            accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())
            self.t.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self.open = True
        while (f := ws_frames.take(self.buf)) is not None:
            fin, opcode, payload = f
            if opcode in (0, 1, 2):
                self.t.write(ws_frames.encode(opcode, payload, False, fin))
            elif opcode == 9:
                self.t.write(ws_frames.encode(10, payload, False))
            elif opcode == 8:
                self.t.write(ws_frames.encode(8, payload[:2], False))
                self.t.close()
                return


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--backlog", type=int, default=4096)
    args = p.parse_args()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    server = await loop.create_server(Echo, "127.0.0.1", args.port, backlog=args.backlog)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await stop
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
