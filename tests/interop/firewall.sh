#!/usr/bin/env bash
# The DNS Firewall (docs/firewall.md) with real clients: dig (Do53 UDP and TCP), kdig and curl
# (DoH, TLS from the test CA of certs/) against one dohgate with three inbound endpoints in
# front of a real Knot serving a zone with CNAME chains:
#   trusting   - allow-list only, `redirection = "trust"`: a trusted name vouches for its chain;
#   inspecting - the same list with `redirection = "inspect"`: blocked at the first CNAME;
#   open       - an OVERRIDE block rule and an allow rule that `--block` must win over.
# The cache is on (the default), so the inspecting endpoint also shows that a chain cached by
# the trusting one is checked again against its own policy. Then /metrics.
source "$(dirname "$0")/lib.sh"

CA=$ROOT/certs/test-ca.pem
AUTH_PORT=$(free_port)
start_knot default "$AUTH_PORT" example.test "\$ORIGIN example.test.
\$TTL 300
@                 SOA   ns.example.test. admin.example.test. 1 3600 600 86400 300
@                 NS    ns
ns                A     192.0.2.53
alexa             CNAME pitangui.amazon
pitangui.amazon   CNAME d1.cloudfront
d1.cloudfront     A     192.0.2.80
admin             CNAME lb.internal
lb.internal       A     127.0.0.1
direct            A     192.0.2.20
www               A     192.0.2.10
ads               A     192.0.2.66
tracker           A     192.0.2.77
walled            A     192.0.2.99"

TRUST_PORT=$(free_port)
TRUST_DOH=$(free_port)
INSPECT_PORT=$(free_port)
INSPECT_DOH=$(free_port)
OPEN_PORT=$(free_port)
ADMIN_PORT=$(free_port)
CERT=$ROOT/certs/localhost-ecdsa-chain.pem
KEY=$ROOT/certs/localhost-ecdsa.key
cat >"$WORK/firewall.toml" <<TOML
[resolver]
targets = ["127.0.0.1:$AUTH_PORT"]

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[[inbound]]
name = "trusting"
listen = ["127.0.0.1:$TRUST_PORT"]
listen_doh = ["127.0.0.1:$TRUST_DOH"]
tls_cert = "$CERT"
tls_key = "$KEY"

[[inbound]]
name = "inspecting"
listen = ["127.0.0.1:$INSPECT_PORT"]
listen_doh = ["127.0.0.1:$INSPECT_DOH"]
tls_cert = "$CERT"
tls_key = "$KEY"

[[inbound]]
name = "open"
listen = ["127.0.0.1:$OPEN_PORT"]

[firewall]
fail_open = false

[[firewall.domain_list]]
name = "trusted"
domains = ["alexa.example.test", "admin.example.test", "direct.example.test"]

[[firewall.domain_list]]
name = "everything"
domains = ["*"]

[[firewall.domain_list]]
name = "trackers"
domains = ["tracker.example.test"]

[[firewall.domain_list]]
name = "ads"
domains = ["ads.example.test"]

[[firewall.rule_group]]
name = "egress-trust"

[[firewall.rule_group.rule]]
name = "allow-trusted"
priority = 10
domain_list = "trusted"
action = "allow"
redirection = "trust"

[[firewall.rule_group.rule]]
name = "deny-rest"
priority = 20
domain_list = "everything"
action = "block"
block_response = "nxdomain"

[[firewall.rule_group]]
name = "egress-inspect"

[[firewall.rule_group.rule]]
name = "allow-trusted"
priority = 10
domain_list = "trusted"
action = "allow"
redirection = "inspect"

[[firewall.rule_group.rule]]
name = "deny-rest"
priority = 20
domain_list = "everything"
action = "block"
block_response = "nxdomain"

[[firewall.rule_group]]
name = "open-policy"

[[firewall.rule_group.rule]]
name = "allow-ads"
priority = 1
domain_list = "ads"
action = "allow"

