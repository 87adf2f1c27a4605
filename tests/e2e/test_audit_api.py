"""The audit API, metrics and structured logging against a real bridge.

Traffic goes through the bridge to the fake upstream (real records), or is
seeded through the store's own write path when a test needs thousands of
records or exact timestamps.
"""

from __future__ import annotations

import collections
import csv
import io
import logging
import subprocess
import sys
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aibridge.core.export import CSV_COLUMNS, csv_record
from aibridge.core.model import TokenUsage
from aibridge.shell import store as store_mod
from aibridge.shell.audit_log import AUDIT_LOGGER
from aibridge.shell.logs import JSONFormatter
from tests.audit_seed import Seed, core_of, expected_item, newest_first, seed
from tests.e2e.wire import json_reply, post
from tests.harness import Stack

T0 = 1_795_000_000.0


def get(stack: Stack, path: str, key: str | None, **params: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(stack.url + path, params=params, headers=headers, timeout=30)


def ask(stack: Stack, key: str, prompt: str) -> str:
    """One real Anthropic Messages interception; returns its id."""
    r = post(stack, "/anthropic/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 16,
                                               "messages": [{"role": "user", "content": prompt}]}, key=key)
    assert r.status_code == 200, r.text
    return r.headers["x-aibridge-interception-id"]


def user_id(stack: Stack, name: str) -> str:
    db = store_mod.open_reader(stack.db_path)
    try:
        return str(db.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()[0])
    finally:
        db.conn.close()


