"""Small helpers for end-to-end tests that care about exact bytes on the wire.

Upstream bodies are built here from Python values so each test states its
own data; the bridge must hand the client exactly these bytes.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from aibridge.fake.upstream import Reply
from tests.harness import Stack

SSE = (("content-type", "text/event-stream"),)
JSON = (("content-type", "application/json"),)


def event(name: str | None, payload: Any) -> bytes:
    """One SSE event in the usual ``event: x`` / ``data: {...}`` form, LF line ends."""
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def stream_reply(body: bytes, *, write_size: int = 0, **kwargs: Any) -> Reply:
    return Reply(headers=SSE, body=body, write_size=write_size, **kwargs)


def json_reply(payload: Any, *, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status=status, headers=JSON + headers, body=orjson.dumps(payload))


def post(
    stack: Stack,
    path: str,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    key: str | None = None,
    timeout: float = 10.0,
) -> httpx.Response:
    """POST ``body`` (a value sent as JSON, or exact bytes) and read the whole reply."""
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    sent = {"content-type": "application/json", "x-api-key": key or stack.key}
    sent.update(headers or {})
    return httpx.post(stack.url + path, content=content, headers=sent, timeout=timeout)


def usage_rows(item: dict[str, Any]) -> list[dict[str, Any]]:
    """Token rows in the cases' vocabulary: id, input, cache read/write, output, reasoning."""
    return [
        {
            "provider_response_id": u["provider_response_id"],
            "input": u["input_tokens"],
            "cache_read": u["cache_read_input_tokens"],
            "cache_write": u["cache_write_input_tokens"],
            "output": u["output_tokens"],
            "reasoning": u["reasoning_tokens"],
        }
        for u in item["token_usages"]
    ]


def tool_calls(item: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(tool, provider call id, parsed arguments) for every recorded tool usage, in order."""
    return [(t["tool"], t["tool_call_id"], orjson.loads(t["input"])) for t in item["tool_usages"]]


def prompts(item: dict[str, Any]) -> list[str]:
    return [p["prompt"] for p in item["user_prompts"]]
