#!/usr/bin/env bash
# HTTP/1.1 keep-alive throughput of edgegate next to nginx and HAProxy, in one run.
#
#   wrk ──► [proxy under test, 1 worker, CPU 0] ──► backend nginx (CPU 1)
#   wrk runs on CPU 1 too; the "direct" leg sends wrk straight to the backend.
#
# Every proxy does the same work per request: rewrite the path to the runner's
# /sandboxes/{id}/toolbox/proxy/{port}/... form, set Host, X-Forwarded-{For,Host,Proto} and
# X-Daytona-Authorization, and reuse keep-alive connections to the backend. Logging is off
# everywhere. Results: a table on stdout, JSON and Markdown in --out. See bench/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
bench_defaults # root (the checkout), PATH, proxy_cpu=0, load_cpu=1, edgegate, control_plane, out_dir, keep_tmp=0

duration=10
warmup=2
connections=64
threads=1
body_size=100
rounds=1
max_noise=5
retries=2
targets=direct,edgegate,nginx,haproxy

usage() {
    cat <<EOF
usage: $0 [options]
  --duration SEC       measured seconds per target (default $duration)
  --warmup SEC         unmeasured seconds before each measurement (default $warmup)
  --connections N      wrk connections (default $connections)
  --threads N          wrk threads (default $threads)
  --body-size BYTES    response body size served by the backend (default $body_size)
  --rounds N           measure every target N times, report the median (default $rounds)
  --max-noise PCT      a measurement during which other processes used more than PCT % of
                       the two CPUs is noisy: it is repeated (default $max_noise)
  --retries N          repeat a noisy measurement at most N times (default $retries)
  --targets LIST       comma-separated subset of direct,edgegate,nginx,haproxy (default all)
EOF
    usage_common "wrk"
}

die() { printf 'http1-keepalive: %s\n' "$*" >&2; exit 1; }

parse_options "duration warmup connections threads body-size rounds max-noise retries targets
    edgegate control-plane proxy-cpu load-cpu out:out_dir" "$@"
whole_numbers duration warmup connections threads body_size rounds max_noise retries proxy_cpu load_cpu
((duration > 0 && connections > 0 && threads > 0 && rounds > 0)) ||
    die "--duration, --connections, --threads and --rounds must be positive"
((connections >= threads)) || die "--connections must be at least --threads"

IFS=, read -r -a target_list <<<"$targets"
only_known target "direct|edgegate|nginx|haproxy" "${target_list[@]}"

# --- prerequisites: checked, never installed here ------------------------------------------
require_tools "wrk nginx-light haproxy util-linux curl python3" wrk taskset curl python3 nginx haproxy
require_edgegate "build it (cmake -S . -B build -G Ninja && cmake --build build), pass --edgegate PATH, or leave it out with --targets direct,nginx,haproxy" \
    "pass --control-plane PATH, or leave edgegate out with --targets direct,nginx,haproxy"
check_cpus
[[ $proxy_cpu != "$load_cpu" ]] || echo "warning: the proxy shares CPU $proxy_cpu with wrk and the backend" >&2

bench_setup bench
# --- ports, body, fixture -----------------------------------------------------------------
read -r port_backend port_nginx port_haproxy port_edge port_ssh port_cp < <(free_ports 6)
new_sandbox
write_backend "$body_size" "$port_backend"
write_nginx_proxy "$port_nginx" 64
write_haproxy "$port_haproxy" http
write_fixture

idle_before=$(cpu_idle)
echo "idle before the run: $idle_before" >&2
warn_if_busy "$idle_before"

# --- start everything ---------------------------------------------------------------------
declare -A url_of
url_of[direct]="http://127.0.0.1:$port_backend/"
url_of[nginx]="http://127.0.0.1:$port_nginx/"
url_of[haproxy]="http://127.0.0.1:$port_haproxy/"
url_of[edgegate]="http://127.0.0.1:$port_edge/"
declare -A proc_of=([direct]=backend [nginx]=nginx [haproxy]=haproxy [edgegate]=edgegate)

