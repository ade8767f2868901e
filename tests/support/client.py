"""The client side of the integration tests: real curl, and the checks a user makes of the
answers (status, headers, JSON error bodies)."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

RFC3339_RX = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z")


def curl_path():
    path = shutil.which("curl")
    if not path:
        raise RuntimeError("the integration tests need curl on PATH")
    return path


class Response:
    def __init__(self, status, headers, body, exit_code, stderr, info, elapsed, argv):
        self.status = status          # 0 when curl got no answer
        self.headers = headers        # [(name, value)] of the final response, in order
        self.body = body
        self.exit_code = exit_code    # curl's exit status (28: --max-time reached)
        self.stderr = stderr          # curl -v output
        self.info = info              # curl's -w '%{json}'
        self.elapsed = elapsed
        self.argv = argv

    def header(self, name):
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __str__(self):
        head = "\n".join(f"{k}: {v}" for k, v in self.headers)
        return (f"$ {' '.join(self.argv)}\n-> status {self.status}, curl exit {self.exit_code}, "
                f"{self.elapsed:.2f}s\n{head}\n\n{self.body[:2000]!r}\n--- curl -v ---\n"
                f"{self.stderr[-4000:]}")


def parse_header_blocks(raw):
    """curl -D output -> [(status, [(name, value)])] per response (1xx included)."""
    blocks = []
    for line in raw.decode("latin-1").split("\r\n"):
        if line.startswith("HTTP/"):
            parts = line.split(" ", 2)
            blocks.append((int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0, []))
        elif ":" in line and blocks:
            name, _, value = line.partition(":")
            blocks[-1][1].append((name.strip(), value.strip()))
    return blocks


def _json_objects(text):
    dec = json.JSONDecoder()
    out, i = [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        obj, i = dec.raw_decode(text, i)
        out.append(obj)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def _run(argv, timeout, stdin):
    start = time.monotonic()
    proc = subprocess.run(argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, timeout=timeout + 15)
    return proc, time.monotonic() - start


def curl(url, *args, timeout=20, stdin=None, output=None):
    """Runs `curl -sS -v -g --path-as-is --max-time timeout ARGS URL`; a Response. With
    `output`, the body goes to that file (and Response.body is empty)."""
    with tempfile.TemporaryDirectory(prefix="edgegate-curl-") as tmp:
        hfile, bfile = os.path.join(tmp, "headers"), output or os.path.join(tmp, "body")
        argv = [curl_path(), "-sS", "-v", "-g", "--path-as-is", "--max-time", str(timeout),
                "-D", hfile, "-o", bfile, "-w", "%{json}", *args, url]
        proc, elapsed = _run(argv, timeout, stdin)
        raw_headers, body = _read(hfile), b"" if output else _read(bfile)
    blocks = [b for b in parse_header_blocks(raw_headers) if b[0] >= 200] or [(0, [])]
    infos = _json_objects(proc.stdout.decode("utf-8", "replace"))
    info = infos[-1] if infos else {}
    status = int(info.get("http_code") or blocks[-1][0] or 0)
    return Response(status, blocks[-1][1], body, proc.returncode,
                    proc.stderr.decode("utf-8", "replace"), info, elapsed, argv)


def curl_many(urls, *args, timeout=20):
    """One curl invocation for several URLs (so it may reuse its connection).
    Returns (infos, bodies, stderr): curl's -w json and the body per URL, and curl -v output."""
    with tempfile.TemporaryDirectory(prefix="edgegate-curl-") as tmp:
        outs = []
        for i in range(len(urls)):
            outs += ["-o", os.path.join(tmp, f"body{i}")]
        argv = [curl_path(), "-sS", "-v", "-g", "--path-as-is", "--max-time", str(timeout),
                "-w", "%{json}\n", *args, *outs, *urls]
        proc, _ = _run(argv, timeout, None)
        bodies = []
        for i in range(len(urls)):
            bodies.append(_read(os.path.join(tmp, f"body{i}")))
    return (_json_objects(proc.stdout.decode("utf-8", "replace")), bodies,
            proc.stderr.decode("utf-8", "replace"))


def assert_error(tc, resp, status, code, path=None, method="GET"):
    """The proxy's JSON error body: statusCode, message, code, timestamp, path, method."""
    tc.assertEqual(resp.status, status, resp)
    tc.assertIn("application/json", resp.header("Content-Type") or "", resp)
    try:
        body = resp.json()
    except ValueError:
        tc.fail(f"error body is not JSON\n{resp}")
    tc.assertEqual(body.get("statusCode"), status, resp)
    tc.assertEqual(body.get("code"), code, resp)
    tc.assertIsInstance(body.get("message"), str, resp)
    tc.assertTrue(body["message"], resp)
    tc.assertRegex(str(body.get("timestamp")), RFC3339_RX, resp)
    if path is not None:  # the request path; a query string may or may not be included
        tc.assertEqual(str(body.get("path")).split("?", 1)[0], path, resp)
    tc.assertEqual(body.get("method"), method, resp)
    return body
