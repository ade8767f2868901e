#!/usr/bin/env bash
# Memory of idle WebSockets held through a proxy: edgegate next to nginx, in one run.
#
#   ws_idle_client.py ──N WebSockets──► [proxy, 1 worker] ──► WebSocket app (python3-websockets)
#
# For each proxy: RSS before any connection, RSS with N idle WebSockets open (both the client
# side and the runner side of each live in the proxy), then a check that every WebSocket still
# echoes. Prints RSS per proxied WebSocket and the ratio. See bench/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
PATH="$PATH:/usr/sbin:/sbin"

count=5000
targets=edgegate,nginx
edgegate="$root/build/edgegate"
keep_tmp=0

usage() {
    cat <<USAGE
usage: $0 [--count N] [--targets edgegate,nginx] [--edgegate PATH] [--keep-tmp]
USAGE
}
die() { printf 'websockets-idle: %s\n' "$*" >&2; exit 1; }
while (($#)); do
    case $1 in
        --count) count=$2; shift 2 ;;
        --targets) targets=$2; shift 2 ;;
        --edgegate) edgegate=$2; shift 2 ;;
        --keep-tmp) keep_tmp=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
[[ -x $edgegate ]] || die "$edgegate: not built (scripts/build.sh)"
/usr/bin/python3 -c 'import websockets' 2>/dev/null || die "needs python3-websockets"
command -v nginx >/dev/null || die "needs nginx"

bench_name=ws-idle
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

# Each connection costs the proxy two descriptors and the app and the client one each.
need=$((count * 2 + 1024))
hard=$(ulimit -Hn)
[[ $hard == unlimited ]] || ((hard >= need)) ||
    die "$count WebSockets need $need open files in the proxy; the hard limit here is $hard (use --count $(((hard - 1024) / 2)))"
ulimit -n "$need"

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }

app_port=$(free_port)
start app 1 /usr/bin/python3 "$root/tests/support/ws_app.py" --port "$app_port"
wait_ready app grep -q listening "${log_of[app]}"

fixture="$root/tests/support/fixtures/demo.json"
key=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['proxyApiKey'])" "$fixture")
sid=$(/usr/bin/python3 -c "import json,sys; print([s['id'] for s in json.load(open(sys.argv[1]))['sandboxes'] if s.get('public')][0])" "$fixture")
runner=$(/usr/bin/python3 -c "import json,sys; print([s['runnerId'] for s in json.load(open(sys.argv[1]))['sandboxes'] if s.get('public')][0])" "$fixture")
cp_port=$(free_port)
start control-plane 1 /usr/bin/python3 "$root/tests/support/dev_control_plane.py" --fixture "$fixture" \
    --runner-url "$runner=http://127.0.0.1:$app_port" --port "$cp_port" --quiet
wait_ready control-plane curl -sf "http://127.0.0.1:$cp_port/_dev/calls"

results=()
measure() { # NAME PORT PID
    local name=$1 port=$2 pid=$3 before after out ready="$tmp/$1.ready" stop="$tmp/$1.stop"
    before=$(rss_kib "$pid")
    /usr/bin/python3 "$here/ws_idle_client.py" --port "$port" --count "$count" \
        --host-header "$app_port-$sid.proxy.localhost" --ready-file "$ready" --stop-file "$stop" \
        >"$tmp/$name-client.out" 2>"$tmp/$name-client.err" &
    local client=$!
    local deadline=$((SECONDS + 600))
    until [[ -s $ready ]]; do
        kill -0 "$client" 2>/dev/null || { cat "$tmp/$name-client.err" >&2; die "$name: client failed"; }
        ((SECONDS < deadline)) || die "$name: $count WebSockets not open after 600 s"
        sleep 0.5
    done
    after=$(rss_kib "$pid")
    touch "$stop"
    wait "$client" || { cat "$tmp/$name-client.err" >&2; die "$name: client failed"; }
    out=$(cat "$tmp/$name-client.out")
    results+=("$name $before $after $out")
    printf '%-9s RSS %7d KiB -> %7d KiB with %d WebSockets: %5.1f KiB each; %s\n' "$name" \
        "$before" "$after" "$count" "$(awk -v a="$after" -v b="$before" -v n="$count" 'BEGIN{print (a-b)/n}')" "$out"
}

IFS=, read -ra want <<<"$targets"
for t in "${want[@]}"; do
    case $t in
    edgegate)
        port=$(free_port)
        PROXY_PORT=$port BIND_ADDRESS=127.0.0.1 PROXY_API_KEY=$key \
            DAYTONA_API_URL="http://127.0.0.1:$cp_port/api" EDGEGATE_WORKERS=1 LOG_LEVEL=warn \
            SSH_GATEWAY_PORT=$(free_port) start edgegate 0 "$edgegate"
        wait_ready edgegate curl -sf "http://127.0.0.1:$port/health"
        # One request first, so the route is cached and the pools exist before the baseline.
        curl -sf -o /dev/null -H "Host: $app_port-$sid.proxy.localhost" "http://127.0.0.1:$port/x" || true
        measure edgegate "$port" "${pid_of[edgegate]}"
        ;;
    nginx)
        port=$(free_port)
        cat >"$tmp/nginx.conf" <<NGINX
worker_processes 1;
worker_rlimit_nofile $need;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections $need; }
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
    *) die "unknown target $t" ;;
    esac
done

if ((${#results[@]} == 2)); then
    read -r _ eb ea _ <<<"${results[0]}"
    read -r _ nb na _ <<<"${results[1]}"
    printf 'RSS per WebSocket, edgegate / nginx: %.2f\n' \
        "$(awk -v ea="$ea" -v eb="$eb" -v na="$na" -v nb="$nb" 'BEGIN{print (ea-eb)/(na-nb)}')"
fi
