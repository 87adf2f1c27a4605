"""OpenAI Responses: request translation and response auditing.

The request goes upstream as the client's bytes: no rewrite is ever needed
(ids are never touched, so ``previous_response_id`` and ``conversation``
chaining keep working).

Stream events (https://platform.openai.com/docs/api-reference/responses-streaming):
``response.created`` / ``response.queued`` / ``response.in_progress`` (the
response id), ``response.output_item.added`` / ``.done`` (``function_call``,
``custom_tool_call``, ``reasoning`` and ``message`` items),
``response.function_call_arguments.delta`` / ``.done``,
``response.custom_tool_call_input.delta`` / ``.done``,
``response.reasoning_summary_text.done``, and one terminal event
``response.completed`` / ``response.incomplete`` / ``response.failed``
whose ``response`` carries ``usage`` (``null`` on some failures: then no
usage row is invented). ``error`` events carry ``message`` (and ``code``) at
the top level or under ``error``.

Which value wins: a ``*.done`` event replaces the deltas, a complete output
item (``output_item.done``) replaces both, and the terminal response's
``output`` fills in any item the stream never finished (backends that skip
``output_item.done``). Each item is recorded once, keyed by its id.

Thoughts: reasoning ``summary`` parts (one thought per part, source
``reasoning_summary``) and assistant messages with ``phase: "commentary"``
(the preamble a model like gpt-5 says before calling tools; source
``commentary``). Final-answer text is not a thought.

A ``custom_tool_call``'s input is free-form text (a patch, a SQL query), not
JSON arguments: its tool usage ``input`` is that text as a JSON string.

``response.incomplete`` (``max_output_tokens``, ``content_filter``) ends the
interception ``completed``: the upstream answered and the client got a
well-formed response; the reason goes into the interception's metadata as
``incomplete_reason``. ``response.failed``, ``error`` events and malformed
event data end it ``failed``.

Unknown events and item types are relayed and ignored.
"""

from __future__ import annotations

from typing import Any

