#!/usr/bin/env bash
# edgegate's route path with many sandboxes, in one run, reported as ratios and latencies.
#
#   wrk (CPU 1) ──► edgegate, 1 worker (CPU 0) ──► backend nginx (CPU 1)
#                      │ L1 miss            │ Redis miss
#                      ▼                    ▼
#                  redis-server (CPU 1)   dev control plane (CPU 1)
#
# Redis is loaded with --routes sandbox routes in Daytona's key format (contract §6), plus
# --cold-routes that no request touches before the cold-miss runs. Measured:
#   single   wrk -c64, every request for one sandbox (bench-0)
#   spread   wrk -c64, a random sandbox of bench-0..bench-<routes-1> per request, after a pass
#            that touched every one of them (the in-process cache is warm)
#   hit-c1   wrk -c1, random warm sandboxes: the latency floor of a cached route
#   redis-miss-c1, redis-miss-c64   first touches of sandboxes that are in Redis only
#   api-miss-c1   first touches of sandboxes known only to the control plane (added through
#            POST /_dev/sandbox/{id}): Redis misses, the API answers, edgegate writes back
# plus edgegate's RSS at start, after the warm pass and after the spread run.
# single and spread run back to back as one round, the four latency runs as another; a round
# during which other processes took more than --max-noise % of a CPU is measured again (up to
# --retries times, with fresh ids), and the report uses the cleanest round of each kind.
# Results: a table and a Markdown summary on stdout, JSON and Markdown in --out. Conventions
# (pinning, noise, cleanup) as in bench/http1-keepalive.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
bench_defaults # root (the checkout), PATH, proxy_cpu=0, load_cpu=1, edgegate, control_plane, out_dir, keep_tmp=0

duration=10
warmup=2
routes=100000
cold_routes=200000
api_sandboxes=200
cold_seconds=3
connections=64
max_noise=5
retries=2
body_size=100
fixture="$root/tests/support/fixtures/demo.json"

usage() {
    cat <<EOF
usage: $0 [options]
  --duration SEC       measured seconds of the single and spread runs (default $duration)
  --warmup SEC         unmeasured seconds before the single run (default $warmup)
  --routes N           sandbox routes loaded into Redis and warmed (default $routes)
  --cold-routes N      routes loaded into Redis for the cold-miss runs (default $cold_routes)
  --api-sandboxes N    sandboxes added to the control plane only, for the API-miss run
                       (default $api_sandboxes)
  --cold-seconds SEC   length of each cold-miss and hit-latency run (default $cold_seconds)
  --connections N      wrk connections of the loaded runs (default $connections)
  --max-noise PCT      a round during which other processes used more than PCT % of a CPU
                       is noisy: it is measured again (default $max_noise)
  --retries N          at most N more rounds of each kind (default $retries)
  --edgegate PATH      edgegate binary (default build/edgegate)
  --proxy-cpu N        CPU for edgegate (default $proxy_cpu)
  --load-cpu N         CPU for wrk, the backend, Redis and the control plane (default $load_cpu)
  --out DIR            where the JSON and Markdown summaries go (default build/bench)
  --keep-tmp           keep the generated configs and logs
EOF
}

die() { printf 'routes-redis: %s\n' "$*" >&2; exit 1; }

parse_options "duration warmup routes cold-routes api-sandboxes cold-seconds connections max-noise
    retries edgegate proxy-cpu load-cpu out:out_dir" "$@"

duration=${duration%s}
warmup=${warmup%s}
cold_seconds=${cold_seconds%s}
whole_numbers duration warmup routes cold_routes api_sandboxes cold_seconds connections max_noise \
    retries proxy_cpu load_cpu
((duration > 0 && routes > 0 && cold_routes > 0 && api_sandboxes > 0 && cold_seconds > 0 &&
    connections > 0)) || die "--duration, --routes, --cold-routes, --api-sandboxes, --cold-seconds and --connections must be positive"
# The in-process cache keeps a runner route fresh for 120 s: a round (single + spread) must end
# before the routes warmed just before it go stale (they would then be refreshed from Redis, a
# different measurement). The warm pass is repeated before a round that would cross that line.
((2 * duration + 10 <= 100)) || die "--duration over 45 s: the spread run would outlive the 120 s freshness of the warmed routes"

require_tools "wrk nginx-light redis-server util-linux curl python3" \
    wrk taskset curl python3 nginx redis-server redis-cli
