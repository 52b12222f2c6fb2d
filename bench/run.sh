#!/usr/bin/env bash
# bench/run.sh: side-by-side benchmark of dohgate and dnsdist in front of Knot (issue 6).
#
# One command on a fresh Debian 12 machine: installs the tools if missing, generates the zone
# and query files, starts Knot, dnsdist and dohgate on 127.0.0.1 high ports, runs dnsperf
# (Do53 UDP, TCP) and h2load (DoH over HTTP/2, RFC 8484 GETs) against dnsdist and dohgate in
# alternation for ROUNDS rounds of DURATION seconds each, without and with a cache, plus Knot
# directly as the UDP ceiling; prints the medians and the dohgate/dnsdist ratios and writes
# them to bench/out/results.md. Traffic goes only to 127.0.0.1; every process started is
# killed by PID on exit; every load run and the whole script are bounded in time.
#
# Environment knobs (see bench/README.md):
#   ROUNDS=3 DURATION=10 MODES="udp tcp doh udp-cache tcp-cache doh-cache"
#     (also udp-cache-fw doh-cache-fw: the cache modes with a DNS Firewall of FW_DOMAINS=100000)
#   SERVERS="dnsdist dohgate" KNOT_MODES="udp" BASE_PORT=25300 OUT_DIR=bench/out
#   DNSPERF_CLIENTS=4 DNSPERF_OUTSTANDING=100 DNSPERF_EXTRA= H2_CLIENTS=4 H2_STREAMS=32
#   H2LOAD_EXTRA= NAMES=10000 QUERIES=20000 DOHGATE_BIN=target/release/dohgate
#   DOHGATE_BUILD=1 DOHGATE_ARGS= DOHGATE_LOG=warn DNSDIST_LISTENERS=1 DNSDIST_EXTRA_CONF=
#   KNOT_UDP_WORKERS=1 KNOT_TCP_WORKERS=1 TIME_LIMIT=(auto) BUILD_TIMEOUT=1800
#   SKIP_INSTALL=0 KEEP_TMP=0
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi

# The knobs given in the environment, for the command line shown in the report.
KNOBS=""
for v in ROUNDS DURATION MODES SERVERS KNOT_MODES BASE_PORT DNSPERF_CLIENTS DNSPERF_OUTSTANDING \
    DNSPERF_EXTRA H2_CLIENTS H2_STREAMS H2LOAD_EXTRA NAMES QUERIES DOHGATE_BIN DOHGATE_ARGS \
    DNSDIST_LISTENERS DNSDIST_EXTRA_CONF KNOT_UDP_WORKERS KNOT_TCP_WORKERS CACHE_ENTRIES FW_DOMAINS; do
    [[ -n ${!v+set} ]] && KNOBS+="$v=$(printf '%q' "${!v}") "
done
export DOHGATE_BENCH_KNOBS=${DOHGATE_BENCH_KNOBS:-$KNOBS}

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
MODES=${MODES:-udp tcp doh udp-cache tcp-cache doh-cache}
SERVERS=${SERVERS:-dnsdist dohgate}
KNOT_MODES=${KNOT_MODES-udp}
BASE_PORT=${BASE_PORT:-25300}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out}
DNSPERF_CLIENTS=${DNSPERF_CLIENTS:-4}
DNSPERF_OUTSTANDING=${DNSPERF_OUTSTANDING:-100}
H2_CLIENTS=${H2_CLIENTS:-4}
H2_STREAMS=${H2_STREAMS:-32}

for m in $MODES; do
    case $m in udp | tcp | doh | udp-cache | tcp-cache | doh-cache | udp-cache-fw | doh-cache-fw) ;;
    *) echo "unknown mode '$m'" >&2; exit 2 ;; esac
done
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || { echo "ROUNDS must be a positive integer" >&2; exit 2; }
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 ]] || { echo "DURATION must be a positive integer" >&2; exit 2; }

# ---------------------------------------------------------------- global time bound
if [[ -z ${DOHGATE_BENCH_BOUNDED:-} ]]; then
    n_modes=$(wc -w <<<"$MODES")
    n_servers=$(($(wc -w <<<"$SERVERS") + $(wc -w <<<"$KNOT_MODES")))
    limit=${TIME_LIMIT:-$((900 + ${BUILD_TIMEOUT:-1800} + n_modes * ROUNDS * n_servers * (DURATION + 20) + 300))}
    export DOHGATE_BENCH_BOUNDED=1
    echo "[bench] whole run bounded to ${limit} s (TIME_LIMIT)" >&2
    exec timeout --foreground -k 30 "$limit" bash "$0" "$@"
