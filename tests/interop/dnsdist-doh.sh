#!/usr/bin/env bash
# dohgate forwarding corp.test over DoH to dnsdist (a DoH server no one here wrote), which
# forwards to an authoritative Knot: resolution, HTTP/2 connection reuse, and idle connections
# closed by dnsdist and dnsdist restarts, neither of which may cost a query.
source "$(dirname "$0")/lib.sh"

command -v dnsdist >/dev/null || { echo "dnsdist is not installed (scripts/deps)"; exit 1; }

KNOT_PORT=$(free_port)
start_knot corp "$KNOT_PORT" corp.test "\$ORIGIN corp.test.
\$TTL 300
@    SOA ns.corp.test. admin.corp.test. 1 3600 600 86400 300
@    NS  ns
ns   A   10.0.0.53
host A   10.0.0.10
www  A   10.0.0.80
*.w  A   10.0.0.99"

DNSDIST_DO53=$(free_port)
DNSDIST_DOH=$(free_port)
cat >"$WORK/dnsdist.conf" <<CONF
-- No security-status query through the system resolver: these tests reach only loopback.
setSecurityPollSuffix('')
setLocal('127.0.0.1:$DNSDIST_DO53')
addDOHLocal('127.0.0.1:$DNSDIST_DOH', '$ROOT/certs/localhost-ecdsa-chain.pem', '$ROOT/certs/localhost-ecdsa.key', '/dns-query', {idleTimeout=3})
newServer({address='127.0.0.1:$KNOT_PORT', checkName='corp.test.', checkType='SOA'})
CONF

start_dnsdist() {
    spawn dnsdist timeout 240 dnsdist --supervised --disable-syslog -C "$WORK/dnsdist.conf"
    DNSDIST_PID=$LAST_PID
    wait_dns "$DNSDIST_DO53"
    # The DoH frontend: a query over DoH that dnsdist answers from Knot.
    local i
    for ((i = 0; i < 100; i++)); do
        if [ "$(dig +https +tls-ca="$ROOT/certs/test-ca.pem" +tries=1 +time=1 +short \
            @127.0.0.1 -p "$DNSDIST_DOH" host.corp.test A 2>/dev/null)" = 10.0.0.10 ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "dnsdist's DoH frontend did not come up:" >&2
    cat "$WORK/dnsdist.log" >&2
    return 1
}

stop_dnsdist() {
    kill "$DNSDIST_PID" 2>/dev/null || true
    wait "$DNSDIST_PID" 2>/dev/null || true
}

start_dnsdist

GW_PORT=$(free_port)
# Connection events and every query's outcome, shown by `finish` if a check fails.
export RUST_LOG=${RUST_LOG:-info,dohgate_outbound=debug}
start_dohgate gw --listen-do53 "127.0.0.1:$GW_PORT" --upstream 127.0.0.1:9 \
    --forward "corp.test=https://127.0.0.1:$DNSDIST_DOH/dns-query" \
    --ca-file "$ROOT/certs/test-ca.pem" --admin 127.0.0.1:0 --query-log "$WORK/queries.log"
admin=$(grep -oE 'admin +http://[0-9.:]+' "$GW_LOG" | grep -oE '[0-9.]+:[0-9]+')

metric() { curl -fsS "http://$admin/metrics" | grep -E "^$1\{[^}]*protocol=\"doh\"" | awk '{s += $2} END {print s + 0}'; }

# parallel N TAG: N queries at once for names no one asked before (dohgate caches answers), all
# answered by the zone's wildcard.
parallel() {
    local n=$1 tag=$2 i pids=() bad=0
    for ((i = 0; i < n; i++)); do
        bash -c "[ \"\$(timeout 10 dig +short +tries=1 +time=5 @127.0.0.1 -p $GW_PORT p$i-$tag.w.corp.test A)\" = 10.0.0.99 ]" &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || bad=$((bad + 1)); done
    echo "$bad of $n failed"
    [ "$bad" -eq 0 ]
}

check "dig: corp name resolves through dnsdist's DoH" bash -c "[ \"\$(timeout 10 dig +short +tries=1 +time=5 @127.0.0.1 -p $GW_PORT host.corp.test A)\" = 10.0.0.10 ]"
check "dig: NXDOMAIN from behind dnsdist passes through" expect "$(timeout 10 dig +tries=1 +time=5 @127.0.0.1 -p "$GW_PORT" nope.corp.test A)" "status: NXDOMAIN"
check "20 queries at once share one HTTP/2 connection" bash -c "$(declare -f parallel); GW_PORT=$GW_PORT parallel 20 first && [ \"\$(curl -fsS http://$admin/metrics | grep -E '^dohgate_target_connections\{' | awk '{s+=\$2} END {print s+0}')\" = 1 ]"

# dnsdist closes connections idle for 3 s: what a long idle period ends in.
sleep 4
check "dnsdist closed the idle connection" bash -c "[ \"\$(curl -fsS http://$admin/metrics | grep -E '^dohgate_target_connections\{' | awk '{s+=\$2} END {print s+0}')\" = 0 ]"
check "after dnsdist closed the idle connection, a burst is answered" bash -c "$(declare -f parallel); GW_PORT=$GW_PORT parallel 10 idle"

for round in 1 2; do
    stop_dnsdist
    start_dnsdist
    check "restart $round: the first query after dnsdist restarted is answered" bash -c "[ \"\$(timeout 10 dig +short +tries=1 +time=5 @127.0.0.1 -p $GW_PORT first$round.w.corp.test A)\" = 10.0.0.99 ]"
    check "restart $round: a burst after the restart is answered" bash -c "$(declare -f parallel); GW_PORT=$GW_PORT parallel 10 restart$round"
done

check "the answers came over DoH" bash -c "[ \"\$(curl -fsS http://$admin/metrics | grep -E '^dohgate_target_outcomes_total\{' | grep 'protocol=\"doh\"' | grep 'outcome=\"ok\"' | awk '{s+=\$2} END {print s+0}')\" -ge 54 ]"
check "no DoH attempt failed" bash -c "curl -fsS http://$admin/metrics | grep -E '^dohgate_target_outcomes_total\{[^}]*protocol=\"doh\"' | grep -vE 'outcome=\"ok\"' | awk '{s+=\$2} END {exit s > 0}'"
echo "     stale-connection retries: $(metric dohgate_target_stale_retries_total), connection failures: $(metric dohgate_target_connection_failures_total)"

stop_dnsdist
finish
