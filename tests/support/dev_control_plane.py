#!/usr/bin/env python3
"""A stand-in for the Daytona API, serving the calls edgegate makes (contract section 5) from a
fixture file, with the same keys, status codes and error bodies.

    python3 tests/support/dev_control_plane.py --fixture F [--host 127.0.0.1] --port P \
        [--runner-url runner-1=http://127.0.0.1:PORT ...] [--quiet]

Prints `listening on HOST:PORT` once ready. Test controls, without auth:
    POST /_dev/fail     {"mode": "500"|"503"|"hang"|"slow"|"close", "delayMs": N, "count": N,
                         "pathPrefix": "/api/runners"}   make matching /api calls fail
    POST /_dev/reset    clear failures and the call log, release hung calls
    GET  /_dev/calls    [{method, path, headers, headerList, status}] of /api calls since reset
    POST /_dev/sandbox/{id}  JSON patch of a sandbox (created when unknown)
    POST /_dev/runner/{id}   JSON patch of a runner (created when unknown)
    POST /_dev/keys     {"proxyApiKey": ..., "sshGatewayApiKey": ...}: rotate keys;
                        "extraProxyApiKeys": [...] also accepts those (an overlap window)
    POST /_dev/oidc     JSON patch of the oidc settings /api/config serves (issuer, clientId...)
    GET  /_dev/state    the current fixture
"""
import argparse
import copy
import http
import json
import os
import re
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture as fixture_mod  # noqa: E402
import httputil  # noqa: E402

FAIL_MODES = ("500", "503", "hang", "slow", "close")


class State:
    def __init__(self, fx):
        self.cond = threading.Condition()
        self.fx = fx
        self.rules = []
        self.calls = []
        self.generation = 0  # bumped by reset: releases hung calls
        self.stopping = False

    # Everything below is called with self.cond held.
    def sandbox(self, sid):
        return next((s for s in self.fx["sandboxes"] if s["id"] == sid), None)

    def runner(self, rid):
        return next((r for r in self.fx["runners"] if r["id"] == rid), None)

    def user_may_access(self, token, sid):
        return sid in self.fx["userTokens"].get(token, [])

    def take_rule(self, path):
        for rule in self.rules:
            if path.startswith(rule["pathPrefix"]):
                if rule["count"] is not None:
                    rule["count"] -= 1
                    if rule["count"] <= 0:
                        self.rules.remove(rule)
                return dict(rule)
        return None


def runner_full(r):
    out = {k: r.get(k) for k in ("id", "domain", "apiUrl", "proxyUrl", "apiKey", "state",
                                 "region", "unschedulable")}
    out.update({"class": "small", "version": "0", "cpu": 4, "memory": 8, "disk": 50,
                "used": 0, "capacity": 1000, "currentCpuUsagePercentage": 0,
                "currentMemoryUsagePercentage": 0, "currentDiskUsagePercentage": 0,
                "currentAllocatedCpu": 0, "currentAllocatedMemoryGiB": 0,
                "currentAllocatedDiskGiB": 0, "currentSnapshotCount": 0,
                "availabilityScore": 100, "lastChecked": httputil.now_rfc3339()})
    return out


def sandbox_dto(s):
    ref = s.get("snapshotRef")
    return {
        "id": s["id"], "name": s.get("name", s["id"]), "organizationId": "org-1",
        "state": s["state"], "desiredState": s.get("desiredState", s["state"]),
        "runnerId": s["runnerId"], "public": bool(s["public"]), "target": "local",
        "snapshot": s.get("snapshot"), "buildInfo": {"snapshotRef": ref} if ref else None,
        "user": "daytona", "env": {}, "labels": {}, "cpu": 1, "gpu": 0, "memory": 1, "disk": 3,
        "errorReason": None, "lastActivityAt": s.get("lastActivityAt"),
    }


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


PROXY, SSH, USER = "proxy", "ssh", "user"
ROUTES = []  # (method, compiled regex, accepted credential kinds or None for public, handler)


def route(method, pattern, kinds):
    def register(fn):
        ROUTES.append((method, re.compile(pattern + r"\Z"), kinds, fn))
        return fn
    return register


