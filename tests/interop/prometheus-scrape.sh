#!/usr/bin/env bash
# A real Prometheus (Debian's prometheus 2.42) pointed at the shipped scrape config
# (deploy/prometheus/prometheus.yml, its target moved to this dohgate's admin port) scrapes the
# dohgate binary on loopback: the target is up, the counters match the queries sent with dig,
# the shipped alerting rules load, and every expression of the Grafana dashboard evaluates.
# The query log of the same run is checked line by line as JSON.
source "$(dirname "$0")/lib.sh"

if ! command -v prometheus >/dev/null 2>&1; then
    echo "interop prometheus-scrape: 0 passed, 0 failed (skipped: prometheus is not installed)"
    exit 0
fi

UP_PORT=$(free_port)
start_knot up "$UP_PORT" example.test "\$ORIGIN example.test.
\$TTL 300
@    SOA ns.example.test. admin.example.test. 1 3600 600 86400 300
@    NS  ns
ns   A   192.0.2.53
a1   A   192.0.2.11
a2   A   192.0.2.12
a3   A   192.0.2.13
a4   A   192.0.2.14
a5   A   192.0.2.15"

GW_PORT=$(free_port)
ADMIN_PORT=$(free_port)
cat >"$WORK/dohgate.toml" <<TOML
[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[resolver]
targets = ["127.0.0.1:$UP_PORT"]

[query_log]
path = "$WORK/queries.log"

[[inbound]]
name = "lab"
listen = ["127.0.0.1:$GW_PORT"]
TOML
start_dohgate gw --config "$WORK/dohgate.toml"

# 5 NOERROR and 2 NXDOMAIN, over UDP and TCP; distinct names, so none is answered from the cache.
for i in 1 2 3; do dig +tries=1 +time=3 @127.0.0.1 -p "$GW_PORT" "a$i.example.test" A >/dev/null; done
for i in 4 5; do dig +tcp +tries=1 +time=3 @127.0.0.1 -p "$GW_PORT" "a$i.example.test" A >/dev/null; done
for n in nope1 nope2; do dig +tries=1 +time=3 @127.0.0.1 -p "$GW_PORT" "$n.example.test" A >/dev/null; done

PROM_PORT=$(free_port)
mkdir -p "$WORK/prom"
cp "$ROOT/deploy/prometheus/alerts.yml" "$WORK/prom/"
sed -e "s/127\.0\.0\.1:9153/127.0.0.1:$ADMIN_PORT/" -e 's/scrape_interval: 15s/scrape_interval: 1s/' \
    "$ROOT/deploy/prometheus/prometheus.yml" >"$WORK/prom/prometheus.yml"
spawn prometheus prometheus --config.file="$WORK/prom/prometheus.yml" \
    --storage.tsdb.path="$WORK/prom/data" --web.listen-address="127.0.0.1:$PROM_PORT" \
    --log.level=warn

# promql EXPR: the value of an instant query (the first sample), or "error: ..." / "none".
promql() {
    curl -fsS --max-time 5 "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" 2>&1 |
        python3 -c '
import json, sys
try:
    r = json.load(sys.stdin)
except Exception as e:
    print("error: " + str(e)); sys.exit()
if r.get("status") != "success":
    print("error: " + r.get("error", "?")); sys.exit()
res = r["data"]["result"]
if r["data"]["resultType"] == "scalar":
    print(res[1])
elif res:
    print(res[0]["value"][1])
else:
    print("none")'
}

# wait_value EXPR WANT [SECONDS]: waits until EXPR evaluates to WANT.
wait_value() {
    local expr=$1 want=$2 secs=${3:-30} i got=""
    for ((i = 0; i < secs * 4; i++)); do
        got=$(promql "$expr")
        [ "$got" = "$want" ] && return 0
        sleep 0.25
    done
    echo "$expr = $got, expected $want"
    return 1
}

check "prometheus scrapes dohgate (up == 1)" wait_value 'up{job="dohgate"}' 1 60
check "queries counted: 7" wait_value 'sum(dohgate_queries_total{job="dohgate", endpoint="lab"})' 7
check "over TCP: 2" wait_value 'sum(dohgate_queries_total{endpoint="lab", transport="tcp"})' 2
check "NXDOMAIN answers: 2" wait_value 'sum(dohgate_responses_total{endpoint="lab", rcode="NXDOMAIN"})' 2
check "target attempts: 7 ok" wait_value "sum(dohgate_target_outcomes_total{target=\"127.0.0.1:$UP_PORT\", outcome=\"ok\"})" 7
check "build info scraped" wait_value 'count(dohgate_build_info{job="dohgate"})' 1
check "capacity status 0 of 10000 qps" wait_value 'dohgate_endpoint_capacity_status{endpoint="lab"} + dohgate_endpoint_capacity_qps{endpoint="lab"}' 10000
check "process collector scraped" wait_value 'count(process_start_time_seconds{job="dohgate"})' 1

rules_ok() {
    curl -fsS --max-time 5 "http://127.0.0.1:$PROM_PORT/api/v1/rules" | python3 -c '
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [r["name"] for r in rules if r.get("health") not in ("ok", "unknown")]
names = {r["name"] for r in rules}
need = {"DohgateTargetDown", "DohgateServfailRatioHigh", "DohgateEndpointNearCapacity", "DohgateConfigReloadFailed"}
assert need <= names, f"missing {need - names}"
assert not bad, f"unhealthy rules {bad}"
print(f"{len(rules)} rules loaded")'
}
check "the shipped alerting rules load" rules_ok
check "no alert fires on a healthy gateway" wait_value 'count(ALERTS{alertstate="firing"}) or vector(0)' 0 5

dashboard_exprs_evaluate() {
    local failed=0 expr got
    while IFS= read -r expr; do
        got=$(promql "$expr")
        case "$got" in
            error*) echo "$expr: $got"; failed=1 ;;
        esac
    done < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for p in d["panels"]:
    for t in p.get("targets", []):
        print(t["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*"))' \
        "$ROOT/deploy/grafana/dohgate-dashboard.json")
    return $failed
}
check "every Grafana dashboard expression evaluates" dashboard_exprs_evaluate

query_log_ok() {
    python3 - "$WORK/queries.log" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 7, f"{len(lines)} lines"
recs = [json.loads(l) for l in lines]
assert [r["rcode"] for r in recs].count("NXDOMAIN") == 2
assert [r["transport"] for r in recs].count("TCP") == 2
ok = recs[0]
assert ok["query_name"] == "a1.example.test." and ok["query_type"] == "A", ok
assert ok["answers"] == [{"Rdata": "192.0.2.11", "Type": "A", "Class": "IN"}], ok
assert ok["endpoint"] == "lab" and ok["protocol"] == "do53" and ok["rule"] is None, ok
PY
}
check "query log: 7 JSON lines with the Route 53 fields" query_log_ok

finish
