"""A small HTTP/1.1 load generator on raw Trio sockets (the benchmarks' own client).

Used where wrk cannot do the job (time to first byte of a stream, thousands of
idle streams held open) and in place of wrk when wrk is not installed. It runs
in its own process (``python -m benchmarks.loadgen``) so that its CPU time is
never charged to the server being measured, and prints one JSON object.

It speaks just enough HTTP/1.1 for the job: keep-alive connections, one
request at a time per connection, ``Content-Length`` and chunked bodies. No
httpx here on purpose: a heavyweight client would compete with the servers for
the machine's two cores and flatten the differences we want to see.

Modes:

* ``--duration S``: each of ``--connections`` connections sends requests back to
  back for S seconds; per request it records the time to the first body byte
  and the total time.
* ``--hold-open``: each connection sends one (streaming) request and waits for
  its first body byte; once all are open it prints ``{"open": N}`` and waits for
  a line on stdin, then closes every connection (the server sees N client
  disconnects).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import trio


class HTTPError(Exception):
    pass


class Connection:
    """One keep-alive client connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.stream: trio.SocketStream | None = None
        self.buf = bytearray()

    async def connect(self) -> None:
        self.stream = await trio.open_tcp_stream(self.host, self.port)
        self.buf = bytearray()

    async def _fill(self) -> None:
        assert self.stream is not None
        data = await self.stream.receive_some(65536)
        if not data:
            raise HTTPError("connection closed by the server")
        self.buf += data

    async def request(self, raw: bytes, *, first_byte_only: bool = False) -> tuple[int, float, float, int]:
        """Send ``raw``; return (status, seconds to first body byte, total seconds, body bytes)."""
        if self.stream is None:
            await self.connect()
        assert self.stream is not None
        start = time.perf_counter()
        await self.stream.send_all(raw)
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            await self._fill()
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length: int | None = None
        chunked = False
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and "close" in value.lower():
                close = True
        if not self.buf and (chunked or (length or 0) > 0):
            await self._fill()
        ttfb = time.perf_counter() - start
        if first_byte_only:
            return status, ttfb, ttfb, len(self.buf)
        size = 0
        if chunked:
            size = await self._read_chunked()
        elif length is not None:
            while len(self.buf) < length:
                await self._fill()
            size = length
            del self.buf[:length]
        else:
            close = True
        total = time.perf_counter() - start
        if close:
            await self.aclose()
        return status, ttfb, total, size

    async def _read_chunked(self) -> int:
        size = 0
        while True:
            while True:
                i = self.buf.find(b"\r\n")
                if i >= 0:
                    break
                await self._fill()
            n = int(bytes(self.buf[:i]).split(b";")[0], 16)
            del self.buf[: i + 2]
            while len(self.buf) < n + 2:
                await self._fill()
            del self.buf[: n + 2]
            size += n
            if n == 0:
                return size

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
            self.stream = None


def build_request(url: str, body: bytes, headers: list[tuple[str, str]]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {path} HTTP/1.1", f"host: {host}:{port}", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def run_duration(host: str, port: int, raw: bytes, connections: int, duration: float) -> dict[str, Any]:
    ttfbs: list[float] = []
    totals: list[float] = []
    errors = {"status": 0, "io": 0}
    deadline = trio.current_time() + duration
    started = time.perf_counter()

    async def worker() -> None:
        conn = Connection(host, port)
        try:
            while trio.current_time() < deadline:
                try:
                    status, ttfb, total, _ = await conn.request(raw)
                except (OSError, HTTPError, trio.BrokenResourceError, ValueError):
                    errors["io"] += 1
                    await conn.aclose()
                    await trio.sleep(0.01)
                    continue
                if status != 200:
                    errors["status"] += 1
                    continue
                ttfbs.append(ttfb)
                totals.append(total)
        finally:
            await conn.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(worker)
    elapsed = time.perf_counter() - started
    return {
        "requests": len(totals),
        "errors": errors["status"] + errors["io"],
        "non_2xx": errors["status"],
        "elapsed_s": elapsed,
        "rps": len(totals) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(totals, 50) * 1000,
        "p99_ms": percentile(totals, 99) * 1000,
        "ttfb_p50_ms": percentile(ttfbs, 50) * 1000,
        "ttfb_p99_ms": percentile(ttfbs, 99) * 1000,
    }


async def run_hold_open(
    host: str, port: int, raw: bytes, connections: int, ramp: int, open_timeout: float
) -> dict[str, Any]:
    conns: list[Connection] = []
    failures = 0
    limiter = trio.CapacityLimiter(ramp)
    ttfbs: list[float] = []

    async def open_one() -> None:
        nonlocal failures
        async with limiter:
            conn = Connection(host, port)
            status = 0
            try:
                # a server that cannot take another stream must not hang the run
                with trio.move_on_after(open_timeout):
                    status, ttfb, _, _ = await conn.request(raw, first_byte_only=True)
            except (OSError, HTTPError, trio.BrokenResourceError, ValueError):
                status = 0
            if status == 0:
                failures += 1
                await conn.aclose()
                return
            if status != 200:
                failures += 1
                await conn.aclose()
                return
            ttfbs.append(ttfb)
            conns.append(conn)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(open_one)
    open_s = time.perf_counter() - started
    print(json.dumps({"open": len(conns), "failures": failures}), flush=True)
    await trio.to_thread.run_sync(sys.stdin.readline)
    for conn in conns:
        await conn.aclose()
    return {
        "requests": len(conns),
        "errors": failures,
        "non_2xx": 0,
        "elapsed_s": open_s,
        "rps": len(conns) / open_s if open_s else 0.0,
        "p50_ms": percentile(ttfbs, 50) * 1000,
        "p99_ms": percentile(ttfbs, 99) * 1000,
        "ttfb_p50_ms": percentile(ttfbs, 50) * 1000,
        "ttfb_p99_ms": percentile(ttfbs, 99) * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--header", action="append", default=[], help="NAME: VALUE")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--hold-open", action="store_true")
    parser.add_argument("--ramp", type=int, default=100, help="connections opened at once (--hold-open)")
    parser.add_argument("--open-timeout", type=float, default=20.0, help="seconds to wait for a stream's first byte")
    args = parser.parse_args(argv)
    with open(args.body_file, "rb") as f:
        body = f.read()
    headers = [(k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in args.header)]
    host, port, raw = build_request(args.url, body, headers)
    if args.hold_open:
        result = trio.run(run_hold_open, host, port, raw, args.connections, args.ramp, args.open_timeout)
    else:
        result = trio.run(run_duration, host, port, raw, args.connections, args.duration)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