def error_of(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message"}
    return str(body["error"]["message"])


# -- visibility ---------------------------------------------------------------------------------


def test_a_member_never_reads_another_members_records(stack: Stack) -> None:
    bob_key = stack.create_key("bob")
    alice_ids = {ask(stack, stack.key, "alice one"), ask(stack, stack.key, "alice two")}
    bob_ids = {ask(stack, bob_key, "bob one"), ask(stack, bob_key, "bob two")}
    stack.settle()
    bob_id, alice_id = user_id(stack, "bob"), user_id(stack, "alice")

    listed = get(stack, "/api/v1/interceptions", stack.key).json()
    assert {i["id"] for i in listed["interceptions"]} == alice_ids
    assert listed["next_after_id"] is None
    assert {i["id"] for i in get(stack, "/api/v1/interceptions", stack.key, user="me").json()["interceptions"]} == alice_ids
    assert {i["id"] for i in get(stack, "/api/v1/interceptions", stack.key, user=alice_id).json()["interceptions"]} == alice_ids
    for other in ("bob", bob_id, "nobody-at-all"):
        for path in ("/api/v1/interceptions", "/api/v1/usage", "/api/v1/export"):
            assert error_of(get(stack, path, stack.key, user=other), 403) == "members can read only their own records"
    # by id: another member's record is exactly as absent as a record that never existed
    for bid in bob_ids:
        assert error_of(get(stack, f"/api/v1/interceptions/{bid}", stack.key), 404) == f"interception {bid} not found"
    assert error_of(get(stack, "/api/v1/interceptions/no-such-id", stack.key), 404) == "interception no-such-id not found"
    # nor as a cursor
    bid = sorted(bob_ids)[0]
    assert error_of(get(stack, "/api/v1/interceptions", stack.key, after_id=bid), 400) == \
        f"after_id {bid!r} is not a known interception"
    # usage and export only count and carry alice's
    [mine] = get(stack, "/api/v1/usage", stack.key, group_by="user").json()["usage"]
    assert (mine["key"], mine["interceptions"], mine["user_id"]) == ("alice", 2, alice_id)
    for group in ("model", "provider", "client", "day"):
        assert sum(g["interceptions"] for g in get(stack, "/api/v1/usage", stack.key, group_by=group).json()["usage"]) == 2
    lines = get(stack, "/api/v1/export", stack.key).text.splitlines()
    assert {orjson.loads(line)["id"] for line in lines} == alice_ids
    rows = list(csv.DictReader(io.StringIO(get(stack, "/api/v1/export", stack.key, format="csv").text)))
    assert {r["id"] for r in rows} == alice_ids
    # the one record by id, in the shared shape
    aid = sorted(alice_ids)[0]
    one = get(stack, f"/api/v1/interceptions/{aid}", stack.key).json()
    assert one["user"] == {"id": alice_id, "name": "alice"}
    assert [p["prompt"] for p in one["user_prompts"]] in (["alice one"], ["alice two"])


def test_an_admin_reads_everyone_and_filters_by_user(stack: Stack) -> None:
    bob_key = stack.create_key("bob")
    root_key = stack.create_key("root", admin=True)
    a = ask(stack, stack.key, "from alice")
    b = ask(stack, bob_key, "from bob")
    stack.settle()
    everyone = get(stack, "/api/v1/interceptions", root_key).json()["interceptions"]
    assert [i["id"] for i in everyone] == [b, a]
    assert [i["id"] for i in get(stack, "/api/v1/interceptions", root_key, user="bob").json()["interceptions"]] == [b]
    assert get(stack, "/api/v1/interceptions", root_key, user="me").json()["interceptions"] == []
    assert get(stack, f"/api/v1/interceptions/{a}", root_key).json()["id"] == a
    usage = get(stack, "/api/v1/usage", root_key, group_by="user").json()
    assert usage["group_by"] == "user"
    assert [(g["key"], g["interceptions"], g["input_tokens"], g["output_tokens"]) for g in usage["usage"]] == [
        ("alice", 1, 10, 20), ("bob", 1, 10, 20)
    ]


def test_api_authentication_and_request_errors(stack: Stack) -> None:
    assert error_of(get(stack, "/api/v1/interceptions", None), 401).startswith("missing aibridge key")
    assert error_of(get(stack, "/api/v1/interceptions", "aib_not-a-real-key-000000000000000000"), 401) == "invalid aibridge key"
    k = stack.key
    for params, message in [
        ({"limit": "0"}, "invalid limit '0': expected an integer from 1 to 1000"),
        ({"limit": "1001"}, "invalid limit '1001': expected an integer from 1 to 1000"),
        ({"limit": "ten"}, "invalid limit 'ten': expected an integer from 1 to 1000"),
        ({"started_after": "2026-03-02T00:00:00Z", "started_before": "2026-03-01T00:00:00Z"},
         "started_before (2026-03-01T00:00:00Z) is earlier than started_after (2026-03-02T00:00:00Z)"),
        ({"started_after": "last tuesday"},
         "invalid started_after 'last tuesday': expected an RFC 3339 time such as 2026-01-31T09:00:00Z"),
        ({"status": "ok"}, "invalid status 'ok': expected one of completed, failed, client_disconnected"),
        ({"usr": "alice"}, "unknown query parameter 'usr'; expected after_id, client, limit, model, provider, "
                           "started_after, started_before, status, user"),
    ]:
        assert error_of(get(stack, "/api/v1/interceptions", k, **params), 400) == message
    assert get(stack, "/api/v1/interceptions", k, limit="1000").status_code == 200
    assert get(stack, "/api/v1/interceptions", k, limit="1").status_code == 200
    assert "group_by" in error_of(get(stack, "/api/v1/usage", k, group_by="colour"), 400)
    assert "format" in error_of(get(stack, "/api/v1/export", k, format="xml"), 400)
    r = httpx.post(stack.url + "/api/v1/interceptions", headers={"authorization": f"Bearer {k}"})
    assert error_of(r, 405) == "method POST not allowed; use GET"
    assert r.headers["allow"] == "GET"
    assert error_of(get(stack, "/api/v1/nothing-here", k), 404) == "not found: GET /api/v1/nothing-here"


# -- paging, filters and in-flight over HTTP -------------------------------------------------------


def test_walking_pages_over_http_with_shared_timestamps(stack: Stack) -> None:
    root_key = stack.create_key("root", admin=True)
    seeds = [Seed(id=f"p-{n:03d}", started_at=T0 + (n % 4)) for n in range(23)]  # groups share a time
    seeds.append(Seed(id="p-live", started_at=T0 + 99, ended_at=None))
    seed(stack.db_path, seeds)
    for limit in (1, 4, 7, 23, 100):
        got: list[str] = []
        after: str | None = None
        while True:
            params = {"limit": str(limit), **({"after_id": after} if after else {})}
            page = get(stack, "/api/v1/interceptions", root_key, **params).json()
            got += [i["id"] for i in page["interceptions"]]
            after = page["next_after_id"]
            if after is None:
                break
        assert got == [s.id for s in newest_first(seeds) if s.ended_at is not None], limit
    # in flight: not listed, but readable by id
    assert get(stack, "/api/v1/interceptions/p-live", root_key).json()["status"] is None


def test_filters_over_http(stack: Stack) -> None:
    root_key = stack.create_key("root", admin=True)
    seed(stack.db_path, [
        Seed(id="f1", provider="openai", api="chat", model="gpt-q", client="Codex", started_at=T0),
        Seed(id="f2", status="failed", upstream_status=500, error="boom", started_at=T0 + 60),
        Seed(id="f3", model="claude-q", started_at=T0 + 120),
    ])

    def ids(**params: str) -> list[str]:
        r = get(stack, "/api/v1/interceptions", root_key, **params)
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["interceptions"]]

    assert ids(provider="openai") == ["f1"]
    assert ids(model="claude-q") == ["f3"]
    assert ids(client="Codex") == ["f1"]
    assert ids(status="failed") == ["f2"]
    assert ids(user="ana") == ["f3", "f2", "f1"]
    assert ids(started_after="2026-11-18T11:07:40Z", started_before="2026-11-18T11:08:40Z") == ["f2"]


