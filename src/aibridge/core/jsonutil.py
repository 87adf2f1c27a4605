"""JSON helpers: fast orjson where it can, the standard library where it must.

orjson keeps key order on both sides, which the minimal-rewrite rule needs; it
refuses integers beyond 64 bits, so those bodies fall back to :mod:`json`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from aibridge.core.errors import ClientError


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # orjson rejects integers wider than 64 bits, which json accepts.
        if isinstance(data, bytes):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("not valid UTF-8") from None
        else:
            text = data
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            raise exc from None


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def parse_request_object(raw: bytes) -> dict[str, Any]:
    """Parse a client request body that must be a JSON object; 400 otherwise."""
    if not raw:
        raise ClientError("request body is empty; expected a JSON object")
    try:
        value = loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ClientError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ClientError(
            f"request body must be a JSON object, not {type(value).__name__.replace('dict', 'object')}"
        )
    return value
