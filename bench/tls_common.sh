# Shared by h2-tls.sh and tls-handshakes.sh: one ECDSA P-256 certificate, the static backend, the
# dev control plane, and edgegate, nginx and HAProxy serving TLS with it, each proxying the same
# preview request to the backend the way http1-keepalive.sh does over plain HTTP.
#
# Source it after lib.sh, with set: proxy_cpu, load_cpu, body_size, targets (comma-separated
# subset of edgegate,nginx,haproxy), edgegate, control_plane, nginx_upstream_keepalive, and die().
# Optional: proxy_wrapper (an array put before each proxy's command, e.g. valgrind; NAME in it
# is replaced by the target's name), ready_timeout (seconds, default 15), nginx_main_extra
# (lines for nginx.conf's main context).
# It sets: url_of[target], proc_of[target], host_header, port_backend, port_metrics, the cert in
# $tmp/tls, edgegate_version, and tls_start_all starts whatever `targets` names.
# shellcheck shell=bash disable=SC2154 # the variables above come from the sourcing script

wants() { [[ ",$targets," == *",$1,"* ]]; }

read -r port_backend port_nginx port_nginx_status port_haproxy port_edge port_ssh port_cp \
    port_metrics < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(8)]
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

# --- one certificate for every proxy: ECDSA P-256, self-signed for *.proxy.localhost --------
mkdir -p "$tmp/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$tmp/tls/key.pem" -out "$tmp/tls/cert.pem" -subj "/CN=proxy.localhost" \
    -addext "subjectAltName=DNS:proxy.localhost,DNS:*.proxy.localhost" >/dev/null 2>&1 ||
    die "openssl could not make the test certificate"
cat "$tmp/tls/cert.pem" "$tmp/tls/key.pem" >"$tmp/tls/haproxy.pem" # HAProxy wants both in one
chmod -R a+rX "$tmp/tls"
# edgegate's TLS 1.2 suites (proxy/tls.cpp: Mozilla "intermediate"); TLS 1.3 uses OpenSSL's
# defaults everywhere.
tls12_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

# --- backend: the same static nginx as http1-keepalive.sh ------------------------------------
mkdir -p "$tmp/www" "$tmp/nginx-temp"
head -c "$body_size" /dev/zero | tr '\0' x >"$tmp/www/body"
chmod -R a+rX "$tmp/www"
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

# --- nginx: listen ssl http2, HTTP/1.1 keep-alive upstream -------------------------------------
# The stub_status server on a plain port counts the TLS server's accepted connections (one
# worker, one counter): that is how tls-handshakes.sh checks one connection per request.
{
    nginx_common nginx
    printf '%s\n' "${nginx_main_extra:-}"
    echo "http {"
    nginx_http_common
    cat <<EOF
    upstream runner {
        server 127.0.0.1:$port_backend;
        keepalive $nginx_upstream_keepalive;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$port_nginx ssl http2;
        ssl_certificate $tmp/tls/cert.pem;
        ssl_certificate_key $tmp/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers $tls12_ciphers;
        ssl_prefer_server_ciphers off;
        ssl_session_cache shared:bench:10m;
        ssl_session_tickets on;
        http2_max_concurrent_streams 128;
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
    server {
        listen 127.0.0.1:$port_nginx_status;
        location = /__bench_status { stub_status; }
    }
}
EOF
} >"$tmp/nginx.conf"

# --- HAProxy: bind ssl alpn h2,http/1.1, http-reuse always --------------------------------------
cat >"$tmp/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
    ssl-default-bind-options ssl-min-ver TLSv1.2
    ssl-default-bind-ciphers $tls12_ciphers

defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    option forwardfor
    http-reuse always

frontend edge
    bind 127.0.0.1:$port_haproxy ssl crt $tmp/tls/haproxy.pem alpn h2,http/1.1
    default_backend runner

backend runner
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Daytona-Authorization "Bearer $runner_key"
    http-request set-header Host 127.0.0.1:$port_backend
    http-request set-path $runner_path%[path]
    server backend 127.0.0.1:$port_backend
