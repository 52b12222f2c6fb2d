#!/usr/bin/env bash
# Discovery of Designated Resolvers (RFC 9462) with real clients: dig and dnspython ask
# dohgate for `_dns.resolver.arpa` SVCB, read the designation of its own DoH listener, and
# follow it with kdig +https; nothing under resolver.arpa reaches the upstream (Knot).
source "$(dirname "$0")/lib.sh"

CA=$ROOT/certs/test-ca.pem
AUTH_PORT=$(free_port)
start_knot default "$AUTH_PORT" example.test "\$ORIGIN example.test.
\$TTL 300
@    SOA ns.example.test. admin.example.test. 1 3600 600 86400 300
@    NS  ns
ns   A   192.0.2.53
www  A   192.0.2.10"

GW_PORT=$(free_port)
DOH_PORT=$(free_port)
PLAIN_PORT=$(free_port)
cat >"$WORK/ddr.toml" <<TOML
[resolver]
targets = ["127.0.0.1:$AUTH_PORT"]

[[inbound]]
name = "office"
listen = ["127.0.0.1:$GW_PORT"]
listen_doh = ["127.0.0.1:$DOH_PORT"]
tls_cert = "$ROOT/certs/localhost-ecdsa-chain.pem"
tls_key = "$ROOT/certs/localhost-ecdsa.key"
ddr_name = "localhost"

[[inbound]]
name = "plain"
listen = ["127.0.0.1:$PLAIN_PORT"]
TOML
start_dohgate gw --config "$WORK/ddr.toml" --query-log "$WORK/queries.log"

svcb=$(dig +tries=1 +time=3 @127.0.0.1 -p "$GW_PORT" _dns.resolver.arpa SVCB)
check "dig: _dns.resolver.arpa SVCB is answered with authority" expect "$svcb" "flags: qr aa rd ra;.*ANSWER: 1,"
check "dig: it designates localhost with h2 and http/1.1" expect "$svcb" "SVCB[[:space:]]+1 localhost\. alpn=\"h2,http/1.1\""
check "dig: the DoH listener's port and address" expect "$svcb" "port=$DOH_PORT ipv4hint=127\.0\.0\.1"
check "dig: the dohpath template (key 7)" expect "$svcb" "(key7|dohpath)=\"/dns-query\{\?dns\}\""
nodata=$(dig +tries=1 +time=3 @127.0.0.1 -p "$PLAIN_PORT" _dns.resolver.arpa SVCB)
check "dig: an endpoint without ddr_name answers NODATA" bash -c "grep -q 'status: NOERROR' <<<\"\$1\" && grep -q 'ANSWER: 0,' <<<\"\$1\"" _ "$nodata"
check "dig: other names under resolver.arpa are NXDOMAIN" expect "$(dig +tries=1 +time=3 @127.0.0.1 -p "$GW_PORT" foo.resolver.arpa A)" "status: NXDOMAIN"

# dnspython reads the designation the way a DDR client does, then the client follows it.
# Debian's python3-dnspython (scripts/deps) lives with the system interpreter, which may not be
# the first python3 on PATH.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
"$PY" - "$GW_PORT" "$DOH_PORT" >"$WORK/dnspython.out" 2>&1 <<'PY' || true
import sys
import dns.message, dns.query, dns.rdatatype
gw, doh = int(sys.argv[1]), int(sys.argv[2])
q = dns.message.make_query("_dns.resolver.arpa", "SVCB")
r = dns.query.udp(q, "127.0.0.1", port=gw, timeout=3)
(rrset,) = r.answer
(svcb,) = list(rrset)
params = {int(k): v for k, v in svcb.params.items()}
alpn = [a.decode() for a in params[1].ids]
port = params[3].port
hints = [str(a) for a in params[4].addresses]
path = params[7].value.decode() if hasattr(params[7], "value") else str(params[7])
assert svcb.priority == 1 and str(svcb.target) == "localhost.", svcb
assert alpn == ["h2", "http/1.1"], alpn
assert port == doh, (port, doh)
assert hints == ["127.0.0.1"], hints
assert "/dns-query{?dns}" in path, path
print(f"https://{hints[0]}:{port}{path.split('{')[0]}")
PY
check "dnspython: reads the same designation" bash -c "grep -qx 'https://127.0.0.1:$DOH_PORT/dns-query' '$WORK/dnspython.out' || { cat '$WORK/dnspython.out'; exit 1; }"
check "kdig +https: the designated resolver answers (certificate valid for the name and 127.0.0.1)" bash -c "[ \"\$(kdig +short +retry=0 +timeout=3 @127.0.0.1 -p $DOH_PORT +https +tls-ca=$CA +tls-hostname=localhost www.example.test A)\" = 192.0.2.10 ]"
check "nothing under resolver.arpa reached the upstream (query log: no target asked)" bash -c "sleep 0.5; n=\$(grep -c 'resolver\.arpa' '$WORK/queries.log'); local=\$(grep 'resolver\.arpa' '$WORK/queries.log' | grep -c '\"target\":null'); [ \"\$n\" -ge 4 ] && [ \"\$n\" = \"\$local\" ]"

finish
