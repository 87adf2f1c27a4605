"""Recorded OpenAI Responses traffic replayed through a real bridge.

Every archive under ``../shared/fixtures/openai/responses`` (except the
injected-MCP-tool ones, which belong to the MCP tests) is played by the fake
upstream: ``streaming/*`` archives with the recorded request streaming,
``blocking/*`` ones blocking. The test checks that the client got the
upstream's bytes exactly, that the upstream got the client's bytes exactly,
and that the recorded rows match the traffic. Expected rows are computed
here, independently of the bridge's core, straight from the recording
(DESIGN §5 and the README's Responses rules): usage from the terminal
response, tool calls from the finished output items (``*.done`` values win
over deltas), reasoning summaries and ``commentary`` messages as thoughts.

The archives are read at run time and never copied into the repository; the
module skips, saying where it looked, when they are absent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from tests.conftest import SHARED
from tests.fixtures_txtar import read_txtar, upstream_reply
from tests.harness import Stack

FIXTURES = SHARED / "fixtures" / "openai" / "responses"
if not FIXTURES.is_dir():
    pytest.skip(f"recorded Responses traffic not found at {FIXTURES}", allow_module_level=True)

ARCHIVES = sorted(p for p in FIXTURES.glob("*/*.txtar") if "injected" not in p.name)
TOOL_ITEMS = {"function_call": "arguments", "custom_tool_call": "input"}


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("conformance-responses")).start()
    try:
        yield s
    finally:
        s.stop()


# -- what the recording says should be recorded (independent of aibridge.core) ----------


@attrs.frozen
class Expected:
    status: str
    usage: tuple[Any, ...] | None  # (response id, input, output, cache read, cache write, reasoning)
    tools: list[tuple[str, str, Any]]  # (call id, name, arguments as parsed JSON or the custom input text)
    thoughts: list[tuple[str, str]]  # (content, source)
    error: str | None = None


def _prompt(request: dict[str, Any]) -> str | None:
    value = request.get("input")
    if isinstance(value, str):
        return value
    last = value[-1] if isinstance(value, list) and value else {}
    if last.get("role") != "user" or last.get("type", "message") != "message":
        return None
    content = last.get("content")
    if isinstance(content, str):
        return content
    texts = [p["text"] for p in content if p.get("type") == "input_text"]
    return "\n".join(texts) if texts else None


def _usage(response: dict[str, Any]) -> tuple[Any, ...] | None:
    u = response.get("usage")
    if not isinstance(u, dict):
        return None
    cached = (u.get("input_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (u.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
    return (response["id"], u["input_tokens"] - cached, u["output_tokens"], cached, 0, reasoning)


def _item_thoughts(item: dict[str, Any]) -> list[tuple[str, str]]:
    if item["type"] == "reasoning":
        return [(s["text"], "reasoning_summary") for s in item.get("summary") or [] if s.get("text")]
    if item["type"] == "message" and item.get("phase") == "commentary":
        text = "\n".join(p["text"] for p in item["content"] if p.get("text"))
        return [(text, "commentary")] if text else []
    return []


def _item_tool(item: dict[str, Any], done_values: dict[str, str], deltas: dict[str, str]) -> tuple[str, str, Any]:
    field = TOOL_ITEMS[item["type"]]
    value = item.get(field) or done_values.get(item["id"]) or deltas.get(item["id"]) or ""
    if item["type"] == "function_call":
        value = json.loads(value or "{}")
    return (item.get("call_id") or item["id"], item["name"], value)


def _error_text(p: dict[str, Any]) -> str:
    error = p.get("error") or {}
    message = p.get("message") or error.get("message")
    code = p.get("code") or error.get("code") or error.get("type")
    return f"{code}: {message}" if code else message


def _stream(body: bytes) -> Expected:
    payloads = [json.loads(line[5:]) for line in body.split(b"\n") if line.startswith(b"data:")]
    tools: list[tuple[str, str, Any]] = []
    thoughts: list[tuple[str, str]] = []
    done_values: dict[str, str] = {}
    deltas: dict[str, str] = {}
    usage = None
    failed = None
    for p in payloads:
        kind = p["type"]
        if kind.endswith(("call_arguments.delta", "tool_call_input.delta")):
            deltas[p["item_id"]] = deltas.get(p["item_id"], "") + p["delta"]
        elif kind == "response.function_call_arguments.done":
            done_values[p["item_id"]] = p["arguments"]
        elif kind == "response.custom_tool_call_input.done":
            done_values[p["item_id"]] = p["input"]
        elif kind == "response.output_item.done":
            item = p["item"]
            if item["type"] in TOOL_ITEMS:
                tools.append(_item_tool(item, done_values, deltas))
            thoughts += _item_thoughts(item)
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            usage = _usage(p["response"])
            if kind == "response.failed":
                failed = _error_text(p["response"])
        elif kind == "error":
            failed = _error_text(p)
    return Expected(status="failed" if failed else "completed", usage=usage, tools=tools, thoughts=thoughts,
                    error=failed)


def _blocking(body: bytes) -> Expected:
    try:
        reply = json.loads(body)
    except ValueError:
        return Expected(status="failed", usage=None, tools=[], thoughts=[], error="upstream reply is not valid JSON")
    tools = [_item_tool(i, {}, {}) for i in reply["output"] if i["type"] in TOOL_ITEMS]
    thoughts = [t for i in reply["output"] for t in _item_thoughts(i)]
    failed = _error_text(reply) if reply.get("status") == "failed" else None
    return Expected(status="failed" if failed else "completed", usage=_usage(reply), tools=tools,
                    thoughts=thoughts, error=failed)


# -- the replay ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ARCHIVES, ids=[f"{p.parent.name}/{p.stem}" for p in ARCHIVES])
def test_replay(bridge: Stack, path: Path) -> None:
    stream = path.parent.name == "streaming"
    sections = read_txtar(path)
    request = json.loads(sections["request"])
    request["stream"] = stream
    body = json.dumps(request).encode()
    reply = upstream_reply(sections["streaming" if stream else "non-streaming"], stream, write_size=89)
    bridge.fake.clear()
    bridge.script(reply)

    headers = {"authorization": f"Bearer {bridge.key}", "content-type": "application/json"}
    with httpx.Client(timeout=30) as client, client.stream(
        "POST", bridge.url + "/openai/v1/responses", content=body, headers=headers
    ) as r:
        received = b"".join(r.iter_raw())
        status, interception_id = r.status_code, r.headers["x-aibridge-interception-id"]

    # -- bytes both ways
    assert (status, received) == (reply.status, reply.body)
    assert bridge.fake.last.body == body
    assert bridge.fake.last.path == "/v1/responses"

    # -- what was recorded
    [item] = [i for i in bridge.interceptions() if i["id"] == interception_id]
    assert (item["provider"], item["api"], item["model"], item["streaming"]) == (
        "openai", "responses", request["model"], stream)
    prompt = _prompt(request)
    assert [p["prompt"] for p in item["user_prompts"]] == ([] if prompt is None else [prompt])
    assert item["upstream_status"] == reply.status
    if reply.status >= 400:
        assert (item["status"], item["error"]) == ("failed", json.loads(reply.body)["error"]["message"])
        assert item["token_usages"] == item["tool_usages"] == item["model_thoughts"] == []
        return
    expected = _stream(reply.body) if stream else _blocking(reply.body)
    assert (item["status"], item["error"]) == (expected.status, expected.error)
    usages = [
        (u["provider_response_id"], u["input_tokens"], u["output_tokens"], u["cache_read_input_tokens"],
         u["cache_write_input_tokens"], u["reasoning_tokens"])
        for u in item["token_usages"]
    ]
    assert usages == ([] if expected.usage is None else [expected.usage])
    tools = [(t["tool_call_id"], t["tool"], json.loads(t["input"])) for t in item["tool_usages"]]
    assert tools == expected.tools
    assert all(t["injected"] is False for t in item["tool_usages"])
    assert [(t["content"], t["source"]) for t in item["model_thoughts"]] == expected.thoughts


def test_every_archive_kind_is_covered() -> None:
    """The replay saw tools, thoughts of both kinds, failures and HTTP errors (guards a silent empty glob)."""
    names = {f"{p.parent.name}/{p.stem}" for p in ARCHIVES}
    assert {"streaming/simple", "blocking/simple", "streaming/stream_error", "streaming/stream_failure",
            "blocking/wrong_response_format", "blocking/summary_and_commentary_builtin_tool",
            "streaming/commentary_builtin_tool", "streaming/http_error"} <= names
