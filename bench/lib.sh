# Shared by the bench scripts: a temp dir, background processes pinned to a CPU and stopped on
# exit, readiness polling, CPU accounting; and the pieces of the proxy benchmarks' set-up (option
# parsing, the backend nginx, the dev control plane's fixture, edgegate, the machine's facts).
#
# Sourced after setting `bench_name` (names the temp dir) and `keep_tmp` (1 keeps configs and
# logs after a successful run), it sets the temp dir up at once. Sourced without `bench_name`,
# it only defines its functions: call `bench_setup NAME` later (after option parsing, say).
# shellcheck shell=bash disable=SC2154 # bench_name, keep_tmp and the like come from the sourcing script

# --- process bookkeeping ------------------------------------------------------------------
# bench_setup NAME: makes $tmp, installs the traps that stop every started process on exit.
bench_setup() {
    bench_name=$1
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/edgegate-${bench_name}.XXXXXX")
    chmod 755 "$tmp" # nginx workers started by root run as nobody and read from here
    pids=()
    declare -gA pid_of log_of
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local status=$? pid deadline
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + 5))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null; do
            if ((SECONDS >= deadline)); then kill -KILL "$pid" 2>/dev/null || true; break; fi
            sleep 0.05
        done
    done
    wait 2>/dev/null || true
    if ((status == 0 && !keep_tmp)); then
        rm -rf "$tmp"
    else
        echo "configs and logs kept in $tmp" >&2
    fi
    exit "$status"
}

# start NAME CPU CMD...: runs CMD pinned to CPU in the background, output to $tmp/NAME.log.
start() {
    local name=$1 cpu=$2
    shift 2
    log_of[$name]="$tmp/$name.log"
    taskset -c "$cpu" "$@" >"${log_of[$name]}" 2>&1 &
    pid_of[$name]=$!
    pids+=($!)
}

failed() { # NAME MESSAGE: report a process that did not come up, with its log
    echo "--- ${log_of[$1]} (last lines)" >&2
    tail -n 20 "${log_of[$1]}" >&2 || true
    die "$1: $2"
}

# wait_ready NAME CMD...: polls CMD until it succeeds, for at most `ready_timeout` seconds
# (default 15; a proxy under valgrind on a busy machine needs more), while NAME lives.
wait_ready() {
    local name=$1 deadline=$((SECONDS + ${ready_timeout:-15}))
    shift
    until "$@" >/dev/null 2>&1; do
        kill -0 "${pid_of[$name]}" 2>/dev/null || failed "$name" "exited during start-up"
        ((SECONDS < deadline)) || failed "$name" "not ready after ${ready_timeout:-15} s"
        sleep 0.1
    done
}

# Sum of user+system CPU ticks of a process and its children (nginx's worker is a child).
cpu_ticks() {
    local pid total=0 ticks
    for pid in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
        ticks=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}') || continue
        total=$((total + ${ticks:-0}))
    done
    echo "$total"
}

# "busy total" ticks of one CPU from /proc/stat: busy = user+nice+system+steal. irq and softirq
# time is left out because no process is charged for it.
cpu_busy_ticks() {
    awk -v cpu="cpu$1" '$1 == cpu { print $2 + $3 + $4 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}
busy_percent() { # BEFORE AFTER, each "busy total"
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
        printf "%.1f", 100 * (y[1] - x[1]) / (y[2] - x[2] > 0 ? y[2] - x[2] : 1) }'
}

# Idle share of the two CPUs over one second, e.g. "cpu0=99% cpu1=97%". Another process busy on
# them (a compiler, say) skews every number, so this is printed and kept in the summary.
cpu_idle() {
    local p0 l0
    p0=$(cpu_busy_ticks "$proxy_cpu")
    l0=$(cpu_busy_ticks "$load_cpu")
    sleep 1
    awk -v p="$(busy_percent "$p0" "$(cpu_busy_ticks "$proxy_cpu")")" \
        -v l="$(busy_percent "$l0" "$(cpu_busy_ticks "$load_cpu")")" \
        -v pc="$proxy_cpu" -v lc="$load_cpu" \
        'BEGIN { printf "cpu%s=%.0f%% cpu%s=%.0f%%", pc, 100 - p, lc, 100 - l }'
}

