#!/usr/bin/env python3
"""Median table and dohgate/dnsdist ratios from bench/run.sh's results.tsv.

  report.py RESULTS_TSV META_FILE > results.md

results.tsv columns (one row per run, or per skipped mode/server):
  mode server round status qps sent completed lost p50_us p99_us avg_us cpu_s rss_kib answers note
META_FILE: markdown lines to print under the title (command, machine, versions, data mix).
"""

import csv
import math
import statistics
import sys

MODE_TITLES = {
    "udp": "Do53 UDP -> Do53, no cache",
    "tcp": "Do53 TCP -> Do53, no cache",
    "doh": "DoH HTTP/2 GET -> Do53, no cache",
    "udp-cache": "Do53 UDP, cache on (hot set)",
    "tcp-cache": "Do53 TCP, cache on (hot set)",
    "doh-cache": "DoH HTTP/2 GET, cache on (hot set)",
    "udp-cache-fw": "Do53 UDP, cache on, DNS Firewall (dohgate)",
    "doh-cache-fw": "DoH HTTP/2 GET, cache on, DNS Firewall (dohgate)",
}
# Issue 6 goals: dohgate qps / dnsdist qps in the same run.
GOALS = {"udp": 1.5, "tcp": 1.5, "doh": 1.5, "udp-cache": 1.2, "doh-cache": 1.2}
SERVER_ORDER = {"dnsdist": 0, "dohgate": 1, "knot-direct": 2}
COLS = ["mode", "server", "round", "status", "qps", "sent", "completed", "lost", "p50_us", "p99_us",
        "avg_us", "cpu_s", "rss_kib", "answers", "note"]


def num(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return v


def med(values):
    vals = [v for v in values if not math.isnan(v)]
    return statistics.median(vals) if vals else float("nan")


def f(v, digits=0, unit=""):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:,.{digits}f}{unit}"


def ratio(a, b):
    if any(isinstance(x, float) and math.isnan(x) for x in (a, b)) or not b:
        return float("nan")
    return a / b


