#!/usr/bin/env bash
# User-space instructions per request of edgegate, nginx and HAProxy (each one worker under
# callgrind) for the TLS scenarios: h2 over TLS (h2load -c16 -m10, as h2-tls.sh), and one TLS
# handshake per request, full or resumed (h2load --h1 with Connection: close, as
# tls-handshakes.sh).
# Instruction counts do not depend on what else the machine runs, unlike requests/s: on a shared
# machine they are the repeatable comparison. Kernel time (system calls) is not counted.
#
# Writes, per target and kind, the callgrind dump and `callgrind_annotate` (inclusive and
# exclusive) into --out, and prints instructions per request and edgegate's ratio to each.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
bench_defaults # root (the checkout), PATH, proxy_cpu=0, load_cpu=1, edgegate, control_plane, out_dir, keep_tmp=0

h2_requests=10000
hs_requests=500
connections=16
streams=10
body_size=100
targets=edgegate,nginx,haproxy
kinds=h2,full,resumed

usage() {
    cat <<EOF
usage: $0 [options]
  --h2-requests N      measured requests in the h2 scenario (default $h2_requests)
  --hs-requests N      measured connections in the full and resumed handshake scenarios (default $hs_requests)
  --kinds LIST         subset of h2,full,resumed (default $kinds)
  --targets LIST       comma-separated subset of edgegate,nginx,haproxy (default $targets)
  --edgegate PATH      edgegate binary (default build/edgegate)
  --out DIR            where dumps and annotations go (default build/bench)
  --keep-tmp           keep the generated configs and logs
EOF
}
die() { printf 'tls-callgrind: %s\n' "$*" >&2; exit 1; }
parse_options "h2-requests hs-requests kinds targets edgegate out:out_dir" "$@"
IFS=, read -r -a target_list <<<"$targets"
only_known target "edgegate|nginx|haproxy" "${target_list[@]}"
for tool in valgrind callgrind_control callgrind_annotate h2load openssl taskset curl python3 nginx; do
    command -v "$tool" >/dev/null || die "missing: $tool (Debian: valgrind nghttp2-client nginx-light haproxy)"
done
[[ ",$targets," != *",edgegate,"* || -x $edgegate ]] || die "no edgegate binary at $edgegate"

bench_setup tls-callgrind
nginx_upstream_keepalive=256
ready_timeout=120
nginx_main_extra="master_process off;" # the worker is the process callgrind runs
proxy_wrapper=(valgrind --tool=callgrind "--callgrind-out-file=$tmp/cg-NAME.out" --dump-instr=no
    --collect-atstart=yes)
# shellcheck source=bench/tls_common.sh
source "$here/tls_common.sh"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
tls_start_all

run_client() { # KIND TARGET N
    case $1 in
        h2) taskset -c "$load_cpu" h2load -t1 -c"$connections" -m"$streams" -n "$3" \
                -H ":authority: $host_header" "${url_of[$2]}" ;;
        # One connection per client: an h2load client that reconnects resumes its session.
        full) local i
              for ((i = 0; i < $3; i += connections)); do
                  taskset -c "$load_cpu" h2load --h1 -t1 -c"$connections" -n"$connections" \
                      -H "Connection: close" -H ":authority: $host_header" "${url_of[$2]}" |
                      sed -n 's/^requests: .* \([0-9]*\) succeeded.*/succeeded \1/p'
              done | awk '{ n += $2 } END { printf "requests: %d total, %d started, %d done, %d succeeded\n", n, n, n, n }' ;;
        resumed) taskset -c "$load_cpu" h2load --h1 -t1 -c"$connections" -n "$3" \
                -H "Connection: close" -H ":authority: $host_header" "${url_of[$2]}" ;;
    esac
}

