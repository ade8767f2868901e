#!/usr/bin/env python3
"""Runs and reports of the TLS benchmarks (h2-tls.sh, tls-handshakes.sh).

  tls_report.py record ACCT_JSON [--extra JSON] --runs FILE
      ACCT_JSON is one line written by measure() in tls_common.sh (accounting of one client run,
      naming the client's output file); the client's output is parsed (h2load's summary, or the
      HSJSON line of tls_handshake_client.py), merged and appended to FILE as one run. Prints the
      run's noise: the largest share of one of the two CPUs that processes other than the
      bench's used meanwhile, in percent.

  tls_report.py report --runs FILE --meta FILE [--json FILE] [--markdown FILE] [--max-noise PCT]
      One row per (kind, target): the median over clean runs (noise <= PCT) and every run's
      value; per round, edgegate's ratio to each other target measured in that round (clean
      pairs), and their median. Exit 1 when a target answered errors or nothing.
"""
import argparse
import json
import re
import statistics
import sys

ORDER = ["edgegate", "nginx", "haproxy"]


def seconds(value):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]


def parse_h2load(text):
    out = {}
    m = re.search(r"finished in ([\d.]+(?:us|ms|s)), ([\d.]+) req/s", text)
    if m:
        out["client_duration_s"] = seconds(m.group(1))
        out["rps"] = float(m.group(2))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    if m:
        total, _, done, ok, failed, errored, timeout = map(int, m.groups())
        out.update(requests=ok, requests_total=total, failed=failed, errored=errored,
                   timeout=timeout, not_done=total - done)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        out["status_2xx"], _, out["status_4xx"], out["status_5xx"] = map(int, m.groups())
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
    if m:
        out["latency_mean_ms"] = round(1000 * (seconds(m.group(3)) or 0), 3)
        out["latency_max_ms"] = round(1000 * (seconds(m.group(2)) or 0), 3)
    m = re.search(r"TLS Protocol: (\S+)", text)
    if m:
        out["tls"] = m.group(1)
    m = re.search(r"Application protocol: (\S+)", text)
    if m:
        out["alpn"] = m.group(1)
    out["errors"] = (out.get("failed", 0) + out.get("errored", 0) + out.get("timeout", 0)
                     + out.get("not_done", 0) + out.get("status_4xx", 0) + out.get("status_5xx", 0))
    if "rps" not in out:
        out["errors"] += 1
        out["rps"], out["requests"] = 0.0, 0
    return out


def parse_hsclient(text):
    line = next((l for l in text.splitlines() if l.startswith("HSJSON ")), None)
    if not line:
        return {"rps": 0.0, "requests": 0, "errors": 1}
    r = json.loads(line[len("HSJSON "):])
    return {"rps": r["connections"] / r["duration_s"] if r["duration_s"] else 0.0,
            "requests": r["connections"], "resumed_client": r["resumed"],
            "errors": r["errors"], "client_duration_s": r["duration_s"],
            "latency_mean_ms": r.get("latency_mean_ms"), "tls": r.get("tls")}


def record(args):
    acct = json.loads(args.acct)
    text = open(acct["out"], errors="replace").read()
    run = parse_hsclient(text) if "HSJSON " in text else parse_h2load(text)
    if acct["exit"] != 0:
        run["errors"] = run.get("errors", 0) + 1
    hz = acct["hz"]

    def core(pair):
        b0, t0, b1, t1 = map(int, pair.split())
        return 100 * (b1 - b0) / max(t1 - t0, 1), t1 - t0

    proxy_core, pticks = core(acct["proxy_core"])
    load_core, lticks = core(acct["load_core"])
    ours_proxy = 100 * acct["proxy_ticks"] / max(pticks, 1)
    ours_load = 100 * acct["load_ticks"] / max(lticks, 1)
    noise = max(proxy_core - ours_proxy, load_core - ours_load, 0)
    proxy_cpu_s = acct["proxy_ticks"] / hz
    run.update({k: acct[k] for k in ("target", "round", "kind", "wall_s",
                                     "backend_new_connections")})
    run.update(proxy_cpu_s=proxy_cpu_s,
               proxy_cpu_percent=round(100 * proxy_cpu_s / acct["wall_s"], 1) if acct["wall_s"] else None,
               requests_per_proxy_cpu_s=round(run["requests"] / proxy_cpu_s) if proxy_cpu_s else None,
               proxy_core_busy_percent=round(proxy_core, 1),
               load_core_busy_percent=round(load_core, 1), noise_percent=round(noise, 1))
    if args.extra:
        run.update(json.loads(args.extra))
    with open(args.runs, "a") as f:
        f.write(json.dumps(run) + "\n")
    print(f"{noise:.0f}")


def fmt(v, spec):
    return "" if v is None else spec.format(v)