def main() -> None:
    rows = []
    with open(sys.argv[1]) as fh:
        for rec in csv.reader(fh, delimiter="\t"):
            if not rec or rec[0] == "mode":
                continue
            rec += [""] * (len(COLS) - len(rec))
            rows.append(dict(zip(COLS, rec)))
    meta = open(sys.argv[2]).read() if len(sys.argv) > 2 else ""

    modes = []
    for r in rows:
        if r["mode"] not in modes:
            modes.append(r["mode"])

    out = ["# dohgate vs dnsdist: benchmark results", "", meta.rstrip(), ""]
    out += [
        "Medians over the rounds of each mode. qps: answered queries per second as the load "
        "generator saw them; lost: queries without an answer (dnsperf) or failed/errored/timed-out/"
        "non-2xx requests (h2load); p50/p99: exact percentiles over every answered query's latency "
        "(dnsperf `-v` per-answer latencies, h2load `--log-file` per-request times); CPU: utime+stime "
        "of the server process during the run (/proc/PID/stat), also per answered query; peak RSS: "
        "VmHWM of the server, reset before each run (/proc/PID/clear_refs). "
        "The load generator, the server and Knot share the machine's cores, so compare servers "
        "within a mode, never across modes.",
        "",
        "| Mode | Server | Runs | qps | lost | p50 ms | p99 ms | CPU s | CPU µs/query | peak RSS MiB | answers |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    medians = {}
    notes = []
    for mode in modes:
        servers = sorted({r["server"] for r in rows if r["mode"] == mode}, key=lambda s: SERVER_ORDER.get(s, 9))
        for srv in servers:
            mine = [r for r in rows if r["mode"] == mode and r["server"] == srv]
            ok = [r for r in mine if r["status"] == "ok"]
            if not ok:
                why = "; ".join(sorted({r["note"] or r["status"] for r in mine}))
                out.append(f"| {MODE_TITLES.get(mode, mode)} | {srv} | 0 | {why} | | | | | | | |")
                notes.append(f"- {mode} / {srv}: {why}")
                continue
            m = {
                "qps": med(num(r["qps"]) for r in ok),
                "lost": med(num(r["lost"]) for r in ok),
                "p50": med(num(r["p50_us"]) / 1000 for r in ok),
                "p99": med(num(r["p99_us"]) / 1000 for r in ok),
                "cpu": med(num(r["cpu_s"]) for r in ok),
                "cpuq": med(num(r["cpu_s"]) * 1e6 / num(r["completed"]) if num(r["completed"]) else float("nan")
                            for r in ok),
                "rss": med(num(r["rss_kib"]) / 1024 for r in ok),
            }
            medians[(mode, srv)] = m
            answers = ok[len(ok) // 2]["answers"]
            failed = [r for r in mine if r["status"] != "ok"]
            runs = f"{len(ok)}" + (f" (+{len(failed)} failed)" if failed else "")
            for r in failed:
                notes.append(f"- {mode} / {srv} round {r['round']}: {r['status']} {r['note']}")
            out.append(
                f"| {MODE_TITLES.get(mode, mode)} | {srv} | {runs} | {f(m['qps'])} | {f(m['lost'])} | "
                f"{f(m['p50'], 3)} | {f(m['p99'], 3)} | {f(m['cpu'], 2)} | {f(m['cpuq'], 2)} | "
                f"{f(m['rss'], 1)} | {answers} |"
            )

    out += ["", "## dohgate / dnsdist", "",
            "qps ratio > 1 means dohgate answered more; p99, CPU per query and RSS ratios < 1 mean "
            "dohgate was lower (better). Goals from issue 6.", "",
            "| Mode | qps ratio | goal | p99 ratio | CPU/query ratio | peak RSS ratio |",
            "|---|---:|---|---:|---:|---:|"]
    for mode in modes:
        a, b = medians.get((mode, "dohgate")), medians.get((mode, "dnsdist"))
        goal = GOALS.get(mode)
        if not a or not b:
            out.append(f"| {MODE_TITLES.get(mode, mode)} | n/a | "
                       f"{'>= %.1fx' % goal if goal else '-'} (not measured) | n/a | n/a | n/a |")
            continue
        q = ratio(a["qps"], b["qps"])
        if goal:
            verdict = f">= {goal:.1f}x: " + ("met" if q >= goal else "not met")
        else:
            verdict = "-"
        out.append(
            f"| {MODE_TITLES.get(mode, mode)} | {f(q, 2)}x | {verdict} | {f(ratio(a['p99'], b['p99']), 2)} | "
            f"{f(ratio(a['cpuq'], b['cpuq']), 2)} | {f(ratio(a['rss'], b['rss']), 2)} |"
        )
    k, d = medians.get(("udp", "knot-direct")), medians.get(("udp", "dnsdist"))
    if k:
        out += ["", f"Ceiling: Knot answering directly over UDP: {f(k['qps'])} qps (median); "
                f"dnsdist reached {f(ratio(d['qps'], k['qps']) * 100 if d else float('nan'), 0)}% of it"
                + (f", dohgate {f(ratio(medians[('udp', 'dohgate')]['qps'], k['qps']) * 100, 0)}%"
                   if ("udp", "dohgate") in medians else "") + "."]
    fw = [(m[: -len("-fw")], m) for m in modes if m.endswith("-fw")]
    if fw:
        out += ["", "## Cost of the DNS Firewall", "",
                "Each server in a firewall mode (`*-cache-fw`, dohgate with the generated rule group) over the "
                "same server in the same mode without it (`*-cache`, the phase before). dnsdist runs unchanged "
                "in both: its ratio is the drift of the machine between the two phases, not a firewall cost.", "",
                "| Mode | Server | qps ratio | p99 ratio | CPU/query ratio | peak RSS ratio |",
                "|---|---|---:|---:|---:|---:|"]
        for base, mode in fw:
            for srv in ("dohgate", "dnsdist"):
                a, b = medians.get((mode, srv)), medians.get((base, srv))
                if not a or not b:
                    out.append(f"| {mode} / {base} | {srv} | n/a (both modes must run) | | | |")
                    continue
                out.append(
                    f"| {mode} / {base} | {srv} | {f(ratio(a['qps'], b['qps']), 3)}x | "
                    f"{f(ratio(a['p99'], b['p99']), 2)} | {f(ratio(a['cpuq'], b['cpuq']), 2)} | "
                    f"{f(ratio(a['rss'], b['rss']), 2)} |"
                )
    if notes:
        out += ["", "## Skipped or failed", ""] + sorted(set(notes))

    out += ["", "## Every run", "",
            "| Mode | Server | Round | Status | qps | lost | p50 ms | p99 ms | CPU s | peak RSS MiB | answers |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["status"] == "skipped":
            continue
        out.append(
            f"| {r['mode']} | {r['server']} | {r['round']} | {r['status']} | {f(num(r['qps']))} | "
            f"{f(num(r['lost']))} | {f(num(r['p50_us']) / 1000, 3)} | {f(num(r['p99_us']) / 1000, 3)} | "
            f"{f(num(r['cpu_s']), 2)} | {f(num(r['rss_kib']) / 1024, 1)} | {r['answers']} |"
        )
    print("\n".join(out))


if __name__ == "__main__":
    main()