mkdir -p "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
: >"$tmp/results.txt"
IFS=, read -r -a kind_list <<<"$kinds"
only_known kind "h2|full|resumed" "${kind_list[@]}"
for k in "${kind_list[@]}"; do
    n=$h2_requests
    [[ $k == h2 ]] || n=$hs_requests
    [[ $k != full ]] || n=$(((n + connections - 1) / connections * connections))
    for t in "${target_list[@]}"; do
        pid=${pid_of[${proc_of[$t]}]}
        echo "$k $t: warmup, then $n measured requests" >&2
        run_client "$k" "$t" $((n / 4 > 400 ? n / 4 : 400)) >"$tmp/warm-$k-$t.out" 2>&1
        callgrind_control -z "$pid" >/dev/null
        run_client "$k" "$t" "$n" >"$tmp/run-$k-$t.out" 2>&1
        before=$(find "$tmp" -maxdepth 1 -name "cg-$t.out.*" | wc -l)
        callgrind_control -d "$pid" >/dev/null
        dump=$(find "$tmp" -maxdepth 1 -name "cg-$t.out.*" -printf '%T@ %p\n' | sort -n | awk 'END { print $2 }')
        (($(find "$tmp" -maxdepth 1 -name "cg-$t.out.*" | wc -l) > before)) || die "no callgrind dump for $t"
        ok=$(awk '/^requests:/ { print $8 }' "$tmp/run-$k-$t.out")
        [[ $ok == "$n" ]] || { cat "$tmp/run-$k-$t.out" >&2; die "$t ($k): $ok of $n requests succeeded"; }
        total=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
        cp "$dump" "$out_dir/tls-callgrind-$stamp-$k-$t.out"
        callgrind_annotate --inclusive=yes --auto=no "$dump" 2>/dev/null | head -n 80 >"$out_dir/tls-callgrind-$stamp-$k-$t.inclusive.txt" || true
        # (callgrind_annotate 3.19 lists the frames still on the stack at the dump as 100 %;
        # the self costs follow them.)
        callgrind_annotate --threshold=100 --auto=no "$dump" 2>/dev/null | head -n 80 >"$out_dir/tls-callgrind-$stamp-$k-$t.exclusive.txt" || true
        # The h2 run opens its connections afresh: their handshakes are counted apart.
        hs=$(callgrind_annotate --inclusive=yes "$dump" 2>/dev/null |
            awk '/:SSL_do_handshake \[/ && !n++ { gsub(",", "", $1); print $1 }' || true)
        echo "$k $t $n $total ${hs:-0}" >>"$tmp/results.txt"
        printf '  %s %s: %s instructions / %s requests = %s per request (%s in handshakes)\n' \
            "$k" "$t" "$total" "$n" "$(awk -v a="$total" -v b="$n" 'BEGIN { printf "%.0f", a / b }')" \
            "${hs:-0}" >&2
    done
done

echo
python3 - "$tmp/results.txt" "$out_dir/tls-callgrind-$stamp.md" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
# h2: per request without the handshakes of h2load's 16 connections (SSL_do_handshake, inclusive);
# handshake: everything, per connection (one request each).
per = {(k, t): (int(total) - (int(hs) if k == "h2" else 0)) / int(n)
       for k, t, n, total, hs in rows}
out = ["| scenario | target | requests | instructions per request | of which TLS handshakes (total) | edgegate's instructions / this one's |",
       "|---|---|---|---|---|---|"]
for k, t, n, total, hs in rows:
    e = per.get((k, "edgegate"))
    ratio = f"{e / per[(k, t)]:.2f}" if e and t != "edgegate" else ""
    note = " (handshakes excluded)" if k == "h2" else ""
    out.append(f"| {k} | {t} | {n} | {per[(k, t)]:,.0f}{note} | {int(hs):,} | {ratio} |")
text = "\n".join(out)
print(text)
open(sys.argv[2], "w").write(f"load average {sys.argv[3]}\n\n" + text + "\n")
EOF
echo
echo "dumps and annotations: $out_dir/tls-callgrind-$stamp-*"
