#!/usr/bin/env bash
# TLS handshakes per second with a new connection per request: edgegate next to nginx (and
# HAProxy with --targets), in one run.
#
#   client (CPU 1) ──one TLS connection per request──► [proxy, 1 worker, CPU 0] ──► backend nginx (CPU 1)
#
# full:    h2load --h1 -c256 -n256 with `Connection: close`, one h2load process after another:
#          every request on a new connection with a full TLS 1.3 handshake (X25519 key exchange,
#          ECDSA P-256 signature). (One h2load client that reconnects resumes its session: hence
#          one request per client and a new process each time.)
# resumed: one h2load process, --h1 -c16 -n M with `Connection: close`: each client resumes its
#          previous session when it reconnects (TLS 1.3 PSK with X25519, no signature).
# full-py, resumed-py: tls_handshake_client.py, 16 processes, without and with --resume (a
#          second, slower client that checks every body; the server's counts show the mix).
#
# On a 2-core machine the client's side of a handshake (key exchange plus verifying the server's
# signature) costs more than the server's, so the client's CPU is the limit: handshakes/s then
# say how fast the client is, and the server's CPU per handshake (req/CPU-s) is the comparison.
# The script prints both, and counts the handshakes the server saw (edgegate's metrics, nginx's
# stub_status) to show that every request had its own connection.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
bench_defaults # root (the checkout), PATH, proxy_cpu=0, load_cpu=1, edgegate, control_plane, out_dir, keep_tmp=0

duration=10
warmup=2
connections=16
burst=256
body_size=100
rounds=3
max_noise=5
retries=1
targets=edgegate,nginx
kinds=full,resumed

usage() {
    cat <<EOF
usage: $0 [options]
  --duration SEC       measured seconds per target and kind (default $duration)
  --warmup SEC         unmeasured run before each measurement, also sizes h2load's -n (default $warmup)
  --connections N      concurrent connections for resumed (h2load -c, client processes) (default $connections)
  --burst N            full: connections opened at once by each h2load process (default $burst)
  --kinds LIST         comma-separated subset of full,resumed,full-py,resumed-py (default $kinds)
  --body-size BYTES    response body size served by the backend (default $body_size)
  --rounds N           measure everything N times; ratios are taken within a round (default $rounds)
  --max-noise PCT      a measurement during which other processes used more than PCT % of
                       a CPU is noisy: it is repeated (default $max_noise)
  --retries N          repeat a noisy measurement at most N times (default $retries)
  --targets LIST       comma-separated subset of edgegate,nginx,haproxy (default $targets)
EOF
    usage_common "the client"
}

die() { printf 'tls-handshakes: %s\n' "$*" >&2; exit 1; }

parse_options "duration warmup connections burst kinds body-size rounds max-noise retries targets
    edgegate control-plane proxy-cpu load-cpu out:out_dir" "$@"
whole_numbers duration warmup connections burst body_size rounds max_noise retries proxy_cpu load_cpu
((duration > 0 && warmup > 0 && connections > 0 && rounds > 0)) ||
    die "--duration, --warmup, --connections and --rounds must be positive"
IFS=, read -r -a target_list <<<"$targets"
only_known target "edgegate|nginx|haproxy" "${target_list[@]}"
IFS=, read -r -a kind_list <<<"$kinds"
only_known kind "full|resumed|full-py|resumed-py" "${kind_list[@]}"

require_tools "nghttp2-client openssl nginx-light haproxy util-linux curl python3" \
    h2load openssl taskset curl python3 nginx haproxy
require_edgegate "build it (scripts/build.sh), pass --edgegate PATH, or leave it out with --targets nginx"
check_cpus

bench_setup tls-handshakes
nginx_upstream_keepalive=64
# shellcheck source=bench/tls_common.sh
source "$here/tls_common.sh"

idle_before=$(cpu_idle)
echo "idle before the run: $idle_before; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
tls_start_all

# What the server counted: "handshakes resumed" (edgegate: completed TLS handshakes and resumed
# ones from its metrics; nginx: accepted connections from stub_status, resumption not counted).
server_counts() { # TARGET
    case $1 in
        edgegate)
            curl -fsS "http://127.0.0.1:$port_metrics/metrics" | awk '
                /^edgegate_tls_handshakes_total\{.*result="ok"/ { ok = $NF }
                /^edgegate_tls_resumed_total/ { r = $NF }
                END { printf "%d %d\n", ok, r }' ;;
        nginx)
            curl -fsS "http://127.0.0.1:$port_nginx_status/__bench_status" | awk 'NR == 3 { print $1, -1 }' ;;
        *) echo "-1 -1" ;;
    esac
}

