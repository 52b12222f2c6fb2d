#!/usr/bin/env bash
# bench/idle-conns.sh: memory held by N idle DoH (TLS + HTTP/2) connections (issue 6 goal:
# 10,000 idle DoH connections in under 200 MiB).
#
# Starts Knot on loopback as the upstream, then for each server (dnsdist, dohgate) in turn
# starts it with a DoH listener on 127.0.0.1, opens CONNS connections with lib/idle_client.py
# (TLS with ALPN h2, HTTP/2 preface and SETTINGS, one RFC 8484 GET answered with 200, then
# idle), holds them HOLD seconds, and reports the server's RSS before, with the connections
# open, and its peak. Writes bench/out/idle-conns.md. Loopback only; every process is killed by
# PID on exit; the whole script is bounded in time.
#
# Environment knobs:
#   CONNS=10000 HOLD=10 CONCURRENCY=200 SERVERS="dnsdist dohgate" BASE_PORT=25400
#   OUT_DIR=bench/out DOHGATE_BIN=target/release/dohgate DOHGATE_BUILD=1 DOHGATE_ARGS=
#   DOH_IDLE_TIMEOUT=300 (dnsdist's DoH idleTimeout here, so it does not close them first)
#   TIME_LIMIT=(auto) SKIP_INSTALL=0 KEEP_TMP=0
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi

CONNS=${CONNS:-10000}
HOLD=${HOLD:-10}
CONCURRENCY=${CONCURRENCY:-200}
SERVERS=${SERVERS:-dnsdist dohgate}
BASE_PORT=${BASE_PORT:-25400}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out}
export DOH_IDLE_TIMEOUT=${DOH_IDLE_TIMEOUT:-300}
[[ $CONNS =~ ^[0-9]+$ && $CONNS -ge 1 ]] || { echo "CONNS must be a positive integer" >&2; exit 2; }

if [[ -z ${DOHGATE_BENCH_BOUNDED:-} ]]; then
    limit=${TIME_LIMIT:-$((900 + ${BUILD_TIMEOUT:-1800} + 2 * (CONNS / 50 + ${HOLD%.*} + 120)))}
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
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dohgate-idle.XXXXXX")

# The client needs CONNS descriptors, and so does the server (it inherits this limit).
want=$((CONNS + 1024))
hard=$(ulimit -Hn)
if [[ $hard != unlimited && $hard -lt $want ]]; then
    log "WARNING: hard open-file limit $hard < $want; raise it (ulimit -Hn) or lower CONNS"
    want=$hard
fi
ulimit -n "$want" || die "could not raise the open-file limit to $want"
check_ports "$PORT_AUTH" "$PORT_DD" "$PORT_DD_DOH" "$PORT_DG" "$PORT_DG_DOH" "$PORT_DG_ADMIN"

DATA="$WORK/data"
make_data "$DATA"
start_knot "$PORT_AUTH" "$DATA"
QPATH=$(sed -n 1p "$DATA/doh-paths.txt")

mkdir -p "$OUT_DIR"
declare -a ROWS=()

measure() { # measure SERVER DOH_PORT PID
    local srv=$1 port=$2 pid=$3 json
    reset_hwm "$pid"
    log "$srv: opening $CONNS idle DoH connections to 127.0.0.1:$port"
    json=$(run_bounded $((CONNS / 20 + ${HOLD%.*} + 120)) python3 "$BENCH_DIR/lib/idle_client.py" \
        --port "$port" --pid "$pid" --conns "$CONNS" --hold "$HOLD" --concurrency "$CONCURRENCY" \
        --path "$QPATH") || true
    if [[ -z $json ]]; then
        ROWS+=("| $srv | failed: no result from the client | | | | | | |")
        return 0
    fi
    echo "$json" >"$OUT_DIR/idle-conns-$srv.json"
    ROWS+=("$(python3 - "$srv" "$json" <<'EOF'
import json, sys
srv, r = sys.argv[1], json.loads(sys.argv[2])
mib = lambda k: r[k] / 1024
per = (r["rss_hold_kib"] - r["rss_before_kib"]) / r["still_open"] if r["still_open"] else float("nan")
verdict = ""
if r["conns"] < 10000:
    verdict = "n/a (the goal is for 10,000)"
elif r["still_open"] >= r["conns"]:
    verdict = "met" if mib("rss_hold_kib") < 200 else "not met"
else:
    verdict = f"n/a ({r['conns'] - r['still_open']} not open at the end)"
err = "; ".join(f"{k} x{v}" for k, v in r["errors"].items())
print(f"| {srv} | {r['opened']:,} ({r['failed']:,} failed{': ' + err if err else ''}) | {r['still_open']:,} | "
      f"{mib('rss_before_kib'):.1f} | {mib('rss_hold_kib'):.1f} | {mib('hwm_kib'):.1f} | {per:.1f} | {verdict} |")
EOF
)")
    log "$srv: ${ROWS[-1]}"
}

for srv in $SERVERS; do
    case $srv in
    dnsdist)
        start_dnsdist 0 "$PORT_DD" "$PORT_DD_DOH" "$PORT_AUTH" "$DATA"
        measure dnsdist "$PORT_DD_DOH" "$DNSDIST_PID"
        untrack_kill "$DNSDIST_PID"
        ;;
    dohgate)
        ensure_dohgate
        reason=$(dohgate_mode_support doh-cache)
        [[ -z $DOHGATE_STATE ]] && [[ -n $reason ]] && reason=$(dohgate_mode_support doh)
        if [[ -n $reason ]]; then
            ROWS+=("| dohgate | $reason | | | | | | |")
            log "dohgate: $reason"
            continue
        fi
        if start_dohgate 1 "$PORT_DG" "$PORT_DG_DOH" "$PORT_DG_ADMIN" "$PORT_AUTH" "$DATA"; then
            measure dohgate "$PORT_DG_DOH" "$DOHGATE_PID"
            untrack_kill "$DOHGATE_PID"
        else
            ROWS+=("| dohgate | failed: did not start or answer | | | | | | |")
        fi
        ;;
    *) log "unknown server $srv" ;;
    esac
done

{
    echo "# Idle DoH connections"
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); command: \`CONNS=$CONNS HOLD=$HOLD bench/idle-conns.sh\`; machine: $(nproc) CPUs, Linux $(uname -r)"
    echo "- Each connection: TLS 1.3 (ALPN h2), HTTP/2 preface + SETTINGS, one RFC 8484 GET answered 200, then idle for the hold ($HOLD s after the last one opened). dnsdist's DoH idleTimeout set to $DOH_IDLE_TIMEOUT s."
    echo "- RSS before: server idle before the client connects; RSS held: VmRSS after the hold; per connection: (held - before) / still open. Goal (issue 6): 10,000 idle connections held in under 200 MiB."
    echo
    echo "| Server | Opened | Still open | RSS before MiB | RSS held MiB | peak RSS MiB | KiB per connection | < 200 MiB |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${ROWS[@]}"
} >"$OUT_DIR/idle-conns.md"
echo
cat "$OUT_DIR/idle-conns.md"
