#!/usr/bin/env bash
# kdig, dig and curl over DoH (RFC 8484, TLS from the test CA of certs/) and cleartext DoH
# against the dohgate binary, forwarding to two real authoritative servers (Knot); then
# DoH-FIPS: served by a `--features fips` build, refused with how to build it otherwise.
source "$(dirname "$0")/lib.sh"

CA=$ROOT/certs/test-ca.pem
DEFAULT_PORT=$(free_port)
CORP_PORT=$(free_port)
start_knot default "$DEFAULT_PORT" example.test "\$ORIGIN example.test.
\$TTL 300
@     SOA ns.example.test. admin.example.test. 1 3600 600 86400 300
@     NS  ns
ns    A   192.0.2.53
www   A   192.0.2.10
short 30 A 192.0.2.11
admin A   127.0.0.1"
start_knot corp "$CORP_PORT" corp.test "\$ORIGIN corp.test.
\$TTL 300
@    SOA ns.corp.test. admin.corp.test. 1 3600 600 86400 300
@    NS  ns
ns   A   10.0.0.53
host A   10.0.0.10"

GW_PORT=$(free_port)
DOH_PORT=$(free_port)
PLAIN_PORT=$(free_port)
ADMIN_PORT=$(free_port)
cat >"$WORK/doh.toml" <<TOML
[resolver]
targets = ["127.0.0.1:$DEFAULT_PORT"]

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[[outbound]]
name = "out"

[[rule]]
name = "corp"
domain = "corp.test"
type = "forward"
outbound = "out"
targets = ["127.0.0.1:$CORP_PORT"]

[[inbound]]
name = "default"
listen = ["127.0.0.1:$GW_PORT"]
listen_doh = ["127.0.0.1:$DOH_PORT"]
listen_doh_plain = ["127.0.0.1:$PLAIN_PORT"]
tls_cert = "$ROOT/certs/localhost-ecdsa-chain.pem"
tls_key = "$ROOT/certs/localhost-ecdsa.key"
TOML
start_dohgate gw --config "$WORK/doh.toml"
gw_pid=$LAST_PID

URL=https://127.0.0.1:$DOH_PORT/dns-query
# `localhost A`, ID 0, as a GET parameter and as a POST body.
Q64=AAABAAABAAAAAAAACWxvY2FsaG9zdAAAAQAB
printf '\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x09localhost\x00\x00\x01\x00\x01' >"$WORK/q.bin"

kh() { kdig +retry=0 +timeout=3 @127.0.0.1 -p "$DOH_PORT" +tls-ca="$CA" +tls-hostname=localhost "$@"; }
dh() { dig +tries=1 +time=3 @127.0.0.1 -p "$DOH_PORT" +tls-ca="$CA" +tls-hostname=localhost "$@"; }

check "kdig +https (POST, HTTP/2): default resolver" bash -c "[ \"\$(kdig +short +retry=0 +timeout=3 @127.0.0.1 -p $DOH_PORT +https +tls-ca=$CA +tls-hostname=localhost www.example.test A)\" = 192.0.2.10 ]"
check "kdig +https-get: forwarding rule" bash -c "[ \"\$(kdig +short +retry=0 +timeout=3 @127.0.0.1 -p $DOH_PORT +https-get +tls-ca=$CA +tls-hostname=localhost host.corp.test A)\" = 10.0.0.10 ]"
check "kdig +https: NXDOMAIN is a DNS answer" expect "$(kh +https nope.example.test A)" "status: NXDOMAIN"
check "dig +https" bash -c "[ \"\$(dig +short +tries=1 +time=3 @127.0.0.1 -p $DOH_PORT +https +tls-ca=$CA +tls-hostname=localhost host.corp.test A)\" = 10.0.0.10 ]"
check "dig +https-get" expect "$(dh +https-get www.example.test A)" "www\.example\.test\.[[:space:]]+[0-9]+[[:space:]]+IN[[:space:]]+A[[:space:]]+192\.0\.2\.10"
check "dig +http-plain (h2c behind a proxy)" bash -c "[ \"\$(dig +short +tries=1 +time=3 @127.0.0.1 -p $PLAIN_PORT +http-plain host.corp.test A)\" = 10.0.0.10 ]"
check "dig +http-plain-get" bash -c "[ \"\$(dig +short +tries=1 +time=3 @127.0.0.1 -p $PLAIN_PORT +http-plain-get www.example.test A)\" = 192.0.2.10 ]"
check "curl --doh-url resolves a host name through dohgate" \
    bash -c "curl -fsS --max-time 5 --cacert $CA --doh-url $URL http://admin.example.test:$ADMIN_PORT/healthz | grep -q ok"
check "curl GET over HTTP/2 with accept: application/dns-message" \
    expect "$(curl -sS --max-time 5 --cacert "$CA" -H 'accept: application/dns-message' -o /dev/null -w '%{http_version} %{http_code} %{content_type}' "https://localhost:$DOH_PORT/dns-query?dns=$Q64")" \
    "^2 200 application/dns-message$"