fi

# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"

PORT_AUTH=$((BASE_PORT + 1))
PORT_DD=$((BASE_PORT + 10))
PORT_DD_DOH=$((BASE_PORT + 11))
PORT_DG=$((BASE_PORT + 20))
PORT_DG_DOH=$((BASE_PORT + 21))
PORT_DG_ADMIN=$((BASE_PORT + 22))

need_tools
install_traps
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dohgate-bench.XXXXXX")

# Many sockets under load (and for dnsperf/h2load): raise the open-file limit.
nofile=${NOFILE:-65536}
hard=$(ulimit -Hn)
[[ $hard != unlimited && $hard -lt $nofile ]] && nofile=$hard
ulimit -n "$nofile" 2>/dev/null || true

check_ports "$PORT_AUTH" "$PORT_DD" "$PORT_DD_DOH" "$PORT_DG" "$PORT_DG_DOH" "$PORT_DG_ADMIN"

STAMP=$(date +%Y%m%d-%H%M%S)
RUN_OUT="$OUT_DIR/run-$STAMP"
mkdir -p "$RUN_OUT/raw"
RESULTS="$RUN_OUT/results.tsv"
printf 'mode\tserver\tround\tstatus\tqps\tsent\tcompleted\tlost\tp50_us\tp99_us\tavg_us\tcpu_s\trss_kib\tanswers\tnote\n' >"$RESULTS"

DATA="$WORK/data"
log "generating zone and queries in $DATA"
make_data "$DATA"
sed "s#^#https://127.0.0.1:$PORT_DD_DOH#" "$DATA/doh-paths.txt" >"$DATA/uris-dnsdist.txt"
sed "s#^#https://127.0.0.1:$PORT_DG_DOH#" "$DATA/doh-paths.txt" >"$DATA/uris-dohgate.txt"
N_URIS=$(wc -l <"$DATA/doh-paths.txt")
if [[ " $MODES " == *-fw\ * ]]; then # the firewall modes' rule group (none of it matches a query)
    python3 "$BENCH_DIR/lib/fwgen.py" "$DATA" --domains "${FW_DOMAINS:-100000}" || die "firewall list generation failed"
fi

want_server() { grep -qw -- "$1" <<<"$SERVERS"; }
declare -A SKIP=() # "mode server" -> reason (no runs)

if want_server dohgate; then
    ensure_dohgate
    [[ -n $DOHGATE_STATE ]] && log "dohgate: $DOHGATE_STATE"
    for m in $MODES; do
        reason=$(dohgate_mode_support "$m")
        if [[ -n $reason ]]; then
            SKIP["$m dohgate"]=$reason
            log "dohgate $m: $reason"
        fi
    done
fi

# ---------------------------------------------------------------- metadata for the report
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem_gib=$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
dg_version="not available"
if [[ -x $DOHGATE_BIN ]]; then
    dg_version="$(timeout 5 "$DOHGATE_BIN" --version 2>/dev/null | head -1 || true) (binary built $(date -r "$DOHGATE_BIN" '+%Y-%m-%d %H:%M'))"
    if [[ -d $REPO_DIR/crates && -n $(find "$REPO_DIR/crates" -name '*.rs' -newer "$DOHGATE_BIN" 2>/dev/null | head -1) ]]; then
        dg_version="$dg_version, OLDER than some sources in crates/: rebuild for current figures"
        log "WARNING: $DOHGATE_BIN is older than some sources in crates/"
    fi
fi
dg_cache_note="no-cache runs \`--no-cache\`"
if [[ -n $DOHGATE_HELP ]] && ! dohgate_has cache; then
    dg_cache_note="this dohgate has no cache (no flag about it in --help): it runs the no-cache modes as is"
fi
git_rev=unknown
if command -v git >/dev/null 2>&1 && git -C "$REPO_DIR" rev-parse --git-dir >/dev/null 2>&1; then
    git_rev=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$REPO_DIR" diff --quiet HEAD -- crates 2>/dev/null || git_rev="$git_rev (uncommitted changes in crates/ at run time)"