[[ -x $edgegate ]] || die "no edgegate binary at $edgegate: build it (cmake --build build) or pass --edgegate PATH"
[[ -f $control_plane && -f $fixture ]] || die "no dev control plane or demo fixture under tests/support"
check_cpus
[[ $proxy_cpu != "$load_cpu" ]] || echo "warning: edgegate shares CPU $proxy_cpu with wrk and the backend" >&2

bench_setup routes
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/${pid_of[edgegate]}/status"; }

# --- ports, configs -----------------------------------------------------------------------
read -r port_backend port_redis port_edge port_ssh < <(free_ports 4)
backend_url="http://127.0.0.1:$port_backend"
runner_key=runner-secret-1
proxy_api_key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["proxyApiKey"])' "$fixture")
write_backend "$body_size" "$port_backend"

idle_before=$(cpu_idle)
echo "idle before the run: $idle_before (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
warn_if_busy "$idle_before"

# --- start the backend, Redis and the control plane -----------------------------------------
rcli() { redis-cli -h 127.0.0.1 -p "$port_redis" "$@"; }

start_backend "$load_cpu" "$port_backend"

start redis "$load_cpu" redis-server --bind 127.0.0.1 --port "$port_redis" --save '' \
    --appendonly no --dir "$tmp" --logfile "" --databases 1
wait_ready redis rcli PING

start_control_plane "$load_cpu" "$fixture" 0 --runner-url "runner-1=$backend_url"
port_cp=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "${log_of[control-plane]}" | head -n1)
[[ -n $port_cp ]] || failed control-plane "printed no port"
cp_url="http://127.0.0.1:$port_cp"

# --- routes: Redis (Daytona's keys and JSON, redis-cli --pipe) and the control plane ---------
# bench-<n>: warmed and measured; cold-<n>: in Redis, untouched until the cold-miss runs.
echo "loading $routes + $cold_routes routes into Redis" >&2
load_start=$(date +%s.%N)
python3 - "$routes" "$cold_routes" "$backend_url" "$runner_key" >"$tmp/routes.resp" <<'EOF'
import sys
routes, cold, url, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
runner = ('{"value":{"apiUrl":"%s","apiKey":"%s"}}' % (url, key)).encode()
public = b'{"value":true}'
out = sys.stdout.buffer

def cmd(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)

for prefix, n in ((b"bench", routes), (b"cold", cold)):
    for i in range(n):
        sid = b"%s-%d" % (prefix, i)
        out.write(cmd(b"SET", b"proxy:sandbox-runner-info:" + sid, runner, b"EX", b"3600"))
        out.write(cmd(b"SET", b"proxy:sandbox-public:" + sid, public, b"EX", b"3600"))
EOF
rcli --pipe <"$tmp/routes.resp" >"$tmp/pipe.out" 2>&1 || { cat "$tmp/pipe.out" >&2; die "redis-cli --pipe failed"; }
grep -q "errors: 0, replies: $((2 * (routes + cold_routes)))" "$tmp/pipe.out" ||
    { cat "$tmp/pipe.out" >&2; die "redis-cli --pipe did not load every key"; }