# CPU ticks (user+system) of this shell's reaped children: after a load generator ran in the
# foreground, they include its ticks.
children_ticks() { sed 's/.*) //' "/proc/$$/stat" | awk '{ print $14 + $15 }'; }

# --- options ------------------------------------------------------------------------------
# bench_defaults: `root`, the checkout; PATH with /usr/sbin (nginx, haproxy); and the defaults
# of the options every proxy benchmark has: the proxy on CPU 0, the load on CPU 1,
# build/edgegate, the dev control plane of tests/support, summaries into build/bench, the temp
# dir removed after a clean run.
# shellcheck disable=SC2034 # set for the sourcing script
bench_defaults() {
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    PATH="$PATH:/usr/sbin:/sbin"
    proxy_cpu=0
    load_cpu=1
    edgegate="$root/build/edgegate"
    control_plane="$root/tests/support/dev_control_plane.py"
    out_dir="$root/build/bench"
    keep_tmp=0
}

# usage_common LOAD: the help lines of the options parse_options knows in every script; LOAD
# names what runs on the load CPU besides the backend and the control plane.
usage_common() {
    cat <<EOF
  --edgegate PATH      edgegate binary (default build/edgegate)
  --control-plane PATH dev control plane (default tests/support/dev_control_plane.py)
  --proxy-cpu N        CPU for the proxy under test (default $proxy_cpu)
  --load-cpu N         CPU for $1, the backend and the control plane (default $load_cpu)
  --out DIR            where the JSON and Markdown summaries go (default build/bench)
  --keep-tmp           keep the generated configs and logs
EOF
}

