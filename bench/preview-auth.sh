#!/usr/bin/env bash
# The cost of preview authentication on the hot path: HTTP/1.1 keep-alive requests/s through one
# edgegate worker to a public sandbox (no credential to check) and to a private sandbox with a
# preview token whose decision is cached, alternating in one run. Also counts the API calls made
# while measuring: a cached decision must cost none.
#
#   wrk (CPU 1) ──► edgegate, one worker (CPU 0) ──► backend nginx (CPU 1)
#                       └─ dev control plane (tests/support), asked once per credential
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
bench_defaults # root (the checkout), PATH, proxy_cpu=0, load_cpu=1, edgegate, control_plane, out_dir, keep_tmp=0

duration=8
rounds=3
connections=64
usage() {
    echo "usage: $0 [--duration SEC] [--rounds N] [--connections N] [--edgegate PATH] [--keep-tmp]"
}
die() { printf 'preview-auth: %s\n' "$*" >&2; exit 1; }
parse_options "duration rounds connections edgegate" "$@"
[[ -x $edgegate ]] || die "$edgegate: not built (scripts/build.sh)"
for tool in wrk nginx curl taskset python3; do command -v $tool >/dev/null || die "needs $tool"; done

bench_setup preview-auth

fixture="$root/tests/support/fixtures/demo.json"
read -r key public private token runner < <(python3 - "$fixture" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))
pub = next(s for s in f["sandboxes"] if s.get("public"))
priv = next(s for s in f["sandboxes"] if not s.get("public") and s.get("previewTokens"))
print(f["proxyApiKey"], pub["id"], priv["id"], priv["previewTokens"][0], pub["runnerId"])
PY
)

read -r port_backend port_cp port_edge port_ssh < <(free_ports 4)
# The backend answers every path with the same 60 bytes.
write_backend 60 "$port_backend"
start_backend "$load_cpu" "$port_backend"

start_control_plane "$load_cpu" "$fixture" "$port_cp" --runner-url "$runner=http://127.0.0.1:$port_backend"

proxy_api_key=$key
start_edgegate "http://127.0.0.1:$port_cp/api"
port=$port_edge
wait_ready edgegate curl -sf "http://127.0.0.1:$port/health"

pub_host="8080-$public.proxy.localhost"
priv_host="8080-$private.proxy.localhost"
calls() { # API calls so far, except the background ones: last-activity heartbeats (at most one
    # per 45 s per sandbox) and the OIDC settings loader's GET /api/config retries
    curl -sf "http://127.0.0.1:$port_cp/_dev/calls" |
        python3 -c 'import json,sys; print(sum(1 for c in json.load(sys.stdin) if not c["path"].endswith("/last-activity") and c["path"] != "/api/config"))'
}

# Warm both paths: routes cached, the token's decision cached.
for _ in 1 2; do
    curl -sf -o /dev/null -H "Host: $pub_host" "http://127.0.0.1:$port/x" || die "public sandbox not served"
    curl -sf -o /dev/null -H "Host: $priv_host" -H "X-Daytona-Preview-Token: $token" \
        "http://127.0.0.1:$port/x" || die "private sandbox with its preview token not served"
done

run_wrk() { # HOST [HEADER]
    local args=(-t1 "-c$connections" "-d${duration}s" -s "$here/wrk_report.lua" -H "Host: $1")
    [[ -n ${2:-} ]] && args+=(-H "$2")
    taskset -c 1 wrk "${args[@]}" "http://127.0.0.1:$port/x" | sed -n 's/^WRKJSON //p'
}
rps() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); e=d["connect_errors"]+d["read_errors"]+d["write_errors"]+d["status_errors"]+d["timeouts"]; print(round(d["requests"]*1e6/d["duration_us"]), e)' "$1"; }

echo "round  public req/s  token req/s  token/public  errors  API calls during the round"
ratios=()
for ((r = 1; r <= rounds; r++)); do
    before=$(calls)
    read -r p perr < <(rps "$(run_wrk "$pub_host")")
    read -r t terr < <(rps "$(run_wrk "$priv_host" "X-Daytona-Preview-Token: $token")")
    after=$(calls)
    ratio=$(python3 -c "print(f'{$t / $p:.3f}')")
    ratios+=("$ratio")
    printf '%5d  %12s  %11s  %12s  %6s  %s\n' "$r" "$p" "$t" "$ratio" "$((perr + terr))" \
        "$([[ $before == "?" || $after == "?" ]] && echo "?" || echo $((after - before)))"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median token/public: $median (target >= 0.95)"
