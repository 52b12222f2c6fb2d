#!/usr/bin/env python3
"""Generate the benchmark zone, the dnsperf query file and the DoH (RFC 8484 GET) path file.

Usage: gen.py OUTDIR [--names N] [--queries Q] [--seed S]

Writes, deterministically for a given seed:
  OUTDIR/bench.test.zone   zone `bench.test.`: N A records (h00000..), CNAME chains of
                           length 1-3 ending in an A name, one ~1500-byte TXT (`big`),
                           SOA minimum (negative TTL) 3600, every TTL 3600
  OUTDIR/queries.txt       dnsperf input, "name TYPE" per line, mix below
  OUTDIR/doh-paths.txt     the same queries as RFC 8484 GET paths:
                           /dns-query?dns=<base64url of the wire query, ID 0, RD, EDNS 1232>
  OUTDIR/mix.txt           the mix actually written (for the report)

Query mix (shares of the query file): 80% A on existing names, 10% A on names that do not
exist (NXDOMAIN), 7% A on the head of a CNAME chain, 2% AAAA on existing names (NODATA),
1% TXT on the ~1500-byte record (truncated over UDP at 1232, so it exercises TC/TCP paths).
"""

import argparse
import base64
import os
import random
import struct

ZONE = "bench.test."


def wire_query(name: str, qtype: int, edns_size: int = 1232) -> bytes:
    """A DNS query: ID 0 (RFC 8484 section 4.1), RD set, one question, an EDNS0 OPT record."""
    header = struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 1)
    qname = b"".join(
        bytes([len(label)]) + label.encode("ascii") for label in name.rstrip(".").split(".")
    ) + b"\x00"
    question = qname + struct.pack("!HH", qtype, 1)
    opt = b"\x00" + struct.pack("!HHIH", 41, edns_size, 0, 0)
    return header + question + opt


QTYPES = {"A": 1, "AAAA": 28, "TXT": 16, "CNAME": 5}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--names", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=20000)
    ap.add_argument("--chains", type=int, default=500)
    ap.add_argument("--seed", type=int, default=6)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    os.makedirs(args.outdir, exist_ok=True)

    hosts = [f"h{i:05d}" for i in range(args.names)]
    lines = [
        f"$ORIGIN {ZONE}",
        "$TTL 3600",
        f"@ 3600 IN SOA ns1.{ZONE} hostmaster.{ZONE} 1 3600 900 604800 3600",
        f"@ 3600 IN NS ns1.{ZONE}",
        "ns1 3600 IN A 127.0.0.1",
    ]
    for i, h in enumerate(hosts):
        lines.append(f"{h} 3600 IN A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")
    # CNAME chains: cNNNN-0 -> cNNNN-1 -> ... -> hXXXXX (length 1..3)
    chain_heads = []
    for c in range(args.chains):
        length = 1 + c % 3
        target = rnd.choice(hosts)
        names = [f"c{c:04d}-{k}" for k in range(length)]
        for k, n in enumerate(names):
            nxt = names[k + 1] if k + 1 < length else target
            lines.append(f"{n} 3600 IN CNAME {nxt}")
        chain_heads.append(names[0])
    # ~1500-byte TXT: 6 strings of 250 characters
    chunk = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(250))
    lines.append("big 3600 IN TXT " + " ".join(f'"{chunk}"' for _ in range(6)))
    with open(os.path.join(args.outdir, "bench.test.zone"), "w") as f:
        f.write("\n".join(lines) + "\n")

    queries = []
    counts = {"A hit": 0, "NXDOMAIN": 0, "CNAME chain (A)": 0, "AAAA NODATA": 0, "TXT ~1500 B": 0}
    for i in range(args.queries):
        r = rnd.random()
        if r < 0.80:
            queries.append((rnd.choice(hosts) + "." + ZONE, "A"))
            counts["A hit"] += 1
        elif r < 0.90:
            queries.append((f"nx{i:06d}-{rnd.randrange(1 << 30):x}.{ZONE}", "A"))
            counts["NXDOMAIN"] += 1
        elif r < 0.97:
            queries.append((rnd.choice(chain_heads) + "." + ZONE, "A"))
            counts["CNAME chain (A)"] += 1
        elif r < 0.99:
            queries.append((rnd.choice(hosts) + "." + ZONE, "AAAA"))
            counts["AAAA NODATA"] += 1
        else:
            queries.append(("big." + ZONE, "TXT"))
            counts["TXT ~1500 B"] += 1

    with open(os.path.join(args.outdir, "queries.txt"), "w") as f:
        for name, t in queries:
            f.write(f"{name} {t}\n")
    with open(os.path.join(args.outdir, "doh-paths.txt"), "w") as f:
        for name, t in queries:
            b64 = base64.urlsafe_b64encode(wire_query(name, QTYPES[t])).rstrip(b"=").decode()
            f.write(f"/dns-query?dns={b64}\n")
    with open(os.path.join(args.outdir, "mix.txt"), "w") as f:
        f.write(
            f"zone {ZONE}: {args.names} A names, {args.chains} CNAME chains (length 1-3), "
            f"one ~1500-byte TXT; {len(queries)} queries: "
            + ", ".join(f"{k} {100.0 * v / len(queries):.1f}%" for k, v in counts.items())
            + "\n"
        )


if __name__ == "__main__":
    main()
