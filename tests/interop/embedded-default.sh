#!/usr/bin/env bash
# `dohgate` with no arguments, in a private network namespace (only 127.0.0.1 and ::1 exist,
# so the default resolver from /etc/resolv.conf is unreachable and no host port is taken).
source "$(dirname "$0")/lib.sh"

if ! unshare -n true 2>/dev/null; then
    echo "interop embedded-default: 0 passed, 0 failed (skipped: cannot create a network namespace here)"
    exit 0
fi

cat >"$WORK/inner.sh" <<INNER
set -u
ip link set lo up
"$DOHGATE" >"$WORK/default.log" 2>&1 &
pid=\$!
for i in \$(seq 100); do grep -q '^try: dig' "$WORK/default.log" 2>/dev/null && break; sleep 0.1; done
dig +tries=1 +time=2 @127.0.0.1 -p 5353 localhost A >"$WORK/localhost.out" 2>&1
dig +tries=1 +time=2 @127.0.0.1 -p 5353 -x 192.168.1.1 >"$WORK/ptr.out" 2>&1
curl -fsS http://127.0.0.1:9153/healthz >"$WORK/healthz.out" 2>&1
# The kdig and curl lines the banner prints for the self-signed DoH listener, run as printed.
eval "\$(sed -n 's/^try: kdig/kdig +retry=0 +timeout=3/p' "$WORK/default.log")" >"$WORK/doh-kdig.out" 2>&1
eval "\$(sed -n 's/^try: curl/curl --max-time 5/p' "$WORK/default.log")" >"$WORK/doh-curl.out" 2>&1
kill -TERM \$pid
wait \$pid
echo \$? >"$WORK/exit.out"
INNER
timeout 60 unshare -n bash "$WORK/inner.sh"

check "banner names the Do53 and admin listeners" expect "$(cat "$WORK/default.log")" "do53 \(udp\+tcp\) +127\.0\.0\.1:5353"
check "banner shows an example query" expect "$(cat "$WORK/default.log")" "try: dig @127\.0\.0\.1 -p 5353"
check "localhost resolves to 127.0.0.1" expect "$(cat "$WORK/localhost.out")" "localhost\.[[:space:]]+[0-9]+[[:space:]]+IN[[:space:]]+A[[:space:]]+127\.0\.0\.1"
check "private reverse names are answered locally" expect "$(cat "$WORK/ptr.out")" "status: NXDOMAIN"
check "/healthz answers" expect "$(cat "$WORK/healthz.out")" "^ok"
check "banner names the DoH listener and its self-signed certificate's fingerprint" expect "$(cat "$WORK/default.log")" "SHA-256 fingerprint ([0-9A-F]{2}:){31}[0-9A-F]{2}"
check "the printed kdig line resolves over DoH" expect "$(cat "$WORK/doh-kdig.out")" "localhost\.[[:space:]]+[0-9]+[[:space:]]+IN[[:space:]]+A[[:space:]]+127\.0\.0\.1"
check "the printed curl -k line gets a DNS answer" expect "$(cat "$WORK/doh-curl.out")" "^200 application/dns-message"
check "SIGTERM exits 0" expect "$(cat "$WORK/exit.out")" "^0$"

finish