def report(args):
    runs = [json.loads(l) for l in open(args.runs) if l.strip()]
    meta = json.load(open(args.meta))
    kinds = list(dict.fromkeys(r["kind"] for r in runs))
    results, ok = [], True
    for kind in kinds:
        kr = [r for r in runs if r["kind"] == kind]
        targets = [t for t in ORDER if any(r["target"] == t for r in kr)]
        by_round = {}
        for r in kr:  # the last measurement of a target in a round (noisy ones were repeated)
            by_round.setdefault(r["round"], {})[r["target"]] = r
        for t in targets:
            tr = [r for r in kr if r["target"] == t]
            clean = [r for r in tr if r["noise_percent"] <= args.max_noise]
            ordered = sorted(clean or tr, key=lambda r: r["rps"])
            med = ordered[(len(ordered) - 1) // 2]
            errors = sum(r["errors"] for r in tr)
            good = all(r["requests"] > 0 for r in tr) and errors == 0
            ok &= good
            row = {"kind": kind, "target": t, "requests_per_s": round(med["rps"], 1),
                   "all_requests_per_s": [round(r["rps"]) for r in tr],
                   "latency_mean_ms": med.get("latency_mean_ms"),
                   "proxy_cpu_percent": med["proxy_cpu_percent"],
                   "requests_per_proxy_cpu_s": med["requests_per_proxy_cpu_s"],
                   "all_requests_per_proxy_cpu_s": [r["requests_per_proxy_cpu_s"] for r in tr],
                   "backend_new_connections": med["backend_new_connections"],
                   "server_handshakes": med.get("server_handshakes"),
                   "server_resumed": med.get("server_resumed"),
                   "resumed_client": med.get("resumed_client"),
                   "noise_percent": med["noise_percent"], "noisy": not clean,
                   "errors": errors, "ok": good, "ratio": {}, "ratio_rounds": {},
                   "cpu_ratio": {}, "cpu_ratio_rounds": {}}
            if t == "edgegate":
                for ref in targets:
                    if ref == t:
                        continue
                    pairs = [(rd[t], rd[ref]) for _, rd in sorted(by_round.items())
                             if t in rd and ref in rd and rd[ref]["rps"] > 0]
                    cpairs = [(a, b) for a, b in pairs
                              if max(a["noise_percent"], b["noise_percent"]) <= args.max_noise]
                    use = cpairs or pairs
                    ratios = [a["rps"] / b["rps"] for a, b in use]
                    eff = [a["requests_per_proxy_cpu_s"] / b["requests_per_proxy_cpu_s"]
                           for a, b in use
                           if a["requests_per_proxy_cpu_s"] and b["requests_per_proxy_cpu_s"]]
                    if ratios:
                        row["ratio"][ref] = round(statistics.median(ratios), 3)
                        row["ratio_rounds"][ref] = [round(x, 3) for x in ratios]
                        row["ratio_noisy"] = not cpairs
                    if eff:
                        row["cpu_ratio"][ref] = round(statistics.median(eff), 3)
                        row["cpu_ratio_rounds"][ref] = [round(x, 3) for x in eff]
            results.append(row)

    header = ["kind", "target", "req/s (median)", "every run", "proxy CPU", "req/CPU-s",
              "every run's req/CPU-s", "new backend conns", "server conns (resumed)", "noise",
              "errors"]
    rows = []
    for r in results:
        rows.append([r["kind"], r["target"], f"{r['requests_per_s']:,.0f}",
                     " ".join(f"{x:,}" for x in r["all_requests_per_s"]),
                     fmt(r["proxy_cpu_percent"], "{:.0f}%"),
                     fmt(r["requests_per_proxy_cpu_s"], "{:,}"),
                     " ".join(fmt(x, "{:,}") for x in r["all_requests_per_proxy_cpu_s"]),
                     fmt(r["backend_new_connections"], "{:,}"),
                     "" if r["server_handshakes"] is None else
                     f"{r['server_handshakes']:,}" + ("" if r["server_resumed"] is None
                                                      else f" ({r['server_resumed']:,})"),
                     fmt(r["noise_percent"], "{:.0f}%") + (" NOISY" if r["noisy"] else ""),
                     str(r["errors"]) + ("" if r["ok"] else " FAIL")])
    ratio_lines = []
    for r in results:
        for ref, v in r["ratio"].items():
            per = ", ".join(f"{x:.2f}" for x in r["ratio_rounds"][ref])
            line = (f"{r['kind']}: edgegate/{ref} requests/s {v:.2f}x (rounds: {per})"
                    + (" [no clean pair: noisy]" if r.get("ratio_noisy") else ""))
            if ref in r["cpu_ratio"]:
                cper = ", ".join(f"{x:.2f}" for x in r["cpu_ratio_rounds"][ref])
                line += f"; req/CPU-s {r['cpu_ratio'][ref]:.2f}x (rounds: {cper})"
            ratio_lines.append(line)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths))

    print(meta.get("title", ""))
    for k in ("command", "load", "pinning", "machine", "load_average", "idle_before_run"):
        if k in meta:
            print(f"  {k}: {meta[k]}")
    print()
    print("\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]))
    print()
    print("\n".join(ratio_lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "runs": runs}, f, indent=2)
    if args.markdown:
        md = [f"## {meta.get('title', '')}", ""]
        md += [f"- {k}: `{meta[k]}`" for k in ("command", "load", "pinning", "machine",
                                                "load_average", "idle_before_run") if k in meta]
        md += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(r) + " |" for r in rows]
        md += [""] + [f"- {l}" for l in ratio_lines]
        with open(args.markdown, "w") as f:
            f.write("\n".join(md) + "\n")
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("acct")
    r.add_argument("--extra")
    r.add_argument("--runs", required=True)
    s = sub.add_parser("report")
    s.add_argument("--runs", required=True)
    s.add_argument("--meta", required=True)
    s.add_argument("--json")
    s.add_argument("--markdown")
    s.add_argument("--max-noise", type=float, default=5)
    args = p.parse_args()
    if args.cmd == "record":
        record(args)
        return 0
    return report(args)


if __name__ == "__main__":
    sys.exit(main())