from aibridge.core import jsonutil
from aibridge.core.model import (
    AuditEvent,
    InterceptionNoted,
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
#: output item type -> (the field holding its input, whether that input is free-form text)
TOOL_ITEMS: dict[str, tuple[str, bool]] = {
    "function_call": ("arguments", False),
    "custom_tool_call": ("input", True),
}
#: stream event -> the field of its payload holding the final input of a tool item
TOOL_DONE_EVENTS = {
    "response.function_call_arguments.done": "arguments",
    "response.custom_tool_call_input.done": "input",
}
TOOL_DELTA_EVENTS = frozenset({"response.function_call_arguments.delta", "response.custom_tool_call_input.delta"})
IDENTIFYING_EVENTS = frozenset({"response.created", "response.queued", "response.in_progress"})
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
#: request fields worth keeping in the interception's metadata (chaining and background mode)
NOTED_REQUEST_FIELDS = ("background", "previous_response_id", "conversation")


def _request_notes(body: dict[str, Any]) -> dict[str, Any]:
    notes: dict[str, Any] = {}
    for name in NOTED_REQUEST_FIELDS:
        value = body.get(name)
        if name == "conversation" and isinstance(value, dict):
            value = value.get("id")
        if value is True or (isinstance(value, str) and value):
            notes[name] = value
    return notes


def translate_request(raw: bytes, body: dict[str, Any]) -> Translation:
    """The client's bytes go upstream unchanged; only the audit reads the body."""
    model, stream = require_fields(body, list_field=None)
    return Translation(
        body=raw, model=model, streaming=stream, prompt=responses_prompt(body), metadata=_request_notes(body)
    )


def _thoughts(item: dict[str, Any]) -> list[AuditEvent]:
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


def _tool_call(item: dict[str, Any], response_id: str) -> ToolCall | None:
    spec = TOOL_ITEMS.get(as_str(item.get("type")))
    if spec is None:
        return None
    field, text = spec
    assembler = ToolCallAssembler()
    assembler.start(None, call_id=_call_id(item), name=as_str(item.get("name")), text=text)
    assembler.finalize(None, as_str(item.get(field)))
    return assembler.pop(None, response_id)


def _call_id(item: dict[str, Any]) -> str:
    return as_str(item.get("call_id")) or as_str(item.get("id"))


def _error_message(payload: dict[str, Any]) -> str:
    error = as_dict(payload.get("error"))
    message = as_str(payload.get("message")) or as_str(error.get("message"))
    code = as_str(payload.get("code")) or as_str(error.get("code")) or as_str(error.get("type"))
    if not message:
        message = jsonutil.dumps(payload).decode()[:500]
    return f"{code}: {message}" if code else message


def _terminal_events(response: dict[str, Any], status: str) -> list[AuditEvent]:
    """Usage (when present), the incomplete reason, the failure of a terminal response."""
    events: list[AuditEvent] = []
    usage = response.get("usage")
    if isinstance(usage, dict):
        events.append(UsageReported(usage=responses_usage(usage, as_str(response.get("id")))))
    if status == "incomplete":
        reason = as_str(as_dict(response.get("incomplete_details")).get("reason")) or "unknown"
        events.append(InterceptionNoted(metadata={"incomplete_reason": reason}))
    elif status == "failed":
        error = as_dict(response.get("error"))
        message = as_str(error.get("message")) or "response failed"
        code = as_str(error.get("code"))
        events.append(StreamFailed(message=f"{code}: {message}" if code else message))
    return events


class StreamHandler:
    """Audit events of a Responses stream (see the module docstring for the rules)."""

    def __init__(self) -> None:
        self.response_id = ""
        self._tools = ToolCallAssembler()
        #: output item ids already recorded (tool call or thoughts)
        self._done: set[str] = set()
        #: output indexes already recorded (for items that carry no id)
        self._done_indexes: set[int] = set()
        #: reasoning summary texts seen in ``reasoning_summary_text.done``, per item, by index
        self._summaries: dict[str, dict[int, str]] = {}

    def drop(self, event: SSEEvent, payload: Any) -> bool:
        return False

    def handle(self, event: SSEEvent, payload: Any) -> list[AuditEvent]:
        if not isinstance(payload, dict):
            return []
        kind = as_str(payload.get("type"))
        if kind in TOOL_DELTA_EVENTS:
            self._tools.append(payload.get("item_id"), as_str(payload.get("delta")))
            return []
        if kind in TOOL_DONE_EVENTS:
            value = payload.get(TOOL_DONE_EVENTS[kind])
            if isinstance(value, str):
                self._tools.finalize(payload.get("item_id"), value)
            return []
        if kind == "response.output_item.added":
            item = as_dict(payload.get("item"))
            spec = TOOL_ITEMS.get(as_str(item.get("type")))
            if spec is not None and item.get("id") not in self._tools:
                self._tools.start(
                    item.get("id"),
                    call_id=_call_id(item),
                    name=as_str(item.get("name")),
                    args=as_str(item.get(spec[0])),
                    text=spec[1],
                )
            return []
        if kind == "response.output_item.done":
            index = payload.get("output_index")
            if isinstance(index, int) and not isinstance(index, bool):
                self._done_indexes.add(index)
            return self._item_done(as_dict(payload.get("item")))
        if kind == "response.reasoning_summary_text.done":
            index = payload.get("summary_index")
            text = as_str(payload.get("text"))
            if isinstance(index, int) and text:
                self._summaries.setdefault(as_str(payload.get("item_id")), {})[index] = text
            return []
        if kind in IDENTIFYING_EVENTS:
            response = as_dict(payload.get("response"))
            if not self.response_id and response.get("id"):
                self.response_id = as_str(response.get("id"))
                return [ResponseIdentified(provider_response_id=self.response_id)]
            return []
        if kind in TERMINAL_EVENTS:
            response = as_dict(payload.get("response"))
            events: list[AuditEvent] = []
            if not self.response_id and response.get("id"):
                self.response_id = as_str(response.get("id"))
                events.append(ResponseIdentified(provider_response_id=self.response_id))
            for index, item in enumerate(as_list(response.get("output"))):
                if not isinstance(item, dict) or index in self._done_indexes:
                    continue
                events.extend(self._item_done(item))
            events.extend(_terminal_events(response, kind.removeprefix("response.")))
            return events
        if kind == "error":
            return [StreamFailed(message=_error_message(payload))]
        return []

    def _item_done(self, item: dict[str, Any]) -> list[AuditEvent]:
        item_id = as_str(item.get("id"))
        if item_id and item_id in self._done:
            return []
        spec = TOOL_ITEMS.get(as_str(item.get("type")))
        if spec is not None:
            key = item.get("id")
            field, text = spec
            self._tools.update(key, call_id=_call_id(item), name=as_str(item.get("name")), text=text)
            value = item.get(field)
            if isinstance(value, str) and (value or text):
                self._tools.finalize(key, value)
            call = self._tools.pop(key, self.response_id)
            events: list[AuditEvent] = [ToolCallMade(call=call)] if call else []
        else:
            events = _thoughts(item)
            if not events and item.get("type") == "reasoning":
                events = self._streamed_summaries(item_id)
            self._summaries.pop(item_id, None)
        if item_id:
            self._done.add(item_id)
        return events

    def _streamed_summaries(self, item_id: str) -> list[AuditEvent]:
        parts = self._summaries.pop(item_id, {})
        return [ThoughtRecorded(content=parts[i], source="reasoning_summary") for i in sorted(parts)]

    def finish(self) -> list[AuditEvent]:
        """What a stream cut short leaves: unfinished tool calls and summaries."""
        events: list[AuditEvent] = tool_call_events(self._tools.pop_all(self.response_id))
        for item_id in list(self._summaries):
            events.extend(self._streamed_summaries(item_id))
        return events


def ends_stream(payload: Any) -> bool:
    """``response.completed``, ``response.incomplete`` or ``response.failed`` ends a stream."""
    return isinstance(payload, dict) and payload.get("type") in TERMINAL_EVENTS


def audit_body(payload: Any) -> list[AuditEvent]:
    """Audit events of a blocking reply: a ``response`` object, or an error object."""
    if not isinstance(payload, dict):
        return [StreamFailed(message="upstream reply is not a JSON object")]
    if payload.get("object") != "response" and isinstance(payload.get("error"), dict):
        return [StreamFailed(message=_error_message(payload))]
    response_id = as_str(payload.get("id"))
    events: list[AuditEvent] = [ResponseIdentified(provider_response_id=response_id)]
    for item in as_list(payload.get("output")):
        item = as_dict(item)
        call = _tool_call(item, response_id)
        if call is not None:
            events.append(ToolCallMade(call=call))
        else:
            events.extend(_thoughts(item))
    events.extend(_terminal_events(payload, as_str(payload.get("status"))))
    return events
