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
root=$(cd "$here/.." && pwd)
PATH="$PATH:/usr/sbin:/sbin"

duration=10
warmup=2
connections=64
threads=1
body_size=100
rounds=1
max_noise=5
retries=2
proxy_cpu=0
load_cpu=1
targets=direct,edgegate,nginx,haproxy
edgegate="$root/build/edgegate"
control_plane="$root/tests/support/dev_control_plane.py"
out_dir="$root/build/bench"
keep_tmp=0

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
  --edgegate PATH      edgegate binary (default build/edgegate)
  --control-plane PATH dev control plane (default tests/support/dev_control_plane.py)
  --proxy-cpu N        CPU for the proxy under test (default $proxy_cpu)
  --load-cpu N         CPU for wrk, the backend and the control plane (default $load_cpu)
  --out DIR            where the JSON and Markdown summaries go (default build/bench)
  --keep-tmp           keep the generated configs and logs
EOF
}

die() { printf 'http1-keepalive: %s\n' "$*" >&2; exit 1; }

while (($#)); do
    [[ $1 == --keep-tmp || $1 == -h || $1 == --help || $# -ge 2 ]] || die "$1: unknown option or missing value (see --help)"
    case $1 in
        --duration) duration=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --body-size) body_size=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --max-noise) max_noise=$2; shift 2 ;;
        --retries) retries=$2; shift 2 ;;
        --targets) targets=$2; shift 2 ;;
        --edgegate) edgegate=$2; shift 2 ;;
        --control-plane) control_plane=$2; shift 2 ;;
        --proxy-cpu) proxy_cpu=$2; shift 2 ;;
        --load-cpu) load_cpu=$2; shift 2 ;;
        --out) out_dir=$2; shift 2 ;;
        --keep-tmp) keep_tmp=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

for n in duration warmup connections threads body_size rounds max_noise retries proxy_cpu load_cpu; do
    [[ ${!n} =~ ^[0-9]+$ ]] || die "--${n//_/-} must be a whole number, got '${!n}'"
done
((duration > 0 && connections > 0 && threads > 0 && rounds > 0)) ||
    die "--duration, --connections, --threads and --rounds must be positive"
((connections >= threads)) || die "--connections must be at least --threads"

IFS=, read -r -a target_list <<<"$targets"
for t in "${target_list[@]}"; do
    [[ $t =~ ^(direct|edgegate|nginx|haproxy)$ ]] || die "unknown target '$t'"
done
wants() { [[ ",$targets," == *",$1,"* ]]; }

# --- prerequisites: checked, never installed here ------------------------------------------
missing=()
for tool in wrk taskset curl python3 nginx; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
wants haproxy && { command -v haproxy >/dev/null || missing+=(haproxy); }
if ((${#missing[@]})); then
    die "missing: ${missing[*]}. On Debian 12: apt-get install wrk nginx-light haproxy util-linux curl python3"
fi
if wants edgegate; then
    [[ -x $edgegate ]] || die "no edgegate binary at $edgegate: build it (cmake -S . -B build -G Ninja && cmake --build build), pass --edgegate PATH, or leave it out with --targets direct,nginx,haproxy"
    [[ -f $control_plane ]] || die "no dev control plane at $control_plane: pass --control-plane PATH, or leave edgegate out with --targets direct,nginx,haproxy"
fi
for cpu in "$proxy_cpu" "$load_cpu"; do
    taskset -c "$cpu" true 2>/dev/null || die "cannot pin to CPU $cpu (this machine has $(nproc) CPUs): pass --proxy-cpu/--load-cpu"
done
[[ $proxy_cpu != "$load_cpu" ]] || echo "warning: the proxy shares CPU $proxy_cpu with wrk and the backend" >&2

bench_name=bench
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
# --- ports, body, fixture -----------------------------------------------------------------
read -r port_backend port_nginx port_haproxy port_edge port_ssh port_cp < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)

sandbox_id=$(python3 -c 'import uuid; print(uuid.uuid4())')
preview_port=8080
host_header="$preview_port-$sandbox_id.proxy.localhost"
runner_key=runner-secret-1
runner_path="/sandboxes/$sandbox_id/toolbox/proxy/$preview_port"
proxy_api_key="dtn_$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
ssh_api_key="dtn_$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

mkdir -p "$tmp/www" "$tmp/nginx-temp"
head -c "$body_size" /dev/zero | tr '\0' x >"$tmp/www/body"
chmod -R a+rX "$tmp/www"

# The backend answers every path with the same body. `return` serves it from memory; nginx's
# config parser caps a token at 4 KiB, so larger bodies come from a cached static file.
if ((body_size <= 4000)); then
    backend_location="return 200 \"$(cat "$tmp/www/body")\";"
else
    backend_location="root $tmp/www; rewrite ^ /body break; open_file_cache max=16 inactive=1h; open_file_cache_valid 1h;"
fi

nginx_common() { # PID_NAME
    cat <<EOF
worker_processes 1;
daemon off;
pid $tmp/$1.pid;
error_log $tmp/$1-error.log warn;
events { worker_connections 4096; }
EOF
}
nginx_http_common() {
    cat <<EOF
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $tmp/nginx-temp/body;
    proxy_temp_path $tmp/nginx-temp/proxy;
    fastcgi_temp_path $tmp/nginx-temp/fastcgi;
    uwsgi_temp_path $tmp/nginx-temp/uwsgi;
    scgi_temp_path $tmp/nginx-temp/scgi;
EOF
}

{
    nginx_common backend
    echo "http {"
    nginx_http_common
    cat <<EOF
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$port_backend;
        location / { $backend_location }
        location = /__bench_status { stub_status; }
    }
}
EOF
} >"$tmp/backend.conf"