load_seconds=$(awk -v a="$load_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
rm -f "$tmp/routes.resp"
redis_keys=$(rcli DBSIZE)
echo "  $redis_keys keys in ${load_seconds}s" >&2

# api-<n>: public sandboxes of runner-1 that only the control plane knows.
python3 - "$port_cp" "$((api_sandboxes * (retries + 1)))" <<'EOF'
import http.client, json, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
body = json.dumps({"runnerId": "runner-1", "state": "started", "public": True})
for i in range(n):
    c.request("POST", f"/_dev/sandbox/api-{i}", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"POST /_dev/sandbox/api-{i}: {r.status}")
EOF
[[ $(rcli EXISTS proxy:sandbox-runner-info:api-0) == 0 ]] || die "api-0 must not be in Redis"

# --- edgegate -----------------------------------------------------------------------------
edge_url="http://127.0.0.1:$port_edge/"
start_edgegate "$cp_url/api" REDIS_HOST=127.0.0.1 REDIS_PORT="$port_redis"
# shellcheck disable=SC2317 # called through wait_ready
redis_connected() { curl -fsS "${edge_url}health" | grep -q '"redis":{"state":"connected"'; }
wait_ready edgegate redis_connected
curl -fsS -o "$tmp/health.json" "${edge_url}health"
edgegate_version=$(version_of_health "$tmp/health.json")
# Tracking is switched on right after the connect; give it its round trip.
sleep 0.5

# Every kind of sandbox must answer with the backend's exact body: a fast 404 or 503 must not
# pass for a fast route. (check-* ids are touched here only.)
rcli SET proxy:sandbox-runner-info:check-0 "{\"value\":{\"apiUrl\":\"$backend_url\",\"apiKey\":\"$runner_key\"}}" EX 3600 >/dev/null
rcli SET proxy:sandbox-public:check-0 '{"value":true}' EX 3600 >/dev/null
for sid in check-0 0efc5760-9976-4335-a0d4-9668cd2aaf0b; do
    code=$(curl -sS -o "$tmp/check.body" -w '%{http_code}' -H "Host: 8080-$sid.proxy.localhost" "$edge_url") || code=none
    if [[ $code != 200 ]] || ! cmp -s "$tmp/check.body" "$tmp/www/body"; then
        echo "--- response for $sid (status $code):" >&2
        head -c 600 "$tmp/check.body" >&2 || true
        echo >&2
        failed edgegate "did not answer the preview request for $sid with the backend's body"
    fi
done
rss_start=$(rss_kib)

# --- measuring ------------------------------------------------------------------------------
clk_tck=$(getconf CLK_TCK)
: >"$tmp/runs.jsonl"
redis_stat() { # calls of one command so far (INFO commandstats)
    rcli INFO commandstats | tr -d '\r' | awk -F'[=,:]' -v c="cmdstat_$1" '$1 == c { print $3; f = 1 } END { if (!f) print 0 }'
}
api_calls() {
    curl -fsS "$cp_url/_dev/calls" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'
}
load_ticks() {
    local total=0 name
    for name in backend redis control-plane; do
        total=$((total + $(cpu_ticks "${pid_of[$name]}")))
    done
    echo "$total"
}

run_wrk() { # CONNS SECONDS MODE PREFIX FIRST COUNT [MARKER]
    local conns=$1 secs=$2
    shift 2
    timeout $((secs + 30)) taskset -c "$load_cpu" wrk -t1 -c"$conns" -d"${secs}s" --timeout 5s \
        -s "$here/routes-redis-wrk.lua" "$edge_url" -- "$@"
}

# measure NAME CONNS SECONDS MODE PREFIX FIRST COUNT: one measured wrk run, appended to
# runs.jsonl with the CPU and Redis bookkeeping; sets $noise (percent of a CPU used by others).
measure() {
    local name=$1 conns=$2 secs=$3 out="$tmp/wrk-$1.out" line
    shift 3
    local edge0 load0 wrk0 pc0 lc0 gets0 sets0 api0 edge1 load1 wrk1 pc1 lc1 gets1 sets1 api1
    curl -fsS -X POST "$cp_url/_dev/reset" >/dev/null
    api0=0
    gets0=$(redis_stat get)
    sets0=$(redis_stat set)
    edge0=$(cpu_ticks "${pid_of[edgegate]}")
    load0=$(load_ticks)
    wrk0=$(children_ticks)
    pc0=$(cpu_busy_ticks "$proxy_cpu")
    lc0=$(cpu_busy_ticks "$load_cpu")
    run_wrk "$conns" "$secs" "$@" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed ($name)"; }
    pc1=$(cpu_busy_ticks "$proxy_cpu")
    lc1=$(cpu_busy_ticks "$load_cpu")
    wrk1=$(children_ticks)
    load1=$(load_ticks)
    edge1=$(cpu_ticks "${pid_of[edgegate]}")
    sleep 0.2 # write-backs to Redis go out after the answers
    gets1=$(redis_stat get)
    sets1=$(redis_stat set)
    api1=$(api_calls)
    line=$(grep '^WRKJSON ' "$out") || { cat "$out" >&2; die "no wrk summary ($name)"; }
    noise=$(python3 - "${line#WRKJSON }" "$name" "$conns" "$clk_tck" "$((edge1 - edge0))" \
        "$((load1 - load0 + wrk1 - wrk0))" "$pc0" "$pc1" "$lc0" "$lc1" "$((gets1 - gets0))" \
        "$((sets1 - sets0))" "$((api1 - api0))" "$(rss_kib)" "$cur_round" "$tmp/runs.jsonl" <<'EOF'
import json, sys
(wrk, name, conns, hz, edge_ticks, load_ticks, pc0, pc1, lc0, lc1, gets, sets, api, rss, rnd,
 runs) = sys.argv[1:]
r = json.loads(wrk)

def core(a, b):
    (busy0, total0), (busy1, total1) = map(int, a.split()), map(int, b.split())
    return 100 * (busy1 - busy0) / max(total1 - total0, 1), total1 - total0

proxy_core, pticks = core(pc0, pc1)
load_core, lticks = core(lc0, lc1)
noise = max(load_core - 100 * int(load_ticks) / max(lticks, 1),
            proxy_core - 100 * int(edge_ticks) / max(pticks, 1), 0)
r.update(target=name, round=int(rnd), connections=int(conns), proxy_cpu_s=int(edge_ticks) / int(hz),
         backend_new_connections=None, proxy_core_busy_percent=round(proxy_core, 1),
         load_core_busy_percent=round(load_core, 1), noise_percent=round(noise, 1),
         redis_gets=int(gets), redis_sets=int(sets), api_calls=int(api), rss_kib=int(rss))
with open(runs, "a") as f:
    f.write(json.dumps(r) + "\n")
errors = sum(r[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors",
                             "timeouts"))
print(f"    {name:<15} {r['requests'] / (r['duration_us'] / 1e6):>9,.0f} req/s  "
      f"p50 {r['p50_us'] / 1000:.3f} ms  p99 {r['p99_us'] / 1000:.3f} ms  "
      f"{r['requests']:,} requests  {errors} errors  {int(gets):,} Redis GETs  "
      f"noise {noise:.0f}%", file=sys.stderr)
print(f"{noise:.0f}")
EOF
    )
}

last_issued() { # ids the last measured run used
    python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[-1])["issued"])' "$tmp/runs.jsonl"
}

