"""Graceful shutdown under load: SIGTERM with dozens of open streams (the bridge as a process).

Two fake upstreams (processes) set the pace: OpenAI chat streams that finish
in well under the grace period, Anthropic streams that would run far past it.
After SIGTERM the short ones finish, the long ones are cancelled when the
grace period ends, the process exits 0 within the grace period (plus the
writer's drain), and every interception has its rows with the usage seen so far.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from aibridge.shell import store as store_mod
from tests.e2e.test_processes import Lines, spawn
from tests.harness import Stack

FAST, SLOW = 24, 16
GRACE = 3.0


def test_sigterm_with_dozens_of_streams_finishes_short_ones_cancels_long_ones_and_records_all(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    keys = Stack(tmp_path)
    fast = spawn("fake-upstream", "--listen", "127.0.0.1:0", "--chunks", "16", "--chunk-delay", "0.1")
    slow = spawn("fake-upstream", "--listen", "127.0.0.1:0", "--chunks", "400", "--chunk-delay", "0.1")
    processes += [fast, slow]
    assert fast.stdout is not None and slow.stdout is not None
    fast_url = Lines(fast.stdout).until(r"listening on (http://\S+)").group(1)
    slow_url = Lines(slow.stdout).until(r"listening on (http://\S+)").group(1)
    key = keys.create_key("load")
    bridge = spawn("serve", "--listen", "127.0.0.1:0", "--db", keys.db_path,
                   "--openai-base-url", fast_url + "/v1/", "--anthropic-base-url", slow_url + "/",
                   "--openai-key", "sk-central-shutdown", "--anthropic-key", "sk-ant-central-shutdown",
                   "--shutdown-grace", str(GRACE), "--stream-keepalive", "0")
    processes.append(bridge)
    assert bridge.stderr is not None
    log = Lines(bridge.stderr)
    url = log.until(r"aibridge listening on (http://\S+)").group(1)

    started = threading.Barrier(FAST + SLOW + 1)
    outcomes: dict[str, list[Any]] = {"fast": [], "slow": []}

    def run(kind: str, i: int) -> None:
        if kind == "fast":
            path, body = "/openai/v1/chat/completions", {
                "model": "gpt-shutdown", "stream": True, "messages": [{"role": "user", "content": f"fast {i}"}]}
        else:
            path, body = "/anthropic/v1/messages", {
                "model": "claude-shutdown", "max_tokens": 500, "stream": True,
                "messages": [{"role": "user", "content": f"slow {i}"}]}
        received = b""
        try:
            with httpx.stream("POST", url + path, json=body, headers={"x-api-key": key}, timeout=30) as reply:
                pieces = reply.iter_raw()
                received = next(pieces)
                started.wait(30)
                for piece in pieces:
                    received += piece
            outcomes[kind].append(("ended", received))
        except httpx.HTTPError as exc:
            outcomes[kind].append((type(exc).__name__, received))

    threads = [threading.Thread(target=run, args=(kind, i)) for kind, n in (("fast", FAST), ("slow", SLOW))
               for i in range(n)]
    for t in threads:
        t.start()
    started.wait(30)  # all 40 streams are under way
    signalled = time.monotonic()
    bridge.send_signal(signal.SIGTERM)
    assert bridge.wait(30) == 0
    took = time.monotonic() - signalled
    for t in threads:
        t.join(10)
    assert took < GRACE + 5, f"shutdown took {took:.1f}s with a {GRACE}s grace period"
    assert "received SIGTERM" in "\n".join(log.rest())

    # the short streams were finished, byte for byte to the end
    assert len(outcomes["fast"]) == FAST
    assert all(kind == "ended" and body.endswith(b"data: [DONE]\n\n") for kind, body in outcomes["fast"])
    # the long ones were cut when the grace period ended
    assert len(outcomes["slow"]) == SLOW
    assert all(not body.endswith(b'data: {"type":"message_stop"}\n\n') for _, body in outcomes["slow"])

    reader = store_mod.open_reader(keys.db_path)
    try:
        items = store_mod.list_interceptions(reader, limit=100, include_in_flight=True)
    finally:
        reader.conn.close()
    assert len(items) == FAST + SLOW
    assert all(item["ended_at"] is not None for item in items)
    fast_items = [i for i in items if i["model"] == "gpt-shutdown"]
    slow_items = [i for i in items if i["model"] == "claude-shutdown"]
    assert {i["status"] for i in fast_items} == {"completed"}
    assert all([(u["input_tokens"], u["output_tokens"]) for u in i["token_usages"]] == [(10, 16)]
               for i in fast_items)
    assert sorted(i["user_prompts"][0]["prompt"] for i in fast_items) == sorted(f"fast {n}" for n in range(FAST))
    assert {i["status"] for i in slow_items} <= {"client_disconnected", "failed"}
    # usage seen so far: message_start's snapshot (10 in, 1 out) made it to the store
    assert all([(u["input_tokens"], u["output_tokens"]) for u in i["token_usages"]] == [(10, 1)]
               for i in slow_items)
