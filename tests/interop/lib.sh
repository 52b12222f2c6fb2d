# Shared helpers of dohgate's interop tests: real third-party clients and servers against the
# built dohgate binary, on 127.0.0.1 only. Source it; every process started through `spawn` is
# killed by PID when the script exits.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DOHGATE=${DOHGATE:-$ROOT/target/debug/dohgate}
WORK=$(mktemp -d /tmp/dohgate-interop.XXXXXX)
PIDS=()
FAILURES=0
PASSES=0

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# spawn NAME CMD...: starts CMD in the background, output in $WORK/NAME.log; sets LAST_PID.
spawn() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# free_port: a TCP and UDP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    python3 - <<'PY'
import socket
while True:
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        t.close()
        continue
    t.close()
    u.close()
    print(port)
    break
PY
}

# wait_for_file_line FILE PATTERN [SECONDS]: waits until FILE has a line matching PATTERN.
wait_for_line() {
    local file=$1 pattern=$2 secs=${3:-20} i
    for ((i = 0; i < secs * 10; i++)); do
        if grep -qE "$pattern" "$file" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "timed out waiting for /$pattern/ in $file:" >&2
    cat "$file" >&2 || true
    return 1
}

# wait_udp PORT: waits until a DNS server answers on 127.0.0.1:PORT.
wait_dns() {
    local port=$1 i
    for ((i = 0; i < 100; i++)); do
        if dig +tries=1 +time=1 @127.0.0.1 -p "$port" . SOA >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "no DNS server on 127.0.0.1:$port" >&2
    return 1
}

# check NAME COMMAND...: runs COMMAND, counts and reports the result.
check() {
    local name=$1
    shift
    if "$@" >"$WORK/check.out" 2>&1; then
        PASSES=$((PASSES + 1))
        echo "ok   $name"
    else
        FAILURES=$((FAILURES + 1))
        echo "FAIL $name"
        sed 's/^/     /' "$WORK/check.out" | head -40
    fi
}

# expect TEXT PATTERN: TEXT matches the extended regex PATTERN.
expect() {
    if ! grep -qE -- "$2" <<<"$1"; then
        echo "expected /$2/ in:"
        echo "$1"
        return 1
    fi
}

# start_knot NAME PORT ZONE ZONEFILE-TEXT: an authoritative Knot on 127.0.0.1:PORT.
start_knot() {
    local name=$1 port=$2 zone=$3 text=$4 dir=$WORK/knot-$1
    mkdir -p "$dir/zones" "$dir/run" "$dir/storage"
    printf '%s\n' "$text" >"$dir/zones/$zone.zone"
    cat >"$dir/knot.conf" <<CONF
server:
    rundir: "$dir/run"
    listen: 127.0.0.1@$port
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$dir/storage"
log:
  - target: stderr
    any: warning
zone:
  - domain: $zone
    storage: "$dir/zones"
    file: "$zone.zone"
CONF
    spawn "knot-$name" knotd -c "$dir/knot.conf"
    wait_dns "$port"
}

# start_dohgate NAME ARGS...: runs dohgate and waits for its banner; sets GW_DO53 (host port).
start_dohgate() {
    local name=$1
    shift
    spawn "$name" "$DOHGATE" "$@"
    wait_for_line "$WORK/$name.log" "^try: dig"
    GW_LOG=$WORK/$name.log
}

finish() {
    echo "interop $(basename "$0" .sh): $PASSES passed, $FAILURES failed"
    if [ "$FAILURES" -ne 0 ]; then
        # What the servers said is gone with $WORK once the script exits: show it now.
        local log
        for log in "$WORK"/*.log; do
            [ -f "$log" ] || continue
            echo "---- last lines of $(basename "$log")"
            tail -n 40 "$log" | sed 's/^/     /'
        done
    fi
    [ "$FAILURES" -eq 0 ]
}
