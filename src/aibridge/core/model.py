"""Value types shared by the core and the shell.

Two families:

* **Audit events** produced by the core's response parsers while a response
  flows through (``UsageReported``, ``ToolCallMade``, ``ThoughtRecorded``,
  ``StreamFailed``). They carry no interception id and no time: the shell
  stamps those when it turns them into records.
* **Records**, what the single writer stores (``InterceptionStarted``,
  ``TokenUsageRecord``, ``PromptRecord``, ``ToolUsageRecord``,
  ``ThoughtRecord``, ``InterceptionEnded``) plus writer commands.

All are frozen attrs classes with keyword-only constructors.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

Provider = Literal["openai", "anthropic", "bedrock"]
Api = Literal["messages", "chat", "responses"]
Status = Literal["completed", "failed", "client_disconnected"]
CredentialKind = Literal["centralized", "byok"]


def _frozen_dict(value: dict[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class TokenUsage:
    """Token counts for one upstream response; the four input kinds are disjoint.

    ``input_tokens`` excludes cache reads and writes, so
    ``input + cache_read + cache_write`` is the provider's total input.
    """

    provider_response_id: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    reasoning_tokens: int = 0
    metadata: dict[str, Any] = attrs.field(factory=dict, converter=_frozen_dict)

    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cache_read_input_tokens + self.cache_write_input_tokens


@attrs.frozen(kw_only=True)
class ToolCall:
    """A tool call the model made; ``input`` is the arguments as JSON text."""

    provider_response_id: str
    tool_call_id: str
    tool: str
    input: str
    injected: bool = False
    server_url: str | None = None
    invocation_error: str | None = None


# -- audit events (from the core's response parsers) -------------------------


@attrs.frozen(kw_only=True)
class UsageReported:
    usage: TokenUsage


@attrs.frozen(kw_only=True)
class ToolCallMade:
    call: ToolCall


@attrs.frozen(kw_only=True)
class ThoughtRecorded:
    content: str
    source: str  # "thinking", "reasoning_summary", "commentary"


@attrs.frozen(kw_only=True)
class ResponseIdentified:
    """The upstream response id became known (before usage, which may never come)."""

    provider_response_id: str


@attrs.frozen(kw_only=True)
class StreamFailed:
    """The upstream reported an error inside a 200 response (mid-stream error event)."""

    message: str


@attrs.frozen(kw_only=True)
class InterceptionNoted:
    """A fact about the interception for its ``metadata`` (e.g. Responses ``incomplete_reason``)."""

    metadata: dict[str, Any] = attrs.field(factory=dict, converter=_frozen_dict)


AuditEvent = UsageReported | ToolCallMade | ThoughtRecorded | ResponseIdentified | StreamFailed | InterceptionNoted


# -- records (what the writer stores) -----------------------------------------


@attrs.frozen(kw_only=True)
class InterceptionStarted:
    id: str
    user_id: str
    key_id: str
    provider: str
    provider_name: str
    api: str
    model: str
    streaming: bool
    client: str
    user_agent: str
    client_session_id: str | None
    credential_kind: str
    credential_hint: str
    started_at: float
    metadata: dict[str, Any] = attrs.field(factory=dict, converter=_frozen_dict)
    #: the provider tool call id the request's last message answers (thread linking);
    #: the store resolves it to the parent and root interceptions
    correlating_tool_call_id: str | None = None


@attrs.frozen(kw_only=True)
class TokenUsageRecord:
    interception_id: str
    usage: TokenUsage
    created_at: float


@attrs.frozen(kw_only=True)
class PromptRecord:
    interception_id: str
    provider_response_id: str
    prompt: str
    created_at: float


@attrs.frozen(kw_only=True)
class ToolUsageRecord:
    interception_id: str
    call: ToolCall
    created_at: float


@attrs.frozen(kw_only=True)
class ThoughtRecord:
    interception_id: str
    content: str
    source: str
    created_at: float


@attrs.frozen(kw_only=True)
class InterceptionEnded:
    id: str
    status: str
    upstream_status: int | None
    error: str | None
    ended_at: float
    metadata: dict[str, Any] = attrs.field(factory=dict, converter=_frozen_dict)


Record = (
    InterceptionStarted
    | TokenUsageRecord
    | PromptRecord
    | ToolUsageRecord
    | ThoughtRecord
    | InterceptionEnded
)


def to_record(interception_id: str, event: AuditEvent, now: float) -> Record | None:
    """Turn a parser's audit event into a store record, or ``None`` if it stores nothing."""
    if isinstance(event, UsageReported):
        return TokenUsageRecord(interception_id=interception_id, usage=event.usage, created_at=now)
    if isinstance(event, ToolCallMade):
        return ToolUsageRecord(interception_id=interception_id, call=event.call, created_at=now)
    if isinstance(event, ThoughtRecorded):
        return ThoughtRecord(
            interception_id=interception_id,
            content=event.content,
            source=event.source,
            created_at=now,
        )
    return None