EOF

# --- the dev control plane's fixture: one public sandbox whose runner is the backend ----------
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

declare -A url_of proc_of=([nginx]=nginx [haproxy]=haproxy [edgegate]=edgegate)
url_of[nginx]="https://127.0.0.1:$port_nginx/"
url_of[haproxy]="https://127.0.0.1:$port_haproxy/"
url_of[edgegate]="https://127.0.0.1:$port_edge/"
edgegate_version=

# curl over TLS (any certificate), HTTP/2 unless told otherwise, with the preview Host.
tls_curl() { curl -ksS --max-time 5 -H "Host: $host_header" "$@"; }

# tls_wait_ready NAME CMD...: lib.sh's wait_ready with a longer deadline (a proxy under valgrind
# on a busy machine takes more than 15 s to start).
tls_wait_ready() {
    local name=$1 deadline=$((SECONDS + ${ready_timeout:-15}))
    shift
    until "$@" >/dev/null 2>&1; do
        kill -0 "${pid_of[$name]}" 2>/dev/null || failed "$name" "exited during start-up"
        ((SECONDS < deadline)) || failed "$name" "not ready after ${ready_timeout:-15} s"
        sleep 0.2
    done
}

wrapped() { # TARGET: the proxy_wrapper words for TARGET
    local w
    for w in ${proxy_wrapper[@]+"${proxy_wrapper[@]}"}; do printf '%s\n' "${w//NAME/$1}"; done
}

tls_start_all() {
    local -a wrap
    start backend "$load_cpu" nginx -p "$tmp" -e "$tmp/backend-error.log" -c "$tmp/backend.conf"
    wait_ready backend curl -fsS "http://127.0.0.1:$port_backend/"
    if wants nginx; then
        mapfile -t wrap < <(wrapped nginx)
        start nginx "$proxy_cpu" "${wrap[@]}" nginx -p "$tmp" -e "$tmp/nginx-error.log" -c "$tmp/nginx.conf"
        tls_wait_ready nginx tls_curl -f "${url_of[nginx]}"
    fi
    if wants haproxy; then
        mapfile -t wrap < <(wrapped haproxy)
        start haproxy "$proxy_cpu" "${wrap[@]}" haproxy -db -f "$tmp/haproxy.cfg"
        tls_wait_ready haproxy tls_curl -f "${url_of[haproxy]}"
    fi
    if wants edgegate; then
        start control-plane "$load_cpu" python3 "$control_plane" --fixture "$tmp/fixture.json" \
            --port "$port_cp" --quiet
        wait_ready control-plane grep -q "listening on" "${log_of[control-plane]}"
        # METRICS_PORT only for the TLS handshake counters (the counters exist either way).
        mapfile -t wrap < <(wrapped edgegate)
        start edgegate "$proxy_cpu" env -i PATH="$PATH" HOME="$tmp" \
            BIND_ADDRESS=127.0.0.1 PROXY_PORT="$port_edge" SSH_GATEWAY_PORT="$port_ssh" \
            PROXY_API_KEY="$proxy_api_key" DAYTONA_API_URL="http://127.0.0.1:$port_cp/api" \
            ENABLE_TLS=true TLS_CERT_FILE="$tmp/tls/cert.pem" TLS_KEY_FILE="$tmp/tls/key.pem" \
            METRICS_PORT="$port_metrics" EDGEGATE_WORKERS=1 LOG_LEVEL=warn "${wrap[@]}" "$edgegate"
        tls_wait_ready edgegate curl -kfsS --max-time 5 -o "$tmp/health.json" "${url_of[edgegate]}health"
        edgegate_version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("version",""))' "$tmp/health.json" 2>/dev/null || true)
    fi
    # Every target must answer the preview request, over h2 and over HTTP/1.1, with exactly the
    # backend's body: a fast error page must not pass for throughput.
    local t proto got
    for t in "${target_list[@]}"; do
        for proto in --http2 --http1.1; do
            got=$(tls_curl "$proto" -o "$tmp/check-$t.body" -w '%{http_code} %{http_version}' "${url_of[$t]}") ||
                die "$t: the preview request failed ($proto)"
            [[ $got == "200 2" && $proto == --http2 || $got == "200 1.1" && $proto == --http1.1 ]] ||
                die "$t: answered '$got' to the preview request ($proto), see $tmp"
            cmp -s "$tmp/check-$t.body" "$tmp/www/body" ||
                die "$t: the body is not the backend's ($proto), see $tmp/check-$t.body"
        done
    done
}

