#!/usr/bin/env bash
# Memory of idle WebSockets held through a proxy: edgegate next to nginx, in one run.
#
#   ws_idle_client.py ──N WebSockets──► [proxy, 1 worker] ──► ws_echo_backend.py (the runner)
#
# Targets: edgegate and nginx take N HTTP/1.1 upgrades (N client connections); edgegate-h2 takes
# the N WebSockets as RFC 8441 extended CONNECT streams on --connections HTTP/2 connections (h2c,
# or TLS with --tls), as a browser opens several WebSockets to one host. For each target: RSS
# before any connection, RSS and open files with all N open, again after --hold seconds, then an
# echo round trip on every WebSocket; fails unless all N opened and all N still echo. Prints RSS
# per proxied WebSocket (client side and runner side both live in the proxy). See bench/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
PATH="$PATH:/usr/sbin:/sbin"

count=5000
targets=edgegate,nginx
connections=100
tls=0
hold=30
warm=0
edgegate="$root/build/edgegate"
keep_tmp=0

usage() {
    cat <<USAGE
usage: $0 [--count N] [--targets edgegate,edgegate-h2,nginx] [--connections C] [--tls]
          [--hold SEC] [--warm BYTES] [--edgegate PATH] [--keep-tmp]
USAGE
}
die() { printf 'websockets-idle: %s\n' "$*" >&2; exit 1; }
while (($#)); do
    case $1 in
        --count) count=$2; shift 2 ;;
        --targets) targets=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --tls) tls=1; shift ;;
        --hold) hold=$2; shift 2 ;;
        --warm) warm=$2; shift 2 ;;
        --edgegate) edgegate=$2; shift 2 ;;
        --keep-tmp) keep_tmp=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
IFS=, read -ra want <<<"$targets"
for t in "${want[@]}"; do
    case $t in
        edgegate|nginx) h1=1 ;;
        edgegate-h2) /usr/bin/python3 -c 'import h2' 2>/dev/null || die "edgegate-h2 needs python3-h2" ;;
        *) die "unknown target $t" ;;
    esac
done
[[ ,$targets, != *,edgegate* ]] || [[ -x $edgegate ]] || die "$edgegate: not built (scripts/build.sh)"
((!${h1:-0})) || /usr/bin/python3 -c 'import websockets' 2>/dev/null || die "needs python3-websockets"
[[ ,$targets, != *,nginx,* ]] || command -v nginx >/dev/null || die "needs nginx"

bench_name=ws-idle
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

# Open files: over HTTP/1.1 each WebSocket is two sockets in the proxy and one in the client
# and in the app; over HTTP/2 it is one socket in edgegate (toward the app) and in the app, and
# the client and edgegate share --connections connections. The limit is per process.
if ((${h1:-0})); then need=$((count * 2 + 1024)); else need=$((count + connections + 1024)); fi
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((hard < need)); then
    if ((${h1:-0})); then
        die "$count WebSockets over HTTP/1.1 need $need open files in the proxy; the hard limit here is $hard (use --count $(((hard - 1024) / 2)), or --targets edgegate-h2)"
    fi
    die "$count WebSockets need $need open files in edgegate and the app; the hard limit here is $hard"
fi
ulimit -n "$need"

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
anon_kib() { awk '/^RssAnon:/{print $2}' "/proc/$1/status"; }
vm_kib() { awk '/^VmSize:/{print $2}' "/proc/$1/status"; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
per_ws() { awk -v a="$1" -v b="$2" -v n="$count" 'BEGIN{printf "%.1f", (a-b)/n}'; }

app_port=$(free_port)
start app 1 /usr/bin/python3 "$here/ws_echo_backend.py" --port "$app_port"
wait_ready app grep -q listening "${log_of[app]}"

fixture="$root/tests/support/fixtures/demo.json"
key=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['proxyApiKey'])" "$fixture")
sid=$(/usr/bin/python3 -c "import json,sys; print([s['id'] for s in json.load(open(sys.argv[1]))['sandboxes'] if s.get('public')][0])" "$fixture")
runner=$(/usr/bin/python3 -c "import json,sys; print([s['runnerId'] for s in json.load(open(sys.argv[1]))['sandboxes'] if s.get('public')][0])" "$fixture")
host="$app_port-$sid.proxy.localhost"
# The app is the runner: it answers /sandboxes/{id}/toolbox/proxy/{port}/echo itself.
cp_port=$(free_port)
start control-plane 1 /usr/bin/python3 "$root/tests/support/dev_control_plane.py" --fixture "$fixture" \
    --runner-url "$runner=http://127.0.0.1:$app_port" --port "$cp_port" --quiet
wait_ready control-plane curl -sf "http://127.0.0.1:$cp_port/_dev/calls"

if ((tls)); then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -subj "/CN=proxy.localhost" \
        -addext "subjectAltName=DNS:proxy.localhost,DNS:*.proxy.localhost" >/dev/null 2>&1 ||
        die "openssl could not make the test certificate"
fi

