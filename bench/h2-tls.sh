#!/usr/bin/env bash
# HTTP/2 over TLS throughput of edgegate next to nginx and HAProxy, in one run.
#
#   h2load (CPU 1) ──h2 over TLS──► [proxy under test, 1 worker, CPU 0] ──HTTP/1.1──► backend nginx (CPU 1)
#
# h2load: 16 connections × 10 concurrent streams, TLS 1.3 with ALPN h2, same ECDSA P-256
# certificate for every proxy. Every proxy does the same work per request as in
# http1-keepalive.sh (path rewritten to /sandboxes/{id}/toolbox/proxy/8080/..., Host,
# X-Forwarded-*, X-Daytona-Authorization set, upstream keep-alive reused); edgegate resolves the
# sandbox through the dev control plane. Logging off everywhere. Prints requests/s per proxy
# and edgegate's ratio to each, per round; writes JSON and Markdown to --out. See bench/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
bench_defaults # root (the checkout), PATH, proxy_cpu=0, load_cpu=1, edgegate, control_plane, out_dir, keep_tmp=0

duration=10
warmup=2
connections=16
streams=10
body_size=100
rounds=3
max_noise=5
retries=1
targets=edgegate,nginx,haproxy

usage() {
    cat <<EOF
usage: $0 [options]
  --duration SEC       measured seconds per target (default $duration)
  --warmup SEC         unmeasured h2load run before each measurement (default $warmup)
  --connections N      h2load connections (default $connections)
  --streams N          concurrent streams per connection, h2load -m (default $streams)
  --body-size BYTES    response body size served by the backend (default $body_size)
  --rounds N           measure every target N times; ratios are taken within a round (default $rounds)
  --max-noise PCT      a measurement during which other processes used more than PCT % of
                       a CPU is noisy: it is repeated (default $max_noise)
  --retries N          repeat a noisy measurement at most N times (default $retries)
  --targets LIST       comma-separated subset of edgegate,nginx,haproxy (default all)
EOF
    usage_common "h2load"
}

die() { printf 'h2-tls: %s\n' "$*" >&2; exit 1; }

parse_options "duration warmup connections streams body-size rounds max-noise retries targets
    edgegate control-plane proxy-cpu load-cpu out:out_dir" "$@"
whole_numbers duration warmup connections streams body_size rounds max_noise retries proxy_cpu load_cpu
((duration > 0 && connections > 0 && streams > 0 && rounds > 0)) ||
    die "--duration, --connections, --streams and --rounds must be positive"
IFS=, read -r -a target_list <<<"$targets"
only_known target "edgegate|nginx|haproxy" "${target_list[@]}"

# --- prerequisites: checked, never installed here ------------------------------------------
require_tools "nghttp2-client openssl nginx-light haproxy util-linux curl python3" \
    h2load openssl taskset curl python3 nginx haproxy
require_edgegate "build it (scripts/build.sh), pass --edgegate PATH, or leave it out with --targets nginx,haproxy"
check_cpus

bench_setup h2-tls
# h2load keeps up to connections × streams requests in flight, each needing its own upstream
# HTTP/1.1 connection: nginx's idle pool must hold them all, as edgegate's (256) does.
nginx_upstream_keepalive=$((connections * streams > 256 ? connections * streams : 256))
# shellcheck source=bench/tls_common.sh
source "$here/tls_common.sh"

idle_before=$(cpu_idle)
echo "idle before the run: $idle_before; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
tls_start_all

run_h2load() { # TARGET SECONDS
    timeout $(($2 + 60)) taskset -c "$load_cpu" h2load -t1 -c"$connections" -m"$streams" -D "$2" \
        -H ":authority: $host_header" "${url_of[$1]}"
}

: >"$tmp/runs.jsonl"
for ((round = 1; round <= rounds; round++)); do
    for t in "${target_list[@]}"; do
        printf 'round %d/%d  %-9s warmup %ss, measure %ss\n' "$round" "$rounds" "$t" "$warmup" "$duration" >&2
        if ((warmup > 0)); then
            run_h2load "$t" "$warmup" >"$tmp/warmup-$t.out" 2>&1 || { cat "$tmp/warmup-$t.out" >&2; die "h2load failed on $t (warmup)"; }
        fi
        for ((attempt = 0; ; attempt++)); do
            out="$tmp/h2load-$t-$round-$attempt.out"
            measure "$t" "$round" h2 "$out" run_h2load "$t" "$duration" || { cat "$out" >&2; die "h2load failed on $t"; }
            noise=$(python3 "$here/tls_report.py" record "$(tail -n 1 "$tmp/acct.jsonl")" --runs "$tmp/runs.jsonl")
            grep -q "Application protocol: h2" "$out" || die "$t: h2load did not negotiate h2 (see $out)"
            ((noise > max_noise && attempt < retries)) || break
            echo "    other processes used ${noise}% of a CPU meanwhile: measuring $t again" >&2
        done
    done
done

# --- report -------------------------------------------------------------------------------
tls_report h2-tls "HTTP/2 over TLS, one proxy worker" \
    "bench/h2-tls.sh --duration $duration --warmup $warmup --connections $connections --streams $streams --body-size $body_size --rounds $rounds --targets $targets" \
    "h2load -t1 -c$connections -m$streams -D $duration (TLS 1.3, ALPN h2, ECDSA P-256) after a ${warmup}s h2load run, GET / with :authority $preview_port-<sandbox id>.proxy.localhost" \
    "proxy on CPU $proxy_cpu; h2load, backend nginx and control plane on CPU $load_cpu"
