"""Audit read queries on a large store: fill it with N interceptions, time list/filter/usage.

Run once by hand (never in the test suite)::

    python benchmarks/bench_store.py --count 1000000 --db /tmp/aibridge-bench.db

The fill goes through :meth:`SQLiteStore.write_batch` (the writer's own
path) in large batches; a second run reuses the file. ``--compare`` also
times the queries without the v3 indexes (then puts them back), which is
what the v3 migration buys. The SQL in here is only for that comparison and
for EXPLAIN output: the program itself never sees SQL outside the store.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from aibridge.core.audit_query import build_query  # noqa: E402
from aibridge.core.model import (  # noqa: E402
    InterceptionEnded,
    InterceptionStarted,
    PromptRecord,
    TokenUsage,
    TokenUsageRecord,
    ToolCall,
    ToolUsageRecord,
)
from aibridge.core.times import rfc3339  # noqa: E402
from aibridge.shell import store as store_mod  # noqa: E402

MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1", "gpt-4.1", "gpt-4.1-mini", "o4-mini",
          "gpt-5", "gpt-5-codex"]
CLIENTS = ["Claude Code", "Codex", "Cursor", "Zed", "Anthropic SDK", "OpenAI SDK", "Unknown"]
START = 1_780_000_000.0  # records spread over the 60 days after this
SPAN = 60 * 86400.0


def fill(path: str, count: int, users: int, batch: int) -> None:
    store = store_mod.SQLiteStore(path)
    have = store.db.execute("SELECT count(*) FROM interceptions").fetchone()[0]
    if have >= count:
        print(f"reusing {path}: {have:,} interceptions")
        store.close()
        return
    rng = random.Random(7)
    user_ids = [store.ensure_user(f"user-{u:04d}", f"user{u:04d}", 0.0) for u in range(users)]
    started = time.perf_counter()
    n = have
    while n < count:
        records: list[Any] = []
        for k in range(n, min(n + batch, count)):
            iid = f"{k:012d}-{rng.getrandbits(64):016x}"
            t = START + SPAN * k / count + rng.random()
            model = MODELS[k % len(MODELS)]
            provider = "anthropic" if model.startswith("claude") else "openai"
            records.append(InterceptionStarted(
                id=iid, user_id=user_ids[rng.randrange(users)], key_id="bench", provider=provider,
                provider_name=provider, api="messages" if provider == "anthropic" else "chat", model=model,
                streaming=True, client=CLIENTS[rng.randrange(len(CLIENTS))], user_agent="bench/1",
                client_session_id=None, credential_kind="centralized", credential_hint="sk-b...0000",
                started_at=t,
            ))
            records.append(PromptRecord(interception_id=iid, provider_response_id="", prompt=f"task {k}",
                                        created_at=t))
            records.append(TokenUsageRecord(interception_id=iid, created_at=t + 1, usage=TokenUsage(
                provider_response_id=f"msg_{k}", input_tokens=rng.randrange(5000), output_tokens=rng.randrange(2000),
                cache_read_input_tokens=rng.randrange(50000), cache_write_input_tokens=rng.randrange(500))))
            if k % 4 == 0:
                records.append(ToolUsageRecord(interception_id=iid, created_at=t + 1, call=ToolCall(
                    provider_response_id=f"msg_{k}", tool_call_id=f"call_{k}", tool="read_file", input="{}")))
            status = "failed" if k % 97 == 0 else "completed"
            records.append(InterceptionEnded(id=iid, status=status, upstream_status=500 if status == "failed" else 200,
                                             error=None, ended_at=t + 2))
        store.write_batch(records)
        n = min(n + batch, count)
        rate = (n - have) / (time.perf_counter() - started)
        print(f"\r  filled {n:,}/{count:,} ({rate:,.0f} interceptions/s)", end="", flush=True)
    print(f"\nfill: {count - have:,} interceptions in {time.perf_counter() - started:.1f} s")
    store.close()


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000, result


def cases(db: Any) -> list[tuple[str, Callable[[], Any]]]:
    mid = START + SPAN / 2
    day = build_query(started_after=rfc3339(mid), started_before=rfc3339(mid + 86400))
    total = db.execute("SELECT count(*) FROM interceptions").fetchone()[0]
    some_id = db.execute("SELECT id FROM interceptions ORDER BY started_at LIMIT 1 OFFSET ?", (total // 2,)).fetchone()[0]

    def walk(pages: int) -> int:
        after = None
        seen = 0
        for _ in range(pages):
            items, after = store_mod.list_page(db, limit=100, after_id=after)
            seen += len(items)
        return seen

    def export(n: int) -> int:
        seen = 0
        for _ in store_mod.iter_interceptions(db, day):
            seen += 1
            if seen >= n:
                break
        return seen

    return [
        ("list newest 100", lambda: store_mod.list_page(db, limit=100)),
        ("list 10 pages via after_id", lambda: walk(10)),
        ("list page at a deep cursor", lambda: store_mod.list_page(db, limit=100, after_id=some_id)),
        ("filter user, 100", lambda: store_mod.list_page(db, build_query(user="user0042"), limit=100)),
        ("filter model, 100", lambda: store_mod.list_page(db, build_query(model="o4-mini"), limit=100)),
        ("filter provider, 100", lambda: store_mod.list_page(db, build_query(provider="openai"), limit=100)),
        ("filter client, 100", lambda: store_mod.list_page(db, build_query(client="Zed"), limit=100)),
        ("filter status=failed (1%), 100", lambda: store_mod.list_page(db, build_query(status="failed"), limit=100)),
        ("filter one day window, 100", lambda: store_mod.list_page(db, day, limit=100)),
        ("filter user + day window, 100", lambda: store_mod.list_page(
            db, build_query(user="user0042", started_after=rfc3339(mid), started_before=rfc3339(mid + 86400)),
            limit=100)),
        ("get by id", lambda: store_mod.get_interception(db, some_id)),
        ("count one day", lambda: store_mod.count_interceptions(db, day)),
        ("usage by user, one day", lambda: store_mod.usage_report(db, day, group_by="user")),
        ("usage by model, one day", lambda: store_mod.usage_report(db, day, group_by="model")),
        ("usage by day, all", lambda: store_mod.usage_report(db, group_by="day")),
        ("usage by user, all", lambda: store_mod.usage_report(db, group_by="user")),
        ("export 10k records (iterate)", lambda: export(10000)),
    ]


def run_cases(db: Any, repeat: int) -> dict[str, float]:
    """Median of ``repeat`` runs after one warm-up run (whole-store sums: a single run, no warm-up)."""
    out = {}
    for name, fn in cases(db):
        whole = name.endswith(", all")
        if not whole:
            fn()
        ms, _ = timed(fn, 1 if whole else repeat)
        out[name] = ms
    return out


V3_INDEXES = [f"idx_interceptions_ended_{c}" for c in ("user_id", "provider", "model", "client", "status")] + [
    "idx_interceptions_ended_started_at", "idx_token_usages_interception_tokens"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="/tmp/aibridge-bench.db")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--batch", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compare", action="store_true", help="also time without the v3 indexes")
    args = parser.parse_args()
    fill(args.db, args.count, args.users, args.batch)
    db = store_mod.open_reader(args.db)
    db.execute("ANALYZE")
    total = db.execute("SELECT count(*) FROM interceptions").fetchone()[0]
    print(f"\n{total:,} interceptions, {Path(args.db).stat().st_size / 2**20:,.0f} MiB; median of {args.repeat} warm runs\n")
    with_ix = run_cases(db, args.repeat)
    without: dict[str, float] = {}
    if args.compare:
        for name in V3_INDEXES:
            db.execute(f"DROP INDEX IF EXISTS {name}")
        # back to the v1/v2 indexes
        db["interceptions"].create_index(["user_id", "started_at"], if_not_exists=True)
        db["token_usages"].create_index(["interception_id"], if_not_exists=True)
        db.execute("ANALYZE")
        without = run_cases(db, args.repeat)
        with db.conn:
            store_mod.MIGRATIONS[2](db)  # v3 again
        db.execute("ANALYZE")
    print(f"{'query':38} {'v3 indexes':>12}" + (f" {'v1/v2 only':>12}" if without else ""))
    for name, ms in with_ix.items():
        print(f"{name:38} {ms:10.2f}ms" + (f" {without[name]:10.2f}ms" if without else ""))
    db.conn.close()


if __name__ == "__main__":
    main()