# -- export ----------------------------------------------------------------------------------------


def test_export_of_thousands_parses_back_to_the_data(stack: Stack) -> None:
    root_key = stack.create_key("root", admin=True)
    seeds = [
        Seed(
            id=f"e-{n:05d}", user_id=f"u-{n % 3}", user_name=["ana", "ben", "cho"][n % 3],
            started_at=T0 + n // 2, model=["m-one", "m-two"][n % 2],
            usages=(TokenUsage(provider_response_id=f"r{n}", input_tokens=n, output_tokens=2 * n,
                               cache_read_input_tokens=n % 7, reasoning_tokens=n % 5),) * (1 + n % 2),
            prompt=None if n % 5 == 0 else f"prompt {n}, with \"quotes\"\nand a second line",
            tools=(("search", orjson.dumps({"q": n}).decode()),) * (n % 3),
            thoughts=("ponder",) * (n % 2),
            status="failed" if n % 11 == 0 else "completed",
        )
        for n in range(3000)
    ]
    seed(stack.db_path, seeds + [Seed(id="e-live", user_id="u-0", started_at=T0 + 10**6, ended_at=None)])
    expected = [expected_item(s) for s in newest_first(seeds)]

    with httpx.stream("GET", stack.url + "/api/v1/export", params={"format": "jsonl"},
                      headers={"authorization": f"Bearer {root_key}"}, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-ndjson"
        assert "content-length" not in r.headers  # streamed
        got = [orjson.loads(line) for line in r.iter_lines() if line]
    assert [core_of(i) for i in got] == expected

    r = get(stack, "/api/v1/export", root_key, format="csv")
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    reader = csv.DictReader(io.StringIO(r.text, newline=""))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    assert list(reader) == [csv_record(e) for e in expected]

    # filters apply to the export too
    cho = get(stack, "/api/v1/export", root_key, user="cho", status="failed").text.splitlines()
    assert [orjson.loads(line)["id"] for line in cho] == [
        s.id for s in newest_first(seeds) if s.user_name == "cho" and s.status == "failed"
    ]


# -- metrics ---------------------------------------------------------------------------------------


def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(stack.url + "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def delta(before: dict[Any, float], after: dict[Any, float], name: str, *keys: str) -> dict[tuple[str, ...], float]:
    sums: dict[tuple[str, ...], float] = collections.defaultdict(float)
    for (n, labels), value in after.items():
        if n == name:
            d = value - before.get((n, labels), 0.0)
            if d:
                sums[tuple(dict(labels)[k] for k in keys)] += d
    return dict(sums)


def test_metrics_counters_equal_the_recorded_rows(stack: Stack) -> None:
    before = scrape(stack)
    a = anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key=stack.key, max_retries=0)
    o = openai.OpenAI(base_url=stack.url + "/openai/v1", api_key=stack.key, max_retries=0)
    with a.messages.stream(model="claude-sonnet-4-5", max_tokens=32,
                           messages=[{"role": "user", "content": "stream please"}]) as s:
        s.until_done()
    list(o.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "chunks"}], stream=True))
    o.chat.completions.create(model="gpt-4.1-mini", messages=[{"role": "user", "content": "whole"}])
    stack.script(json_reply({
        "id": "msg_tool_9", "type": "message", "role": "assistant", "model": "claude-opus-4-1",
        "content": [{"type": "thinking", "thinking": "need grep", "signature": "sig"},
                    {"type": "tool_use", "id": "toolu_q1", "name": "grep", "input": {"pattern": "TODO"}},
                    {"type": "tool_use", "id": "toolu_q2", "name": "read", "input": {}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 41, "output_tokens": 17, "cache_read_input_tokens": 900,
                  "cache_creation_input_tokens": 12},
    }))
    post(stack, "/anthropic/v1/messages", {"model": "claude-opus-4-1", "max_tokens": 64,
                                           "messages": [{"role": "user", "content": "find todos"}]})
    stack.script(json_reply({"error": {"message": "slow down", "type": "rate_limit_error"}}, status=429))
    assert post(stack, "/openai/v1/chat/completions", {"model": "gpt-4.1", "messages": [
        {"role": "user", "content": "again"}]}).status_code == 429
    httpx.get(stack.url + "/anthropic/v1/models", headers={"x-api-key": stack.key})
    rows = stack.interceptions()
    after = scrape(stack)

    assert len(rows) == 5
    by_labels = collections.Counter((r["provider"], r["model"], r["api"], r["status"], r["client"]) for r in rows)
    assert delta(before, after, "aibridge_interceptions_total", "provider", "model", "api", "status", "client") == \
        {k: float(v) for k, v in by_labels.items()}
    tokens: dict[tuple[str, ...], float] = collections.defaultdict(float)
    kinds = {"input": "input_tokens", "output": "output_tokens", "cache_read": "cache_read_input_tokens",
             "cache_write": "cache_write_input_tokens", "reasoning": "reasoning_tokens"}
    for r in rows:
        for u in r["token_usages"]:
            for kind, field in kinds.items():
                if u[field]:
                    tokens[(r["provider"], r["model"], r["api"], kind)] += u[field]
    assert delta(before, after, "aibridge_tokens_total", "provider", "model", "api", "kind") == dict(tokens)
    assert tokens[("anthropic", "claude-opus-4-1", "messages", "cache_read")] == 900
    prompts = collections.Counter((r["provider"], r["model"], r["api"]) for r in rows for _ in r["user_prompts"])
    assert delta(before, after, "aibridge_prompts_total", "provider", "model", "api") == \
        {k: float(v) for k, v in prompts.items()}
    assert sum(prompts.values()) == 5
    tools = collections.Counter((r["provider"], r["model"], r["api"], str(t["injected"]).lower())
                                for r in rows for t in r["tool_usages"])
    assert delta(before, after, "aibridge_tool_calls_total", "provider", "model", "api", "injected") == \
        {k: float(v) for k, v in tools.items()} == {("anthropic", "claude-opus-4-1", "messages", "false"): 2.0}
    thoughts = sum(len(r["model_thoughts"]) for r in rows)
    assert sum(delta(before, after, "aibridge_thoughts_total", "provider").values()) == thoughts == 1
    assert delta(before, after, "aibridge_upstream_errors_total", "provider", "api", "upstream_status") == \
        {("openai", "chat", "429"): 1.0}
    durations = collections.Counter((r["provider"], r["api"], r["status"]) for r in rows)
    assert delta(before, after, "aibridge_interception_duration_seconds_count", "provider", "api", "status") == \
        {k: float(v) for k, v in durations.items()}
    overheads = collections.Counter((r["provider"], r["api"]) for r in rows)
    assert delta(before, after, "aibridge_gateway_overhead_seconds_count", "provider", "api") == \
        {k: float(v) for k, v in overheads.items()}
    assert delta(before, after, "aibridge_passthrough_total", "provider", "route") == {("anthropic", "models"): 1.0}
    in_flight = {labels: v for (n, labels), v in after.items() if n == "aibridge_interceptions_in_flight"}
    assert set(in_flight.values()) <= {0.0}
    assert after[("aibridge_audit_records_lost_total", ())] == 0.0
    assert after[("aibridge_audit_queue_depth", ())] == 0.0
    assert delta(before, after, "aibridge_audit_write_seconds_count") != {}
    # without metrics_per_user there are no per-user series for this user
    alice = user_id(stack, "alice")
    assert not [k for k in after if dict(k[1]).get("user_id") == alice]


def test_per_user_series_only_with_metrics_per_user(make_stack: Any) -> None:
    stack = make_stack(metrics_per_user="true")
    before = scrape(stack)
    ask(stack, stack.key, "count me")
    stack.settle()
    after = scrape(stack)
    alice = user_id(stack, "alice")
    assert delta(before, after, "aibridge_user_interceptions_total", "user_id") == {(alice,): 1.0}
    assert delta(before, after, "aibridge_user_tokens_total", "user_id", "kind") == {
        (alice, "input"): 10.0, (alice, "output"): 20.0
    }


# -- logging ---------------------------------------------------------------------------------------


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JSONFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_structured_logging_emits_one_json_record_per_audit_record(make_stack: Any) -> None:
    stack = make_stack(structured_logging="true")
    lines = Lines()
    logging.getLogger(AUDIT_LOGGER).addHandler(lines)
    try:
        stack.script(json_reply({
            "id": "msg_log_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "thinking", "thinking": "check the file", "signature": "s"},
                        {"type": "tool_use", "id": "toolu_log", "name": "cat", "input": {"path": "x.txt"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 8, "output_tokens": 5},
        }))
        iid = post(stack, "/anthropic/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 8,
                                                     "messages": [{"role": "user", "content": "show x.txt"}]}
                   ).headers["x-aibridge-interception-id"]
        stack.settle()
    finally:
        logging.getLogger(AUDIT_LOGGER).removeHandler(lines)
    entries = [orjson.loads(line) for line in lines.lines]
    mine = [e for e in entries if e["audit"]["interception_id"] == iid]
    assert all(e["logger"] == "aibridge.audit" and e["level"] == "info" for e in mine)
    assert sorted(e["message"] for e in mine) == sorted(
        ["interception_started", "user_prompt", "token_usage", "tool_usage", "model_thought", "interception_ended"]
    )
    by_type = {e["message"]: e["audit"] for e in mine}
    item = stack.only_interception()
    assert by_type["interception_started"]["user_id"] == item["user"]["id"]
    assert by_type["interception_started"]["started_at"] == item["started_at"]
    assert by_type["user_prompt"]["prompt"] == "show x.txt"
    assert (by_type["token_usage"]["input_tokens"], by_type["token_usage"]["output_tokens"]) == (8, 5)
    assert (by_type["tool_usage"]["tool"], orjson.loads(by_type["tool_usage"]["input"])) == ("cat", {"path": "x.txt"})
    assert by_type["model_thought"]["content"] == "check the file"
    assert (by_type["interception_ended"]["status"], by_type["interception_ended"]["ended_at"]) == \
        ("completed", item["ended_at"])


def test_log_json_makes_every_log_line_json() -> None:
    code = ("import logging; from aibridge.shell.logs import setup_logging; setup_logging(json_logs=True);"
            "logging.getLogger('aibridge.test').warning('disk at %d%%', 91)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = orjson.loads(result.stderr.strip())
    assert (line["level"], line["logger"], line["message"]) == ("warning", "aibridge.test", "disk at 91%")
    assert line["time"].endswith("Z")


@pytest.mark.parametrize("flag", ["--log-json", "--structured-logging"])
def test_serve_accepts_the_logging_flags(flag: str) -> None:
    from click.testing import CliRunner

    from aibridge.cli import main

    result = CliRunner().invoke(main, ["serve", "--help"])
    assert flag in result.output
