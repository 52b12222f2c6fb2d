#!/usr/bin/env python3
"""Open N idle TLS + HTTP/2 connections to a DoH listener and report the server's memory.

  idle_client.py --port P --pid SERVER_PID [--conns 10000] [--hold 10] [--concurrency 200]
                 [--path /dns-query?dns=...]

Each connection: TLS (ALPN h2, certificate not verified: loopback, self-signed), the HTTP/2
preface and SETTINGS, then (if --path is given) one RFC 8484 GET on stream 1 whose 200 answer
is awaited, so every connection is a working DoH session, then nothing: the connection stays
open and idle. The client keeps reading: it acknowledges the server's SETTINGS and PINGs (as
any HTTP/2 client must) and notices when the server closes a connection.
After all connections are open it waits --hold seconds and prints one JSON object:
opened/failed/still-open counts, and the server's VmRSS before, after opening and after the
hold, and its VmHWM.
"""

import argparse
import asyncio
import json
import resource
import ssl
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING, GOAWAY, HEADERS, DATA = 0x4, 0x6, 0x7, 0x1, 0x0
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(ftype: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack("!I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack("!I", stream) + payload


def hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(index: int, value: str) -> bytes:
    """Literal header field without indexing, name from the static table, raw (non-Huffman) value."""
    v = value.encode()
    return hpack_int(index, 4, 0x00) + hpack_int(len(v), 7, 0x00) + v


def get_request(path: str, authority: str) -> bytes:
    block = (
        b"\x82"  # :method GET
        + b"\x87"  # :scheme https
        + hpack_literal(4, path)  # :path
        + hpack_literal(1, authority)  # :authority
        + hpack_literal(19, "application/dns-message")  # accept
    )
    return frame(HEADERS, END_STREAM | END_HEADERS, 1, block)


def vm(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Stats:
    def __init__(self) -> None:
        self.opened = 0
        self.failed = 0
        self.closed_by_server = 0
        self.answered = 0
        self.errors: dict = {}


async def reader_loop(reader, writer, stats: Stats, answered: asyncio.Future) -> None:
    """Read frames forever; answer SETTINGS and PING; resolve `answered` on stream 1's end."""
    status_ok = None
    try:
        while True:
            head = await reader.readexactly(9)
            length = int.from_bytes(head[:3], "big")
            ftype, flags = head[3], head[4]
            stream = struct.unpack("!I", head[5:9])[0] & 0x7FFFFFFF
            payload = await reader.readexactly(length) if length else b""
            if ftype == SETTINGS and not flags & ACK:
                writer.write(frame(SETTINGS, ACK, 0))
            elif ftype == PING and not flags & ACK:
                writer.write(frame(PING, ACK, 0, payload))
            elif ftype == GOAWAY:
                pass
            elif ftype == HEADERS and stream == 1:
                # a server answering 200 sends the static-table entry 8 (":status 200") first
                block = payload
                if flags & 0x8:  # PADDED
                    block = block[1:]
                if flags & 0x20:  # PRIORITY
                    block = block[5:]
                status_ok = bool(block) and block[0] == 0x88
                if flags & END_STREAM and not answered.done():
                    answered.set_result(status_ok)
            elif ftype == DATA and stream == 1 and flags & END_STREAM and not answered.done():
                answered.set_result(bool(status_ok))
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
        pass
    if not answered.done():
        answered.set_result(None)
    stats.closed_by_server += 1


async def one(host, port, ctx, path, stats: Stats, sem: asyncio.Semaphore, conns: list) -> None:
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost"), 20)
            sslobj = writer.get_extra_info("ssl_object")
            if sslobj.selected_alpn_protocol() != "h2":
                raise RuntimeError(f"ALPN {sslobj.selected_alpn_protocol()!r}, not h2")
            writer.write(PREFACE + frame(SETTINGS, 0, 0))
            answered = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(reader_loop(reader, writer, stats, answered))
            if path:
                writer.write(get_request(path, f"{host}:{port}"))
                ok = await asyncio.wait_for(answered, 20)
                if ok is None:
                    raise RuntimeError("closed before answering")
                if not ok:
                    raise RuntimeError("non-200 answer")
                stats.answered += 1
            await writer.drain()
            conns.append((writer, task))
            stats.opened += 1
        except Exception as e:  # noqa: BLE001 - counted and reported
            stats.failed += 1
            key = f"{type(e).__name__}: {e}"[:120]
            stats.errors[key] = stats.errors.get(key, 0) + 1


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--hold", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--path", default="")
    args = ap.parse_args()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("loopback only")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.conns + 100
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])

    stats = Stats()
    conns: list = []
    rss_before = vm(args.pid, "VmRSS")
    t0 = time.monotonic()
    sem = asyncio.Semaphore(args.concurrency)
    await asyncio.gather(*(one(args.host, args.port, ctx, args.path, stats, sem, conns) for _ in range(args.conns)))
    open_secs = time.monotonic() - t0
    rss_open = vm(args.pid, "VmRSS")
    print(f"opened {stats.opened} connections ({stats.failed} failed) in {open_secs:.1f} s; holding {args.hold:g} s",
          file=sys.stderr)
    await asyncio.sleep(args.hold)
    rss_hold = vm(args.pid, "VmRSS")
    hwm = vm(args.pid, "VmHWM")
    still_open = sum(1 for _, task in conns if not task.done())
    for writer, task in conns:
        task.cancel()
        writer.transport.abort()
    print(json.dumps({
        "conns": args.conns, "opened": stats.opened, "failed": stats.failed, "answered": stats.answered,
        "still_open": still_open, "open_seconds": round(open_secs, 1), "hold_seconds": args.hold,
        "rss_before_kib": rss_before, "rss_open_kib": rss_open, "rss_hold_kib": rss_hold, "hwm_kib": hwm,
        "errors": stats.errors,
    }))


if __name__ == "__main__":
    asyncio.run(main())
