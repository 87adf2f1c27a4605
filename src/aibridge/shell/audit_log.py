"""Structured audit logging (``--structured-logging``) for SIEM pipelines.

One JSON log record per audit record, emitted when the writer has committed
it (so the log and the store agree): interception start and end, token
usage, prompt, tool usage and thought. Records go to the ``aibridge.audit``
logger as JSON lines on stderr whatever ``--log-json`` says (a SIEM needs
JSON either way), and do not propagate to the human log.

Each line: ``{"time", "level": "info", "logger": "aibridge.audit",
"message": "<type>", "audit": {"type": ..., "interception_id": ..., ...}}``
with RFC 3339 times and the field names of the audit JSON shape.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from aibridge.core.model import (
    InterceptionEnded,
    InterceptionStarted,
    PromptRecord,
    Record,
    ThoughtRecord,
    TokenUsageRecord,
    ToolUsageRecord,
)
from aibridge.core.times import rfc3339
from aibridge.shell.logs import JSONFormatter
from aibridge.shell.metrics import add_batch_listener

AUDIT_LOGGER = "aibridge.audit"
log = logging.getLogger(AUDIT_LOGGER)


def audit_entry(record: Record) -> dict[str, Any] | None:
    """The JSON object logged for one audit record (field names as in the audit API)."""
    if isinstance(record, InterceptionStarted):
        return {
            "type": "interception_started",
            "interception_id": record.id,
            "user_id": record.user_id,
            "key_id": record.key_id,
            "provider": record.provider,
            "provider_name": record.provider_name,
            "api": record.api,
            "model": record.model,
            "streaming": record.streaming,
            "client": record.client,
            "user_agent": record.user_agent,
            "client_session_id": record.client_session_id,
            "credential_kind": record.credential_kind,
            "credential_hint": record.credential_hint,
            "started_at": rfc3339(record.started_at),
            "metadata": dict(record.metadata),
        }
    if isinstance(record, InterceptionEnded):
        return {
            "type": "interception_ended",
            "interception_id": record.id,
            "status": record.status,
            "upstream_status": record.upstream_status,
            "error": record.error,
            "ended_at": rfc3339(record.ended_at),
            "metadata": dict(record.metadata),
        }
    if isinstance(record, TokenUsageRecord):
        u = record.usage
        return {
            "type": "token_usage",
            "interception_id": record.interception_id,
            "provider_response_id": u.provider_response_id,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_read_input_tokens": u.cache_read_input_tokens,
            "cache_write_input_tokens": u.cache_write_input_tokens,
            "reasoning_tokens": u.reasoning_tokens,
            "metadata": dict(u.metadata),
            "created_at": rfc3339(record.created_at),
        }
    if isinstance(record, PromptRecord):
        return {
            "type": "user_prompt",
            "interception_id": record.interception_id,
            "provider_response_id": record.provider_response_id,
            "prompt": record.prompt,
            "created_at": rfc3339(record.created_at),
        }
    if isinstance(record, ToolUsageRecord):
        c = record.call
        return {
            "type": "tool_usage",
            "interception_id": record.interception_id,
            "provider_response_id": c.provider_response_id,
            "tool_call_id": c.tool_call_id,
            "tool": c.tool,
            "input": c.input,
            "injected": c.injected,
            "server_url": c.server_url,
            "invocation_error": c.invocation_error,
            "created_at": rfc3339(record.created_at),
        }
    if isinstance(record, ThoughtRecord):
        return {
            "type": "model_thought",
            "interception_id": record.interception_id,
            "content": record.content,
            "source": record.source,
            "created_at": rfc3339(record.created_at),
        }
    return None


def log_batch(records: Sequence[Record], seconds: float) -> None:
    """Writer ``on_batch`` listener: one log record per committed audit record."""
    if not log.isEnabledFor(logging.INFO):
        return
    for record in records:
        entry = audit_entry(record)
        if entry is not None:
            log.info(entry["type"], extra={"audit": entry})


def configure_audit_logger() -> None:
    """JSON lines on stderr for ``aibridge.audit``, whatever the other logs look like."""
    if any(getattr(h, "aibridge_audit", False) for h in log.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    handler.aibridge_audit = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def install_audit_log(app: Any, config: Any) -> None:
    """``APP_EXTENSIONS`` hook: with ``structured_logging``, log every committed audit record."""
    if not config.structured_logging:
        return
    configure_audit_logger()
    add_batch_listener(app.writer, log_batch)
