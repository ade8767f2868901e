"""Loading a fixture file (see fixtures/demo.json and README.md) with runner URL overrides."""
import copy
import json

DEFAULTS = {
    "proxyApiKey": "",
    "sshGatewayApiKey": "",
    "runners": [],
    "sandboxes": [],
    "snapshots": [],
    "sshTokens": {},
    "userTokens": {},
    "signedPreviewTokens": {},
    "oidc": {"issuer": "http://127.0.0.1:0/oidc", "clientId": "daytona", "audience": "daytona"},
}

RUNNER_DEFAULTS = {"domain": "127.0.0.1", "state": "ready", "region": "local",
                   "unschedulable": False}
SANDBOX_DEFAULTS = {"state": "started", "public": False, "previewTokens": [], "snapshotRef": None}


def parse_runner_urls(items):
    """['runner-1=http://127.0.0.1:3000', ...] -> {'runner-1': 'http://127.0.0.1:3000'}"""
    out = {}
    for item in items or []:
        rid, sep, url = item.partition("=")
        if not sep or not rid or not url.startswith(("http://", "https://")):
            raise ValueError(f"--runner-url wants ID=http://HOST:PORT, got {item!r}")
        out[rid] = url.rstrip("/")
    return out


def apply_defaults(data, runner_urls=None):
    """A normalized deep copy of fixture data; runner_urls replaces apiUrl and proxyUrl."""
    fx = copy.deepcopy(DEFAULTS)
    fx.update(copy.deepcopy(data))
    fx["runners"] = [dict(RUNNER_DEFAULTS, **r) for r in fx["runners"]]
    fx["sandboxes"] = [dict(SANDBOX_DEFAULTS, **s) for s in fx["sandboxes"]]
    for rid, url in (runner_urls or {}).items():
        matches = [r for r in fx["runners"] if r["id"] == rid]
        if not matches:
            raise ValueError(f"--runner-url names runner {rid!r}, which the fixture does not have")
        for r in matches:
            r["apiUrl"] = r["proxyUrl"] = url
    return fx


def load(path, runner_urls=None):
    with open(path, encoding="utf-8") as f:
        return apply_defaults(json.load(f), runner_urls)