fi
{
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); command: \`${DOHGATE_BENCH_KNOBS}bench/run.sh\` (rounds $ROUNDS, $DURATION s per run, modes: $MODES)"
    echo "- Machine: $(nproc) CPUs ($cpu_model), ${mem_gib} GiB RAM, Linux $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- dohgate: $dg_version, git $git_rev; dnsdist $(dnsdist --version 2>/dev/null | head -1 | awk '{print $2}'); Knot $("$KNOTD" --version | awk '{print $NF}') (udp-workers ${KNOT_UDP_WORKERS:-1}, tcp-workers ${KNOT_TCP_WORKERS:-1}); dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}'); h2load $(h2load --version | awk '{print $2}')"
    echo "- Load: dnsperf \`-c $DNSPERF_CLIENTS -q $DNSPERF_OUTSTANDING -l $DURATION -e ${DNSPERF_EXTRA:-}\` (UDP; \`-m tcp\` for TCP); h2load \`-c $H2_CLIENTS -m $H2_STREAMS -D $DURATION ${H2LOAD_EXTRA:-}\` over $N_URIS distinct GET URIs; $ROUNDS rounds per mode, servers in alternation (dnsdist, dohgate$(grep -qw udp <<<"$KNOT_MODES" && echo ", Knot direct for the UDP ceiling"))"
    echo "- Data: $(cat "$DATA/mix.txt")"
    echo "- dnsdist: default settings, ${DNSDIST_LISTENERS:-1} Do53 listener(s), health checks off; cache runs: \`newPacketCache(${CACHE_ENTRIES:-200000})\` on the default pool. dohgate: cache runs use its default cache, ${dg_cache_note}${DOHGATE_ARGS:+, extra args \`$DOHGATE_ARGS\`}"
    if [[ -f $DATA/fw-mix.txt ]]; then
        echo "- Firewall modes (\`*-cache-fw\`): dohgate as in the cache mode plus \`--config firewall.toml\`: $(cat "$DATA/fw-mix.txt"). dnsdist runs unchanged (no rule): it is the control for drift between the phases"
    fi
} >"$RUN_OUT/meta.md"

# ---------------------------------------------------------------- one load run
# run_one MODE SERVER ROUND PORT PID
run_one() {
    local mode=$1 srv=$2 round=$3 port=$4 pid=$5
    local base="$RUN_OUT/raw/$mode-$srv-r$round" row status=ok note=""
    if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
        printf '%s\t%s\t%s\tfailed\t\t\t\t\t\t\t\t\t\t\t%s\n' "$mode" "$srv" "$round" "server not running" >>"$RESULTS"
        log "$mode r$round $srv: server not running"
        return 0
    fi
    reset_hwm "$pid"
    local c0 c1 rc=0
    c0=$(cpu_ticks "$pid")
    case $mode in
    udp* | tcp*)
        local proto=udp
        [[ $mode == tcp* ]] && proto=tcp
        # shellcheck disable=SC2086 # DNSPERF_EXTRA is split on purpose
        run_bounded $((DURATION + 30)) dnsperf -m "$proto" -s 127.0.0.1 -p "$port" -d "$DATA/queries.txt" \
            -c "$DNSPERF_CLIENTS" -q "$DNSPERF_OUTSTANDING" -l "$DURATION" -e -v ${DNSPERF_EXTRA:-} \
            >"$WORK/load.out" 2>"$WORK/load.err" || rc=$?
        ;;
    doh*)
        # shellcheck disable=SC2086 # H2LOAD_EXTRA is split on purpose
        run_bounded $((DURATION + 30)) h2load -i "$DATA/uris-$srv.txt" -c "$H2_CLIENTS" -m "$H2_STREAMS" \
            -D "$DURATION" --log-file="$WORK/load.log" ${H2LOAD_EXTRA:-} \
            >"$WORK/load.out" 2>"$WORK/load.err" || rc=$?
        ;;
    esac
    c1=$(cpu_ticks "$pid")
    local hwm
    hwm=$(status_kib "$pid" VmHWM)
    kill -0 "$pid" 2>/dev/null || { status=failed; note="server exited during the run"; }
    ((rc != 0)) && { status=failed; note="${note:+$note; }load generator exit code $rc"; }
    if [[ $mode == doh* ]]; then
        cp "$WORK/load.out" "$base.txt"
        row=$(python3 "$BENCH_DIR/lib/parse.py" h2load "$WORK/load.out" "$WORK/load.log" 2>>"$base.txt") || row=""
        rm -f "$WORK/load.log"
    else
        grep -v '^> ' "$WORK/load.out" >"$base.txt" || true
        # keep (up to 200 of) the answers with an unexpected rcode or a timeout, to see which
        { grep '^> ' "$WORK/load.out" | grep -vE '^> (NOERROR|NXDOMAIN) ' | head -200 >"$base.odd.txt"; } || true
        [[ -s $base.odd.txt ]] || rm -f "$base.odd.txt"
        row=$(python3 "$BENCH_DIR/lib/parse.py" dnsperf "$WORK/load.out" "$WORK/load.out" 2>>"$base.txt") || row=""
    fi
    cat "$WORK/load.err" >>"$base.txt"
    rm -f "$WORK/load.out" "$WORK/load.err"
    [[ -n $row ]] || { status=failed; note="${note:+$note; }could not parse the load generator output"; row=$'nan\t0\t0\t0\tnan\tnan\tnan\t-'; }
    local cpu_s
    cpu_s=$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
    local qps sent completed lost p50 p99 avg answers
    IFS=$'\t' read -r qps sent completed lost p50 p99 avg answers <<<"$row"
    # A run with no answers at all is a failure, not a figure.
    [[ $completed == 0 && $status == ok ]] && { status=failed; note="no answers"; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$srv" "$round" "$status" \
        "$qps" "$sent" "$completed" "$lost" "$p50" "$p99" "$avg" "$cpu_s" "$hwm" "$answers" "$note" >>"$RESULTS"
    log "$(printf '%-9s r%s %-11s %9.0f qps  lost %-6s p50 %6.3f ms  p99 %6.3f ms  cpu %5.2f s  rss %6.1f MiB  %s %s' \
        "$mode" "$round" "$srv" "$qps" "$lost" "$(awk -v x="$p50" 'BEGIN{print x/1000}')" \
        "$(awk -v x="$p99" 'BEGIN{print x/1000}')" "$cpu_s" "$(awk -v x="$hwm" 'BEGIN{print x/1024}')" \
        "$answers" "${status/ok/}${note:+ ($note)}")"
}

# ---------------------------------------------------------------- phases
start_knot "$PORT_AUTH" "$DATA"

declare -A SERVER_PID=()

run_phase() { # run_phase CACHE(0|1) FIREWALL(0|1) MODES...
    local cache=$1 fw=$2
    shift 2
    local -a modes=("$@")
    ((${#modes[@]})) || return 0
    local need_doh="" doh_mode="" m srv round tag=cache$cache fwconf=""
    if ((fw)); then tag+=-fw fwconf=$DATA/firewall.toml; fi
    for m in "${modes[@]}"; do [[ $m == doh* ]] && need_doh=1 doh_mode=$m; done
    SERVER_PID=()

    if want_server dnsdist; then
        start_dnsdist "$cache" "$PORT_DD" "${need_doh:+$PORT_DD_DOH}" "$PORT_AUTH" "$DATA"
        SERVER_PID[dnsdist]=$DNSDIST_PID
        local bad
        bad=$(check_answers "$PORT_DD" "${need_doh:+$PORT_DD_DOH}")
        [[ -n $bad ]] && log "WARNING: dnsdist answers look wrong: $bad"
    fi
    if want_server dohgate; then
        local dg_doh="" any=""
        for m in "${modes[@]}"; do
            [[ -z ${SKIP["$m dohgate"]:-} ]] && any=1 && [[ $m == doh* ]] && dg_doh=1
        done
        if [[ -n $any ]]; then
            if start_dohgate "$cache" "$PORT_DG" "${dg_doh:+$PORT_DG_DOH}" "$PORT_DG_ADMIN" "$PORT_AUTH" "$DATA" "$fwconf"; then
                SERVER_PID[dohgate]=$DOHGATE_PID
                local bad
                bad=$(check_answers "$PORT_DG" "${dg_doh:+$PORT_DG_DOH}")
                # the firewall must be evaluating: the answer checks went through its allow rule
                if [[ -z $bad ]] && ((fw)) && dohgate_has '--admin'; then
                    local n
                    n=$(firewall_matches "$PORT_DG_ADMIN" allow-bench)
                    ((${n:-0} > 0)) || bad="firewall not evaluating (allow-bench matched ${n:-?} times)"
                    log "dohgate firewall: allow-bench matched ${n:-?} times in the answer checks"
                fi
                if [[ -n $bad ]]; then
                    log "dohgate answers wrong, not benchmarking it in this phase: $bad"
                    for m in "${modes[@]}"; do
                        [[ -z ${SKIP["$m dohgate"]:-} ]] && SKIP["$m dohgate"]="failed: wrong answers ($bad)"
                    done
                fi
            else
                for m in "${modes[@]}"; do
                    [[ -z ${SKIP["$m dohgate"]:-} ]] && SKIP["$m dohgate"]="failed: did not start or answer (see dohgate-$tag.log)"
                done
            fi
        fi
    fi

    if ((cache)); then # warm the caches: one pass over the query file (UDP, and DoH if used)
        for srv in dnsdist dohgate; do
            [[ -n ${SERVER_PID[$srv]:-} ]] || continue
            local p=$PORT_DD
            [[ $srv == dohgate ]] && p=$PORT_DG
            run_bounded 60 dnsperf -s 127.0.0.1 -p "$p" -d "$DATA/queries.txt" -n 1 -c 4 -q 100 -e >/dev/null 2>&1 || true
            if [[ -n $need_doh && -z ${SKIP["$doh_mode $srv"]:-} ]]; then
                run_bounded 60 h2load -i "$DATA/uris-$srv.txt" -c 1 -m 32 -n "$N_URIS" >/dev/null 2>&1 || true
            fi
        done
        log "caches warmed"
    fi

    for m in "${modes[@]}"; do
        local -a order=()
        for srv in dnsdist dohgate; do
            want_server "$srv" || continue
            if [[ -n ${SKIP["$m $srv"]:-} ]]; then
                printf '%s\t%s\t-\tskipped\t\t\t\t\t\t\t\t\t\t\t%s\n' "$m" "$srv" "${SKIP["$m $srv"]}" >>"$RESULTS"
                continue
            fi
            order+=("$srv")
        done
        grep -qw -- "$m" <<<"$KNOT_MODES" && order+=(knot-direct)
        for ((round = 1; round <= ROUNDS; round++)); do
            for srv in "${order[@]}"; do
                case $srv in
                dnsdist) [[ $m == doh* ]] && p=$PORT_DD_DOH || p=$PORT_DD; pid=${SERVER_PID[dnsdist]:-} ;;
                dohgate) [[ $m == doh* ]] && p=$PORT_DG_DOH || p=$PORT_DG; pid=${SERVER_PID[dohgate]:-} ;;
                knot-direct) p=$PORT_AUTH pid=$KNOT_PID ;;
                esac
                run_one "$m" "$srv" "$round" "$p" "$pid"
            done
        done
    done

    if ((fw)) && [[ -n ${SERVER_PID[dohgate]:-} ]] && dohgate_has '--admin'; then
        log "dohgate firewall after the runs: allow-bench matched $(firewall_matches "$PORT_DG_ADMIN" allow-bench) times, block-listed $(firewall_matches "$PORT_DG_ADMIN" block-listed) (0 expected)"
    fi
    for srv in dnsdist dohgate; do
        [[ -n ${SERVER_PID[$srv]:-} ]] && untrack_kill "${SERVER_PID[$srv]}"
    done
    cp "$WORK/dnsdist-cache$cache.log" "$RUN_OUT/dnsdist-$tag.log" 2>/dev/null || true
    cp "$WORK/dohgate-$tag.log" "$RUN_OUT/" 2>/dev/null || true
}

declare -a nocache_modes=() cache_modes=() fw_modes=()
for m in $MODES; do
    case $m in
    *-cache-fw) fw_modes+=("$m") ;;
    *-cache) cache_modes+=("$m") ;;
    *) nocache_modes+=("$m") ;;
    esac
done
run_phase 0 0 "${nocache_modes[@]}"
run_phase 1 0 "${cache_modes[@]}"
run_phase 1 1 "${fw_modes[@]}" # right after the cache modes they are compared with
cp "$WORK/knot/knotd.log" "$RUN_OUT/" 2>/dev/null || true

python3 "$BENCH_DIR/lib/report.py" "$RESULTS" "$RUN_OUT/meta.md" >"$RUN_OUT/results.md"
cp "$RUN_OUT/results.md" "$OUT_DIR/results.md"
echo
cat "$OUT_DIR/results.md"
echo
log "results: $OUT_DIR/results.md (raw outputs in $RUN_OUT)"
