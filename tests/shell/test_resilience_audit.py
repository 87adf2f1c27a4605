"""audit_failure_policy with a store that stops taking writes mid-run, and recovers.

The store is made unwritable the way it happens in production: another
connection holds the write lock past the busy timeout (a backup tool, a
second process); the disk fills up (SQLite's page limit on the writer's
connection); the database turns read-only (``query_only`` on the writer's
connection: ``chmod`` cannot do it, SQLite keeps its open file descriptors).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.wire import post
from tests.harness import Stack
from tests.shell.resilience import CHAT, MESSAGES, anthropic_body, chat_body, metric, wait_for


@contextmanager
def write_lock(stack: Stack) -> Iterator[None]:
    """Hold SQLite's write lock from another connection."""
    conn = sqlite3.connect(stack.db_path, timeout=5, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def readyz(stack: Stack) -> httpx.Response:
    return httpx.get(stack.url + "/readyz", timeout=10)


def test_closed_policy_refuses_while_locked_and_recovers_by_itself(make_stack: Any) -> None:
    stack = make_stack(audit_busy_timeout=0.1)
    assert post(stack, MESSAGES, anthropic_body("claude-before")).status_code == 200
    stack.settle()
    with write_lock(stack):
        # no request is needed for the gateway to notice: the idle probe does
        wait_for(lambda: readyz(stack).status_code == 503, what="readyz to report the locked store")
        body = readyz(stack).json()
        assert body["store_writable"] is False and body["status"] == "unavailable"
        assert "locked" in body["error"]
        upstream_calls = len(stack.fake.requests)
        refused = post(stack, MESSAGES, anthropic_body("claude-during"))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        error = orjson.loads(refused.content)["error"]
        assert error["type"] == "overloaded_error"
        assert "audit store is not accepting writes" in error["message"]
        refused_chat = post(stack, CHAT, chat_body("gpt-during"))
        assert refused_chat.status_code == 503
        assert orjson.loads(refused_chat.content)["error"]["code"] == "service_unavailable"
        assert len(stack.fake.requests) == upstream_calls
    wait_for(lambda: readyz(stack).status_code == 200, what="readyz to recover")
    assert readyz(stack).json()["status"] == "ok"
    assert post(stack, MESSAGES, anthropic_body("claude-after")).status_code == 200
    assert [i["model"] for i in stack.interceptions()] == ["claude-before", "claude-after"]


def test_closed_policy_keeps_records_of_a_request_in_flight_when_the_store_locks(make_stack: Any) -> None:
    stack = make_stack(audit_busy_timeout=0.1)
    with write_lock(stack):
        # admitted before the gateway noticed: its records wait in the writer and land later
        response = post(stack, MESSAGES, anthropic_body("claude-in-flight"))
        assert response.status_code == 200
        wait_for(lambda: not stack.app.writer.healthy, what="the writer to notice")
    item = stack.only_interception()
    assert item["model"] == "claude-in-flight" and item["status"] == "completed"
    assert [(u["input_tokens"], u["output_tokens"]) for u in item["token_usages"]] == [(10, 20)]
    assert stack.app.writer.lost == 0


def test_open_policy_proxies_and_counts_lost_records(make_stack: Any) -> None:
    stack = make_stack(audit_busy_timeout=0.05, audit_failure_policy="open")
    lost_before = metric("aibridge_audit_records_lost_total")
    with write_lock(stack):
        wait_for(lambda: not stack.app.writer.healthy, what="the probe to notice")
        ready = readyz(stack)
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded" and ready.json()["store_writable"] is False
        response = post(stack, MESSAGES, anthropic_body("claude-unaudited", "lost prompt"))
        assert response.status_code == 200
        # start + prompt + usage + end: four records dropped after the writer's retries
        wait_for(lambda: stack.app.writer.lost == 4, what="the lost records to be counted")
    assert readyz(stack).json()["records_lost"] == 4
    assert metric("aibridge_audit_records_lost_total") >= lost_before + 4
    wait_for(lambda: stack.app.writer.healthy, what="recovery")
    assert post(stack, MESSAGES, anthropic_body("claude-audited")).status_code == 200
    assert [i["model"] for i in stack.interceptions()] == ["claude-audited"]


@pytest.mark.parametrize(
    ("break_it", "mend_it", "error"),
    [
        # the writer's own connection may not grow the file any more: SQLITE_FULL
        pytest.param("PRAGMA max_page_count = {pages}", "PRAGMA max_page_count = 1073741823", "full",
                     id="disk-full"),
        # the database turns read-only under the writer: SQLITE_READONLY
        pytest.param("PRAGMA query_only = ON", "PRAGMA query_only = OFF", "readonly", id="read-only"),
    ],
)
def test_a_store_that_fails_mid_run_refuses_until_it_recovers(
    make_stack: Any, break_it: str, mend_it: str, error: str
) -> None:
    stack = make_stack()
    store = stack.app.writer.store
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(break_it.format(pages=pages))
    try:
        big = "x" * 200_000
        first = post(stack, MESSAGES, anthropic_body("claude-store-failing", big))
        assert first.status_code == 200
        wait_for(lambda: not stack.app.writer.healthy, what="the writer to hit the failure")
        assert error in (stack.app.writer.last_error or "")
        refused = post(stack, MESSAGES, anthropic_body("claude-refused"))
        assert refused.status_code == 503
        assert readyz(stack).status_code == 503
    finally:
        store.db.execute(mend_it)
    wait_for(lambda: stack.app.writer.healthy, what="the retried batch to commit")
    assert readyz(stack).status_code == 200
    models = [i["model"] for i in stack.interceptions()]
    assert models == ["claude-store-failing"]
    assert stack.app.writer.lost == 0
