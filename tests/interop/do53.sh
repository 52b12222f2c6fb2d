#!/usr/bin/env bash
# dig and kdig against the dohgate binary, forwarding to two real authoritative servers (Knot):
# one the default resolver, one behind a forwarding rule.
source "$(dirname "$0")/lib.sh"

DEFAULT_PORT=$(free_port)
CORP_PORT=$(free_port)
big=$(printf 'x%.0s' $(seq 1 250))
start_knot default "$DEFAULT_PORT" example.test "\$ORIGIN example.test.
\$TTL 300
@    SOA ns.example.test. admin.example.test. 1 3600 600 86400 300
@    NS  ns
ns   A   192.0.2.53
www  A   192.0.2.10
big  TXT \"$big\" \"$big\" \"$big\" \"$big\" \"$big\" \"$big\""
start_knot corp "$CORP_PORT" corp.test "\$ORIGIN corp.test.
\$TTL 300
@    SOA ns.corp.test. admin.corp.test. 1 3600 600 86400 300
@    NS  ns
ns   A   10.0.0.53
host A   10.0.0.10
www  A   10.0.0.80"

GW_PORT=$(free_port)
start_dohgate gw --listen-do53 "127.0.0.1:$GW_PORT" --upstream "127.0.0.1:$DEFAULT_PORT" \
    --forward "corp.test=127.0.0.1:$CORP_PORT" --admin 127.0.0.1:0

q() { dig +tries=1 +time=3 @127.0.0.1 -p "$GW_PORT" "$@"; }
kq() { kdig +retry=0 +timeout=3 @127.0.0.1 -p "$GW_PORT" "$@"; }

check "dig: default resolver answers" bash -c "[ \"\$(dig +short +tries=1 +time=3 @127.0.0.1 -p $GW_PORT www.example.test A)\" = 192.0.2.10 ]"
check "dig: forwarding rule sends corp names to their server" bash -c "[ \"\$(dig +short +tries=1 +time=3 @127.0.0.1 -p $GW_PORT host.corp.test A)\" = 10.0.0.10 ]"
check "dig +tcp: forwarded over TCP" bash -c "[ \"\$(dig +tcp +short +tries=1 +time=3 @127.0.0.1 -p $GW_PORT host.corp.test A)\" = 10.0.0.10 ]"
check "kdig: UDP and TCP" bash -c "[ \"\$(kdig +short +retry=0 @127.0.0.1 -p $GW_PORT host.corp.test A)\" = 10.0.0.10 ] && [ \"\$(kdig +tcp +short +retry=0 @127.0.0.1 -p $GW_PORT www.example.test A)\" = 192.0.2.10 ]"
check "dig: NXDOMAIN passes through" expect "$(q nope.corp.test A)" "status: NXDOMAIN"
check "dig: private reverse zone answered locally (RFC 6303)" expect "$(q -x 10.1.2.3)" "status: NXDOMAIN.*|flags: qr aa"
check "dig: 0x20 case comes back as sent" expect "$(q HoSt.CoRp.TeSt A)" "^HoSt\.CoRp\.TeSt\.[[:space:]]+[0-9]+[[:space:]]+IN[[:space:]]+A[[:space:]]+10\.0\.0\.10"
check "dig +bufsize=4096: a large answer Knot truncates is fetched over TCP" expect "$(q big.example.test TXT +bufsize=4096 +ignore)" "ANSWER: 1,"
check "dig +bufsize=512 +ignore: truncated for a small buffer" expect "$(q big.example.test TXT +bufsize=512 +ignore)" "flags:[a-z ]* tc"
check "dig: retries over TCP after TC and gets it all" expect "$(q big.example.test TXT +bufsize=512)" "ANSWER: 1,"
check "kdig +edns: EDNS answer" expect "$(kq www.example.test A +edns)" "Version: 0; flags: ; UDP size"
admin=$(grep -oE 'admin +http://[0-9.:]+' "$GW_LOG" | grep -oE '[0-9.]+:[0-9]+')
check "curl: /healthz and /readyz" bash -c "curl -fsS http://$admin/healthz && curl -fsS http://$admin/readyz"
check "curl: /metrics counts the queries" bash -c "curl -fsS http://$admin/metrics | grep -E '^dohgate_queries_total\{endpoint=\"default\",protocol=\"do53\",transport=\"udp\"\} [1-9]'"

# SIGTERM: dohgate stops by itself within the grace period.
gw_pid=$LAST_PID
kill -TERM "$gw_pid"
check "SIGTERM stops dohgate cleanly" bash -c "for i in \$(seq 50); do kill -0 $gw_pid 2>/dev/null || exit 0; sleep 0.1; done; exit 1"

finish
