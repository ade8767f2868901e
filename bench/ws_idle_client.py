#!/usr/bin/python3
"""Holds N idle WebSockets open through a proxy, for bench/websockets-idle.sh.

    ws_idle_client.py --port P --host-header H --count N --ready-file F --stop-file S

Opens N connections (in batches), writes "open N" to the ready file, waits until the stop file
exists, then checks that every connection still answers (an echo round trip) and prints one JSON
line: {"opened": N, "alive": M, "seconds_to_open": T}.
"""
import argparse
import asyncio
import json
import os
import socket
import time

import websockets.client


async def open_one(args):
    sock = socket.create_connection(("127.0.0.1", args.port))
    return await websockets.client.connect(f"ws://{args.host_header}/echo", sock=sock,
                                           open_timeout=60, ping_interval=None,
                                           compression=None, max_queue=1)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host-header", required=True)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--stop-file", required=True)
    args = p.parse_args()
    started = time.monotonic()
    conns = []
    for i in range(0, args.count, args.batch):
        n = min(args.batch, args.count - i)
        conns += await asyncio.gather(*(open_one(args) for _ in range(n)))
    opened = time.monotonic() - started
    with open(args.ready_file, "w") as f:
        f.write(f"open {len(conns)}\n")
    while not os.path.exists(args.stop_file):
        await asyncio.sleep(0.2)

    async def alive(ws):
        try:
            await ws.send("ping")
            return await asyncio.wait_for(ws.recv(), 30) == "ping"
        except Exception:
            return False

    ok = 0
    for i in range(0, len(conns), args.batch):
        ok += sum(await asyncio.gather(*(alive(ws) for ws in conns[i:i + args.batch])))
    print(json.dumps({"opened": len(conns), "alive": ok, "seconds_to_open": round(opened, 2)}),
          flush=True)
    for ws in conns:
        ws.transport.abort()


if __name__ == "__main__":
    asyncio.run(main())
