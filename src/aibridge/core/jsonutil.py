"""JSON helpers: fast orjson where it can, the standard library where it must.

orjson keeps key order on both sides; it refuses integers beyond 64 bits, so
those bodies fall back to :mod:`json`.

:func:`set_member` is the minimal-rewrite rule (DESIGN §4.2) at the byte
level: it changes one member of a JSON object *in the client's text* and
leaves every other byte alone, so formatting, key order, number spellings
(``1.0``, ``1e2``, 20-digit integers), escapes and unknown fields reach the
upstream exactly as the client wrote them.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from aibridge.core.errors import ClientError


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


#: the standard library's parser held to what JSON allows (and orjson accepts):
#: no NaN or Infinity, no number that overflows a double
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)


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
            value = _DECODER.decode(text)
            # orjson refuses a lone surrogate escape ("\udc00"): text that is
            # not Unicode, which no provider takes and SQLite cannot store
            json.dumps(value, ensure_ascii=False).encode("utf-8")
            return value
        except UnicodeEncodeError:
            raise ValueError("a \\u escape is a lone surrogate: not valid Unicode text") from None
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


_JSON_WS = " \t\n\r"
_WS = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, i: int) -> int:
    m = _WS.match(text, i)
    assert m is not None  # the pattern matches the empty string
    return m.end()


def _member_spans(text: str, start: int) -> tuple[dict[str, tuple[int, int]], int]:
    """Value spans of the object starting at ``text[start] == "{"``.

    Returns ``{key: (value start, value end)}`` (a repeated key keeps its last
    occurrence, as JSON parsers do) and the end of the last member's value
    (``start + 1`` for an empty object). The text is valid JSON (it parsed).
    """
    spans: dict[str, tuple[int, int]] = {}
    i = _skip_ws(text, start + 1)
    last = start + 1
    if text[i] == "}":
        return spans, last
    while True:
        key, i = _DECODER.raw_decode(text, i)
        i = _skip_ws(text, i)
        if text[i] != ":":
            raise ValueError(f"expected ':' at offset {i}")
        i = _skip_ws(text, i + 1)
        _, end = _DECODER.raw_decode(text, i)
        spans[key] = (i, end)
        last = end
        i = _skip_ws(text, end)
        if text[i] == "}":
            return spans, last
        if text[i] != ",":
            raise ValueError(f"expected ',' or '}}' at offset {i}")
        i = _skip_ws(text, i + 1)


def _nested(path: tuple[str, ...], value: Any) -> Any:
    for key in reversed(path):
        value = {key: value}
    return value


def _set_in_object(text: str, start: int, path: tuple[str, ...], value: Any) -> str:
    spans, last = _member_spans(text, start)
    key, rest = path[0], path[1:]
    if key in spans:
        s, e = spans[key]
        if rest and text[s] == "{":
            return text[:s] + _set_in_object(text[s:e], 0, rest, value) + text[e:]
        return text[:s] + dumps(_nested(rest, value)).decode() + text[e:]
    member = json.dumps(key, ensure_ascii=False) + ":" + dumps(_nested(rest, value)).decode()
    return text[:last] + ("," if spans else "") + member + text[last:]


def set_member(raw: bytes, body: dict[str, Any], path: tuple[str, ...], value: Any) -> bytes:
    """``raw`` (the bytes ``body`` was parsed from) with ``body[path...] = value``.

    Only the bytes of that member change; a missing member is appended to its
    object, a member that is not an object where the path goes deeper is
    replaced by one. When the top-level key is absent (the common case: no
    ``stream_options`` at all) the body is not scanned again: the member goes
    before the closing brace.
    """
    if not path:
        raise ValueError("set_member needs a non-empty path")
    text = raw.decode("utf-8")
    head = text.rstrip(_JSON_WS)
    if not head.endswith("}"):
        raise ValueError("not a JSON object")
    if path[0] not in body:
        close = len(head) - 1
        last = len(text[:close].rstrip(_JSON_WS))
        empty = text[last - 1] == "{"
        member = json.dumps(path[0], ensure_ascii=False) + ":" + dumps(_nested(path[1:], value)).decode()
        return (text[:last] + ("" if empty else ",") + member + text[last:]).encode("utf-8")
    start = _skip_ws(text, 0)
    return _set_in_object(text, start, path, value).encode("utf-8")
