"""A bounded load test on loopback: 10,000 requests, streaming and blocking, with faults.

The bridge runs as its own process (``aibridge serve``); the fake upstream and
the load generator share this test's Trio loop. The fake picks a fault from a
marker in the prompt, so every response can be checked against what was
injected: upstream errors (503 and 529 with a marked body), connection resets
mid-stream and mid-body, slow streams. At the end:

* zero 5xx the gateway produced itself (every 5xx carries the fake's marker),
* zero lost audit records: one ended interception per request, with the
  status the fault implies and the usage the upstream reported,
* memory flat after warm-up (RSS of the bridge process, generous bound).

The figures are printed (``-s``) for the record.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest
import trio

from aibridge.fake.upstream import (
    FakeUpstream,
    Reply,
    Synthetic,
    anthropic_message,
    anthropic_stream,
    chat_completion,
    chat_stream,
)
from aibridge.shell import store as store_mod
from aibridge.shell.server import serve_fake_upstream
from tests.e2e.test_processes import Lines, spawn
from tests.harness import Stack

TOTAL = int(os.environ.get("AIBRIDGE_LOAD_REQUESTS", "10000"))
WARMUP = TOTAL // 5
CONCURRENCY = 48
MARK = "fake-injected"
SSE = (("content-type", "text/event-stream"),)
JSON = (("content-type", "application/json"),)
#: fault kinds by request index (a fixed, repeating mix)
MIX = ["ok"] * 12 + ["error503", "error529", "reset_stream", "reset_body", "slow"]


def kind_of(i: int) -> tuple[str, str, bool]:
    """(fault, api, streaming) for request ``i``."""
    fault = MIX[i % len(MIX)]
    api = "messages" if i % 2 else "chat"
    streaming = fault in ("reset_stream", "slow") or (fault != "reset_body" and i % 3 != 0)
    return fault, api, streaming


def upstream_reply(fault: str, api: str, streaming: bool, n: int) -> Reply:
    if fault in ("error503", "error529"):
        status = 503 if fault == "error503" or api == "chat" else 529
        body = {"error": {"message": f"{MARK}: overloaded", "type": "server_error"}}
        return Reply(status=status, headers=JSON, body=orjson.dumps(body))
    if api == "messages":
        frames = anthropic_stream(f"msg_load_{n}", "claude-load", 4, "x ")
        blocking = anthropic_message(f"msg_load_{n}", "claude-load", 4, "x ")
    else:
        frames = chat_stream(f"chatcmpl-load-{n}", "gpt-load", 4, "x ", True)
        blocking = chat_completion(f"chatcmpl-load-{n}", "gpt-load", 4, "x ")
    if not streaming:
        body = orjson.dumps(blocking)
        if fault == "reset_body":
            return Reply(headers=JSON, body=body, write_size=32, reset_after=40)
        return Reply(headers=JSON, body=body)
    if fault == "reset_stream":
        return Reply(headers=SSE, chunks=tuple(frames), reset_after=len(frames[0]) + 10)
    return Reply(headers=SSE, chunks=tuple(frames), chunk_delay=0.02 if fault == "slow" else 0.0)


async def fault_handler(fake: FakeUpstream, scope: Any, body: bytes, send: Any) -> None:
    request = orjson.loads(body)
    prompt = request["messages"][-1]["content"]
    _, n, fault = prompt.split(" ")
    api = "messages" if scope["path"].endswith("/messages") else "chat"
    await fake._play(upstream_reply(fault, api, request.get("stream") is True, int(n)), send)


@pytest.fixture
def quiet_fake_upstream() -> Iterator[None]:
    """The fake's scripted resets are exceptions Hypercorn logs with a traceback each."""
    logger = logging.getLogger("hypercorn.error")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.usefixtures("quiet_fake_upstream")