class ControlPlaneHandler(httputil.Handler):
    state = None  # set in main()

    def send_response(self, code, message=None):
        self.status_sent = code
        super().send_response(code, message)

    def nest_error(self, status, message):
        phrase = http.HTTPStatus(status).phrase
        self.send_json(status, {"path": self.target, "timestamp": httputil.now_rfc3339(),
                                "statusCode": status, "error": phrase, "message": message})

    def dispatch(self):
        self.status_sent = None
        path = self.path_only
        if path.startswith("/_dev/"):
            return self.dev(path)
        if path == "/api" or path.startswith("/api/"):
            return self.api(path)
        self.drain_body()
        self.nest_error(404, f"Cannot {self.command} {path}")

    # --- /api -------------------------------------------------------------------------------
    def api(self, path):
        st = self.state
        entry = {"method": self.command, "path": self.target, "headers": dict(self.headers.items()),
                 "headerList": self.header_pairs(), "status": None}
        with st.cond:
            st.calls.append(entry)
            del st.calls[:-10000]
            rule = st.take_rule(path)
        body = b"".join(self.iter_body())
        if rule:
            delay = (rule.get("delayMs") or 0) / 1000.0
            if delay:
                with st.cond:
                    st.cond.wait_for(lambda: st.stopping, timeout=delay)
            mode = rule["mode"]
            if mode in ("500", "503"):
                self.nest_error(int(mode), "injected failure")
                entry["status"] = self.status_sent
                return
            if mode == "close":
                entry["status"] = "closed"
                return self.drop_connection()
            if mode == "hang":
                entry["status"] = "hung"
                with st.cond:
                    gen = st.generation
                    st.cond.wait_for(lambda: st.generation != gen or st.stopping)
                return self.drop_connection()
            # "slow": answer normally after the delay
        try:
            self.api_route(path, body)
        except ApiError as e:
            self.nest_error(e.status, e.message)
        entry["status"] = self.status_sent

    def api_route(self, path, body):
        allowed_methods = set()
        for method, rx, kinds, fn in ROUTES:
            m = rx.match(path)
            if not m:
                continue
            allowed_methods.add(method)
            if method != self.command:
                continue
            who = self.authenticate(kinds)
            params = {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
            with self.state.cond:
                return fn(self, who, body=body, **params)
        raise ApiError(404, f"Cannot {self.command} {path}")

    def authenticate(self, kinds):
        if kinds is None:
            return None
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        fx = self.state.fx
        if token:
            if PROXY in kinds and (token == fx["proxyApiKey"]
                                   or token in fx.get("extraProxyApiKeys", ())):
                return PROXY
            if SSH in kinds and token == fx["sshGatewayApiKey"]:
                return SSH
            if USER in kinds and token in fx["userTokens"]:
                return USER
        raise ApiError(401, "Unauthorized")

    def bearer(self):
        return self.headers.get("Authorization", "")[len("Bearer "):]

    def known_sandbox(self, sid):
        s = self.state.sandbox(sid)
        if s is None:
            raise ApiError(404, f"Sandbox with ID or name {sid} not found")
        return s

    @route("GET", r"/api/config", None)
    def get_config(self, who, body):
        fx = self.state.fx
        self.send_json(200, {
            "version": "0.0.0-dev", "environment": "dev", "oidc": fx["oidc"],
            "proxyTemplateUrl": "http://{{PORT}}-{{sandboxId}}.proxy.localhost:4000",
            "proxyToolboxUrl": "http://proxy.localhost:4000/toolbox",
            "defaultSnapshot": "daytonaio/sandbox:0.0.0-dev", "dashboardUrl": "http://127.0.0.1:0",
            "maxAutoArchiveInterval": 43200, "maintananceMode": False,
            "linkedAccountsEnabled": False, "announcements": {},
        })

    @route("GET", r"/api/preview/(?P<sid>[^/]+)/public", {PROXY})
    def get_public(self, who, body, sid):
        self.send_json(200, bool(self.known_sandbox(sid)["public"]))

    @route("GET", r"/api/preview/(?P<sid>[^/]+)/validate/(?P<token>[^/]+)", {PROXY})
    def get_validate(self, who, body, sid, token):
        if token not in self.known_sandbox(sid)["previewTokens"]:
            raise ApiError(404, "Invalid preview token")
        self.send_json(200, True)

    @route("GET", r"/api/preview/(?P<sid>[^/]+)/access", {USER})
    def get_access(self, who, body, sid):
        self.known_sandbox(sid)
        if not self.state.user_may_access(self.bearer(), sid):
            raise ApiError(403, "Forbidden: no access to this sandbox")
        self.send_json(200, True)

    @route("GET", r"/api/preview/(?P<token>[^/]+)/(?P<port>[0-9]+)/sandbox-id", {PROXY})
    def get_signed_sandbox_id(self, who, body, token, port):
        entry = self.state.fx["signedPreviewTokens"].get(token)
        if not entry or int(entry.get("port", -1)) != int(port) \
                or self.state.sandbox(entry.get("sandboxId")) is None:
            raise ApiError(403, "Invalid or expired signed preview URL")
        self.send_bytes(200, entry["sandboxId"].encode(), "text/plain; charset=utf-8")

    @route("GET", r"/api/runners/by-sandbox/(?P<sid>[^/]+)", {PROXY, SSH})
    def get_runner_by_sandbox(self, who, body, sid):
        s = self.known_sandbox(sid)
        r = self.state.runner(s["runnerId"])
        if r is None:
            raise ApiError(404, f"Runner for sandbox {sid} not found")
        self.send_json(200, runner_full(r))

    @route("GET", r"/api/runners/(?P<rid>[^/]+)/full", {PROXY})
    def get_runner_full(self, who, body, rid):
        r = self.state.runner(rid)
        if r is None:
            raise ApiError(404, f"Runner with ID {rid} not found")
        self.send_json(200, runner_full(r))

    @route("GET", r"/api/sandbox/ssh-access/validate", {SSH})
    def get_ssh_validate(self, who, body):
        token = urllib.parse.parse_qs(self.query).get("token", [""])[0]
        sid = self.state.fx["sshTokens"].get(token)
        if sid is not None and self.state.sandbox(sid) is None:
            sid = None
        self.send_json(200, {"valid": sid is not None, "sandboxId": sid})

    @route("GET", r"/api/sandbox/(?P<sid>[^/]+)", {SSH, USER})
    def get_sandbox(self, who, body, sid):
        s = self.known_sandbox(sid)
        if who == USER and not self.state.user_may_access(self.bearer(), sid):
            raise ApiError(403, "Forbidden: no access to this sandbox")
        self.send_json(200, sandbox_dto(s))

    @route("GET", r"/api/snapshots/(?P<snap>[^/]+)", {USER})
    def get_snapshot(self, who, body, snap):
        for s in self.state.fx["snapshots"]:
            if snap in (s.get("id"), s.get("name")):
                self.send_json(200, {"id": s.get("id"), "name": s.get("name", s.get("id")),
                                     "ref": s.get("ref"), "state": s.get("state", "active"),
                                     "initialRunnerId": s.get("initialRunnerId")})
                return
        raise ApiError(404, f"Snapshot {snap} not found")

    @route("POST", r"/api/sandbox/(?P<sid>[^/]+)/last-activity", {PROXY, SSH})
    def post_last_activity(self, who, body, sid):
        self.known_sandbox(sid)["lastActivityAt"] = httputil.now_rfc3339()
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    # --- /_dev --------------------------------------------------------------------------------
    def dev(self, path):
        st = self.state
        raw = b"".join(self.iter_body())
        try:
            patch = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            return self.send_json(400, {"error": f"bad JSON: {e}"})
        if self.command == "GET" and path == "/_dev/calls":
            with st.cond:
                return self.send_json(200, copy.deepcopy(st.calls))
        if self.command == "GET" and path == "/_dev/state":
            with st.cond:
                return self.send_json(200, st.fx)
        if self.command != "POST":
            return self.send_json(404, {"error": f"no {self.command} {path}"})
        if path == "/_dev/reset":
            with st.cond:
                st.rules.clear()
                st.calls.clear()
                st.generation += 1
                st.cond.notify_all()
            return self.send_json(200, {"ok": True})
        if path == "/_dev/fail":
            mode = str(patch.get("mode", ""))
            if mode not in FAIL_MODES:
                return self.send_json(400, {"error": f"mode must be one of {FAIL_MODES}"})
            rule = {"mode": mode, "delayMs": int(patch.get("delayMs") or 0),
                    "count": None if patch.get("count") is None else int(patch["count"]),
                    "pathPrefix": patch.get("pathPrefix") or "/api"}
            with st.cond:
                st.rules.append(rule)
            return self.send_json(200, rule)
        if path == "/_dev/oidc":
            with st.cond:
                st.fx.setdefault("oidc", {}).update(patch)
                return self.send_json(200, st.fx["oidc"])
        if path == "/_dev/keys":
            with st.cond:
                for k in ("proxyApiKey", "sshGatewayApiKey", "extraProxyApiKeys"):
                    if k in patch:
                        st.fx[k] = patch[k]
            return self.send_json(200, {"ok": True})
        m = re.fullmatch(r"/_dev/(sandbox|runner)/([^/]+)", path)
        if m:
            kind, oid = m.group(1), urllib.parse.unquote(m.group(2))
            with st.cond:
                if kind == "sandbox":
                    obj = st.sandbox(oid)
                    if obj is None:
                        obj = dict(fixture_mod.SANDBOX_DEFAULTS, id=oid, runnerId="runner-1")
                        st.fx["sandboxes"].append(obj)
                else:
                    obj = st.runner(oid)
                    if obj is None:
                        obj = dict(fixture_mod.RUNNER_DEFAULTS, id=oid, apiKey="", apiUrl="",
                                   proxyUrl="")
                        st.fx["runners"].append(obj)
                obj.update(patch)
                obj["id"] = oid
                return self.send_json(200, obj)
        self.send_json(404, {"error": f"no {self.command} {path}"})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fixture", required=True)
    p.add_argument("--runner-url", action="append", default=[], metavar="ID=URL",
                   help="replace apiUrl and proxyUrl of runner ID (repeatable)")
    httputil.add_common_args(p)
    args = p.parse_args(argv)
    try:
        fx = fixture_mod.load(args.fixture, fixture_mod.parse_runner_urls(args.runner_url))
    except (OSError, ValueError) as e:
        p.error(str(e))
    state = State(fx)
    ControlPlaneHandler.state = state
    ControlPlaneHandler.quiet = args.quiet
    server = httputil.Server((args.host, args.port), ControlPlaneHandler)

    def stop():
        with state.cond:
            state.stopping = True
            state.cond.notify_all()

    httputil.serve(server, on_stop=stop)


if __name__ == "__main__":
    main()
