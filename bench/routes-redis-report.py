#!/usr/bin/env python3
"""Report of bench/routes-redis.sh: a table on stdout, the same as Markdown (stdout and a file)
and a JSON file.

Input: the JSON-lines file of measured wrk runs (the fields of bench/report.py's input plus
"connections", "issued", "wrapped", "redis_gets", "redis_sets", "api_calls", "rss_kib") and the
metadata JSON. The median and noise handling are bench/report.py's (`summarize`, imported).
Exit status: 0 when every run answered without errors, 1 otherwise.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import plain, summarize  # noqa: E402

RATIO_TARGET = 0.9
THROUGHPUT = ["single", "spread"]
LATENCY = ["hit-c1", "redis-miss-c1", "api-miss-c1"]  # and redis-miss-c<N>
GROUPS = [THROUGHPUT, LATENCY]

DESCRIPTIONS = {
    "single": "one sandbox (bench-0), warm",
    "spread": "random sandbox of {routes:,}, all warm",
    "hit-c1": "random warm sandbox, 1 connection",
    "redis-miss-c1": "first touch, route in Redis only, 1 connection",
    "api-miss-c1": "first touch, sandbox in the control plane only, 1 connection",
}


def describe(target, meta):
    if target in DESCRIPTIONS:
        return DESCRIPTIONS[target].format(**meta)
    if target.startswith("redis-miss-c"):
        return f"first touch, route in Redis only, {target[len('redis-miss-c'):]} connections"
    return target


def median_run(runs, target, max_noise):
    mine = [r for r in runs if r["target"] == target]
    clean = [r for r in mine if r.get("noise_percent", 0) <= max_noise]
    ordered = sorted(clean or mine, key=lambda r: r["requests"] / (r["duration_us"] / 1e6))
    return ordered[(len(ordered) - 1) // 2]


def fmt(value, pattern, none="-"):
    return none if value is None else pattern.format(value)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs")
    ap.add_argument("--meta", required=True)
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    ap.add_argument("--max-noise", type=float, default=5.0)
    args = ap.parse_args()

    with open(args.runs) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    with open(args.meta) as f:
        meta = json.load(f)
    if not runs:
        print("no measured runs", file=sys.stderr)
        return 1
    # The runs of a group (single+spread, or the latency runs) are measured together in rounds;
    # the report uses the cleanest round of each group: the lowest worst noise of its runs.
    chosen, rounds_seen = [], {}
    for group in GROUPS:
        by_round = {}
        for r in runs:
            if r["target"] in group or (group is LATENCY and r["target"].startswith("redis-miss-c")):
                by_round.setdefault(r["round"], []).append(r)
        if not by_round:
            continue
        best = min(by_round, key=lambda n: (max(r.get("noise_percent", 0) for r in by_round[n]), n))
        chosen += by_round[best]
        rounds_seen[group[0]] = (best, by_round)
    results = summarize(chosen, args.max_noise)
    targets = list(dict.fromkeys(r["target"] for r in chosen))

    header = ["run", "what", "conns", "requests", "req/s", "p50 ms", "p99 ms", "errors",
              "edgegate CPU", "load CPU", "req/CPU-s", "Redis GETs/req", "API calls", "noise"]
    rows = []
    for t in targets:
        s, m = results[t], median_run(chosen, t, args.max_noise)
        s.update({k: m.get(k) for k in ("connections", "issued", "wrapped", "redis_gets",
                                         "redis_sets", "api_calls", "rss_kib")})
        first_touch = "miss" in t
        # A first-touch run whose ids ran out idles to the end of its duration: its rate is
        # meaningless, its latencies are those of the first touches alone.
        ran_out = first_touch and (m.get("wrapped") or 0) > 0
        s["ran_out_of_ids"] = ran_out
        errs = sum(s["errors"].values())
        rows.append([
            t, describe(t, meta), str(m.get("connections", "")), f"{s['requests']:,}",
            "-" if ran_out else f"{s['requests_per_s']:,.0f}",
            f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.3f}", str(errs) + ("" if s["ok"] else " FAIL"),
            fmt(s["proxy_cpu_percent"], "{:.0f}%"),
            fmt(s["load_core_busy_percent"], "{:.0f}%"),
            "-" if ran_out else fmt(s["requests_per_proxy_cpu_s"], "{:,.0f}"),
            f"{(m.get('redis_gets') or 0) / max(s['requests'], 1):.2f}",
            f"{m.get('api_calls', 0):,}",
            fmt(s["noise_percent"], "{:.0f}%") + (" NOISY" if s["noisy"] else ""),
        ])

    lines = []
    summary = {"meta": meta, "results": results, "runs": runs,
               "reported_rounds": {k: v[0] for k, v in rounds_seen.items()}}
    if "single" in results and "spread" in results:
        a, b = results["single"], results["spread"]
        ratio = b["requests_per_s"] / a["requests_per_s"] if a["requests_per_s"] else 0.0
        cpu_ratio = (b["requests_per_proxy_cpu_s"] / a["requests_per_proxy_cpu_s"]
                     if a["requests_per_proxy_cpu_s"] and b["requests_per_proxy_cpu_s"] else None)
        summary["spread_over_single"] = {"requests_per_s": round(ratio, 3),
                                         "requests_per_cpu_s": round(cpu_ratio, 3)
                                         if cpu_ratio else None,
                                         "target": RATIO_TARGET, "met": ratio >= RATIO_TARGET}
        lines.append(f"spread / single requests/s: {ratio:.3f} (target >= {RATIO_TARGET}: "
                     f"{'met' if ratio >= RATIO_TARGET else 'NOT met'}); per edgegate "
                     f"CPU-second: {fmt(cpu_ratio, '{:.3f}')}")
        best, by_round = rounds_seen["single"]
        if len(by_round) > 1:
            parts = []
            for n, rr in sorted(by_round.items()):
                rate = {r["target"]: r["requests"] / (r["duration_us"] / 1e6) for r in rr}
                if "single" in rate and "spread" in rate and rate["single"]:
                    parts.append(f"round {n}: {rate['spread'] / rate['single']:.3f} (noise up to "
                                 f"{max(r.get('noise_percent', 0) for r in rr):.0f}%)")
            lines.append(f"rounds measured: {'; '.join(parts)}; reported: round {best}")
    if "hit-c1" in rounds_seen and len(rounds_seen["hit-c1"][1]) > 1:
        best, by_round = rounds_seen["hit-c1"]
        noise = ", ".join(f"round {n}: {max(r.get('noise_percent', 0) for r in rr):.0f}%"
                          for n, rr in sorted(by_round.items()))
        lines.append(f"latency rounds (worst noise): {noise}; reported: round {best}")
    rss = meta.get("rss_kib", {})
    if rss:
        per_route = ((rss["after_spread"] - rss["start"]) * 1024 / meta["routes"]
                     if meta.get("routes") else None)
        lines.append(f"edgegate RSS: {rss['start'] / 1024:.1f} MiB at start, "
                     f"{rss['after_warm_pass'] / 1024:.1f} MiB after the warm pass, "
                     f"{rss['after_spread'] / 1024:.1f} MiB after the spread run with "
                     f"{meta.get('routes', 0):,} routes cached "
                     f"(~{fmt(per_route, '{:.0f}')} bytes per sandbox: runner route + public status)")
    lines.append(f"Redis: {meta.get('redis_keys', 0):,} keys loaded in {meta.get('load_seconds')} s "
                 f"(redis-cli --pipe); warm pass over {meta.get('routes', 0):,} sandboxes: "
                 f"{meta.get('warm_seconds')} s, {meta.get('warm_redis_gets', 0):,} Redis GETs")
    for t in targets:
        if "miss" in t and results[t].get("ran_out_of_ids"):
            lines.append(f"{t}: every id was used ({results[t]['issued']:,} first touches); "
                         "wrk then idled, so its rate is not shown")

    print(plain(header, rows))
    print()
    for line in lines:
        print(line)

    md = [f"# {meta.get('title', 'Benchmark')}", ""]
    md += [f"- {k}: {v}" for k, v in meta.items()
           if k != "title" and not isinstance(v, dict)]
    for k, v in meta.items():
        if isinstance(v, dict):
            md.append(f"- {k}: " + ", ".join(f"{a}={b}" for a, b in v.items()))
    md += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += [""] + [f"- {line}" for line in lines]
    markdown = "\n".join(md) + "\n"
    print()
    print(markdown, end="")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown)
    bad = sorted({r["target"] for r in runs
                  if r["requests"] == 0 or r["status_errors"] or r["connect_errors"]})
    if bad:
        print(f"FAILED: {', '.join(bad)} answered errors or nothing (see the logs)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
