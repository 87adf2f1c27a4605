"""Recorded provider traffic replayed through a real bridge.

Every archive under ``../shared/fixtures/anthropic`` and
``../shared/fixtures/openai/chatcompletions`` (except the injected-MCP-tool
ones, which belong to the MCP tests) is played by the fake upstream, with the
recorded request flipped to streaming and to blocking. The test checks that
the client got the upstream's bytes (for chat streams where the bridge itself
asked for usage, all but the usage-only chunk) and that the recorded rows
match the traffic. Expected rows are computed here, independently of the
bridge's core, straight from the recording's own usage objects, tool blocks
and deltas, following DESIGN §5.

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

from aibridge.fake.upstream import Reply
from tests.conftest import SHARED
from tests.fixtures_txtar import read_txtar, upstream_reply
from tests.harness import Stack

FIXTURES = SHARED / "fixtures"
if not FIXTURES.is_dir():
    pytest.skip(f"recorded provider traffic not found at {FIXTURES}", allow_module_level=True)

ANTHROPIC = sorted((FIXTURES / "anthropic").glob("*.txtar"))
CHAT = sorted((FIXTURES / "openai" / "chatcompletions").glob("*.txtar"))


def _replayable(paths: list[Path]) -> list[Path]:
    return [p for p in paths if "injected" not in p.name]


@attrs.frozen
class Variant:
    api: str  # "messages" | "chat"
    path: Path
    stream: bool
    include_usage: bool = False  # chat streaming: the client asked for usage itself

    @property
    def id(self) -> str:
        mode = "stream" if self.stream else "blocking"
        if self.include_usage:
            mode += "+usage"
        return f"{self.api}/{self.path.stem}/{mode}"


def _variants() -> list[Variant]:
    out: list[Variant] = []
    for api, paths in (("messages", ANTHROPIC), ("chat", CHAT)):
        for path in _replayable(paths):
            sections = read_txtar(path)
            if "request" not in sections:
                continue
            if "streaming" in sections:
                out.append(Variant(api, path, stream=True))
                if api == "chat":
                    out.append(Variant(api, path, stream=True, include_usage=True))
            if "non-streaming" in sections:
                out.append(Variant(api, path, stream=False))
    return out


VARIANTS = _variants()


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("conformance")).start()
    try:
        yield s
    finally:
        s.stop()


# -- what the recording says should be recorded (independent of aibridge.core) ----------


def _payloads(stream_body: bytes) -> list[Any]:
    """JSON payloads of an LF-framed recording with one ``data:`` line per event."""
    out = []
    for line in stream_body.split(b"\n"):
        if line.startswith(b"data:"):
            data = line[5:].strip()
            if data != b"[DONE]":
                out.append(json.loads(data))
    return out


def _prompt(request: dict[str, Any]) -> str | None:
    last = request["messages"][-1]
    if last.get("role") != "user":
        return None
    content = last["content"]
    if isinstance(content, str):
        return content
    texts = [part["text"] for part in content if part.get("type") == "text"]
    return texts[-1] if texts else None


@attrs.frozen
class Expected:
    status: str
    usage: tuple[Any, ...] | None  # (response id, input, output, cache read, cache write, reasoning)
    tools: list[tuple[str, str, Any]]  # (call id, name, arguments) - arguments exact text, or parsed JSON
    thoughts: list[str]
    error: str | None = None


def _anthropic_stream(body: bytes) -> Expected:
    usage: dict[str, Any] = {}
    response_id = None
    blocks: dict[int, dict[str, Any]] = {}
    failed = None
    for p in _payloads(body):
        kind = p["type"]
        if kind == "message_start":
            response_id = p["message"]["id"]
            snapshots = [p["message"].get("usage") or {}]
        elif kind == "message_delta":
            snapshots = [p.get("usage") or {}]
        else:
            snapshots = []
        for snap in snapshots:  # cumulative: per field, the latest non-null value
            usage.update({k: v for k, v in snap.items() if isinstance(v, int)})
        if kind == "content_block_start":
            blocks[p["index"]] = {**p["content_block"], "parts": []}
        elif kind == "content_block_delta":
            d = p["delta"]
            if d["type"] == "input_json_delta":
                blocks[p["index"]]["parts"].append(d["partial_json"])
            elif d["type"] == "thinking_delta":
                blocks[p["index"]]["parts"].append(d["thinking"])
        elif kind == "error":
            failed = f'{p["error"]["type"]}: {p["error"]["message"]}'
    tools = [(b["id"], b["name"], "".join(b["parts"]) or "{}") for b in blocks.values() if b["type"] in ("tool_use", "server_tool_use")]
    thoughts = ["".join(b["parts"]) for b in blocks.values() if b["type"] == "thinking"]
    return Expected(
        status="failed" if failed else "completed",
        usage=None if response_id is None else (
            response_id, usage.get("input_tokens", 0), usage.get("output_tokens", 0),
            usage.get("cache_read_input_tokens", 0), usage.get("cache_creation_input_tokens", 0), 0),
        tools=tools,
        thoughts=[t for t in thoughts if t],
        error=failed,
    )


def _anthropic_blocking(body: bytes) -> Expected:
    reply = json.loads(body)
    u = reply["usage"]
    return Expected(
        status="completed",
        usage=(reply["id"], u["input_tokens"], u["output_tokens"], u.get("cache_read_input_tokens") or 0,
               u.get("cache_creation_input_tokens") or 0, 0),
        tools=[(b["id"], b["name"], b["input"]) for b in reply["content"] if b["type"] in ("tool_use", "server_tool_use")],
        thoughts=[b["thinking"] for b in reply["content"] if b["type"] == "thinking" and b["thinking"]],
    )


def _chat_usage(response_id: str, u: dict[str, Any]) -> tuple[Any, ...]:
    cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return (response_id, u["prompt_tokens"] - cached, u["completion_tokens"], cached, 0, reasoning)


def _chat_stream(body: bytes) -> Expected:
    response_id = None
    usage = None
    calls: dict[int, list[Any]] = {}
    failed = None
    for p in _payloads(body):
        if "error" in p:
            failed = p["error"]["message"]
            continue
        response_id = response_id or p["id"]
        if p.get("usage"):
            usage = p["usage"]
        for choice in p["choices"]:
            for tc in choice["delta"].get("tool_calls") or []:
                slot = calls.setdefault(tc["index"], [tc.get("id"), tc["function"].get("name"), ""])
                slot[2] += tc["function"].get("arguments") or ""
    return Expected(
        status="failed" if failed else "completed",
        usage=None if usage is None else _chat_usage(response_id or "", usage),
        tools=[(cid, name, args or "{}") for cid, name, args in calls.values()],
        thoughts=[],
        error=failed,
    )


def _chat_blocking(body: bytes) -> Expected:
    reply = json.loads(body)
    tools = [
        (tc["id"], tc["function"]["name"], json.loads(tc["function"]["arguments"]))
        for choice in reply["choices"]
        for tc in choice["message"].get("tool_calls") or []
    ]
    return Expected(status="completed", usage=_chat_usage(reply["id"], reply["usage"]), tools=tools, thoughts=[])


def _without_usage_only_chunks(body: bytes) -> bytes:
    """The recording minus each ``data:`` line whose chunk has no choices but usage, with its blank line."""
    lines = body.split(b"\n")
    out: list[bytes] = []
    skip_blank = False
    for line in lines:
        if skip_blank and line == b"":
            skip_blank = False
            continue
        skip_blank = False
        if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
            p = json.loads(line[5:])
            if p.get("choices") == [] and isinstance(p.get("usage"), dict):
                skip_blank = True
                continue
        out.append(line)
    return b"\n".join(out)


# -- the replay ---------------------------------------------------------------------------


ROUTES = {"messages": "/anthropic/v1/messages", "chat": "/openai/v1/chat/completions"}


def _post(bridge: Stack, route: str, body: bytes) -> tuple[int, bytes, str]:
    headers = {"authorization": f"Bearer {bridge.key}", "content-type": "application/json",
               "anthropic-version": "2023-06-01"}
    with httpx.Client(timeout=30) as client, client.stream("POST", bridge.url + route, content=body, headers=headers) as r:
        data = b"".join(r.iter_raw())
        return r.status_code, data, r.headers["x-aibridge-interception-id"]


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.id for v in VARIANTS])
def test_replay(bridge: Stack, variant: Variant) -> None:
    sections = read_txtar(variant.path)
    request = json.loads(sections["request"])
    request["stream"] = variant.stream
    if variant.include_usage:
        request["stream_options"] = {"include_usage": True}
    section = sections["streaming" if variant.stream else "non-streaming"]
    reply = upstream_reply(section, variant.stream, write_size=97)
    bridge.fake.clear()
    bridge.script(reply)

    status, received, interception_id = _post(bridge, ROUTES[variant.api], json.dumps(request).encode())

    # -- what the client got
    assert status == reply.status
    if variant.api == "chat" and variant.stream and not variant.include_usage and reply.status == 200:
        assert received == _without_usage_only_chunks(reply.body)
    else:
        assert received == reply.body
    sent = bridge.fake.last.json()
    if variant.api == "chat" and variant.stream:
        assert sent["stream_options"]["include_usage"] is True
    else:
        assert sent == request

    # -- what was recorded
    [item] = [i for i in bridge.interceptions() if i["id"] == interception_id]
    provider = "anthropic" if variant.api == "messages" else "openai"
    assert (item["provider"], item["api"], item["model"], item["streaming"]) == (
        provider, variant.api, request["model"], variant.stream)
    assert item["user"]["name"] == "alice"
    assert [p["prompt"] for p in item["user_prompts"]] == ([_prompt(request)] if _prompt(request) is not None else [])
    assert item["upstream_status"] == reply.status
    if reply.status >= 400:
        error = json.loads(reply.body)["error"]
        assert (item["status"], item["error"]) == ("failed", error["message"])
        assert item["token_usages"] == item["tool_usages"] == item["model_thoughts"] == []
        return
    parse = {("messages", True): _anthropic_stream, ("messages", False): _anthropic_blocking,
             ("chat", True): _chat_stream, ("chat", False): _chat_blocking}[variant.api, variant.stream]
    expected = parse(reply.body)
    assert item["status"] == expected.status
    if expected.error is not None:
        assert item["error"] == expected.error
    usages = [
        (u["provider_response_id"], u["input_tokens"], u["output_tokens"], u["cache_read_input_tokens"],
         u["cache_write_input_tokens"], u["reasoning_tokens"])
        for u in item["token_usages"]
    ]
    assert usages == ([] if expected.usage is None else [expected.usage])
    tools = [(t["tool_call_id"], t["tool"], t["input"]) for t in item["tool_usages"]]
    if not variant.stream:  # blocking: the reply holds parsed arguments; compare as JSON
        tools = [(cid, name, json.loads(args)) for cid, name, args in tools]
    assert tools == expected.tools
    assert all(t["injected"] is False for t in item["tool_usages"])
    assert [t["content"] for t in item["model_thoughts"]] == expected.thoughts


PASSTHROUGH = [
    (path, route)
    for paths, route in ((ANTHROPIC, "/anthropic/v1/models"), (CHAT, "/openai/v1/models"))
    for path in paths
    if path.stem == "fallthrough"
]


@pytest.mark.parametrize(("path", "route"), PASSTHROUGH, ids=[r for _, r in PASSTHROUGH])
def test_passthrough_replay(bridge: Stack, path: Path, route: str) -> None:
    body = read_txtar(path)["non-streaming"]
    bridge.fake.clear()
    bridge.script(Reply(headers=(("content-type", "application/json"),), body=body))
    before = len(bridge.interceptions())
    r = httpx.get(bridge.url + route, headers={"authorization": f"Bearer {bridge.key}"}, timeout=30)
    assert (r.status_code, r.content) == (200, body)
    assert bridge.fake.last.path == "/v1/models"
    assert "authorization" not in bridge.fake.last.headers or bridge.key not in bridge.fake.last.headers["authorization"]
    assert len(bridge.interceptions()) == before
