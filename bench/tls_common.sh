# Shared by h2-tls.sh and tls-handshakes.sh: one ECDSA P-256 certificate, the static backend, the
# dev control plane, and edgegate, nginx and HAProxy serving TLS with it, each proxying the same
# preview request to the backend the way http1-keepalive.sh does over plain HTTP.
#
# Source it after lib.sh (and bench_setup), with set: proxy_cpu, load_cpu, body_size, targets
# (comma-separated subset of edgegate,nginx,haproxy), target_list (the same as an array),
# edgegate, control_plane, nginx_upstream_keepalive, and die().
# Optional: proxy_wrapper (an array put before each proxy's command, e.g. valgrind; NAME in it
# is replaced by the target's name), ready_timeout (seconds, default 15, lib.sh's wait_ready),
# nginx_main_extra (lines for nginx.conf's main context).
# It sets: url_of[target], proc_of[target], host_header, port_backend, port_metrics, the cert in
# $tmp/tls, edgegate_version, and tls_start_all starts whatever `targets` names.
# shellcheck shell=bash disable=SC2154 # the variables above come from the sourcing script

# shellcheck disable=SC2034 # port_ssh: for start_edgegate
read -r port_backend port_nginx port_nginx_status port_haproxy port_edge port_ssh port_cp \
    port_metrics < <(free_ports 8)
new_sandbox

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
write_backend "$body_size" "$port_backend"

# --- nginx: listen ssl http2, HTTP/1.1 keep-alive upstream -------------------------------------
# The stub_status server on a plain port counts the TLS server's accepted connections (one
# worker, one counter): that is how tls-handshakes.sh checks one connection per request.
write_nginx_proxy "$port_nginx" "$nginx_upstream_keepalive" "ssl http2" "$(cat <<EOF
        ssl_certificate $tmp/tls/cert.pem;
        ssl_certificate_key $tmp/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers $tls12_ciphers;
        ssl_prefer_server_ciphers off;
        ssl_session_cache shared:bench:10m;
        ssl_session_tickets on;
        http2_max_concurrent_streams 128;
EOF
)
" "$(cat <<EOF
    server {
        listen 127.0.0.1:$port_nginx_status;
        location = /__bench_status { stub_status; }
    }
EOF
)
"

# --- HAProxy: bind ssl alpn h2,http/1.1, http-reuse always --------------------------------------
write_haproxy "$port_haproxy" https "ssl crt $tmp/tls/haproxy.pem alpn h2,http/1.1" "$(cat <<EOF
    ssl-default-bind-options ssl-min-ver TLSv1.2
    ssl-default-bind-ciphers $tls12_ciphers
EOF
)
"

# --- the dev control plane's fixture: one public sandbox whose runner is the backend ----------
write_fixture

declare -A url_of proc_of=([nginx]=nginx [haproxy]=haproxy [edgegate]=edgegate)
url_of[nginx]="https://127.0.0.1:$port_nginx/"
url_of[haproxy]="https://127.0.0.1:$port_haproxy/"
url_of[edgegate]="https://127.0.0.1:$port_edge/"
edgegate_version=

# curl over TLS (any certificate), HTTP/2 unless told otherwise, with the preview Host.
tls_curl() { curl -ksS --max-time 5 -H "Host: $host_header" "$@"; }

wrapped() { # TARGET: the proxy_wrapper words for TARGET
    local w
    for w in ${proxy_wrapper[@]+"${proxy_wrapper[@]}"}; do printf '%s\n' "${w//NAME/$1}"; done
}

tls_start_all() {
    local -a wrap
    start_backend "$load_cpu" "$port_backend"
    if wants nginx; then
        mapfile -t wrap < <(wrapped nginx)
        start nginx "$proxy_cpu" "${wrap[@]}" nginx -p "$tmp" -e "$tmp/nginx-error.log" -c "$tmp/nginx.conf"
        wait_ready nginx tls_curl -f "${url_of[nginx]}"
    fi
    if wants haproxy; then
        mapfile -t wrap < <(wrapped haproxy)
        start haproxy "$proxy_cpu" "${wrap[@]}" haproxy -db -f "$tmp/haproxy.cfg"
        wait_ready haproxy tls_curl -f "${url_of[haproxy]}"
    fi
    if wants edgegate; then
        start_control_plane "$load_cpu" "$tmp/fixture.json" "$port_cp"
        # METRICS_PORT only for the TLS handshake counters (the counters exist either way).
        mapfile -t wrap < <(wrapped edgegate)
        start_edgegate "http://127.0.0.1:$port_cp/api" ENABLE_TLS=true \
            TLS_CERT_FILE="$tmp/tls/cert.pem" TLS_KEY_FILE="$tmp/tls/key.pem" \
            METRICS_PORT="$port_metrics" -- ${wrap[@]+"${wrap[@]}"}
        wait_ready edgegate curl -kfsS --max-time 5 -o "$tmp/health.json" "${url_of[edgegate]}health"
        edgegate_version=$(version_of_health "$tmp/health.json")
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

# machine_facts FILE: what docs/benchmarks.md records about the machine and the versions.
machine_facts() {
    machine_facts_json "$1" "${edgegate_version:-not measured}" nginx="nginx -v" \
        haproxy="haproxy -v" h2load="h2load --version" openssl="openssl version"
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

# tls_report NAME TITLE COMMAND LOAD PINNING: the summary of the runs in $tmp/runs.jsonl, with
# the machine's facts and the run's description (table on stdout, JSON and Markdown as
# $out_dir/NAME-<time>.json and .md); exits with tls_report.py's status.
tls_report() {
    local stamp status=0
    mkdir -p "$out_dir"
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    machine_facts "$tmp/facts.json"
    python3 - "$tmp/facts.json" "$tmp/meta.json" "$2" "$stamp" "$3" "$4" "$5" "$body_size" \
        "$idle_before" <<'EOF'
import json, sys
facts, out, title, date, command, load, pinning, body_bytes, idle = sys.argv[1:]
meta = json.load(open(facts))
meta.update({"title": title, "date": date, "command": command, "load": load, "pinning": pinning,
             "body_bytes": int(body_bytes), "idle_before_run": idle})
json.dump(meta, open(out, "w"), indent=2)
EOF
    echo
    python3 "$here/tls_report.py" report --runs "$tmp/runs.jsonl" --meta "$tmp/meta.json" \
        --max-noise "$max_noise" --json "$out_dir/$1-$stamp.json" \
        --markdown "$out_dir/$1-$stamp.md" || status=$?
    echo
    echo "summary: $out_dir/$1-$stamp.json and .md"
    exit "$status"
}