[[firewall.rule_group.rule]]
name = "override-trackers"
priority = 2
domain_list = "trackers"
action = "block"
block_response = "override"
override = { domain = "walled.example.test", ttl = 123 }

[[firewall.association]]
rule_group = "egress-trust"
priority = 100
inbound = ["trusting"]

[[firewall.association]]
rule_group = "egress-inspect"
priority = 100
inbound = ["inspecting"]

[[firewall.association]]
rule_group = "open-policy"
priority = 100
inbound = ["open"]
TOML

# dig on an endpoint's Do53 port; kdig on its DoH port.
dq() { local port=$1; shift; dig +tries=1 +time=3 @127.0.0.1 -p "$port" "$@"; }
kh() { local port=$1; shift; kdig +retry=0 +timeout=3 @127.0.0.1 -p "$port" +tls-ca="$CA" +tls-hostname=localhost "$@"; }
# match TEXT PATTERN...: TEXT matches every extended regex PATTERN, and none given as !PATTERN.
match() {
    local text=$1 p
    shift
    for p in "$@"; do
        if [[ $p == '!'* ]]; then
            if grep -qE -- "${p#!}" <<<"$text"; then
                printf 'unexpected /%s/ in:\n%s\n' "${p#!}" "$text"
                return 1
            fi
        else
            expect "$text" "$p" || return 1
        fi
    done
}
# is TEXT VALUE: the last line of TEXT (the address at the end of a +short chain) is VALUE.
is() {
    [ "$(tail -n 1 <<<"$1")" = "$2" ] || { printf 'expected %s as the last line of:\n%s\n' "$2" "$1"; return 1; }
}
S='[[:space:]]+'
rr() { echo "^${1//./\\.}\\.${S}[0-9]+${S}IN${S}$2${S}${3//./\\.}"; }
curl_doh() { local port=$1; shift; curl -sS --max-time 5 --cacert "$CA" --doh-url "https://127.0.0.1:$port/dns-query" "$@"; }
# exit_code N CMD...: CMD exits with status N.
exit_code() { local want=$1 rc=0; shift; "$@" || rc=$?; echo "exit status $rc, want $want"; [ "$rc" -eq "$want" ]; }

cc=$("$DOHGATE" --block ads.example.test check-config "$WORK/firewall.toml" 2>&1) || true
check "check-config: the file is valid; trust and override as configured" match "$cc" "configuration is valid" \
    '"allow-trusted": allow "trusted", trusts redirections' 'override walled\.example\.test\. ttl 123'
check "check-config: each of the 3 endpoints evaluates cli-block (priority 0) first" \
    bash -c '[ "$(grep -A1 -E "^  firewall" | grep -c "rule group \"cli-block\" (priority 0)")" -eq 3 ]' <<<"$cc"

start_dohgate gw --config "$WORK/firewall.toml" --block ads.example.test
gw_pid=$LAST_PID

# ---- inspecting endpoint first, cold cache: alexa AAAA is blocked at its first CNAME.
check "inspect, dig UDP (cold cache): alexa AAAA is NXDOMAIN" \
    match "$(dq "$INSPECT_PORT" alexa.example.test AAAA)" "status: NXDOMAIN" "ANSWER: 0," "!pitangui"

# ---- trusting endpoint: the allowed name vouches for its chain; everything else is NXDOMAIN.
check "trust, dig: alexa AAAA (cached by the inspecting endpoint's query) gives its chain, NODATA at the end" \
    match "$(dq "$TRUST_PORT" alexa.example.test AAAA)" "status: NOERROR" "ANSWER: 2," \
    "$(rr pitangui.amazon.example.test CNAME d1.cloudfront.example.test.)"
check "trust, dig UDP: alexa resolves through its whole chain to 192.0.2.80" match "$(dq "$TRUST_PORT" alexa.example.test A)" \
    "status: NOERROR" "ANSWER: 3," \
    "$(rr alexa.example.test CNAME pitangui.amazon.example.test.)" \
    "$(rr pitangui.amazon.example.test CNAME d1.cloudfront.example.test.)" \
    "$(rr d1.cloudfront.example.test A 192.0.2.80)"
