# Shared by the bench scripts: a temp dir, background processes pinned to a CPU and stopped on
# exit, readiness polling, CPU accounting. Source it after setting `bench_name` (names the temp
# dir) and `keep_tmp` (1 keeps configs and logs after a successful run).
# shellcheck shell=bash disable=SC2154 # bench_name and keep_tmp come from the sourcing script

# --- process bookkeeping ------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/edgegate-${bench_name}.XXXXXX")
chmod 755 "$tmp" # nginx workers started by root run as nobody and read from here
pids=()
declare -A pid_of log_of

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
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

# wait_ready NAME CMD...: polls CMD until it succeeds, for at most 15 s, while NAME lives.
wait_ready() {
    local name=$1 deadline=$((SECONDS + 15))
    shift
    until "$@" >/dev/null 2>&1; do
        kill -0 "${pid_of[$name]}" 2>/dev/null || failed "$name" "exited during start-up"
        ((SECONDS < deadline)) || failed "$name" "not ready after 15 s"
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


children_ticks() { sed 's/.*) //' "/proc/$$/stat" | awk '{ print $14 + $15 }'; }
