"""OpenAI Chat Completions: request translation and response auditing.

Streams are ``data: {chunk}`` lines ending with ``data: [DONE]``. Tool-call
deltas are keyed by ``index`` (which need not start at 0, and interleave
across parallel calls); usage arrives on a chunk that may still carry choices,
or on a usage-only chunk (empty ``choices``) when
``stream_options.include_usage`` is set. The bridge always sets it upstream,
and when the client did not ask for it, drops that usage-only chunk from the
client's stream (DESIGN §4 rule 2).
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
from aibridge.core.prompts import openai_chat_prompt
from aibridge.core.providers.base import (
    ToolCallAssembler,
    Translation,
    as_dict,
    as_json_text,
    as_list,
    as_str,
    require_fields,
    tool_call_events,
)
from aibridge.core.sse import SSEEvent
from aibridge.core.usage import openai_chat_usage

SHAPE = "openai"
API = "chat"


def is_done(data: str) -> bool:
    return data == "[DONE]"


def translate_request(raw: bytes, body: dict[str, Any]) -> Translation:
    model, stream = require_fields(body, list_field="messages")
    prompt = openai_chat_prompt(body)
    if not stream:
        return Translation(body=raw, model=model, streaming=False, prompt=prompt)
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return Translation(body=raw, model=model, streaming=True, prompt=prompt)
    # Rewrite only stream_options.include_usage, in the client's own bytes:
    # every other byte (formatting, key order, number spellings, unknown
    # fields, an explicit include_usage: false being replaced) stays as sent.
    return Translation(
        body=jsonutil.set_member(raw, body, ("stream_options", "include_usage"), True),
        model=model,
        streaming=True,
        prompt=prompt,
        rewritten=("stream_options.include_usage",),
        drop_usage_only_chunks=True,
    )


class StreamHandler:
    def __init__(self) -> None:
        self.response_id = ""
        self._usage: dict[str, Any] | None = None
        self._tools = ToolCallAssembler()
        self._done: list[ToolCall] = []  # calls closed early (a new id reused their index)
        self._reasoning: list[str] = []

    def drop(self, event: SSEEvent, payload: Any) -> bool:
        """The usage-only chunk the bridge asked for (no choices, has usage).

        OpenAI sends ``"choices": []``; some compatible servers leave the key
        out, which means the same.
        """
        return (
            isinstance(payload, dict)
            and payload.get("choices", []) == []
            and isinstance(payload.get("usage"), dict)
        )

    def handle(self, event: SSEEvent, payload: Any) -> list[AuditEvent]:
        if not isinstance(payload, dict):
            return []
        events: list[AuditEvent] = []
        if "error" in payload and payload.get("error") is not None:
            error = payload["error"]
            message = as_str(as_dict(error).get("message")) or jsonutil.dumps(error).decode()
            return [StreamFailed(message=message)]
        if not self.response_id and isinstance(payload.get("id"), str):
            self.response_id = payload["id"]
            events.append(ResponseIdentified(provider_response_id=self.response_id))
        for choice in as_list(payload.get("choices")):
            if not isinstance(choice, dict):
                continue
            delta = as_dict(choice.get("delta"))
            reasoning = delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                self._reasoning.append(reasoning)
            for tc in as_list(delta.get("tool_calls")):
                if not isinstance(tc, dict):
                    continue
                key = (choice.get("index", 0), tc.get("index", 0))
                function = as_dict(tc.get("function"))
                call_id = as_str(tc.get("id"))
                if key in self._tools and call_id and self._tools.call_id(key) not in ("", call_id):
                    # A new call id at a used index: some OpenAI-compatible
                    # servers send each parallel call whole, all at index 0.
                    done = self._tools.pop(key, self.response_id)
                    if done is not None:
                        self._done.append(done)
                if key not in self._tools:
                    self._tools.start(key, call_id=call_id, name=as_str(function.get("name")))
                else:
                    self._tools.update(key, call_id=call_id, name=as_str(function.get("name")))
                self._tools.append(key, as_json_text(function.get("arguments")))
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        return events

    def finish(self) -> list[AuditEvent]:
        events: list[AuditEvent] = []
        if self._reasoning:
            events.append(ThoughtRecorded(content="".join(self._reasoning), source="reasoning_content"))
            self._reasoning = []
        events.extend(tool_call_events(self._done + self._tools.pop_all(self.response_id)))
        self._done = []
        if self._usage is not None:
            events.append(UsageReported(usage=openai_chat_usage(self._usage, self.response_id)))
            self._usage = None
        return events


def audit_body(payload: Any) -> list[AuditEvent]:
    """Audit events of a blocking ``chat.completion`` reply."""
    if not isinstance(payload, dict):
        return [StreamFailed(message="upstream reply is not a JSON object")]
    if payload.get("error") is not None:
        error = payload["error"]
        return [StreamFailed(message=as_str(as_dict(error).get("message")) or "upstream error")]
    response_id = as_str(payload.get("id"))
    events: list[AuditEvent] = [ResponseIdentified(provider_response_id=response_id)]
    for choice in as_list(payload.get("choices")):
        message = as_dict(as_dict(choice).get("message"))
        reasoning = message.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            events.append(ThoughtRecorded(content=reasoning, source="reasoning_content"))
        for tc in as_list(message.get("tool_calls")):
            tc = as_dict(tc)
            function = as_dict(tc.get("function"))
            args = as_json_text(function.get("arguments"))
            events.append(
                ToolCallMade(
                    call=ToolCall(
                        provider_response_id=response_id,
                        tool_call_id=as_str(tc.get("id")),
                        tool=as_str(function.get("name")),
                        input=args if args.strip() else "{}",
                    )
                )
            )
    usage = payload.get("usage")
    if isinstance(usage, dict):
        events.append(UsageReported(usage=openai_chat_usage(usage, response_id)))
    return events