# Warm pass: every bench-<n> once (in order), then bench-0 until stopped. The script writes a
# marker file when it has issued the last id; answers still in flight complete in edgegate
# (lookups finish even if the client is gone), and 0.5 s later wrk is stopped with SIGINT.
warm_pass() {
    local marker="$tmp/warm-done" deadline t0 wpid
    rm -f "$marker".*
    t0=$(date +%s.%N)
    taskset -c "$load_cpu" wrk -t1 -c"$connections" -d600s --timeout 5s \
        -s "$here/routes-redis-wrk.lua" "$edge_url" -- warm bench 0 "$routes" "$marker" \
        >"$tmp/warm.out" 2>&1 &
    wpid=$!
    pids+=("$wpid")
    deadline=$((SECONDS + 300))
    until compgen -G "$marker.*" >/dev/null; do
        kill -0 "$wpid" 2>/dev/null || { cat "$tmp/warm.out" >&2; die "wrk died during the warm pass"; }
        ((SECONDS < deadline)) || die "warm pass not done after 300 s"
        sleep 0.1
    done
    warm_seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    sleep 0.5
    kill -INT "$wpid" 2>/dev/null || true
    wait "$wpid" 2>/dev/null || true
    local kept=() pid
    for pid in "${pids[@]}"; do [[ $pid == "$wpid" ]] || kept+=("$pid"); done
    pids=("${kept[@]}")
    grep -q '"status_errors":0,' "$tmp/warm.out" || { cat "$tmp/warm.out" >&2; die "errors during the warm pass"; }
}

# warm_if_needed NEXT_SECONDS: (re)runs the warm pass unless the last one leaves the routes fresh
# (120 s) through the next NEXT_SECONDS of measuring, with a margin.
warm_at=-1000
warm_passes=0
warm_if_needed() {
    local gets0 gets rss
    ((SECONDS - warm_at + $1 > 100)) || return 0
    gets0=$(redis_stat get)
    echo "warm pass: touching bench-0..bench-$((routes - 1)) once" >&2
    warm_pass
    warm_at=$SECONDS
    gets=$(($(redis_stat get) - gets0))
    rss=$(rss_kib)
    if ((warm_passes++ == 0)); then
        warm_first_seconds=$warm_seconds
        warm_gets=$gets
        rss_warm=$rss
    fi
    echo "    ${warm_seconds}s, $gets Redis GETs, RSS $((rss / 1024)) MiB" >&2
}

rounds=$((retries + 1))
worst=0
note_noise() { ((noise > worst)) && worst=$noise; return 0; }

