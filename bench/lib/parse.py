#!/usr/bin/env python3
"""Turn one load run's raw output into tab-separated figures.

  parse.py dnsperf SUMMARY VERBOSE   dnsperf stdout (summary) and its -v lines (may be the same file)
  parse.py h2load  STDOUT  LOGFILE   h2load stdout and its --log-file

Prints one line: qps sent completed lost p50_us p99_us avg_us rcodes
(rcodes: "NOERROR 90.1% NXDOMAIN 9.9%" for dnsperf, "2xx 100.0%" for h2load).
Percentiles are exact, computed from every answered query's own latency (dnsperf -v prints
one line per answer with its latency; h2load --log-file one line per request).
"""

import math
import re
import sys


def percentile(counts: dict, total: int, q: float) -> float:
    """Nearest-rank percentile over a {microseconds: count} histogram."""
    if total == 0:
        return float("nan")
    rank = min(total, max(1, math.ceil(q * total)))
    seen = 0
    for k in sorted(counts):
        seen += counts[k]
        if seen >= rank:
            return float(k)
    return float("nan")


def fmt(x) -> str:
    if isinstance(x, float):
        return "nan" if x != x else f"{x:.1f}"
    return str(x)


def dnsperf(summary_path: str, verbose_path: str) -> list:
    text = open(summary_path, errors="replace").read()

    def grab(pattern, cast=float, default=float("nan")):
        m = re.search(pattern, text)
        return cast(m.group(1)) if m else default

    sent = grab(r"Queries sent:\s+(\d+)", int, 0)
    completed = grab(r"Queries completed:\s+(\d+)", int, 0)
    lost = grab(r"Queries lost:\s+(\d+)", int, 0)
    qps = grab(r"Queries per second:\s+([\d.]+)")
    avg = grab(r"Average Latency \(s\):\s+([\d.]+)") * 1e6
    m = re.search(r"Response codes:\s+(.*)", text)
    rcodes = ""
    if m:
        # shares for the expected codes, counts too for the others (SERVFAIL 0.00% hides 12)
        rcodes = " ".join(f"{a} {b}" if a in ("NOERROR", "NXDOMAIN") else f"{a} {n} ({b})"
                          for a, n, b in re.findall(r"([A-Z]+) (\d+) \(([\d.]+%)\)", m.group(1)))
    counts: dict = {}
    n = 0
    with open(verbose_path, errors="replace") as f:
        for line in f:
            if not line.startswith("> "):
                continue
            parts = line.split()
            if len(parts) < 5 or parts[1] in ("T", "I"):
                continue
            try:
                us = int(round(float(parts[-1]) * 1e6))
            except ValueError:
                continue
            counts[us] = counts.get(us, 0) + 1
            n += 1
    return [qps, sent, completed, lost, percentile(counts, n, 0.50), percentile(counts, n, 0.99), avg,
            rcodes or "-"]


def h2load(stdout_path: str, log_path: str) -> list:
    text = open(stdout_path, errors="replace").read()
    m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", text)
    qps = float(m.group(1)) if m else float("nan")
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text)
    if m:
        _total, started, done, succeeded, failed, errored, timeout = map(int, m.groups())
    else:
        started = done = succeeded = failed = errored = timeout = 0
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    s2, s3, s4, s5 = map(int, m.groups()) if m else (0, 0, 0, 0)
    non2xx = s3 + s4 + s5
    # "lost": requests that failed, errored, timed out or got a non-2xx status; requests still in
    # flight when the -D duration ended are neither.
    lost = failed + errored + timeout + non2xx
    counts: dict = {}
    n = 0
    total_us = 0
    with open(log_path, errors="replace") as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) < 3 or not parts[1].startswith("2"):
                continue
            us = int(parts[2])
            counts[us] = counts.get(us, 0) + 1
            n += 1
            total_us += us
    avg = total_us / n if n else float("nan")
    answered = s2 + non2xx
    rcodes = f"2xx {100.0 * s2 / answered:.2f}%" if answered else "-"
    if non2xx:
        rcodes += f" non-2xx {100.0 * non2xx / answered:.2f}%"
    return [qps, started, succeeded, lost, percentile(counts, n, 0.50), percentile(counts, n, 0.99), avg, rcodes]


def main() -> None:
    kind, a, b = sys.argv[1:4]
    row = dnsperf(a, b) if kind == "dnsperf" else h2load(a, b)
    print("\t".join(fmt(x) for x in row))


if __name__ == "__main__":
    main()