# parse_options "NAME..." "$@": the command line of a bench script. Each NAME is an option that
# takes a value, --NAME setting the variable NAME with '-' as '_' (NAME:VAR sets VAR);
# --keep-tmp sets keep_tmp=1; -h/--help prints usage() and exits. Anything else: usage on
# stderr and die().
parse_options() {
    local -A var_of=()
    local spec
    for spec in $1; do
        if [[ $spec == *:* ]]; then var_of[--${spec%%:*}]=${spec#*:}; else var_of[--$spec]=${spec//-/_}; fi
    done
    shift
    while (($#)); do
        case $1 in
            --keep-tmp) keep_tmp=1; shift; continue ;;
            -h|--help) usage; exit 0 ;;
        esac
        (($# >= 2)) || die "$1: unknown option or missing value (see --help)"
        [[ -n ${var_of[$1]:-} ]] || { usage >&2; die "unknown option: $1"; }
        printf -v "${var_of[$1]}" '%s' "$2"
        shift 2
    done
}

# whole_numbers VAR...: dies unless each VAR holds a whole number.
whole_numbers() {
    local n
    for n; do
        [[ ${!n} =~ ^[0-9]+$ ]] || die "--${n//_/-} must be a whole number, got '${!n}'"
    done
}

# only_known WHAT PATTERN ITEM...: dies ("unknown WHAT 'ITEM'") unless every ITEM matches the
# extended regex PATTERN as a whole.
only_known() {
    local what=$1 pattern=$2 item
    shift 2
    for item; do
        [[ $item =~ ^($pattern)$ ]] || die "unknown $what '$item'"
    done
}

wants() { [[ ",$targets," == *",$1,"* ]]; } # TARGET: is it in --targets?

# require_tools "APT PACKAGES" TOOL...: dies naming every missing TOOL (haproxy only when
# --targets has it) and the Debian 12 packages that bring them. Nothing is installed here.
require_tools() {
    local packages=$1 tool missing=()
    shift
    for tool; do
        [[ $tool != haproxy ]] || wants haproxy || continue
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) || die "missing: ${missing[*]}. On Debian 12: apt-get install $packages"
}

# require_edgegate HINT [CONTROL_PLANE_HINT]: when --targets has edgegate, dies unless $edgegate
# is executable ("no edgegate binary at ...: HINT") and $control_plane exists.
require_edgegate() {
    wants edgegate || return 0
    [[ -x $edgegate ]] || die "no edgegate binary at $edgegate: $1"
    [[ -f $control_plane ]] || die "no dev control plane at $control_plane${2:+: $2}"
}

check_cpus() { # dies unless processes can be pinned to $proxy_cpu and $load_cpu
    local cpu
    for cpu in "$proxy_cpu" "$load_cpu"; do
        taskset -c "$cpu" true 2>/dev/null || die "cannot pin to CPU $cpu (this machine has $(nproc) CPUs): pass --proxy-cpu/--load-cpu"
    done
}

# --- the stack: backend nginx, dev control plane, edgegate --------------------------------------
free_ports() { # N: N distinct free TCP ports on 127.0.0.1, on one line
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# warn_if_busy IDLE: IDLE as cpu_idle prints it; a warning when a CPU is less than 90 % idle.
warn_if_busy() {
    if awk -v s="$1" 'BEGIN { n = split(s, f, /[= %]+/); for (i = 2; i <= n; i += 2) if (f[i] != "" && f[i] + 0 < 90) exit 0; exit 1 }'; then
        echo "warning: the CPUs are busy with other work; the numbers will be low and noisy" >&2
    fi
}

# new_sandbox: one sandbox of our own (fixture written by write_fixture): sets sandbox_id,
# preview_port, host_header, runner_key, runner_path, proxy_api_key and ssh_api_key.
# shellcheck disable=SC2034 # set for the sourcing script
new_sandbox() {
    sandbox_id=$(python3 -c 'import uuid; print(uuid.uuid4())')
    preview_port=8080
    host_header="$preview_port-$sandbox_id.proxy.localhost"
    runner_key=runner-secret-1
    runner_path="/sandboxes/$sandbox_id/toolbox/proxy/$preview_port"
    proxy_api_key="dtn_$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
    ssh_api_key="dtn_$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
}

nginx_common() { # PID_NAME: an nginx.conf's main context, one worker in the foreground
    cat <<EOF
worker_processes 1;
daemon off;
pid $tmp/$1.pid;
error_log $tmp/$1-error.log warn;
events { worker_connections 4096; }
EOF
}
nginx_http_common() { # an nginx.conf's http context: no access log, long keep-alive, temp dirs in $tmp
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

# write_backend BODY_SIZE PORT: $tmp/backend.conf, a backend nginx on PORT that answers every
# path with the same BODY_SIZE bytes (kept in $tmp/www/body, to compare answers with) and
# counts its connections at /__bench_status. `return` serves the body from memory; nginx's
# config parser caps a token at 4 KiB, so larger bodies come from a cached static file.
write_backend() {
    local location
    mkdir -p "$tmp/www" "$tmp/nginx-temp"
    head -c "$1" /dev/zero | tr '\0' x >"$tmp/www/body"
    chmod -R a+rX "$tmp/www"
    if (($1 <= 4000)); then
        location="return 200 \"$(cat "$tmp/www/body")\";"
    else
        location="root $tmp/www; rewrite ^ /body break; open_file_cache max=16 inactive=1h; open_file_cache_valid 1h;"
    fi
    {
        nginx_common backend
        echo "http {"
        nginx_http_common
        cat <<EOF
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$2;
        location / { $location }
        location = /__bench_status { stub_status; }
    }
}
EOF
    } >"$tmp/backend.conf"
}

# start_backend CPU PORT: the backend written by write_backend, up.
start_backend() {
    start backend "$1" nginx -p "$tmp" -e "$tmp/backend-error.log" -c "$tmp/backend.conf"
    wait_ready backend curl -fsS "http://127.0.0.1:$2/"
}

# write_nginx_proxy PORT KEEPALIVE [LISTEN_OPTIONS [SERVER_LINES [MORE]]]: $tmp/nginx.conf, nginx
# doing a preview proxy's work per request: the path rewritten to the runner's
# /sandboxes/{id}/toolbox/proxy/{port}/... form, Host, X-Forwarded-{For,Host,Proto} and
# X-Daytona-Authorization set, KEEPALIVE idle upstream connections kept to the backend on
# $port_backend. LISTEN_OPTIONS follow the address (e.g. "ssl http2"), SERVER_LINES go into the
# server block, MORE into the http block; `nginx_main_extra` into the main context.
write_nginx_proxy() {
    {
        nginx_common nginx
        [[ -z ${nginx_main_extra:-} ]] || printf '%s\n' "$nginx_main_extra"
        echo "http {"
        nginx_http_common
        cat <<EOF
    upstream runner {
        server 127.0.0.1:$port_backend;
        keepalive $2;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$1${3:+ $3};
${4:-}        location / {
            proxy_pass http://runner$runner_path/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Daytona-Authorization "Bearer $runner_key";
        }
    }
${5:-}}
EOF
    } >"$tmp/nginx.conf"
}

# write_haproxy PORT PROTO [BIND_OPTIONS [GLOBAL_LINES]]: $tmp/haproxy.cfg, HAProxy doing the
# same work as write_nginx_proxy's nginx (X-Forwarded-Proto PROTO), reusing backend connections.
write_haproxy() {
    cat >"$tmp/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
${4:-}
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    option forwardfor
    http-reuse always

frontend edge
    bind 127.0.0.1:$1${3:+ $3}
    default_backend runner

backend runner
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Proto $2
    http-request set-header X-Daytona-Authorization "Bearer $runner_key"
    http-request set-header Host 127.0.0.1:$port_backend
    http-request set-path $runner_path%[path]
    server backend 127.0.0.1:$port_backend
EOF
}

# write_fixture: $tmp/fixture.json for the dev control plane: new_sandbox's sandbox, public, on
# a runner whose URLs are the backend's.
write_fixture() {
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
}

# start_control_plane CPU FIXTURE PORT [ARG...]: the dev control plane ($control_plane), up.
start_control_plane() {
    local cpu=$1 fixture_file=$2 port=$3
    shift 3
    start control-plane "$cpu" python3 "$control_plane" --fixture "$fixture_file" --port "$port" \
        --quiet "$@"
    wait_ready control-plane grep -q "listening on" "${log_of[control-plane]}"
}

# start_edgegate API_URL [VAR=VALUE...] [-- WRAPPER...]: $edgegate on $proxy_cpu with an empty
# environment but PATH, HOME and the given variables: one worker, LOG_LEVEL=warn, the preview
# proxy on $port_edge (SSH on $port_ssh), $proxy_api_key, the Daytona API at API_URL. WRAPPER
# (valgrind, say) goes before the binary.
start_edgegate() {
    local api=$1 vars=()
    shift
    while (($#)) && [[ $1 != -- ]]; do vars+=("$1"); shift; done
    (($# == 0)) || shift
    start edgegate "$proxy_cpu" env -i PATH="$PATH" HOME="$tmp" \
        BIND_ADDRESS=127.0.0.1 PROXY_PORT="$port_edge" SSH_GATEWAY_PORT="$port_ssh" \
        PROXY_API_KEY="$proxy_api_key" DAYTONA_API_URL="$api" ${vars[@]+"${vars[@]}"} \
        EDGEGATE_WORKERS=1 LOG_LEVEL=warn "$@" "$edgegate"
}

version_of_health() { # FILE: the version in a saved /health answer ("" if none)
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("version",""))' "$1" 2>/dev/null || true
}

# Connections the backend has accepted so far; the difference over a measurement shows whether
# a proxy reuses its upstream connections (the status request itself counts one).
backend_accepts() {
    curl -fsS "http://127.0.0.1:$port_backend/__bench_status" | awk 'NR == 3 { print $1 }'
}

# Ticks of the processes of ours that run on the load CPU besides the load generator.
load_procs_ticks() {
    local total=0 name
    for name in backend control-plane; do
        [[ -n ${pid_of[$name]:-} ]] && total=$((total + $(cpu_ticks "${pid_of[$name]}")))
    done
    echo "$total"
}

# machine_facts_json FILE EDGEGATE_VERSION [NAME="COMMAND ARGS"...]: the machine (CPU model,
# count, kernel), the load average, and the versions: edgegate's as given, then the first line
# each COMMAND prints, as JSON: {"machine": ..., "load_average": [...], "versions": {...}}.
machine_facts_json() {
    python3 - "$@" <<'EOF'
import json, os, platform, subprocess, sys

def first_line(cmd):
    try:
        r = subprocess.run(cmd.split(), capture_output=True, text=True, timeout=10)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
            if l.startswith("model name")), "unknown CPU")
facts = {
    "machine": f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}",
    "load_average": open("/proc/loadavg").read().split()[:3],
    "versions": {"edgegate": sys.argv[2],
                 **{name: first_line(cmd) for name, cmd in (a.split("=", 1) for a in sys.argv[3:])}},
}
with open(sys.argv[1], "w") as f:
    json.dump(facts, f, indent=2)
EOF
}

if [[ -n ${bench_name:-} ]]; then
    bench_setup "$bench_name"
fi