async def test_ten_thousand_requests_with_faults(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    keys = [stack.create_key(f"load-user-{u}") for u in range(4)]
    fake = FakeUpstream(synthetic=Synthetic(), keep_requests=10)
    fake.routes["/v1/messages"] = fault_handler
    fake.routes["/v1/chat/completions"] = fault_handler
    fake_stop = trio.Event()
    results: list[tuple[int, int, bytes, str]] = []
    rss: dict[str, float] = {}

    async with trio.open_nursery() as nursery:
        urls = await nursery.start(functools.partial(serve_fake_upstream, fake, "127.0.0.1:0", shutdown=fake_stop))
        bridge = spawn("serve", "--listen", "127.0.0.1:0", "--db", stack.db_path,
                       "--openai-base-url", urls[0] + "/v1/", "--anthropic-base-url", urls[0] + "/",
                       "--openai-key", "sk-central-load", "--anthropic-key", "sk-ant-central-load",
                       "--shutdown-grace", "5")
        try:
            assert bridge.stderr is not None
            log = Lines(bridge.stderr)
            url = await trio.to_thread.run_sync(lambda: log.until(r"aibridge listening on (http://\S+)").group(1))
            proc = psutil.Process(bridge.pid)
            started = time.monotonic()
            counter = iter(range(TOTAL))
            host, port = url.removeprefix("http://").rsplit(":", 1)

            async def worker() -> None:
                client = RawClient(host, int(port))
                try:
                    for i in counter:
                        if i == WARMUP:
                            rss["warm"] = proc.memory_info().rss
                        results.append(await one_request(client, i, keys[i % len(keys)]))
                finally:
                    await client.close()

            with trio.fail_after(300):
                async with trio.open_nursery() as workers:
                    for _ in range(CONCURRENCY):
                        workers.start_soon(worker)
            elapsed = time.monotonic() - started
            rss["end"] = proc.memory_info().rss
            cpu = proc.cpu_times()
            rss["cpu"] = cpu.user + cpu.system
            ready = (await trio.to_thread.run_sync(lambda: httpx.get(url + "/readyz", timeout=10))).json()
            bridge.send_signal(signal.SIGTERM)
            assert await trio.to_thread.run_sync(lambda: bridge.wait(60)) == 0
        finally:
            if bridge.poll() is None:
                bridge.kill()
            fake_stop.set()

    # -- the figures -----------------------------------------------------------------------
    outcomes = Counter((kind_of(i)[0], status, note) for i, status, _, note in results)
    # 5xx the gateway produced itself: not the upstream's own (marked) error, and not the
    # 502 that an upstream reset in the middle of a blocking body must give
    gateway_5xx = [(i, s, body[:200]) for i, s, body, _ in results
                   if s >= 500 and MARK.encode() not in body and not (kind_of(i)[0] == "reset_body" and s == 502)]
    grown = (rss["end"] - rss["warm"]) / 2**20
    print(f"\nload: {TOTAL} requests in {elapsed:.1f}s ({TOTAL / elapsed:.0f}/s), concurrency {CONCURRENCY}; "
          f"bridge RSS {rss['warm'] / 2**20:.1f} MiB after warm-up, {rss['end'] / 2**20:.1f} MiB at end "
          f"({grown:+.1f} MiB); records lost {ready['records_lost']}; bridge CPU {rss['cpu']:.1f}s, "
          f"test process CPU {time.process_time():.1f}s")
    for key, count in sorted(outcomes.items()):
        print(f"  {key}: {count}")

    assert len(results) == TOTAL
    assert gateway_5xx == []
    assert ready["records_lost"] == 0 and ready["store_writable"] is True
    assert grown < 40, f"bridge RSS grew {grown:.1f} MiB after warm-up"

    # -- every request has its ended interception with the right status and usage ----------
    db = store_mod.open_reader(stack.db_path)
    try:
        rows = db.execute(
            "SELECT p.prompt, i.status, i.upstream_status, i.ended_at,"
            " (SELECT group_concat(t.input_tokens || '/' || t.output_tokens) FROM token_usages t"
            "  WHERE t.interception_id = i.id)"
            " FROM interceptions i JOIN user_prompts p ON p.interception_id = i.id"
        ).fetchall()
    finally:
        db.conn.close()
    assert len(rows) == TOTAL
    by_index = {int(prompt.split(" ")[1]): row for prompt, *row in rows}
    assert len(by_index) == TOTAL
    wrong = []
    for i, (status, upstream_status, ended_at, usage) in by_index.items():
        fault, api, streaming = kind_of(i)
        expected = expected_record(fault, api, streaming)
        if ended_at is None or (status, upstream_status, usage) != expected:
            wrong.append((i, fault, api, streaming, (status, upstream_status, usage), expected))
    assert wrong[:5] == []


def expected_record(fault: str, api: str, streaming: bool) -> tuple[str, int, str | None]:
    if fault in ("error503", "error529"):
        return ("failed", 503 if fault == "error503" or api == "chat" else 529, None)
    if fault == "reset_body":
        return ("failed", 200, None)
    if fault == "reset_stream":
        # Anthropic's message_start (usage snapshot) arrived before the reset
        return ("failed", 200, "10/1" if api == "messages" else None)
    return ("completed", 200, "10/4")


class RawClient:
    """A minimal HTTP/1.1 client over one keep-alive connection.

    httpx costs several times the bridge's own work per request, and this
    machine has two cores: the load generator must stay light. It sends one
    request and reads the reply (Content-Length or chunked) into bytes, and
    reconnects after a reply the server cut.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.stream: trio.SocketStream | None = None
        self.buf = bytearray()

    async def request(self, path: str, body: bytes, key: str) -> tuple[int, bytes]:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream(self.host, self.port)
            self.buf.clear()
        head = (f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\nx-api-key: {key}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode()
        try:
            await self.stream.send_all(head + body)
            return await self._read_reply()
        except (trio.BrokenResourceError, trio.ClosedResourceError, EOFError):
            await self.close()
            raise

    async def _fill(self) -> None:
        assert self.stream is not None
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError
        self.buf += data

    async def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            await self._fill()
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    async def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def _read_reply(self) -> tuple[int, bytes]:
        status = int((await self._line()).split(b" ")[1])
        headers: dict[bytes, bytes] = {}
        while line := await self._line():
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"content-length" in headers:
            return status, await self._exactly(int(headers[b"content-length"]))
        body = bytearray()
        while True:
            size = int((await self._line()).split(b";")[0], 16)
            chunk = await self._exactly(size + 2)
            if size == 0:
                return status, bytes(body)
            body += chunk[:-2]

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
            self.stream = None


async def one_request(client: RawClient, i: int, key: str) -> tuple[int, int, bytes, str]:
    fault, api, streaming = kind_of(i)
    content = f"load {i} {fault}"
    if api == "messages":
        path = "/anthropic/v1/messages"
        body: dict[str, Any] = {"model": "claude-load", "max_tokens": 16, "messages": [{"role": "user", "content": content}]}
    else:
        path = "/openai/v1/chat/completions"
        body = {"model": "gpt-load", "messages": [{"role": "user", "content": content}]}
    if streaming:
        body["stream"] = True
    try:
        status, data = await client.request(path, orjson.dumps(body), key)
        return i, status, data, "ok"
    except (trio.BrokenResourceError, EOFError):
        return i, 200, b"", "cut"