start_backend "$load_cpu" "$port_backend"

if wants nginx; then
    start nginx "$proxy_cpu" nginx -p "$tmp" -e "$tmp/nginx-error.log" -c "$tmp/nginx.conf"
    wait_ready nginx curl -fsS "${url_of[nginx]}"
fi
if wants haproxy; then
    start haproxy "$proxy_cpu" haproxy -db -f "$tmp/haproxy.cfg"
    wait_ready haproxy curl -fsS "${url_of[haproxy]}"
fi
edgegate_version=
if wants edgegate; then
    start_control_plane "$load_cpu" "$tmp/fixture.json" "$port_cp"
    start_edgegate "http://127.0.0.1:$port_cp/api"
    wait_ready edgegate curl -fsS -o "$tmp/health.json" "${url_of[edgegate]}health"
    edgegate_version=$(version_of_health "$tmp/health.json")
fi

# Every target must answer the preview request with the backend's exact body before it is
# measured: a proxy that answers 404 quickly must not pass for a fast one.
for t in "${target_list[@]}"; do
    code=$(curl -sS -o "$tmp/check-$t.body" -w '%{http_code}' -H "Host: $host_header" "${url_of[$t]}") || code=none
    if [[ $code != 200 ]] || ! cmp -s "$tmp/check-$t.body" "$tmp/www/body"; then
        echo "--- response from $t (status $code):" >&2
        head -c 600 "$tmp/check-$t.body" >&2 || true
        echo >&2
        failed "${proc_of[$t]}" "did not answer the preview request with the backend's body"
    fi
done

# --- measure ------------------------------------------------------------------------------
run_wrk() { # TARGET SECONDS
    timeout $(($2 + 30)) taskset -c "$load_cpu" wrk -t"$threads" -c"$connections" -d"$2s" \
        --timeout 5s -s "$here/wrk_report.lua" -H "Host: $host_header" "${url_of[$1]}"
}

# measure TARGET ROUND: one measured wrk run, appended to runs.jsonl; sets $noise, the largest
# share of a CPU (percent) that processes other than ours used meanwhile.
measure() {
    local t=$1 round=$2 proxy_pid='' out="$tmp/wrk-$1-$2.out" line
    local accepts0 proxy0 load0 wrk0 proxy_core0 load_core0
    local accepts1 proxy1 load1 wrk1 proxy_core1 load_core1
    [[ $t == direct ]] || proxy_pid=${pid_of[${proc_of[$t]}]}
    accepts0=$(backend_accepts)
    proxy0=$([[ -n $proxy_pid ]] && cpu_ticks "$proxy_pid" || echo 0)
    load0=$(load_procs_ticks)
    wrk0=$(children_ticks)
    proxy_core0=$(cpu_busy_ticks "$proxy_cpu")
    load_core0=$(cpu_busy_ticks "$load_cpu")
    run_wrk "$t" "$duration" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed on $t"; }
    proxy_core1=$(cpu_busy_ticks "$proxy_cpu")
    load_core1=$(cpu_busy_ticks "$load_cpu")
    wrk1=$(children_ticks)
    load1=$(load_procs_ticks)
    proxy1=$([[ -n $proxy_pid ]] && cpu_ticks "$proxy_pid" || echo 0)
    accepts1=$(backend_accepts)
    line=$(grep '^WRKJSON ' "$out") || { cat "$out" >&2; die "no wrk summary for $t"; }
    noise=$(python3 - "${line#WRKJSON }" "$t" "$round" "$clk_tck" \
        "$((proxy1 - proxy0))" "$((load1 - load0 + wrk1 - wrk0))" \
        "$proxy_core0" "$proxy_core1" "$load_core0" "$load_core1" \
        "$((accepts1 - accepts0 - 1))" "$tmp/runs.jsonl" <<'EOF'
import json, sys
(wrk, target, rnd, hz, proxy_ticks, load_ticks, pc0, pc1, lc0, lc1, conns, runs) = sys.argv[1:]
r = json.loads(wrk)
secs = r["duration_us"] / 1e6

def core(a, b):  # busy percent of a CPU and its length in ticks
    (busy0, total0), (busy1, total1) = map(int, a.split()), map(int, b.split())
    return 100 * (busy1 - busy0) / max(total1 - total0, 1), total1 - total0

proxy_core, pticks = core(pc0, pc1)
load_core, lticks = core(lc0, lc1)
proxy_cpu_s = int(proxy_ticks) / int(hz) if target != "direct" else None
ours_load = 100 * int(load_ticks) / max(lticks, 1)
ours_proxy = 100 * int(proxy_ticks) / max(pticks, 1)
# Counted on the proxy CPU in the direct leg too: a busy neighbour slows the whole machine.
noise = max(load_core - ours_load, proxy_core - ours_proxy, 0)
r.update(target=target, round=int(rnd), proxy_cpu_s=proxy_cpu_s,
         backend_new_connections=int(conns), proxy_core_busy_percent=round(proxy_core, 1),
         load_core_busy_percent=round(load_core, 1), noise_percent=round(noise, 1))
with open(runs, "a") as f:
    f.write(json.dumps(r) + "\n")
print(f"{noise:.0f}")
EOF
    )
}

