#!/usr/bin/env python3
"""SSH gateway benchmark (run by bench/ssh-bulk.sh): bulk transfer through edgegate's SSH gateway
vs directly to the same sshd, same cipher, in one run; CPU seconds per GiB of the gateway and of
sshd; connection setup time (`ssh ... true`).

    client ssh ──► edgegate (SSH gateway) ──► sshd        "gateway"
    client ssh ─────────────────────────────► sshd        "direct"

Everything on 127.0.0.1 of one machine: the client, the gateway and sshd share the cores. The
gateway offers the runner the cipher the client negotiated first, so with `-c X` both hops use X:
sshd does the same work per byte in both paths. Each cipher and direction runs --rounds times,
direct and gateway back to back (the machine's load moves between rounds more than within one);
the median ratio is reported.

A/B of two builds: `--compare-bin other/edgegate` starts a second gateway from that executable in
front of the same sshd; every round then measures direct, gateway and gateway_b back to back, the
two gateways taking turns going first.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))
import ssh_stack  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid, children=False):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime stime cutime cstime are fields 14-17 (1-based); after ")" they start at index 11
    ut, st, cut, cst = (int(x) for x in fields[11:15])
    return ((cut + cst) if children else (ut + st)) / TICK


def wait_reaped(pid, timeout=10):
    """Until sshd has reaped its per-connection children (their CPU is then in its cutime)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            if not f.read().strip():
                return
        time.sleep(0.01)


def run(cmd, stdin=None):
    t = time.monotonic()
    r = subprocess.run(cmd, stdin=stdin or subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[-3:])}: exit {r.returncode}: {r.stderr[-500:]!r}")
    return time.monotonic() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--ciphers", default="aes128-gcm@openssh.com,chacha20-poly1305@openssh.com")
    ap.add_argument("--setup-runs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3,
                    help="each cipher and direction is measured this many times, direct and "
                         "gateway back to back; the ratio reported is the median")
    ap.add_argument("--directions", default="download,upload")
    ap.add_argument("--compare-bin", metavar="PATH",
                    help="A/B: a second gateway run from this executable, in front of the same "
                         "sshd, measured in the same rounds (\"gateway_b\"); the two gateways "
                         "take turns going first")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "build", "bench"))
    args = ap.parse_args()

    env = ssh_stack.SshStack().start()
    results = {"size_mib": args.size_mib, "bulk": [], "setup": {}}
    try:
        via = lambda port: lambda *a, opts=(): ssh_stack.ssh_cmd(port, ssh_stack.PUBLIC_TOKEN,
                                                                  *a, opts=opts)
        gw = via(env.ssh_port)
        direct = lambda *a, opts=(): ssh_stack.ssh_cmd(
            env.sshd.port, env.sandbox_id, *a, opts=["-i", env.runner_key, *opts])
        size = args.size_mib * 1024 * 1024
        src = os.path.join(env.tmp, "upload.bin")
        subprocess.run(["head", "-c", str(size), "/dev/zero"], stdout=open(src, "wb"), check=True)
        sshd_pid = env.sshd.proc.pid
        gateways = [("gateway", gw, env.eg.pid)]
        if args.compare_bin:
            eg_b, port_b = env.start_gateway(os.path.abspath(args.compare_bin))
            gateways.append(("gateway_b", via(port_b), eg_b.pid))
        gib = size / 2**30
        for cipher in args.ciphers.split(","):
            for direction in args.directions.split(","):
                remote = (f"head -c {size} /dev/zero" if direction == "download"
                          else "cat > /dev/null")
                row = {"cipher": cipher, "direction": direction, "rounds": []}
                for i in range(args.rounds):
                    r = {"loadavg": round(os.getloadavg()[0], 1)}
                    turn = gateways if i % 2 == 0 else gateways[::-1]
                    for path, mk, eg_pid in [("direct", direct, None), *turn]:
                        wait_reaped(sshd_pid)
                        eg0 = cpu_seconds(eg_pid) if eg_pid else 0
                        sd0 = cpu_seconds(sshd_pid, children=True)
                        stdin = open(src, "rb") if direction == "upload" else None
                        secs = run(mk(remote, opts=["-c", cipher]), stdin=stdin)
                        wait_reaped(sshd_pid)
                        eg1 = cpu_seconds(eg_pid) if eg_pid else 0
                        sd1 = cpu_seconds(sshd_pid, children=True)
                        r[path] = {"seconds": round(secs, 2),
                                   "mib_s": round(size / 2**20 / secs, 1),
                                   "sshd_cpu_s_per_gib": round((sd1 - sd0) / gib, 2)}
                        if eg_pid:
                            r[path]["gateway_cpu_s_per_gib"] = round((eg1 - eg0) / gib, 2)
                    for path, _, _ in gateways:
                        r[path]["ratio"] = round(r[path]["mib_s"] / r["direct"]["mib_s"], 2)
                    row["rounds"].append(r)
                    print(f"{cipher:30} {direction:8} direct {r['direct']['mib_s']:6.1f} MiB/s "
                          f"(sshd {r['direct']['sshd_cpu_s_per_gib']:.2f} CPU s/GiB)", flush=True)
                    for path, _, _ in gateways:
                        g = r[path]
                        print(f"{'':30} {'':8} {path:9} {g['mib_s']:6.1f} MiB/s  ratio "
                              f"{g['ratio']:.2f}  CPU s/GiB: gateway "
                              f"{g['gateway_cpu_s_per_gib']:.2f}, sshd "
                              f"{g['sshd_cpu_s_per_gib']:.2f}  (load {r['loadavg']})", flush=True)
                row["medians"] = {}
                for path, _, _ in gateways:
                    m = {k: statistics.median(r[path][k] for r in row["rounds"])
                         for k in ("ratio", "gateway_cpu_s_per_gib")}
                    row["medians"][path] = m
                    print(f"{cipher:30} {direction:8} {path}: median ratio {m['ratio']:.2f}, "
                          f"median gateway CPU {m['gateway_cpu_s_per_gib']:.2f} s/GiB over "
                          f"{args.rounds} rounds", flush=True)
                results["bulk"].append(row)
        for path, mk in (("direct", direct), ("gateway", gw)):
            times = [run(mk("true")) for _ in range(args.setup_runs)]
            results["setup"][path] = {"median_ms": round(statistics.median(times) * 1000, 1),
                                      "p90_ms": round(sorted(times)[int(0.9 * len(times)) - 1]
                                                      * 1000, 1)}
        print(f"setup (ssh ... true, {args.setup_runs} runs): direct "
              f"{results['setup']['direct']['median_ms']} ms median, gateway "
              f"{results['setup']['gateway']['median_ms']} ms median")
    finally:
        env.stop()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ssh-bulk.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