port_of() { local u=${url_of[$1]#https://127.0.0.1:}; echo "${u%/}"; }

# Full handshakes with h2load: h2load resumes its own sessions when a client reconnects, so
# each h2load process makes exactly one connection per client (-c B -n B, B = --burst) and a new
# process follows, until SECONDS have passed. B is large because starting h2load costs about as
# much as 100 handshakes. Prints the same HSJSON line as tls_handshake_client.py.
run_h2load_full() { # TARGET SECONDS
    local t=$1 secs=$2 t0 t1 out n=0 errors=0 runs=0
    t0=$(date +%s%N)
    while (($(date +%s%N) - t0 < secs * 1000000000)); do
        out=$(timeout 60 taskset -c "$load_cpu" h2load --h1 -t1 -c"$burst" -n"$burst" \
            -H "Connection: close" -H ":authority: $host_header" "${url_of[$t]}" 2>&1) || errors=$((errors + 1))
        if [[ $out =~ requests:\ ([0-9]+)\ total,\ [0-9]+\ started,\ [0-9]+\ done,\ ([0-9]+)\ succeeded ]]; then
            n=$((n + BASH_REMATCH[2]))
            errors=$((errors + BASH_REMATCH[1] - BASH_REMATCH[2]))
        else
            errors=$((errors + 1))
        fi
        [[ $out == *"status codes: $burst 2xx"* ]] || errors=$((errors + 1))
        runs=$((runs + 1))
    done
    t1=$(date +%s%N)
    printf 'HSJSON {"connections": %d, "resumed": 0, "errors": %d, "duration_s": %s, "h2load_runs": %d}\n' \
        "$n" "$errors" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')" "$runs"
}
# Resumed handshakes with h2load: one process, -c N -n M with Connection: close; after its first
# connection every client resumes its session when it reconnects.
run_h2load_resumed() { # TARGET M
    timeout 300 taskset -c "$load_cpu" h2load --h1 -t1 -c"$connections" -n "$2" \
        -H "Connection: close" -H ":authority: $host_header" "${url_of[$1]}"
}

# h2load's -n for about --duration seconds, from the warmup's rate.
size_h2load() { # WARMUP_OUTPUT
    python3 - "$1" "$duration" <<'PY'
import re, sys
m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", open(sys.argv[1]).read())
rate = float(m.group(1)) if m else 100.0
print(max(200, int(rate * float(sys.argv[2]))))
PY
}

run_pyclient() { # TARGET SECONDS [--resume]
    local t=$1 secs=$2
    shift 2
    timeout $((secs + 60)) taskset -c "$load_cpu" python3 "$here/tls_handshake_client.py" \
        --port "$(port_of "$t")" --host-header "$host_header" --procs "$connections" \
        --duration "$secs" --body-size "$body_size" "$@"
}

: >"$tmp/runs.jsonl"
for ((round = 1; round <= rounds; round++)); do
    for k in "${kind_list[@]}"; do
        for t in "${target_list[@]}"; do
            printf 'round %d/%d  %-8s %-9s warmup %ss, measure %ss\n' "$round" "$rounds" "$k" "$t" "$warmup" "$duration" >&2
            w="$tmp/warmup-$k-$t.out"
            case $k in
                full) run_h2load_full "$t" "$warmup" >"$w" 2>&1 || { cat "$w" >&2; die "h2load failed on $t (warmup)"; }
                      cmd=(run_h2load_full "$t" "$duration") ;;
                resumed) run_h2load_resumed "$t" $((connections * 10)) >"$w" 2>&1 || { cat "$w" >&2; die "h2load failed on $t (warmup)"; }
                         cmd=(run_h2load_resumed "$t" "$(size_h2load "$w")") ;;
                resumed-py) run_pyclient "$t" "$warmup" --resume >"$w" 2>&1 || { cat "$w" >&2; die "the client failed on $t (warmup)"; }
                         cmd=(run_pyclient "$t" "$duration" --resume) ;;
                full-py) run_pyclient "$t" "$warmup" >"$w" 2>&1 || { cat "$w" >&2; die "the client failed on $t (warmup)"; }
                         cmd=(run_pyclient "$t" "$duration") ;;
            esac
            for ((attempt = 0; ; attempt++)); do
                out="$tmp/$k-$t-$round-$attempt.out"
                read -r hs0 res0 < <(server_counts "$t")
                measure "$t" "$round" "$k" "$out" "${cmd[@]}" || { cat "$out" >&2; die "the client failed on $t ($k)"; }
                read -r hs1 res1 < <(server_counts "$t")
                hs=null res=null adj=0
                [[ $t != nginx ]] || adj=1 # nginx counts our own status request
                ((hs0 < 0)) || hs=$((hs1 - hs0 - adj))
                ((res0 < 0)) || res=$((res1 - res0))
                extra="{\"server_handshakes\": $hs, \"server_resumed\": $res}"
                noise=$(python3 "$here/tls_report.py" record "$(tail -n 1 "$tmp/acct.jsonl")" --extra "$extra" --runs "$tmp/runs.jsonl")
                ((noise > max_noise && attempt < retries)) || break
                echo "    other processes used ${noise}% of a CPU meanwhile: measuring $t again" >&2
            done
        done
    done
done

# --- report -------------------------------------------------------------------------------
tls_report tls-handshakes "TLS handshakes, one connection per request, one proxy worker" \
    "bench/tls-handshakes.sh --duration $duration --warmup $warmup --connections $connections --burst $burst --kinds $kinds --body-size $body_size --rounds $rounds --targets $targets" \
    "full: h2load --h1 -t1 -c$burst -n$burst -H 'Connection: close', repeated for ${duration}s; resumed: h2load --h1 -t1 -c$connections -n <about ${duration}s> -H 'Connection: close'; full-py/resumed-py: tls_handshake_client.py; TLS 1.3, ECDSA P-256, GET / with Host 8080-<sandbox id>.proxy.localhost" \
    "proxy on CPU $proxy_cpu; client, backend nginx and control plane on CPU $load_cpu"