check "curl POST over HTTP/1.1" \
    expect "$(curl -sS --max-time 5 --http1.1 --cacert "$CA" -H 'content-type: application/dns-message' -H 'accept: application/dns-message' --data-binary @"$WORK/q.bin" -o /dev/null -w '%{http_version} %{http_code} %{content_type}' "https://localhost:$DOH_PORT/dns-query")" \
    "^1.1 200 application/dns-message$"
check "cache-control is the answer's smallest TTL" \
    expect "$(curl -sS --max-time 5 --cacert "$CA" -D - -o /dev/null "https://localhost:$DOH_PORT/dns-query?dns=$(python3 -c 'import base64;print(base64.urlsafe_b64encode(bytes.fromhex("000001000001000000000000")+b"\x05short\x07example\x04test\x00\x00\x01\x00\x01").rstrip(b"=").decode())')")" \
    "cache-control: max-age=30"
out=$(curl -sS --max-time 5 --cacert "$CA" -H 'content-type: text/plain' --data-binary @"$WORK/q.bin" -w '%{http_code}' "$URL")
check "curl: wrong content type is 415" expect "$out" "^415$"
check "curl: the error body is a one-line reason" expect "$out" "^content-type must be application/dns-message$"
check "curl: PUT is 405" expect "$(curl -sS --max-time 5 --cacert "$CA" -X PUT -w ' %{http_code}' "$URL")" " 405$"
check "curl: unknown path is 404" expect "$(curl -sS --max-time 5 --cacert "$CA" -w ' %{http_code}' "https://127.0.0.1:$DOH_PORT/other?dns=$Q64")" " 404$"
check "/metrics counts DoH answers and errors" bash -c "m=\$(curl -fsS http://127.0.0.1:$ADMIN_PORT/metrics) && grep -E '^dohgate_doh_http_responses_total\{endpoint=\"default\",status=\"200\"\} [1-9]' <<<\"\$m\" && grep -E '^dohgate_doh_http_responses_total\{endpoint=\"default\",status=\"415\"\} 1' <<<\"\$m\" && grep -E '^dohgate_queries_total\{endpoint=\"default\",protocol=\"doh\",transport=\"h2\"\} [1-9]' <<<\"\$m\""

kill -TERM "$gw_pid"
check "SIGTERM stops dohgate cleanly" bash -c "for i in \$(seq 50); do kill -0 $gw_pid 2>/dev/null || exit 0; sleep 0.1; done; exit 1"

# DoH-FIPS beside Do53 on one endpoint.
FIPS_PORT=$(free_port)
GW2_PORT=$(free_port)
"$DOHGATE" --listen-do53 "127.0.0.1:$GW2_PORT" --listen-doh-fips "127.0.0.1:$FIPS_PORT" \
    --tls-cert "$ROOT/certs/localhost-ecdsa-chain.pem" --tls-key "$ROOT/certs/localhost-ecdsa.key" \
    --upstream "127.0.0.1:$DEFAULT_PORT" >"$WORK/fips.log" 2>&1 &
fips_pid=$!
PIDS+=("$fips_pid")
for i in $(seq 100); do
    grep -qE '^try: dig' "$WORK/fips.log" && break
    kill -0 "$fips_pid" 2>/dev/null || break
    sleep 0.1
done
if grep -qE '^try: dig' "$WORK/fips.log"; then
    check "fips build: kdig +https to DoH-FIPS" bash -c "[ \"\$(kdig +short +retry=0 +timeout=3 @127.0.0.1 -p $FIPS_PORT +https +tls-ca=$CA +tls-hostname=localhost www.example.test A)\" = 192.0.2.10 ]"
    check "fips build: ChaCha20 only is refused" bash -c "! curl -sS --max-time 5 --tls13-ciphers TLS_CHACHA20_POLY1305_SHA256 --tls-max 1.3 --tlsv1.3 --cacert $CA -o /dev/null https://localhost:$FIPS_PORT/dns-query?dns=$Q64"
    check "fips build: X25519 only is refused" bash -c "! curl -sS --max-time 5 --curves X25519 --cacert $CA -o /dev/null https://localhost:$FIPS_PORT/dns-query?dns=$Q64"
    check "fips build: AES-GCM with P-256 is served" expect "$(curl -sS --max-time 5 --tls13-ciphers TLS_AES_128_GCM_SHA256 --curves P-256 --cacert "$CA" -o /dev/null -w '%{http_code}' "https://localhost:$FIPS_PORT/dns-query?dns=$Q64")" "^200$"
    kill -TERM "$fips_pid"
else
    code=0
    wait "$fips_pid" || code=$?
    check "default build: DoH-FIPS refused at start, exit status non-zero" bash -c "[ $code -ne 0 ]"
    check "default build: the refusal says how to build with FIPS" expect "$(cat "$WORK/fips.log")" "cargo build --release --features fips"
fi

finish
