#!/usr/bin/env python3
"""Turns the per-run lines written by a bench script into one table (stdout), a JSON file and a
Markdown file.

Input: a JSON-lines file, one line per measured wrk run:
  {"target": "...", "round": 1, "proxy_cpu_s": 9.8 | null, "backend_new_connections": 0,
   "proxy_core_busy_percent": 99.5, "load_core_busy_percent": 100.0,
   <the WRKJSON fields of wrk_report.lua>}
and a JSON file of metadata (machine, versions, parameters) copied into the outputs.

A target is represented by the median, by requests/s, of its clean runs: those during which other
processes used at most --max-noise percent of a CPU (all its runs when none is clean, and the row
is then marked noisy). Min and max of the runs considered are kept as the spread. Ratios between
targets are taken within each round and their median reported (marked "?" when no round had
both measurements clean). Exit status: 0 when every target has a clean run, 1 when one answered
errors or nothing, so that a broken proxy never passes for a fast one.
"""
import argparse
import json
import statistics
import sys

# Display order and the references the ratios are taken against.
ORDER = ["direct", "edgegate", "nginx", "haproxy"]
REFERENCES = ["direct", "nginx", "haproxy"]
LABELS = {
    "direct": "direct (no proxy)",
    "edgegate": "edgegate",
    "nginx": "nginx proxy",
    "haproxy": "haproxy",
}


def summarize(runs, max_noise):
    by_target = {}
    for run in runs:
        run["rps"] = run["requests"] / (run["duration_us"] / 1e6) if run["duration_us"] else 0.0
        by_target.setdefault(run["target"], []).append(run)
    out = {}
    for target, target_runs in by_target.items():
        clean = [r for r in target_runs if r.get("noise_percent", 0) <= max_noise]
        ordered = sorted(clean or target_runs, key=lambda r: r["rps"])
        median = ordered[(len(ordered) - 1) // 2]
        cpu = median.get("proxy_cpu_s")
        errors = {k: median[k] for k in
                  ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")}
        out[target] = {
            "requests_per_s": round(median["rps"], 1),
            "p50_ms": median["p50_us"] / 1000,
            "p90_ms": median["p90_us"] / 1000,
            "p99_ms": median["p99_us"] / 1000,
            "p999_ms": median["p999_us"] / 1000,
            "mean_ms": round(median["latency_mean_us"] / 1000, 3),
            "requests": median["requests"],
            "errors": errors,
            "proxy_cpu_s": cpu,
            "proxy_cpu_percent": round(100 * cpu / (median["duration_us"] / 1e6), 1)
            if cpu is not None else None,
            "requests_per_proxy_cpu_s": round(median["requests"] / cpu) if cpu else None,
            "backend_new_connections": median.get("backend_new_connections"),
            "proxy_core_busy_percent": median.get("proxy_core_busy_percent"),
            "load_core_busy_percent": median.get("load_core_busy_percent"),
            "noise_percent": median.get("noise_percent"),
            "noisy": not clean,
            "runs_measured": len(target_runs),
            "runs_considered": len(ordered),
            "rps_min": round(ordered[0]["rps"], 1),
            "rps_max": round(ordered[-1]["rps"], 1),
            "ok": all(r["requests"] > 0 and r["status_errors"] == 0 and r["connect_errors"] == 0
                      for r in target_runs),
        }
    # Ratios are taken within a round, between measurements made a minute apart, then the median
    # over rounds: the machine's speed drifts between rounds more than between neighbours.
    best = {}  # (target, round) -> the least noisy attempt
    for run in runs:
        key = (run["target"], run["round"])
        if key not in best or run.get("noise_percent", 0) < best[key].get("noise_percent", 0):
            best[key] = run
    rounds = sorted({r for _, r in best})
    for target, row in out.items():
        row["ratio"], row["ratio_noisy"] = {}, []
        for ref in REFERENCES:
            if ref == target or ref not in out:
                continue
            pairs = [(best[(target, r)], best[(ref, r)]) for r in rounds
                     if (target, r) in best and (ref, r) in best and best[(ref, r)]["rps"] > 0]
            clean = [(a, b) for a, b in pairs
                     if max(a.get("noise_percent", 0), b.get("noise_percent", 0)) <= max_noise]
            ratios = [a["rps"] / b["rps"] for a, b in (clean or pairs)]
            if ratios:
                row["ratio"][ref] = round(statistics.median(ratios), 3)
                if not clean:
                    row["ratio_noisy"].append(ref)
    return out


def fmt(value, pattern):
    return "-" if value is None else pattern.format(value)


def table(results):
    targets = [t for t in ORDER if t in results] + sorted(set(results) - set(ORDER))
    header = ["target", "req/s", "p50 ms", "p99 ms", "errors", "proxy CPU", "req/CPU-s",
              "new backend conns", "noise"]
    header += [f"vs {LABELS.get(r, r)}" for r in REFERENCES if r in results]
    rows = []
    for t in targets:
        r = results[t]
        errs = sum(r["errors"].values())
        row = [LABELS.get(t, t), f"{r['requests_per_s']:,.0f}", f"{r['p50_ms']:.3f}",
               f"{r['p99_ms']:.3f}", str(errs) + ("" if r["ok"] else " FAIL"),
               fmt(r["proxy_cpu_percent"], "{:.0f}%"),
               fmt(r["requests_per_proxy_cpu_s"], "{:,.0f}"),
               fmt(r["backend_new_connections"], "{:,}"),
               fmt(r["noise_percent"], "{:.0f}%") + (" NOISY" if r["noisy"] else "")]
        row += [fmt(r["ratio"].get(ref), "{:.2f}x") + ("?" if ref in r["ratio_noisy"] else "")
                for ref in REFERENCES if ref in results]
        rows.append(row)
    return header, rows


def plain(header, rows):
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def markdown(header, rows, meta):
    out = [f"# {meta.get('title', 'Benchmark')}", ""]
    out += [f"- {k}: {v}" for k, v in meta.items() if k != "title" and not isinstance(v, dict)]
    for k, v in meta.items():
        if isinstance(v, dict):
            out += [f"- {k}: " + ", ".join(f"{a}={b}" for a, b in v.items())]
    out += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", help="JSON-lines file of measured runs")
    ap.add_argument("--meta", help="JSON file of metadata")
    ap.add_argument("--json", help="write the summary here")
    ap.add_argument("--markdown", help="write a Markdown table here")
    ap.add_argument("--max-noise", type=float, default=5.0,
                    help="percent of a CPU other processes may use during a clean run")
    args = ap.parse_args()

    with open(args.runs) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    meta = {}
    if args.meta:
        with open(args.meta) as f:
            meta = json.load(f)
    if not runs:
        print("no measured runs", file=sys.stderr)
        return 1

    results = summarize(runs, args.max_noise)
    header, rows = table(results)
    print(plain(header, rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "runs": runs}, f, indent=2)
            f.write("\n")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(header, rows, meta))
    bad = [t for t, r in results.items() if not r["ok"]]
    if bad:
        print(f"FAILED: {', '.join(bad)} answered errors or no requests (see the logs)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