# (a) one sandbox and (b) many sandboxes, measured back to back in the same round (same cache
# contents, same neighbours); another round while either one was noisy.
echo "single: 1 sandbox, warmup ${warmup}s" >&2
if ((warmup > 0)); then
    run_wrk "$connections" "$warmup" fixed bench 0 1 >"$tmp/warmup-single.out" 2>&1 ||
        { cat "$tmp/warmup-single.out" >&2; die "wrk failed (warmup)"; }
fi
for ((cur_round = 1; cur_round <= rounds; cur_round++)); do
    warm_if_needed $((2 * duration + 10))
    echo "round $cur_round/$rounds: single (1 sandbox), spread (random of $routes), ${duration}s each" >&2
    worst=0
    measure single "$connections" "$duration" fixed bench 0 1
    note_noise
    measure spread "$connections" "$duration" random bench 0 "$routes"
    note_noise
    rss_spread=$(rss_kib)
    ((worst > max_noise)) || break
    if ((cur_round < rounds)); then
        echo "    other processes used up to ${worst}% of a CPU: another round" >&2
    fi
done

# Latency floor and first touches, each sandbox touched once (fresh ids in every round).
cold_next=0
api_next=0
for ((cur_round = 1; cur_round <= rounds; cur_round++)); do
    warm_if_needed $((4 * cold_seconds + 10))
    echo "round $cur_round/$rounds: warm hit, Redis miss, API miss (${cold_seconds}s each)" >&2
    worst=0
    measure hit-c1 1 "$cold_seconds" random bench 0 "$routes"
    note_noise
    for conns in 1 "$connections"; do
        ((cold_next < cold_routes)) || die "no cold routes left: raise --cold-routes"
        measure "redis-miss-c$conns" "$conns" "$cold_seconds" seq cold "$cold_next" "$((cold_routes - cold_next))"
        note_noise
        cold_next=$((cold_next + $(last_issued)))
    done
    measure api-miss-c1 1 "$cold_seconds" seq api "$api_next" "$api_sandboxes"
    note_noise
    api_next=$((api_next + api_sandboxes))
    ((worst > max_noise)) || break
    if ((cur_round < rounds)); then
        echo "    other processes used up to ${worst}% of a CPU: another round" >&2
    fi
done

# --- report -------------------------------------------------------------------------------
mkdir -p "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
machine_facts_json "$tmp/facts.json" "${edgegate_version:-unknown}" redis="redis-server --version" \
    nginx="nginx -v" wrk="wrk -v"
python3 - "$tmp/facts.json" "$tmp/meta.json" <<EOF
import json, sys
facts = json.load(open(sys.argv[1]))

meta = {
    "title": "edgegate route path: many sandboxes through Redis, one worker",
    "date": "$stamp",
    "machine": facts["machine"],
    "command": "bench/routes-redis.sh --duration $duration --warmup $warmup --routes $routes "
               "--cold-routes $cold_routes --api-sandboxes $api_sandboxes "
               "--cold-seconds $cold_seconds --connections $connections",
    "pinning": "edgegate on CPU $proxy_cpu; wrk, backend nginx, redis-server and the control "
               "plane on CPU $load_cpu",
    "idle_before_run": "$idle_before",
    "source": "$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown), binary built $(date -u -r "$edgegate" +%Y-%m-%dT%H:%M:%SZ)",
    "routes": $routes, "cold_routes": $cold_routes, "api_sandboxes": $api_sandboxes,
    "redis_keys": $redis_keys, "load_seconds": $load_seconds,
    "warm_seconds": $warm_first_seconds, "warm_redis_gets": $warm_gets, "warm_passes": $warm_passes,
    "rss_kib": {"start": $rss_start, "after_warm_pass": $rss_warm, "after_spread": $rss_spread},
    "versions": facts["versions"],
}
with open(sys.argv[2], "w") as f:
    json.dump(meta, f, indent=2)
EOF

echo
status=0
python3 "$here/routes-redis-report.py" "$tmp/runs.jsonl" --meta "$tmp/meta.json" \
    --max-noise "$max_noise" --json "$out_dir/routes-redis-$stamp.json" \
    --markdown "$out_dir/routes-redis-$stamp.md" || status=$?
echo
echo "summary: $out_dir/routes-redis-$stamp.json and .md"
exit "$status"
