"""Anthropic Messages: request translation and response auditing.

Stream events (https://docs.anthropic.com/en/api/messages-streaming):
``message_start`` (id, usage snapshot), ``content_block_start`` /
``content_block_delta`` / ``content_block_stop`` (text, ``tool_use`` with
``input_json_delta`` fragments, ``thinking`` with ``thinking_delta``),
``message_delta`` (usage snapshot), ``message_stop``, ``ping``, ``error``.
Usage snapshots are cumulative: see :func:`aibridge.core.usage.merge_snapshot`.
"""

from __future__ import annotations

from typing import Any

from aibridge.core import jsonutil
from aibridge.core.model import (
    AuditEvent,
    ResponseIdentified,
    StreamFailed,
    ThoughtRecorded,
    ToolCall,
    ToolCallMade,
    UsageReported,
)
from aibridge.core.prompts import anthropic_prompt
from aibridge.core.providers.base import (
    ToolCallAssembler,
    Translation,
    as_dict,
    as_list,
    as_str,
    require_fields,
    tool_call_events,
)
from aibridge.core.sse import SSEEvent
from aibridge.core.usage import anthropic_usage, merge_snapshot

SHAPE = "anthropic"
API = "messages"
#: content block types that are tool calls the model made
TOOL_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


def translate_request(raw: bytes, body: dict[str, Any]) -> Translation:
    """Anthropic needs no rewrite: the client's bytes go upstream as they are."""
    model, stream = require_fields(body, list_field="messages")
    return Translation(body=raw, model=model, streaming=stream, prompt=anthropic_prompt(body))


def _tool_input_text(block: dict[str, Any]) -> str:
    value = block.get("input")
    if value is None or value == {}:
        return ""
    return jsonutil.dumps(value).decode()


class StreamHandler:
    def __init__(self) -> None:
        self.response_id = ""
        self._usage: dict[str, Any] | None = None
        self._tools = ToolCallAssembler()
        self._thinking: dict[int, list[str]] = {}

    def drop(self, event: SSEEvent, payload: Any) -> bool:
        return False

    def handle(self, event: SSEEvent, payload: Any) -> list[AuditEvent]:
        if not isinstance(payload, dict):
            return []
        kind = payload.get("type")
        if kind == "content_block_delta":
            delta = as_dict(payload.get("delta"))
            dtype = delta.get("type")
            index = payload.get("index")
            if dtype == "input_json_delta":
                self._tools.append(index, as_str(delta.get("partial_json")))
            elif dtype == "thinking_delta" and index in self._thinking:
                self._thinking[index].append(as_str(delta.get("thinking")))
            return []
        if kind == "content_block_start":
            block = as_dict(payload.get("content_block"))
            index = payload.get("index")
            btype = block.get("type")
            if btype in TOOL_BLOCKS:
                self._tools.start(
                    index,
                    call_id=as_str(block.get("id")),
                    name=as_str(block.get("name")),
                    args=_tool_input_text(block),
                )
            elif btype == "thinking" and isinstance(index, int):
                self._thinking[index] = [as_str(block.get("thinking"))]
            return []
        if kind == "content_block_stop":
            index = payload.get("index")
            if index in self._tools:
                call = self._tools.pop(index, self.response_id)
                return [ToolCallMade(call=call)] if call else []
            if isinstance(index, int) and index in self._thinking:
                text = "".join(self._thinking.pop(index))
                return [ThoughtRecorded(content=text, source="thinking")] if text else []
            return []
        if kind == "message_start":
            message = as_dict(payload.get("message"))
            self.response_id = as_str(message.get("id"))
            self._fold(message.get("usage"))
            return [ResponseIdentified(provider_response_id=self.response_id)]
        if kind == "message_delta":
            self._fold(payload.get("usage"))
            return []
        if kind == "error":
            error = as_dict(payload.get("error"))
            return [StreamFailed(message=f"{as_str(error.get('type'))}: {as_str(error.get('message'))}")]
        return []

    def _fold(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage = merge_snapshot(self._usage, usage)

    def finish(self) -> list[AuditEvent]:
        events: list[AuditEvent] = tool_call_events(self._tools.pop_all(self.response_id))
        for parts in self._thinking.values():
            text = "".join(parts)
            if text:
                events.append(ThoughtRecorded(content=text, source="thinking"))
        self._thinking.clear()
        if self._usage is not None:
            events.append(UsageReported(usage=anthropic_usage(self._usage, self.response_id)))
            self._usage = None
        return events


def ends_stream(payload: Any) -> bool:
    """``message_stop`` is the last event of a Messages stream."""
    return isinstance(payload, dict) and payload.get("type") == "message_stop"


def audit_body(payload: Any) -> list[AuditEvent]:
    """Audit events of a blocking Messages reply (an Anthropic ``message`` object)."""
    if not isinstance(payload, dict):
        return [StreamFailed(message="upstream reply is not a JSON object")]
    if payload.get("type") == "error":
        error = as_dict(payload.get("error"))
        return [StreamFailed(message=f"{as_str(error.get('type'))}: {as_str(error.get('message'))}")]
    response_id = as_str(payload.get("id"))
    events: list[AuditEvent] = [ResponseIdentified(provider_response_id=response_id)]
    for block in as_list(payload.get("content")):
        if not isinstance(block, dict):
            continue
        btype = block.get("type")
        if btype in TOOL_BLOCKS:
            args = _tool_input_text(block)
            events.append(
                ToolCallMade(
                    call=ToolCall(
                        provider_response_id=response_id,
                        tool_call_id=as_str(block.get("id")),
                        tool=as_str(block.get("name")),
                        input=args or "{}",
                    )
                )
            )
        elif btype == "thinking":
            text = as_str(block.get("thinking"))
            if text:
                events.append(ThoughtRecorded(content=text, source="thinking"))
    usage = payload.get("usage")
    if isinstance(usage, dict):
        events.append(UsageReported(usage=anthropic_usage(usage, response_id)))
    return events