{
    nginx_common nginx
    echo "http {"
    nginx_http_common
    cat <<EOF
    upstream runner {
        server 127.0.0.1:$port_backend;
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$port_nginx;
        location / {
            proxy_pass http://runner$runner_path/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Daytona-Authorization "Bearer $runner_key";
        }
    }
}
EOF
} >"$tmp/nginx.conf"

cat >"$tmp/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    option forwardfor
    http-reuse always

frontend edge
    bind 127.0.0.1:$port_haproxy
    default_backend runner

backend runner
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Daytona-Authorization "Bearer $runner_key"
    http-request set-header Host 127.0.0.1:$port_backend
    http-request set-path $runner_path%[path]
    server backend 127.0.0.1:$port_backend
EOF

python3 - "$tmp/fixture.json" <<EOF
import json, sys
runner_url = "http://127.0.0.1:$port_backend"
fixture = {
    "proxyApiKey": "$proxy_api_key",
    "sshGatewayApiKey": "$ssh_api_key",
    "runners": [{"id": "runner-1", "domain": "127.0.0.1", "apiUrl": runner_url,
                 "proxyUrl": runner_url, "apiKey": "$runner_key", "state": "ready",
                 "region": "local", "unschedulable": False}],
    "sandboxes": [{"id": "$sandbox_id", "runnerId": "runner-1", "state": "started",
                   "public": True, "previewTokens": []}],
    "sshTokens": {}, "userTokens": {}, "signedPreviewTokens": {},
}
with open(sys.argv[1], "w") as f:
    json.dump(fixture, f, indent=2)
EOF

idle_before=$(cpu_idle)
echo "idle before the run: $idle_before" >&2
if awk -v s="$idle_before" 'BEGIN { n = split(s, f, /[= %]+/); for (i = 2; i <= n; i += 2) if (f[i] != "" && f[i] + 0 < 90) exit 0; exit 1 }'; then
    echo "warning: the CPUs are busy with other work; the numbers will be low and noisy" >&2
fi

# --- start everything ---------------------------------------------------------------------
declare -A url_of
url_of[direct]="http://127.0.0.1:$port_backend/"
url_of[nginx]="http://127.0.0.1:$port_nginx/"
url_of[haproxy]="http://127.0.0.1:$port_haproxy/"
url_of[edgegate]="http://127.0.0.1:$port_edge/"
declare -A proc_of=([direct]=backend [nginx]=nginx [haproxy]=haproxy [edgegate]=edgegate)

start backend "$load_cpu" nginx -p "$tmp" -e "$tmp/backend-error.log" -c "$tmp/backend.conf"
wait_ready backend curl -fsS "${url_of[direct]}"

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
    start control-plane "$load_cpu" python3 "$control_plane" --fixture "$tmp/fixture.json" --port "$port_cp" --quiet
    wait_ready control-plane grep -q "listening on" "${log_of[control-plane]}"
    start edgegate "$proxy_cpu" env -i PATH="$PATH" HOME="$tmp" \
        BIND_ADDRESS=127.0.0.1 PROXY_PORT="$port_edge" SSH_GATEWAY_PORT="$port_ssh" \
        PROXY_API_KEY="$proxy_api_key" DAYTONA_API_URL="http://127.0.0.1:$port_cp/api" \
        EDGEGATE_WORKERS=1 LOG_LEVEL=warn "$edgegate"
    wait_ready edgegate curl -fsS -o "$tmp/health.json" "${url_of[edgegate]}health"
    edgegate_version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("version",""))' "$tmp/health.json" 2>/dev/null || true)
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

# Connections the backend has accepted so far; the difference over a measurement shows whether
# a proxy reuses its upstream connections (the status request itself counts one).
backend_accepts() {
    curl -fsS "http://127.0.0.1:$port_backend/__bench_status" | awk 'NR == 3 { print $1 }'
}

# CPU ticks (user+system) of this shell's reaped children: after run_wrk, they include wrk's.

# Ticks of the processes of ours that run on the load CPU besides wrk.
load_procs_ticks() {
    local total=0 name
    for name in backend control-plane; do
        [[ -n ${pid_of[$name]:-} ]] && total=$((total + $(cpu_ticks "${pid_of[$name]}")))
    done
    echo "$total"
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
python3 - "$tmp/meta.json" <<EOF
import json, os, platform, subprocess, sys

def first_line(*cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
            if l.startswith("model name")), "unknown CPU")
meta = {
    "title": "HTTP/1.1 keep-alive, one proxy worker",
    "date": "$stamp",
    "machine": f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}",
    "command": "bench/http1-keepalive.sh --duration $duration --warmup $warmup "
               "--connections $connections --threads $threads --body-size $body_size "
               "--rounds $rounds --max-noise $max_noise --retries $retries --targets $targets",
    "load": "wrk -t$threads -c$connections -d${duration}s after ${warmup}s of warmup, "
            "GET / with Host: $preview_port-<sandbox id>.proxy.localhost",
    "pinning": "proxy on CPU $proxy_cpu; wrk, backend nginx and control plane on CPU $load_cpu",
    "body_bytes": $body_size,
    "idle_before_run": "$idle_before",
    "versions": {
        "edgegate": "${edgegate_version:-unknown}",
        "nginx": first_line("nginx", "-v"),
        "haproxy": first_line("haproxy", "-v"),
        "wrk": first_line("wrk", "-v"),
    },
}
with open(sys.argv[1], "w") as f:
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
