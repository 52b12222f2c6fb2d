# shellcheck shell=bash
# Shared helpers for bench/run.sh and bench/idle-conns.sh: installing the tools, starting
# Knot, dnsdist and dohgate on loopback, tracking and killing every process by PID.
# Sourced, not executed. Callers set BENCH_DIR, REPO_DIR, WORK (temp dir) and BASE_PORT.

# ---------------------------------------------------------------- logging
log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- process tracking
# Every long-lived process we start is recorded here and killed by PID in cleanup.
declare -a BENCH_PIDS=()
track() { BENCH_PIDS+=("$1"); }

kill_pid() { # kill_pid PID: TERM, wait up to 3 s, then KILL
    local pid=$1 i
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        # a child that has exited stays a zombie (kill -0 succeeds) until we wait for it
        [[ $(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

untrack_kill() { # stop one tracked process and forget it
    local pid=$1 p
    kill_pid "$pid"
    local -a keep=()
    for p in "${BENCH_PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    BENCH_PIDS=("${keep[@]}")
}

bench_cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${BENCH_PIDS[@]}"; do kill_pid "$p"; done
    if [[ -n ${WORK:-} && -d ${WORK:-} && ${KEEP_TMP:-0} != 1 ]]; then
        rm -rf -- "$WORK"
    elif [[ -n ${WORK:-} ]]; then
        log "kept temp dir $WORK"
    fi
    exit "$rc"
}

install_traps() {
    trap bench_cleanup EXIT
    trap 'log "interrupted"; exit 130' INT
    trap 'log "terminated (time bound reached?)"; exit 143' TERM
}

# run_bounded SECONDS CMD...: run a command in the background under `timeout`, wait for
# it (so that a TERM to this script is handled at once and the child is killed by PID).
run_bounded() {
    local secs=$1 rc=0
    shift
    timeout -k 5 "$secs" "$@" &
    local pid=$!
    track "$pid"
    wait "$pid" || rc=$?
    local -a keep=()
    local p
    for p in "${BENCH_PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    BENCH_PIDS=("${keep[@]}")
    return "$rc"
}

# ---------------------------------------------------------------- installing tools
# need_tools: install (apt-get, only what is missing) knot, dnsdist, dnsperf, h2load,
# kdig, openssl and python3. Packaged daemons that the install starts are stopped; we never
# use their configs or ports.
need_tools() {
    local -a pkgs=()
    command -v knotd >/dev/null 2>&1 || [[ -x /usr/sbin/knotd ]] || pkgs+=(knot)
    command -v dnsdist >/dev/null 2>&1 || pkgs+=(dnsdist)
    command -v dnsperf >/dev/null 2>&1 || pkgs+=(dnsperf)
    command -v h2load >/dev/null 2>&1 || pkgs+=(nghttp2-client)
    command -v kdig >/dev/null 2>&1 || pkgs+=(knot-dnsutils)
    command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
    command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
    command -v timeout >/dev/null 2>&1 || pkgs+=(coreutils)
    ((${#pkgs[@]} == 0)) && return 0
    [[ ${SKIP_INSTALL:-0} == 1 ]] && die "missing tools (${pkgs[*]}) and SKIP_INSTALL=1"
    local sudo=""
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "missing ${pkgs[*]}; run as root or install them"
        sudo="sudo"
    fi
    log "installing: ${pkgs[*]}"
    $sudo env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q >&2 || die "apt-get update failed"
    $sudo env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends \
        "${pkgs[@]}" >&2 || die "apt-get install ${pkgs[*]} failed"
    # Packaged daemons may have been started with their default configs: stop the ones we just
    # installed (only those), so they do not share the CPU with the benchmark.
    local svc
    for svc in knot dnsdist; do
        if printf '%s\n' "${pkgs[@]}" | grep -qx "$svc"; then
            if [[ -d /run/systemd/system ]]; then
                $sudo systemctl stop "$svc" >/dev/null 2>&1 || true
            elif command -v service >/dev/null 2>&1; then
                $sudo service "$svc" stop >/dev/null 2>&1 || true
            fi
        fi
    done
    hash -r
}

KNOTD=$(command -v knotd 2>/dev/null || echo /usr/sbin/knotd)

# ---------------------------------------------------------------- ports
# port_free PORT: true if both TCP and UDP 127.0.0.1:PORT can be bound now.
port_free() {
    python3 - "$1" <<'EOF'
import socket, sys
port = int(sys.argv[1])
for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind)
    if kind == socket.SOCK_STREAM:  # like the servers do; TIME_WAIT leftovers do not count
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
EOF
}

check_ports() {
    local p
    for p in "$@"; do
        port_free "$p" || die "127.0.0.1:$p is in use (a server, or a client socket of an earlier run if it is in the ephemeral range $(tr '\t' - </proc/sys/net/ipv4/ip_local_port_range)); set BASE_PORT to another value"
    done
}

# ---------------------------------------------------------------- /proc accounting
# shellcheck disable=SC2034 # used by the scripts that source this file
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_ticks() { # utime+stime of all threads of PID, in clock ticks
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
reset_hwm() { # make VmHWM restart from the current RSS (Linux >= 4.0); ignore if not allowed
    { echo 5 >"/proc/$1/clear_refs"; } 2>/dev/null || true
}
status_kib() { # status_kib PID FIELD (VmHWM, VmRSS)
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# ---------------------------------------------------------------- DNS probes
# dns_probe PORT [kdig options...]: the answer section of one query, or nothing.
dns_probe() {
    local port=$1
    shift
    timeout 5 kdig @127.0.0.1 -p "$port" +timeout=1 +retry=0 "$@" 2>/dev/null || true
}

wait_dns() { # wait_dns PORT PID NAME: wait until a Do53 query is answered (15 s)
    local port=$1 pid=$2 name=$3 i
    for i in $(seq 1 75); do
        kill -0 "$pid" 2>/dev/null || { log "$name exited during start-up"; return 1; }
        [[ -n $(dns_probe "$port" +short bench.test. SOA) ]] && return 0
        sleep 0.2
    done
    log "$name did not answer on 127.0.0.1:$port within 15 s"
    return 1
}

# ---------------------------------------------------------------- test data and cert
make_data() { # make_data DIR
    python3 "$BENCH_DIR/lib/gen.py" "$1" --names "${NAMES:-10000}" --queries "${QUERIES:-20000}" \
        || die "data generation failed"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$1/key.pem" -out "$1/cert.pem" -days 7 -subj /CN=localhost \
        -addext subjectAltName=IP:127.0.0.1,DNS:localhost >/dev/null 2>&1 \
        || die "openssl could not create the self-signed certificate"
}

# ---------------------------------------------------------------- Knot (authoritative upstream)
KNOT_PID=""
start_knot() { # start_knot PORT DATA_DIR
    local port=$1 data=$2 dir="$WORK/knot"
    mkdir -p "$dir/run" "$dir/storage"
    cp "$data/bench.test.zone" "$dir/storage/"
    cat >"$dir/knot.conf" <<EOF
server:
    rundir: "$dir/run"
    listen: 127.0.0.1@$port
    udp-workers: ${KNOT_UDP_WORKERS:-1}
    tcp-workers: ${KNOT_TCP_WORKERS:-1}
    background-workers: 1
log:
  - target: stderr
    any: warning
database:
    storage: "$dir/storage"
template:
  - id: default
    storage: "$dir/storage"
    zonefile-sync: -1
    journal-content: none
    semantic-checks: off
zone:
  - domain: bench.test.
    file: "$dir/storage/bench.test.zone"
EOF
    "$KNOTD" -c "$dir/knot.conf" >"$dir/knotd.log" 2>&1 &
    KNOT_PID=$!
    track "$KNOT_PID"
    wait_dns "$port" "$KNOT_PID" knotd || { tail -20 "$dir/knotd.log" >&2; die "Knot did not start"; }
    log "knotd pid $KNOT_PID on 127.0.0.1:$port (udp/tcp workers ${KNOT_UDP_WORKERS:-1}/${KNOT_TCP_WORKERS:-1})"
}

# ---------------------------------------------------------------- dnsdist
DNSDIST_PID=""
# start_dnsdist CACHE(0|1) DO53_PORT DOH_PORT UPSTREAM_PORT DATA_DIR [extra lua]
start_dnsdist() {
    local cache=$1 port=$2 dohport=$3 up=$4 data=$5 extra=${6:-}
    local conf="$WORK/dnsdist-cache$cache.conf" i
    {
        echo "-- generated by bench: never poll security status through the system resolver"
        echo "setSecurityPollSuffix('')"
        echo "addLocal('127.0.0.1:$port', {reusePort=true})"
        for ((i = 1; i < ${DNSDIST_LISTENERS:-1}; i++)); do
            echo "addLocal('127.0.0.1:$port', {reusePort=true})"
        done
        if [[ -n $dohport ]]; then
            echo "addDOHLocal('127.0.0.1:$dohport', '$data/cert.pem', '$data/key.pem', '/dns-query', {reusePort=true, idleTimeout=${DOH_IDLE_TIMEOUT:-30}})"
        fi
        echo "newServer({address='127.0.0.1:$up', name='knot', healthCheckMode='up'})"
        if [[ $cache == 1 ]]; then
            echo "pc = newPacketCache(${CACHE_ENTRIES:-200000}, {maxTTL=86400, minTTL=0, temporaryFailureTTL=60, staleTTL=60, dontAge=false})"
            echo "getPool(''):setCache(pc)"
        fi
        if [[ -n $extra ]]; then echo "$extra"; fi
        if [[ -n ${DNSDIST_EXTRA_CONF:-} ]]; then echo "$DNSDIST_EXTRA_CONF"; fi
    } >"$conf"
    dnsdist --check-config -C "$conf" >"$WORK/dnsdist-check.log" 2>&1 \
        || { cat "$WORK/dnsdist-check.log" >&2; die "dnsdist config check failed"; }
    dnsdist --supervised --disable-syslog -C "$conf" >"$WORK/dnsdist-cache$cache.log" 2>&1 &
    DNSDIST_PID=$!
    track "$DNSDIST_PID"
    wait_dns "$port" "$DNSDIST_PID" dnsdist || { tail -20 "$WORK/dnsdist-cache$cache.log" >&2; die "dnsdist did not start"; }
    log "dnsdist pid $DNSDIST_PID (packet cache: $cache) Do53 127.0.0.1:$port${dohport:+ DoH 127.0.0.1:$dohport}"
}

# ---------------------------------------------------------------- dohgate
DOHGATE_BIN=${DOHGATE_BIN:-$REPO_DIR/target/release/dohgate}
DOHGATE_HELP=""
DOHGATE_PID=""
DOHGATE_STATE="" # empty when usable, else why not

# ensure_dohgate: build it once if missing (DOHGATE_BUILD=0 disables), read --help.
ensure_dohgate() {
    if [[ ! -x $DOHGATE_BIN && ${DOHGATE_BUILD:-1} == 1 && $DOHGATE_BIN == "$REPO_DIR/target/release/dohgate" ]]; then
        if command -v cargo >/dev/null 2>&1; then
            log "building dohgate: cargo build --release -p dohgate (bounded to ${BUILD_TIMEOUT:-1800} s)"
            run_bounded "${BUILD_TIMEOUT:-1800}" cargo build --manifest-path "$REPO_DIR/Cargo.toml" \
                --release -p dohgate >&2 || log "cargo build --release -p dohgate failed"
        else
            log "cargo not found; cannot build dohgate"
        fi
    fi
    if [[ ! -x $DOHGATE_BIN ]]; then
        DOHGATE_STATE="not built ($DOHGATE_BIN missing)"
        return 0
    fi
    DOHGATE_HELP=$(timeout 10 "$DOHGATE_BIN" --help 2>&1) || true
    if ! grep -q -- '--listen-do53' <<<"$DOHGATE_HELP" || ! grep -q -- '--upstream' <<<"$DOHGATE_HELP"; then
        DOHGATE_STATE="binary lacks --listen-do53/--upstream (CLI contract not implemented yet)"
    fi
}

dohgate_has() { grep -q -- "$1" <<<"$DOHGATE_HELP"; }

# dohgate_mode_support MODE: prints nothing if dohgate can run MODE, else the reason.
dohgate_mode_support() {
    local mode=$1
    if [[ -n $DOHGATE_STATE ]]; then echo "skipped: $DOHGATE_STATE"; return; fi
    case $mode in doh*)
        if ! dohgate_has '--listen-doh' || ! dohgate_has '--tls-cert' || ! dohgate_has '--tls-key'; then
            echo "skipped: not supported (no --listen-doh/--tls-cert/--tls-key in dohgate --help)"
            return
        fi ;;
    esac
    case $mode in
    *-cache-fw)
        # the DNS Firewall came with --block; its rules come from --config
        if ! dohgate_has 'cache' || ! dohgate_has '--block' || ! dohgate_has '--config'; then
            echo "skipped: not supported (no cache, --block or --config in dohgate --help: no DNS Firewall)"
        fi ;;
    *-cache)
        dohgate_has 'cache' || echo "skipped: not supported (dohgate --help mentions no cache)" ;;
    *)
        # A dohgate with a cache must be able to turn it off; one without a cache runs as is.
        if dohgate_has 'cache' && ! dohgate_has '--no-cache'; then
            echo "skipped: not supported (no --no-cache in dohgate --help)"
        fi ;;
    esac
    return 0
}

# start_dohgate CACHE(0|1) DO53_PORT DOH_PORT(or empty) ADMIN_PORT UPSTREAM_PORT DATA_DIR [FIREWALL_CONF]
# FIREWALL_CONF: a configuration file with only a [firewall] section (lib/fwgen.py), given with
# --config; everything else comes from the same flags as without it.
start_dohgate() {
    local cache=$1 port=$2 dohport=$3 admin=$4 up=$5 data=$6 fwconf=${7:-}
    local -a args=(--listen-do53 "127.0.0.1:$port" --upstream "127.0.0.1:$up")
    [[ -n $fwconf ]] && args=(--config "$fwconf" "${args[@]}")
    dohgate_has '--admin' && args+=(--admin "127.0.0.1:$admin")
    if [[ -n $dohport ]]; then
        args+=(--listen-doh "127.0.0.1:$dohport" --tls-cert "$data/cert.pem" --tls-key "$data/key.pem")
    fi
    [[ $cache == 0 ]] && dohgate_has '--no-cache' && args+=(--no-cache)
    # shellcheck disable=SC2206 # DOHGATE_ARGS is split on purpose
    [[ -n ${DOHGATE_ARGS:-} ]] && args+=($DOHGATE_ARGS)
    local logf="$WORK/dohgate-cache$cache${fwconf:+-fw}.log"
    echo "$DOHGATE_BIN ${args[*]}" >"$logf"
    RUST_LOG=${DOHGATE_LOG:-warn} "$DOHGATE_BIN" "${args[@]}" >>"$logf" 2>&1 &
    DOHGATE_PID=$!
    track "$DOHGATE_PID"
    if ! wait_dns "$port" "$DOHGATE_PID" dohgate; then
        tail -20 "$logf" >&2
        untrack_kill "$DOHGATE_PID"
        DOHGATE_PID=""
        return 1
    fi
    log "dohgate pid $DOHGATE_PID: ${args[*]}"
}

# check_answers PORT DOH_PORT(or empty): the server answers the zone correctly over UDP, TCP
# and (if given) DoH. Prints the first problem found, nothing if all is well.
check_answers() {
    local port=$1 dohport=$2 a
    a=$(dns_probe "$port" +short h00001.bench.test. A)
    [[ $a == 10.0.0.1 ]] || { echo "UDP A h00001 gave '${a:-no answer}'"; return; }
    a=$(dns_probe "$port" +tcp +short h00001.bench.test. A)
    [[ $a == 10.0.0.1 ]] || { echo "TCP A h00001 gave '${a:-no answer}'"; return; }
    a=$(dns_probe "$port" nosuchname.bench.test. A)
    grep -q 'status: NXDOMAIN' <<<"$a" || { echo "UDP NXDOMAIN check failed"; return; }
    a=$(dns_probe "$port" +tcp +short big.bench.test. TXT)
    ((${#a} > 1400)) || { echo "TCP TXT big gave ${#a} bytes"; return; }
    a=$(dns_probe "$port" +short c0002-0.bench.test. A | tail -1)
    [[ $a == 10.* ]] || { echo "CNAME chain c0002-0 gave '${a:-no answer}'"; return; }
    if [[ -n $dohport ]]; then
        a=$(dns_probe "$dohport" +https +short h00001.bench.test. A)
        [[ $a == 10.0.0.1 ]] || { echo "DoH A h00001 gave '${a:-no answer}'"; return; }
        a=$(dns_probe "$dohport" +https-get +short h00002.bench.test. A)
        [[ $a == 10.0.0.2 ]] || { echo "DoH GET A h00002 gave '${a:-no answer}'"; return; }
    fi
    return 0
}

# firewall_matches ADMIN_PORT RULE: dohgate_firewall_matches_total of RULE (summed over its
# labels) from the admin listener, or nothing if it cannot be read.
firewall_matches() {
    timeout 5 python3 - "$1" "$2" <<'EOF' 2>/dev/null || true
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=3).read().decode()
vals = [float(m.group(2)) for m in re.finditer(r'^dohgate_firewall_matches_total\{([^}]*)\} (\S+)$', text, re.M)
        if f'rule="{sys.argv[2]}"' in m.group(1)]
if vals:
    print(int(sum(vals)))
EOF
}