# Connections the backend has accepted so far (the status request itself counts one).
backend_accepts() {
    curl -fsS "http://127.0.0.1:$port_backend/__bench_status" | awk 'NR == 3 { print $1 }'
}

# Ticks of the processes of ours that run on the load CPU besides the client.
load_procs_ticks() {
    local total=0 name
    for name in backend control-plane; do
        [[ -n ${pid_of[$name]:-} ]] && total=$((total + $(cpu_ticks "${pid_of[$name]}")))
    done
    echo "$total"
}

# machine_facts FILE: what docs/benchmarks.md records about the machine and the versions.
machine_facts() {
    python3 - "$1" "${edgegate_version:-not measured}" <<'EOF'
import json, os, platform, subprocess, sys

def first_line(*cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
            if l.startswith("model name")), "unknown CPU")
facts = {
    "machine": f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}",
    "load_average": open("/proc/loadavg").read().split()[:3],
    "versions": {
        "edgegate": sys.argv[2],
        "nginx": first_line("nginx", "-v"),
        "haproxy": first_line("haproxy", "-v"),
        "h2load": first_line("h2load", "--version"),
        "openssl": first_line("openssl", "version"),
    },
}
with open(sys.argv[1], "w") as f:
    json.dump(facts, f, indent=2)
EOF
}

# measure TARGET ROUND KIND OUTFILE CMD...: runs the load generator CMD (pinned to the load CPU by
# the caller) with output to OUTFILE, and appends to $tmp/acct.jsonl what /proc says happened
# meanwhile: the proxy's CPU ticks, ours on the load CPU (backend, control plane, the client),
# both CPUs' busy ticks, the backend's new connections, the wall time. tls_report.py turns
# that and the client's output into a run and a noise figure.
measure() {
    local t=$1 round=$2 kind=$3 out=$4 proxy_pid
    shift 4
    proxy_pid=${pid_of[${proc_of[$t]}]}
    local a0 p0 l0 c0 pc0 lc0 w0 a1 p1 l1 c1 pc1 lc1 w1 rc=0
    a0=$(backend_accepts)
    p0=$(cpu_ticks "$proxy_pid")
    l0=$(load_procs_ticks)
    c0=$(children_ticks)
    pc0=$(cpu_busy_ticks "$proxy_cpu")
    lc0=$(cpu_busy_ticks "$load_cpu")
    w0=$(date +%s.%N)
    "$@" >"$out" 2>&1 || rc=$?
    w1=$(date +%s.%N)
    pc1=$(cpu_busy_ticks "$proxy_cpu")
    lc1=$(cpu_busy_ticks "$load_cpu")
    c1=$(children_ticks)
    l1=$(load_procs_ticks)
    p1=$(cpu_ticks "$proxy_pid")
    a1=$(backend_accepts)
    printf '{"target":"%s","round":%d,"kind":"%s","out":"%s","exit":%d,"wall_s":%s,"hz":%d,"proxy_ticks":%d,"load_ticks":%d,"proxy_core":"%s %s","load_core":"%s %s","backend_new_connections":%d}\n' \
        "$t" "$round" "$kind" "$out" "$rc" "$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.3f", b - a }')" \
        "$(getconf CLK_TCK)" "$((p1 - p0))" "$((l1 - l0 + c1 - c0))" "$pc0" "$pc1" "$lc0" "$lc1" \
        "$((a1 - a0 - 1))" >>"$tmp/acct.jsonl"
    return "$rc"
}
