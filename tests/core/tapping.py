"""Helpers for provider stream tests: build SSE bodies, run them through a StreamTap."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from aibridge.core.model import AuditEvent
from aibridge.core.providers.base import StreamHandler, StreamTap


def sse(payload: Any, event: str | None = None) -> bytes:
    """One SSE event as providers write it: optional ``event:`` line, one ``data:`` line."""
    data = payload if isinstance(payload, (bytes, str)) else orjson.dumps(payload)
    if isinstance(data, str):
        data = data.encode()
    head = b"event: " + event.encode() + b"\n" if event is not None else b""
    return head + b"data: " + data + b"\n\n"


def run_tap(
    handler: StreamHandler,
    chunks: Iterable[bytes],
    *,
    filtering: bool = False,
    is_terminator: Callable[[str], bool] = lambda data: False,
    max_event_size: int | None = None,
) -> tuple[bytes, list[AuditEvent]]:
    """Feed ``chunks`` through a tap; return (bytes for the client, audit events)."""
    limit = {} if max_event_size is None else {"max_event_size": max_event_size}
    tap = StreamTap(handler, filtering=filtering, is_terminator=is_terminator, **limit)
    out = bytearray()
    events: list[AuditEvent] = []
    for chunk in chunks:
        data, audit = tap.receive_data(chunk)
        out += data
        events += audit
    data, audit = tap.close()
    return bytes(out + data), events + audit
