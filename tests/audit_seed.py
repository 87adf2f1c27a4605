"""Seeding an audit store through the real store API, and the obviously-correct reference.

A :class:`Seed` describes one interception and its children; :func:`seed`
writes them with :meth:`SQLiteStore.write_batch` (the writer's own path, not
raw SQL); :func:`expected_item` builds the DESIGN §6 JSON shape from the
description alone, so reads can be compared with something that did not go
through the code under test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from aibridge.core.model import (
    InterceptionEnded,
    InterceptionStarted,
    PromptRecord,
    Record,
    ThoughtRecord,
    TokenUsage,
    TokenUsageRecord,
    ToolCall,
    ToolUsageRecord,
)
from aibridge.core.times import rfc3339
from aibridge.shell.store import SQLiteStore


@attrs.frozen(kw_only=True)
class Seed:
    id: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    user_id: str = "u-ana"
    user_name: str = "ana"
    provider: str = "anthropic"
    api: str = "messages"
    model: str = "claude-test-1"
    client: str = "Claude Code"
    started_at: float = 1_800_000_000.0
    #: None: still in flight
    ended_at: float | None = 1_800_000_001.0
    status: str = "completed"
    upstream_status: int | None = 200
    error: str | None = None
    usages: tuple[TokenUsage, ...] = ()
    prompt: str | None = None
    tools: tuple[tuple[str, str], ...] = ()
    thoughts: tuple[str, ...] = ()


def records_for(s: Seed) -> list[Record]:
    out: list[Record] = [
        InterceptionStarted(
            id=s.id, user_id=s.user_id, key_id="key-" + s.user_id, provider=s.provider,
            provider_name=s.provider, api=s.api, model=s.model, streaming=True, client=s.client,
            user_agent="test-agent/1.0", client_session_id=None, credential_kind="centralized",
            credential_hint="sk-t...0000", started_at=s.started_at,
        )
    ]
    t = s.started_at
    if s.prompt is not None:
        out.append(PromptRecord(interception_id=s.id, provider_response_id="", prompt=s.prompt, created_at=t))
    for u in s.usages:
        out.append(TokenUsageRecord(interception_id=s.id, usage=u, created_at=t + 0.5))
    for n, (tool, args) in enumerate(s.tools):
        call = ToolCall(provider_response_id="resp-" + s.id[:8], tool_call_id=f"call-{s.id[:8]}-{n}", tool=tool, input=args)
        out.append(ToolUsageRecord(interception_id=s.id, call=call, created_at=t + 0.5))
    for text in s.thoughts:
        out.append(ThoughtRecord(interception_id=s.id, content=text, source="thinking", created_at=t + 0.25))
    if s.ended_at is not None:
        out.append(InterceptionEnded(id=s.id, status=s.status, upstream_status=s.upstream_status,
                                     error=s.error, ended_at=s.ended_at))
    return out


def seed(db_path: str | Path, seeds: Iterable[Seed]) -> None:
    seeds = list(seeds)
    store = SQLiteStore(db_path)
    try:
        for user_id, name in sorted({(s.user_id, s.user_name) for s in seeds}):
            assert store.ensure_user(user_id, name, 0.0) == user_id, f"user {name} exists with another id"
        records = [r for s in seeds for r in records_for(s)]
        for start in range(0, len(records), 5000):
            store.write_batch(records[start : start + 5000])
    finally:
        store.close()


def newest_first(seeds: Iterable[Seed]) -> list[Seed]:
    return sorted(seeds, key=lambda s: (s.started_at, s.id), reverse=True)


def expected_item(s: Seed) -> dict[str, Any]:
    """The audit JSON shape of ``s`` (thread-linking keys excluded; compare with :func:`core_of`)."""
    return {
        "id": s.id,
        "user": {"id": s.user_id, "name": s.user_name},
        "key_id": "key-" + s.user_id,
        "provider": s.provider,
        "provider_name": s.provider,
        "api": s.api,
        "model": s.model,
        "streaming": True,
        "client": s.client,
        "user_agent": "test-agent/1.0",
        "client_session_id": None,
        "credential_kind": "centralized",
        "credential_hint": "sk-t...0000",
        "status": s.status if s.ended_at is not None else None,
        "upstream_status": s.upstream_status if s.ended_at is not None else None,
        "error": s.error if s.ended_at is not None else None,
        "started_at": rfc3339(s.started_at),
        "ended_at": rfc3339(s.ended_at),
        "metadata": {},
        "token_usages": [
            {
                "provider_response_id": u.provider_response_id,
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "cache_read_input_tokens": u.cache_read_input_tokens,
                "cache_write_input_tokens": u.cache_write_input_tokens,
                "reasoning_tokens": u.reasoning_tokens,
                "metadata": dict(u.metadata),
                "created_at": rfc3339(s.started_at + 0.5),
            }
            for u in s.usages
        ],
        "user_prompts": (
            [] if s.prompt is None
            else [{"provider_response_id": "", "prompt": s.prompt, "created_at": rfc3339(s.started_at)}]
        ),
        "tool_usages": [
            {
                "provider_response_id": "resp-" + s.id[:8],
                "tool_call_id": f"call-{s.id[:8]}-{n}",
                "tool": tool,
                "input": args,
                "injected": False,
                "server_url": None,
                "invocation_error": None,
                "created_at": rfc3339(s.started_at + 0.5),
            }
            for n, (tool, args) in enumerate(s.tools)
        ],
        "model_thoughts": [
            {"content": text, "source": "thinking", "created_at": rfc3339(s.started_at + 0.25)} for text in s.thoughts
        ],
    }


#: keys of the DESIGN §6 shape (the store may add more, e.g. thread linking)
SHAPE_KEYS = frozenset(expected_item(Seed()))


def core_of(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` restricted to the DESIGN §6 keys."""
    missing = SHAPE_KEYS - set(item)
    assert not missing, f"missing keys {sorted(missing)}"
    return {k: v for k, v in item.items() if k in SHAPE_KEYS}