check "trust, dig +tcp: alexa resolves to 192.0.2.80" is "$(dq "$TRUST_PORT" +tcp +short alexa.example.test A)" 192.0.2.80
check "trust, dig UDP: an untrusted name that exists upstream is NXDOMAIN" \
    match "$(dq "$TRUST_PORT" www.example.test A)" "status: NXDOMAIN" "ANSWER: 0," "!192\.0\.2\.10"
check "trust, dig +tcp: an untrusted name is NXDOMAIN" match "$(dq "$TRUST_PORT" +tcp exfil.attacker.test TXT)" "status: NXDOMAIN"
check "trust, dig: a block answer echoes the question as sent (0x20) and has an OPT record" \
    match "$(dq "$TRUST_PORT" WwW.ExAmPlE.tEsT A)" "status: NXDOMAIN" "^;WwW\.ExAmPlE\.tEsT\.${S}IN${S}A" "OPT PSEUDOSECTION"
check "trust, dig +noedns: a block answer has no OPT record when the query had none" \
    match "$(dq "$TRUST_PORT" +noedns www.example.test A)" "status: NXDOMAIN" "!OPT PSEUDOSECTION"
check "trust, kdig +https (POST): alexa resolves to 192.0.2.80" is "$(kh "$TRUST_DOH" +https +short alexa.example.test A)" 192.0.2.80
check "trust, kdig +https-get: alexa resolves to 192.0.2.80" is "$(kh "$TRUST_DOH" +https-get +short alexa.example.test A)" 192.0.2.80
check "trust, kdig +https: an untrusted name is NXDOMAIN" match "$(kh "$TRUST_DOH" +https www.example.test A)" "status: NXDOMAIN"
check "trust, curl --doh-url: a trusted name whose chain ends at 127.0.0.1 is reached" \
    match "$(curl_doh "$TRUST_DOH" -f "http://admin.example.test:$ADMIN_PORT/healthz" 2>&1; echo "curl exit $?")" "ok" "^curl exit 0$"
check "trust, curl --doh-url: an untrusted name is not resolved (curl exit 6)" \
    exit_code 6 curl_doh "$TRUST_DOH" "http://lb.internal.example.test:$ADMIN_PORT/healthz"

# ---- inspecting endpoint: the same list, but every name of the chain is evaluated. alexa's
# chain is in the cache now (from the trusting endpoint): it must still be blocked here.
check "inspect, dig UDP: alexa is NXDOMAIN (blocked at pitangui.amazon), no records" \
    match "$(dq "$INSPECT_PORT" alexa.example.test A)" "status: NXDOMAIN" "ANSWER: 0," "!192\.0\.2\.80" "!pitangui"
check "inspect, dig +tcp: alexa is NXDOMAIN" match "$(dq "$INSPECT_PORT" +tcp alexa.example.test A)" "status: NXDOMAIN" "ANSWER: 0,"
check "inspect, dig: a trusted name without a chain resolves" is "$(dq "$INSPECT_PORT" +short direct.example.test A)" 192.0.2.20
check "inspect, kdig +https: alexa is NXDOMAIN" match "$(kh "$INSPECT_DOH" +https alexa.example.test A)" "status: NXDOMAIN" "!192\.0\.2\.80"
check "inspect, kdig +https-get: alexa is NXDOMAIN" match "$(kh "$INSPECT_DOH" +https-get alexa.example.test A)" "status: NXDOMAIN"
check "inspect, curl --doh-url: admin's chain (lb.internal) is blocked, curl exit 6" \
    exit_code 6 curl_doh "$INSPECT_DOH" "http://admin.example.test:$ADMIN_PORT/healthz"
check "trust, dig after inspect: the cached chain is still served whole" is "$(dq "$TRUST_PORT" +short alexa.example.test A)" 192.0.2.80

