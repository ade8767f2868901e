#!/usr/bin/env python3
"""A WebSocket app for tests, on python3-websockets (Debian's /usr/bin/python3).

    /usr/bin/python3 tests/support/ws_app.py [--host 127.0.0.1] [--port 0]

Paths:
  /echo            (or any path ending in /echo) echoes every message (text or binary); reports the subprotocol it chose and
                   the request headers it saw as its first message when ?hello=1
  /ticker?n=N&ms=M sends N text messages "tick i", M ms apart, then closes with 1000
  /close?code=C    closes at once with code C and reason "bye"
  /reject-200      answers the upgrade with a plain 200 page
  /reject-426      answers with 426 Upgrade Required
  /ws-page         a plain GET: an HTML page whose script opens a WebSocket to /echo?hello=1 on
                   its own origin (wss: on https:), sends a message and keeps the socket open;
                   it reports in window.wsResult (JSON-able) and document.title ("ws ok" or
                   "ws error: ..."); window.wsClose() closes the socket (for browser tests);
                   with ?manual=1 the title is "ws ready" and window.wsOpen() opens it
Subprotocols offered by the client are answered with the first of chat.v2, chat.v1 it offers.
Prints `listening on HOST:PORT` once ready; stops on SIGTERM.
"""
import argparse
import asyncio
import http
import json
import signal
import sys
import urllib.parse

import websockets
import websockets.server
from websockets.datastructures import Headers


WS_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>ws pending</title></head>
<body><pre id="log"></pre>
<script>
const nav = performance.getEntriesByType("navigation")[0];
const result = window.wsResult = {page: {protocol: nav ? nav.nextHopProtocol : null,
                                         href: location.href},
                                  sent: "browser says " + Math.random().toString(36).slice(2),
                                  hello: null, echo: null, events: []};
function report(title) {
  document.title = title;
  document.getElementById("log").textContent = JSON.stringify(result, null, 1);
}
let ws = null;
window.wsClose = () => ws.close(1000, "done");
window.wsOpen = () => {
  ws = new WebSocket((location.protocol === "https:" ? "wss:" : "ws:") + "//" +
                     location.host + "/echo?hello=1");
  ws.onopen = () => { result.events.push("open"); ws.send(result.sent); };
  ws.onmessage = (e) => {
    if (result.hello === null) { result.hello = JSON.parse(e.data); return; }
    result.echo = e.data;
    report(result.echo === result.sent ? "ws ok" : "ws error: wrong echo");
  };
  ws.onerror = () => { result.events.push("error"); report("ws error: error event"); };
  ws.onclose = (e) => { result.events.push("close " + e.code);
                        if (result.echo === null) report("ws error: closed " + e.code); };
};
if (new URLSearchParams(location.search).has("manual")) document.title = "ws ready";
else wsOpen();
</script></body></html>
"""


async def process_request(path, headers):
    route = urllib.parse.urlsplit(path).path
    if route == "/ws-page":
        return (http.HTTPStatus.OK, Headers([("Content-Type", "text/html; charset=utf-8"),
                                             ("Cache-Control", "no-store")]), WS_PAGE)
    if route == "/reject-200":
        return (http.HTTPStatus.OK, Headers([("Content-Type", "text/plain")]),
                b"not a websocket endpoint\n")
    if route == "/reject-426":
        return (http.HTTPStatus.UPGRADE_REQUIRED,
                Headers([("Content-Type", "text/plain"), ("Upgrade", "websocket")]), b"upgrade!\n")
    return None


async def handler(ws, path):
    url = urllib.parse.urlsplit(path)
    params = dict(urllib.parse.parse_qsl(url.query))
    if url.path == "/echo" or url.path.endswith("/echo"):  # (behind a runner's path prefix)
        if params.get("hello") == "1":
            await ws.send(json.dumps({"subprotocol": ws.subprotocol,
                                      "headers": [[k, v] for k, v in ws.request_headers.raw_items()]}))
        async for message in ws:
            await ws.send(message)
        return
    if url.path == "/ticker":
        n, ms = int(params.get("n", "3")), int(params.get("ms", "0"))
        for i in range(n):
            if i and ms:
                await asyncio.sleep(ms / 1000.0)
            await ws.send(f"tick {i}")
        await ws.close(1000, "done")
        return
    if url.path == "/close":
        await ws.close(int(params.get("code", "1000")), "bye")
        return
    await ws.close(1008, "unknown path")


async def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with websockets.serve(handler, args.host, args.port, process_request=process_request,
                                subprotocols=["chat.v2", "chat.v1"], max_size=None,
                                compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on {args.host}:{port}", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
