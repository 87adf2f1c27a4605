"""OpenAI Responses: request translation and response auditing.

Stream events (https://platform.openai.com/docs/api-reference/responses-streaming):
``response.created``, ``response.output_item.added`` / ``.done`` (function_call,
custom_tool_call, reasoning, message items), ``response.function_call_arguments.delta``
/ ``.done``, ``response.custom_tool_call_input.delta`` / ``.done``, and the
terminal ``response.completed`` / ``response.incomplete`` / ``response.failed``
carrying usage. ``*.done`` values and complete output items win over deltas.
Unknown events and item types are relayed and ignored.
"""

from __future__ import annotations

from typing import Any

from aibridge.core.model import (
    AuditEvent,
    ResponseIdentified,
    StreamFailed,
    ThoughtRecorded,
    ToolCall,
    ToolCallMade,
    UsageReported,
)
from aibridge.core.prompts import responses_prompt
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
from aibridge.core.usage import responses_usage

SHAPE = "openai"
API = "responses"
#: output item type -> the field holding its arguments
TOOL_ITEMS = {"function_call": "arguments", "custom_tool_call": "input"}


def translate_request(raw: bytes, body: dict[str, Any]) -> Translation:
    model, stream = require_fields(body, list_field=None)
    return Translation(body=raw, model=model, streaming=stream, prompt=responses_prompt(body))


def _item_thoughts(item: dict[str, Any]) -> list[AuditEvent]:
    """Reasoning summaries and assistant ``commentary`` messages of one output item."""
    kind = item.get("type")
    events: list[AuditEvent] = []
    if kind == "reasoning":
        for part in as_list(item.get("summary")):
            text = as_str(as_dict(part).get("text"))
            if text:
                events.append(ThoughtRecorded(content=text, source="reasoning_summary"))
    elif kind == "message" and item.get("phase") == "commentary":
        texts = [as_str(as_dict(p).get("text")) for p in as_list(item.get("content"))]
        text = "\n".join(t for t in texts if t)
        if text:
            events.append(ThoughtRecorded(content=text, source="commentary"))
    return events


def _item_tool_call(item: dict[str, Any], response_id: str) -> ToolCall | None:
    field = TOOL_ITEMS.get(as_str(item.get("type")))
    if field is None:
        return None
    args = as_str(item.get(field))
    return ToolCall(
        provider_response_id=response_id,
        tool_call_id=as_str(item.get("call_id")) or as_str(item.get("id")),
        tool=as_str(item.get("name")),
        input=args if args.strip() else "{}",
    )


def _terminal_events(response: dict[str, Any], failed: bool) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    usage = response.get("usage")
    if isinstance(usage, dict):
        events.append(UsageReported(usage=responses_usage(usage, as_str(response.get("id")))))
    if failed:
        error = as_dict(response.get("error"))
        events.append(StreamFailed(message=as_str(error.get("message")) or "response failed"))
    return events


class StreamHandler:
    def __init__(self) -> None:
        self.response_id = ""
        self._tools = ToolCallAssembler()
        self._terminal: list[AuditEvent] = []

    def drop(self, event: SSEEvent, payload: Any) -> bool:
        return False

    def handle(self, event: SSEEvent, payload: Any) -> list[AuditEvent]:
        if not isinstance(payload, dict):
            return []
        kind = as_str(payload.get("type"))
        if kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
            self._tools.append(payload.get("item_id"), as_str(payload.get("delta")))
            return []
        if kind == "response.function_call_arguments.done":
            self._tools.finalize(payload.get("item_id"), as_str(payload.get("arguments")))
            return []
        if kind == "response.custom_tool_call_input.done":
            self._tools.finalize(payload.get("item_id"), as_str(payload.get("input")))
            return []
        if kind == "response.output_item.added":
            item = as_dict(payload.get("item"))
            field = TOOL_ITEMS.get(as_str(item.get("type")))
            if field is not None:
                self._tools.start(
                    item.get("id"),
                    call_id=as_str(item.get("call_id")),
                    name=as_str(item.get("name")),
                    args=as_str(item.get(field)),
                )
            return []
        if kind == "response.output_item.done":
            item = as_dict(payload.get("item"))
            field = TOOL_ITEMS.get(as_str(item.get("type")))
            if field is not None:
                key = item.get("id")
                self._tools.update(key, call_id=as_str(item.get("call_id")), name=as_str(item.get("name")))
                if isinstance(item.get(field), str) and item.get(field):
                    self._tools.finalize(key, item[field])
                call = self._tools.pop(key, self.response_id)
                return [ToolCallMade(call=call)] if call else []
            return _item_thoughts(item)
        if kind in ("response.created", "response.in_progress"):
            response = as_dict(payload.get("response"))
            if not self.response_id and response.get("id"):
                self.response_id = as_str(response.get("id"))
                return [ResponseIdentified(provider_response_id=self.response_id)]
            return []
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            response = as_dict(payload.get("response"))
            self.response_id = as_str(response.get("id")) or self.response_id
            self._terminal = _terminal_events(response, failed=kind == "response.failed")
            return []
        if kind == "error":
            message = as_str(payload.get("message")) or as_str(as_dict(payload.get("error")).get("message"))
            return [StreamFailed(message=message or "stream error")]
        return []

    def finish(self) -> list[AuditEvent]:
        events: list[AuditEvent] = tool_call_events(self._tools.pop_all(self.response_id))
        events.extend(self._terminal)
        self._terminal = []
        return events


def audit_body(payload: Any) -> list[AuditEvent]:
    """Audit events of a blocking ``response`` object."""
    if not isinstance(payload, dict):
        return [StreamFailed(message="upstream reply is not a JSON object")]
    if payload.get("object") != "response" and isinstance(payload.get("error"), dict):
        return [StreamFailed(message=as_str(payload["error"].get("message")) or "upstream error")]
    response_id = as_str(payload.get("id"))
    events: list[AuditEvent] = [ResponseIdentified(provider_response_id=response_id)]
    for item in as_list(payload.get("output")):
        item = as_dict(item)
        call = _item_tool_call(item, response_id)
        if call is not None:
            events.append(ToolCallMade(call=call))
        else:
            events.extend(_item_thoughts(item))
    events.extend(_terminal_events(payload, failed=payload.get("status") == "failed"))
    return events
