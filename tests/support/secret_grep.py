#!/usr/bin/env python3
"""Greps edgegate's logs from a whole test run for the test secrets.

scripts/test.sh sets EDGEGATE_LOG_ARCHIVE to an empty directory before ctest; stack.py copies
the stdout and stderr of every edgegate it started there; then this script reads every secret
of the fixtures (API keys, runner keys, preview tokens, SSH tokens, user tokens, signed preview
tokens) and fails, naming the file and the kind of secret, when one appears in a log.

    python3 tests/support/secret_grep.py DIR [FIXTURE.json ...]
"""
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def fixture_secrets(path):
    with open(path) as f:
        fx = json.load(f)
    out = []
    for key in ("proxyApiKey", "sshGatewayApiKey"):
        if fx.get(key):
            out.append((key, fx[key]))
    for k in fx.get("extraProxyApiKeys", []):
        out.append(("extraProxyApiKeys", k))
    for r in fx.get("runners", []):
        if r.get("apiKey"):
            out.append((f"runner {r['id']} apiKey", r["apiKey"]))
    for s in fx.get("sandboxes", []):
        for t in s.get("previewTokens", []):
            out.append(("preview token", t))
    for t in fx.get("sshTokens", {}):
        out.append(("SSH token", t))
    for t in fx.get("userTokens", {}):
        out.append(("user token", t))
    for t in fx.get("signedPreviewTokens", {}):
        out.append(("signed preview token", t))
    return out


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    log_dir = argv[1]
    fixtures = argv[2:] or sorted(glob.glob(os.path.join(HERE, "fixtures", "*.json")))
    secrets = []
    for f in fixtures:
        secrets += [(f"{os.path.basename(f)}: {what}", s) for what, s in fixture_secrets(f)]
    # Short strings would match by accident; every real secret is long.
    secrets = [(w, s) for w, s in secrets if len(s) >= 16]
    logs = sorted(glob.glob(os.path.join(log_dir, "*")))
    found = []
    for path in logs:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        for what, secret in secrets:
            if secret in text:
                found.append(f"{os.path.basename(path)}: {what}")
    print(f"secret grep: {len(logs)} log file(s), {len(secrets)} secret(s)")
    if found:
        print("secrets in edgegate's logs:\n  " + "\n  ".join(found), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