clk_tck=$(getconf CLK_TCK)
: >"$tmp/runs.jsonl"
for ((round = 1; round <= rounds; round++)); do
    for t in "${target_list[@]}"; do
        printf 'round %d/%d  %-9s warmup %ss, measure %ss\n' "$round" "$rounds" "$t" "$warmup" "$duration" >&2
        if ((warmup > 0)); then
            run_wrk "$t" "$warmup" >"$tmp/warmup-$t.out" 2>&1 || { cat "$tmp/warmup-$t.out" >&2; die "wrk failed on $t (warmup)"; }
        fi
        for ((attempt = 0; ; attempt++)); do
            measure "$t" "$round"
            ((noise > max_noise && attempt < retries)) || break
            echo "    other processes used ${noise}% of a CPU meanwhile: measuring $t again" >&2
        done
    done
done

# --- report -------------------------------------------------------------------------------
mkdir -p "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
wants edgegate || edgegate_version="not measured"
machine_facts_json "$tmp/facts.json" "${edgegate_version:-unknown}" nginx="nginx -v" \
    haproxy="haproxy -v" wrk="wrk -v"
python3 - "$tmp/facts.json" "$tmp/meta.json" <<EOF
import json, sys
facts = json.load(open(sys.argv[1]))
meta = {
    "title": "HTTP/1.1 keep-alive, one proxy worker",
    "date": "$stamp",
    "machine": facts["machine"],
    "command": "bench/http1-keepalive.sh --duration $duration --warmup $warmup "
               "--connections $connections --threads $threads --body-size $body_size "
               "--rounds $rounds --max-noise $max_noise --retries $retries --targets $targets",
    "load": "wrk -t$threads -c$connections -d${duration}s after ${warmup}s of warmup, "
            "GET / with Host: $preview_port-<sandbox id>.proxy.localhost",
    "pinning": "proxy on CPU $proxy_cpu; wrk, backend nginx and control plane on CPU $load_cpu",
    "body_bytes": $body_size,
    "idle_before_run": "$idle_before",
    "versions": facts["versions"],
}
with open(sys.argv[2], "w") as f:
    json.dump(meta, f, indent=2)
EOF

echo
status=0
python3 "$here/report.py" "$tmp/runs.jsonl" --meta "$tmp/meta.json" --max-noise "$max_noise" \
    --json "$out_dir/http1-keepalive-$stamp.json" \
    --markdown "$out_dir/http1-keepalive-$stamp.md" || status=$?
echo
echo "summary: $out_dir/http1-keepalive-$stamp.json and .md"
exit "$status"
