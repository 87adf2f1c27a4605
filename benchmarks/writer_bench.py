"""The writer alone: audit rows per second from :class:`AuditWriter` into :class:`SQLiteStore`.

Records are built before the clock starts, so what is timed is the channel,
the batching and the SQLite transactions, as a busy bridge would drive them:
each interception is four rows (started, prompt, token usage, ended).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import trio

from aibridge.core.model import (
    InterceptionEnded,
    InterceptionStarted,
    PromptRecord,
    Record,
    TokenUsage,
    TokenUsageRecord,
)
from aibridge.shell.store import SQLiteStore, open_reader
from aibridge.shell.writer import AuditWriter

ROWS_PER_INTERCEPTION = 4


def build_records(user_id: str, n: int, now: float) -> list[Record]:
    records: list[Record] = []
    for i in range(n):
        iid = str(uuid.uuid4())
        records += [
            InterceptionStarted(
                id=iid, user_id=user_id, key_id="bench-key", provider="anthropic", provider_name="anthropic",
                api="messages", model="claude-sonnet-4-5", streaming=True, client="Claude Code",
                user_agent="claude-cli/2.0.0 (external, cli)", client_session_id=f"session-{i % 50}",
                credential_kind="centralized", credential_hint="sk-a...cdef", started_at=now,
            ),
            PromptRecord(interception_id=iid, provider_response_id="", prompt=f"benchmark prompt {i}", created_at=now),
            TokenUsageRecord(
                interception_id=iid,
                usage=TokenUsage(provider_response_id=f"msg_bench_{i}", input_tokens=1200, output_tokens=350,
                                 cache_read_input_tokens=40000, cache_write_input_tokens=800),
                created_at=now,
            ),
            InterceptionEnded(id=iid, status="completed", upstream_status=200, error=None, ended_at=now + 1),
        ]
    return records


async def _run(store: SQLiteStore, records: list[Record]) -> float:
    writer = AuditWriter(store, capacity=10000)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.serve)
        started = time.perf_counter()
        # Send in request-sized groups, as concurrent requests do.
        for i in range(0, len(records), ROWS_PER_INTERCEPTION):
            await writer.record(*records[i : i + ROWS_PER_INTERCEPTION])
        await writer.flush()
        elapsed = time.perf_counter() - started
        writer.close()
    return elapsed


def run_writer_benchmark(directory: Path, interceptions: int) -> dict[str, Any]:
    path = directory / "writer-bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    store = SQLiteStore(path)
    user_id = store.ensure_user(str(uuid.uuid4()), "bench", time.time())
    records = build_records(user_id, interceptions, time.time())
    elapsed = trio.run(_run, store, records)
    store.close()
    reader = open_reader(path)
    written = sum(
        int(reader.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        for table in ("interceptions", "user_prompts", "token_usages")
    )
    ended = int(reader.execute("SELECT count(*) FROM interceptions WHERE ended_at IS NOT NULL").fetchone()[0])
    reader.conn.close()
    # an InterceptionEnded is an UPDATE of its row, counted once it is visible
    written += ended
    return {
        "rows_sent": len(records),
        "rows_written": written,
        "lost": len(records) - written,
        "elapsed_s": elapsed,
        "rows_per_s": written / elapsed if elapsed else 0.0,
    }
