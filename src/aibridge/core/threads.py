"""Thread linking: which earlier tool call a request answers.

An agent turn that runs tools spans several requests: the model asks for a
tool call (recorded as a tool usage of interception A), the client runs it and
sends the result back in a new request (interception B). When the *last*
message of B is a tool result, B continues A's thread: this module extracts
the provider call id that result answers, for each of the three intercepted
APIs. The store resolves the id to A (parent) and A's root at write time.

Pure and defensive: any body shape is accepted, nothing is ever raised and
the body is never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: Responses input item types that carry a tool's output, answering ``call_id``
#: (the outputs of the call types the bridge records as tool usages)
RESPONSES_OUTPUT_ITEMS = frozenset({"function_call_output", "custom_tool_call_output"})


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _last(items: Any) -> Any:
    return items[-1] if isinstance(items, list) and items else None


def _anthropic(body: Mapping[str, Any]) -> str | None:
    """The last ``tool_result`` block of the last message, when that is the user's."""
    last = _last(body.get("messages"))
    if not isinstance(last, Mapping) or last.get("role") != "user":
        return None
    content = last.get("content")
    if not isinstance(content, list):
        return None
    for block in reversed(content):
        if isinstance(block, Mapping) and block.get("type") == "tool_result":
            return _str(block.get("tool_use_id"))
    return None


def _chat(body: Mapping[str, Any]) -> str | None:
    """The last message, when it is a ``role: tool`` message."""
    last = _last(body.get("messages"))
    if isinstance(last, Mapping) and last.get("role") == "tool":
        return _str(last.get("tool_call_id"))
    return None


def _responses(body: Mapping[str, Any]) -> str | None:
    """The last input item, when it is a tool output item."""
    last = _last(body.get("input"))
    if isinstance(last, Mapping) and last.get("type") in RESPONSES_OUTPUT_ITEMS:
        return _str(last.get("call_id"))
    return None


_BY_API: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "messages": _anthropic,
    "chat": _chat,
    "responses": _responses,
}


def answered_tool_call_id(api: str, body: Any) -> str | None:
    """The provider tool call id the request's last message answers, or ``None``.

    ``api`` is ``messages``, ``chat`` or ``responses``; for anything else, and
    for bodies that do not end in a tool result, the answer is ``None``.
    """
    extract = _BY_API.get(api)
    if extract is None or not isinstance(body, Mapping):
        return None
    return extract(body)