start_edgegate() { # sets port; TLS with --tls
    port=$(free_port)
    local -a tls_env=()
    local scheme=http
    if ((tls)); then
        tls_env=(ENABLE_TLS=true TLS_CERT_FILE="$tmp/cert.pem" TLS_KEY_FILE="$tmp/key.pem")
        scheme=https
    fi
    PROXY_PORT=$port BIND_ADDRESS=127.0.0.1 PROXY_API_KEY=$key \
        DAYTONA_API_URL="http://127.0.0.1:$cp_port/api" EDGEGATE_WORKERS=1 LOG_LEVEL=warn \
        SSH_GATEWAY_PORT=$(free_port) start edgegate 0 env "${tls_env[@]}" "$edgegate"
    wait_ready edgegate curl -ksf "$scheme://127.0.0.1:$port/health"
    # One request first, so the route is cached and the pools exist before the baseline.
    curl -ksf -o /dev/null -H "Host: $host" "$scheme://127.0.0.1:$port/x" || true
}

results=()
failures=0
measure() { # NAME PORT PID CLIENT-OPTIONS...
    local name=$1 port=$2 pid=$3 before before_anon before_vm at at_anon after after_anon out
    local ready="$tmp/$1.ready" stop="$tmp/$1.stop" client
    shift 3
    before=$(rss_kib "$pid") before_anon=$(anon_kib "$pid") before_vm=$(vm_kib "$pid")
    /usr/bin/python3 "$here/ws_idle_client.py" --port "$port" --count "$count" --warm "$warm" \
        --host-header "$host" --ready-file "$ready" --stop-file "$stop" "$@" \
        >"$tmp/$name-client.out" 2>"$tmp/$name-client.err" &
    client=$!
    pids+=("$client")
    local deadline=$((SECONDS + 600))
    until [[ -s $ready ]]; do
        kill -0 "$client" 2>/dev/null || { cat "$tmp/$name-client.err" >&2; die "$name: client failed"; }
        ((SECONDS < deadline)) || die "$name: $count WebSockets not open after 600 s"
        sleep 0.5
    done
    at=$(rss_kib "$pid") at_anon=$(anon_kib "$pid")
    printf '%-11s %d WebSockets open; open files: proxy %d, client %d, app %d; RSS %d -> %d KiB (%s KiB each), virtual %s KiB each\n' \
        "$name" "$count" "$(fds "$pid")" "$(fds "$client")" "$(fds "${pid_of[app]}")" "$before" "$at" \
        "$(per_ws "$at" "$before")" "$(per_ws "$(vm_kib "$pid")" "$before_vm")"
    [[ -f /proc/$pid/smaps_rollup ]] && cp "/proc/$pid/smaps_rollup" "$tmp/$name-smaps_rollup.txt"
    sleep "$hold"
    after=$(rss_kib "$pid") after_anon=$(anon_kib "$pid")
    touch "$stop"
    local status=0
    wait "$client" || status=$?
    out=$(cat "$tmp/$name-client.out")
    # The larger of the two samples: with all open, and after the hold.
    ((after >= at)) || after=$at after_anon=$at_anon
    results+=("$name $before $after")
    printf '%-11s RSS %7d KiB -> %7d KiB after %d s: %5.1f KiB per WebSocket (anonymous %.1f); %s\n' \
        "$name" "$before" "$after" "$hold" "$(per_ws "$after" "$before")" \
        "$(per_ws "$after_anon" "$before_anon")" "$out"
    if ((status != 0)) || [[ -z $out ]]; then
        cat "$tmp/$name-client.err" >&2
        echo "websockets-idle: $name: not all $count WebSockets stayed open (client exit $status)" >&2
        failures=$((failures + 1))
    fi
}

for t in "${want[@]}"; do
    case $t in
    edgegate)
        ((!tls)) || die "--tls is for edgegate-h2 (the HTTP/1.1 legs are plain)"
        start_edgegate
        measure edgegate "$port" "${pid_of[edgegate]}"
        ;;
    edgegate-h2)
        start_edgegate
        opts=(--h2 --connections "$connections")
        ((!tls)) || opts+=(--tls-ca "$tmp/cert.pem")
        measure edgegate-h2 "$port" "${pid_of[edgegate]}" "${opts[@]}"
        ;;
    nginx)
        port=$(free_port)
        # worker_connections above the open files: with fewer than 1/16 of them free nginx
        # closes the ones it counts as reusable, such as new ones still waiting for their request.
        cat >"$tmp/nginx.conf" <<NGINX
worker_processes 1;
worker_rlimit_nofile $need;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections $((need * 2)); }
http {
  access_log off;
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://127.0.0.1:$app_port;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 3600s;
    }
  }
}
NGINX
        start nginx 0 nginx -c "$tmp/nginx.conf"
        wait_ready nginx test -s "$tmp/nginx.pid"
        wait_ready nginx pgrep -P "$(cat "$tmp/nginx.pid")"
        worker=$(pgrep -P "$(cat "$tmp/nginx.pid")" | head -1)
        [[ -n $worker ]] || die "nginx: no worker process"
        measure nginx "$port" "$worker"
        ;;
    esac
done

# edgegate / nginx, for every edgegate leg run beside nginx
declare -A delta
for r in "${results[@]}"; do
    read -r n b a <<<"$r"
    delta[$n]=$((a - b))
done
if [[ -n ${delta[nginx]:-} ]]; then
    for n in edgegate edgegate-h2; do
        [[ -z ${delta[$n]:-} ]] ||
            printf 'RSS per WebSocket, %s / nginx: %.2f\n' "$n" "$(awk -v e="${delta[$n]}" -v g="${delta[nginx]}" 'BEGIN{print e/g}')"
    done
fi
((failures == 0)) || die "$failures target(s) did not keep all $count WebSockets open"
