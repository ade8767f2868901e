#!/usr/bin/env python3
"""Runs edgegate against the local dev stack (control plane, runner stand-in, a demo app) and
prints the URLs to try. Ctrl-C stops everything."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "support"))
import stack  # noqa: E402
import sshd as sshd_mod  # noqa: E402


def start_ssh(st, extra):
    """The SSH gateway in the demo: a real sshd as the runner's SSH (needs root for the sandbox's
    user; without it the demo runs without SSH). Returns the lines to print."""
    token, sid = next(iter(st.fixture["sshTokens"].items()))
    why = sshd_mod.ensure_sandbox_user(sid)
    if why:
        return f"  (no SSH gateway: {why})"
    runner_key = os.path.join(st.tmp, "gateway_runner_key")
    pub = sshd_mod.keygen(runner_key, comment="edgegate-gateway")
    host_key = os.path.join(st.tmp, "gateway_host_key")
    sshd_mod.keygen(host_key, comment="edgegate-host")
    runner_sshd = sshd_mod.Sshd(st.tmp, [pub]).start()
    st.procs.append(runner_sshd)  # stopped (and its log shown) with the stack
    port = os.environ.get("SSH_GATEWAY_PORT", "2222")
    extra.update({"SSH_GATEWAY_API_KEY": st.fixture["sshGatewayApiKey"],
                  "SSH_PRIVATE_KEY_FILE": runner_key, "SSH_HOST_KEY_FILE": host_key,
                  "RUNNER_SSH_PORT": str(runner_sshd.port), "SSH_GATEWAY_PORT": port})
    return (f"  ssh -p {port} {token}@127.0.0.1       # a shell in demo-public's \"sandbox\" "
            f"(a real sshd, user {sid})")


def main():
    port = int(os.environ.get("PROXY_PORT", "4000"))
    fixture = os.path.join(REPO, "tests", "support", "fixtures", "demo.json")
    with stack.DevStack(fixture_path=fixture, quiet=True) as st:
        extra = {"PROXY_PORT": str(port), "BIND_ADDRESS": os.environ.get("BIND_ADDRESS", "127.0.0.1"),
                 "EDGEGATE_WORKERS": os.environ.get("EDGEGATE_WORKERS", "0"),
                 "UPSTREAM_RESPONSE_TIMEOUT_SEC": "60",
                 "LOG_LEVEL": os.environ.get("LOG_LEVEL", "info")}
        ssh_line = start_ssh(st, extra)
        eg = st.start_edgegate(extra)
        public = st.preview_host("demo-public")
        private = st.preview_host("demo-private")
        base = f"http://127.0.0.1:{port}"
        print(f"""
edgegate is running on {base} (demo mode: local control plane {st.api_url}, runner {st.runner.url})
Logs: {st.tmp}

Try:
  curl {base}/health
  curl -H 'Host: {public}' {base}/hello            # a public sandbox's app, through the runner
  curl -H 'Host: {private}' {base}/hello           # a private sandbox: 401 until you authenticate
  curl -H 'Host: {st.preview_host("demo-public", port=1)}' {base}/  # nothing listens there: 502
{ssh_line}

In a browser, *.localhost resolves to 127.0.0.1: http://{public}:{port}/hello
Serve your own Daytona region instead: set DAYTONA_API_URL and PROXY_API_KEY and run again.
Ctrl-C stops.""", flush=True)
        try:
            status = eg.popen.wait()
            print(f"edgegate exited with status {status}; its log:\n{eg.describe()}", flush=True)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
