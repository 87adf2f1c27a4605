"""The ``aibridge keys`` and ``aibridge interceptions list`` commands against real database files."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner, Result

from aibridge.cli import main
from aibridge.core.times import parse_rfc3339
from aibridge.shell import store as store_mod
from tests.e2e.wire import post
from tests.harness import Stack

KEY_FIELDS = {"id", "key", "user", "admin", "expires_at"}
INTERCEPTION_FIELDS = {
    "id", "user", "key_id", "provider", "provider_name", "api", "model", "streaming", "client", "user_agent",
    "client_session_id", "credential_kind", "credential_hint", "status", "upstream_status", "error",
    "started_at", "ended_at", "metadata", "token_usages", "user_prompts", "tool_usages", "model_thoughts",
}
USAGE_FIELDS = {"provider_response_id", "input_tokens", "output_tokens", "cache_read_input_tokens",
                "cache_write_input_tokens", "reasoning_tokens", "metadata", "created_at"}
PROMPT_FIELDS = {"provider_response_id", "prompt", "created_at"}
TOOL_FIELDS = {"provider_response_id", "tool_call_id", "tool", "input", "injected", "server_url",
               "invocation_error", "created_at"}


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AIBRIDGE_DB", "AIBRIDGE_CONFIG", "CODER_AIBRIDGE_DB", "CODER_AIBRIDGE_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def db_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def create(db: Path, *extra: str) -> dict[str, Any]:
    result = run("keys", "create", "--db", str(db), "--format", "json", *extra)
    assert result.exit_code == 0, result.output
    created = orjson.loads(result.stdout)
    assert isinstance(created, dict)
    return created


# -- keys ---------------------------------------------------------------------------------


def test_keys_create_prints_the_key_once_and_stores_only_hash_and_prefix(tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    result = run("keys", "create", "--user", "erin", "--db", str(db))
    assert result.exit_code == 0
    key = result.stdout.strip()
    assert key.startswith("aib_") and len(key) >= 36 and "\n" not in key
    assert "shown only once" in result.stderr
    store = store_mod.SQLiteStore(db)
    try:
        [(key_hash, prefix)] = store.db.execute("SELECT key_hash, prefix FROM api_keys").fetchall()
    finally:
        store.close()
    assert key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert prefix == key[:10]
    assert key.encode() not in db_bytes(db)
    assert key[10:].encode() not in db_bytes(db)


def test_keys_create_json_with_admin_and_expiry(tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    before = time.time()
    created = create(db, "--user", "frank", "--admin", "--expires", "1d12h")
    assert set(created) == KEY_FIELDS
    assert (created["user"], created["admin"]) == ("frank", True)
    assert created["key"].startswith("aib_")
    expires = parse_rfc3339(created["expires_at"])
    assert before + 36 * 3600 - 1 <= expires <= time.time() + 36 * 3600 + 1
    plain = create(db, "--user", "frank")
    assert (plain["admin"], plain["expires_at"]) == (False, None)
    assert created["key"].encode() not in db_bytes(db)
    assert plain["key"].encode() not in db_bytes(db)
    # one user, two keys
    store = store_mod.SQLiteStore(db)
    try:
        assert store.db.execute("SELECT count(*) FROM users").fetchone()[0] == 1
    finally:
        store.close()


def test_keys_list_and_revoke(tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    first = create(db, "--user", "gina")
    second = create(db, "--user", "hal", "--admin")
    result = run("keys", "list", "--db", str(db), "--format", "json")
    assert result.exit_code == 0
    rows = orjson.loads(result.stdout)
    assert [(r["id"], r["user"], r["prefix"], r["admin"], r["revoked_at"]) for r in rows] == [
        (first["id"], "gina", first["key"][:10], False, None),
        (second["id"], "hal", second["key"][:10], True, None),
    ]
    assert first["key"] not in result.stdout

    result = run("keys", "revoke", first["id"], "--db", str(db))
    assert (result.exit_code, result.stdout) == (0, f"revoked {first['id']}\n")
    rows = orjson.loads(run("keys", "list", "--db", str(db), "--format", "json").stdout)
    assert rows[0]["revoked_at"] is not None and rows[1]["revoked_at"] is None

    table = run("keys", "list", "--db", str(db)).stdout.splitlines()
    assert table[0].split() == ["ID", "PREFIX", "USER", "ADMIN", "STATE"]
    assert table[1].split() == [first["id"], first["key"][:10], "gina", "false", "revoked", rows[0]["revoked_at"]]
    assert table[2].split() == [second["id"], second["key"][:10], "hal", "true", "active"]

    again = run("keys", "revoke", first["id"], "--db", str(db))
    assert again.exit_code != 0
    assert again.stderr == f"aibridge: no active key {first['id']}\n"


def test_keys_create_rejects_a_bad_duration_with_one_line(tmp_path: Path) -> None:
    result = run("keys", "create", "--user", "ivy", "--expires", "soon", "--db", str(tmp_path / "k.db"))
    assert result.exit_code != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--expires" in result.stderr


def test_a_key_made_by_the_cli_works_through_the_bridge_until_revoked(stack: Stack) -> None:
    created = create(Path(stack.db_path), "--user", "jules")
    body = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hey"}]}
    stack.app.key_cache_seconds = 0.0  # see every revocation at once
    assert post(stack, "/anthropic/v1/messages", body, key=created["key"]).status_code == 200
    assert run("keys", "revoke", created["key"][:10], "--db", stack.db_path).exit_code == 0
    reply = post(stack, "/anthropic/v1/messages", body, key=created["key"])
    assert reply.status_code == 401
    assert stack.only_interception()["user"]["name"] == "jules"


# -- interceptions list ----------------------------------------------------------------------


def _record_three(stack: Stack) -> list[str]:
    bob = stack.create_key("bob")
    ids = []
    for key, prompt in ((stack.key, "first from alice"), (bob, "then bob"), (stack.key, "alice again")):
        reply = httpx.post(stack.url + "/openai/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                           json={"model": "gpt-5-nano", "messages": [{"role": "user", "content": prompt}]})
        assert reply.status_code == 200
        ids.append(reply.headers["x-aibridge-interception-id"])
    stack.settle()
    return ids


def test_interceptions_list_json_is_newest_first_in_the_audit_shape(stack: Stack) -> None:
    ids = _record_three(stack)
    result = run("interceptions", "list", "--db", stack.db_path, "--format", "json")
    assert result.exit_code == 0
    items = orjson.loads(result.stdout)
    assert [i["id"] for i in items] == ids[::-1]
    assert [i["user_prompts"][0]["prompt"] for i in items] == ["alice again", "then bob", "first from alice"]
    first = items[-1]
    assert INTERCEPTION_FIELDS <= set(first)
    assert set(first["user"]) == {"id", "name"} and first["user"]["name"] == "alice"
    assert (first["provider"], first["api"], first["model"], first["streaming"], first["status"],
            first["upstream_status"], first["error"], first["credential_kind"]) == (
        "openai", "chat", "gpt-5-nano", False, "completed", 200, None, "centralized")
    [usage] = first["token_usages"]
    assert set(usage) == USAGE_FIELDS
    assert (usage["provider_response_id"], usage["input_tokens"], usage["output_tokens"]) == (
        "chatcmpl-fake-1", 10, 20)
    [prompt] = first["user_prompts"]
    assert set(prompt) == PROMPT_FIELDS
    assert first["tool_usages"] == [] and first["model_thoughts"] == []
    assert parse_rfc3339(first["started_at"]) <= parse_rfc3339(first["ended_at"])


def test_interceptions_list_filters_by_user_and_limits(stack: Stack) -> None:
    ids = _record_three(stack)
    bob = orjson.loads(run("interceptions", "list", "--db", stack.db_path, "--format", "json", "--user", "bob").stdout)
    assert [i["id"] for i in bob] == [ids[1]]
    latest = orjson.loads(run("interceptions", "list", "--db", stack.db_path, "--format", "json", "--limit", "1").stdout)
    assert [i["id"] for i in latest] == [ids[2]]
    assert orjson.loads(run("interceptions", "list", "--db", stack.db_path, "--format", "json",
                            "--user", "nobody").stdout) == []


def test_interceptions_list_table(stack: Stack) -> None:
    _record_three(stack)
    lines = run("interceptions", "list", "--db", stack.db_path, "--format", "table").stdout.splitlines()
    assert lines[0].split() == ["STARTED", "USER", "PROVIDER", "API", "MODEL", "STATUS", "IN", "OUT", "PROMPT"]
    assert len(lines) == 4
    assert lines[1].split()[1:] == ["alice", "openai", "chat", "gpt-5-nano", "completed", "10", "20", "alice", "again"]
    assert lines[2].split()[1] == "bob"


def test_interceptions_list_includes_tool_usages(stack: Stack) -> None:
    from tests.e2e.wire import json_reply

    stack.script(json_reply({
        "id": "msg_cli_tools", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [{"type": "tool_use", "id": "toolu_cli_1", "name": "Bash", "input": {"command": "ls -la"}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 40, "output_tokens": 12}}))
    post(stack, "/anthropic/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 50,
                                           "messages": [{"role": "user", "content": "list files"}]})
    stack.settle()
    [item] = orjson.loads(run("interceptions", "list", "--db", stack.db_path, "--format", "json").stdout)
    [tool] = item["tool_usages"]
    assert set(tool) == TOOL_FIELDS
    assert (tool["tool"], tool["tool_call_id"], orjson.loads(tool["input"]), tool["injected"],
            tool["provider_response_id"]) == ("Bash", "toolu_cli_1", {"command": "ls -la"}, False, "msg_cli_tools")


def test_keys_list_tells_expired_from_expiring(tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    later = create(db, "--user", "ivy", "--expires", "30d")
    store = store_mod.SQLiteStore(db)
    try:
        user_id = store.ensure_user("u-jo", "jo", 0.0)
        store.create_key(key_id="k-old", user_id=user_id, key_hash="0" * 64, prefix="aib_old000",
                         admin=False, now=1_700_000_000.0, expires_at=1_700_000_060.0)
    finally:
        store.close()
    table = run("keys", "list", "--db", str(db)).stdout.splitlines()
    # oldest first
    assert table[1].split() == ["k-old", "aib_old000", "jo", "false", "expired", "2023-11-14T22:14:20.000000Z"]
    assert table[2].split() == [later["id"], later["key"][:10], "ivy", "false", "active,", "expires",
                                later["expires_at"]]


@pytest.mark.parametrize(("args", "message"), [
    (("--user", "kim", "--expires", "0"),
     "aibridge: invalid --expires: a key's lifetime must be longer than 0 (leave it out for no expiry)\n"),
    (("--user", "  "), "aibridge: invalid --user: a user name must not be empty\n"),
    (("--user", "eve\nmallory"),
     "aibridge: invalid --user: at most 200 printable characters (no newlines or control characters)\n"),
    (("--user", "x" * 201),
     "aibridge: invalid --user: at most 200 printable characters (no newlines or control characters)\n"),
    (("--user", "kim", "--expires", "soon"), None),
])
def test_keys_create_refuses_a_key_that_could_never_work(tmp_path: Path, args: tuple[str, ...],
                                                         message: str | None) -> None:
    db = tmp_path / "keys.db"
    result = run("keys", "create", "--db", str(db), *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    if message is not None:
        assert result.stderr == message
    else:
        assert result.stderr.startswith("aibridge: invalid --expires: ")
    assert not db.exists()