# ---- open endpoint: OVERRIDE, and --block before every configured rule group.
check "open, dig: a name no rule matches resolves" is "$(dq "$OPEN_PORT" +short www.example.test A)" 192.0.2.10
check "open, dig UDP: override is a CNAME to the override domain with its TTL (123)" \
    match "$(dq "$OPEN_PORT" tracker.example.test A)" "status: NOERROR" "ANSWER: 1," \
    "^tracker\.example\.test\.${S}123${S}IN${S}CNAME${S}walled\.example\.test\.$" "!192\.0\.2\.77"
check "open, dig +tcp: override CNAME with TTL 123 (AAAA)" match "$(dq "$OPEN_PORT" +tcp +noall +answer tracker.example.test AAAA)" \
    "^tracker\.example\.test\.${S}123${S}IN${S}CNAME${S}walled\.example\.test\.$"
check "open, dig UDP: --block ads.example.test is NXDOMAIN despite an allow rule" \
    match "$(dq "$OPEN_PORT" ads.example.test A)" "status: NXDOMAIN" "!192\.0\.2\.66"
check "open, dig +tcp: --block ads.example.test is NXDOMAIN" match "$(dq "$OPEN_PORT" +tcp ads.example.test A)" "status: NXDOMAIN"

# ---- /metrics: dohgate_firewall_matches_total{rule_group, rule, action}, whatever the label order.
curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$WORK/metrics.txt" || true
# metric NAME LABEL=VALUE...: the sample's value (nothing if there is no such sample).
metric() {
    python3 - "$WORK/metrics.txt" "$@" <<'PY'
import re, sys
path, name, *want = sys.argv[1:]
want = dict(w.split("=", 1) for w in want)
for line in open(path):
    m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}\s+(\S+)$', line.strip())
    if not m or m.group(1) != name:
        continue
    labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2)))
    if labels == want:
        print(m.group(3))
        break
PY
}
# matches GROUP RULE ACTION OP N: the match counter compared with N (OP: -eq, -ge).
matches() {
    local v
    v=$(metric dohgate_firewall_matches_total rule_group="$1" rule="$2" action="$3")
    echo "dohgate_firewall_matches_total{rule_group=\"$1\",rule=\"$2\",action=\"$3\"} = ${v:-absent}, want $4 $5"
    [ -n "$v" ] && [ "${v%.*}" "$4" "$5" ]
}
check "/metrics: egress-trust allow-trusted allow counted" matches egress-trust allow-trusted allow -ge 6
check "/metrics: egress-trust deny-rest block counted" matches egress-trust deny-rest block -ge 5
check "/metrics: egress-inspect allow-trusted allow counted" matches egress-inspect allow-trusted allow -ge 5
check "/metrics: egress-inspect deny-rest block counted (chain names)" matches egress-inspect deny-rest block -ge 5
check "/metrics: open-policy override-trackers block counted twice" matches open-policy override-trackers block -eq 2
check "/metrics: cli-block counted twice" matches cli-block cli-block block -eq 2
check "/metrics: open-policy allow-ads never decided (--block went first)" matches open-policy allow-ads allow -eq 0
check "/metrics: no unreadable answers" match "$(grep -E '^dohgate_firewall_unreadable_answers_total' "$WORK/metrics.txt")" \
    'outcome="servfail"\} 0$' 'outcome="passed"\} 0$'
check "promtool: the firewall metrics lint clean" bash -c "
    command -v promtool >/dev/null || { echo 'promtool not installed: skipped'; exit 0; }
    grep -E '^# (HELP|TYPE) dohgate_firewall_|^dohgate_firewall_' '$WORK/metrics.txt' | promtool check metrics"

kill -TERM "$gw_pid"
check "SIGTERM stops dohgate cleanly" bash -c "for i in \$(seq 50); do kill -0 $gw_pid 2>/dev/null || exit 0; sleep 0.1; done; exit 1"

finish
