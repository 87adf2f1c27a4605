"""Token accounting: provider usage objects to :class:`TokenUsage`.

The rules (DESIGN §5), one per provider, all producing disjoint input kinds so
that ``input + cache_read + cache_write`` equals the provider's total input:

* Anthropic reports ``input_tokens``, ``cache_creation_input_tokens``,
  ``cache_read_input_tokens`` and ``output_tokens`` already disjoint. Streams
  carry usage in ``message_start`` and ``message_delta`` as *cumulative
  snapshots*: :func:`merge_snapshot` keeps, per field, the latest non-null
  value. Adding them double counts (a bug other gateways shipped).
* OpenAI Chat: ``prompt_tokens`` includes ``prompt_tokens_details.cached_tokens``.
* OpenAI Responses: ``input_tokens`` includes ``input_tokens_details.cached_tokens``.

Token kinds we do not model as columns (1h cache writes, web search requests,
audio tokens, ...) are kept in ``metadata`` as flattened dotted keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aibridge.core.model import TokenUsage


def as_int(value: Any) -> int:
    """A token count from JSON: ints and integral floats; anything else is 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return 0


def _get(mapping: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _extras(usage: Mapping[str, Any], used: frozenset[str], prefix: str = "") -> dict[str, Any]:
    """Every numeric or string leaf of ``usage`` not in ``used``, as dotted keys."""
    out: dict[str, Any] = {}
    for key, value in usage.items():
        name = f"{prefix}{key}"
        if name in used or value is None:
            continue
        if isinstance(value, Mapping):
            out.update(_extras(value, used, prefix=f"{name}."))
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            out[name] = value
    return out


def merge_snapshot(previous: Mapping[str, Any] | None, latest: Mapping[str, Any]) -> dict[str, Any]:
    """Fold a cumulative usage snapshot: per field, the latest non-null value wins."""
    merged: dict[str, Any] = dict(previous or {})
    for key, value in latest.items():
        if value is None:
            continue
        old = merged.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            merged[key] = merge_snapshot(old, value)
        else:
            merged[key] = value
    return merged


_ANTHROPIC_USED = frozenset(
    {"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}
)


def anthropic_usage(usage: Mapping[str, Any], provider_response_id: str = "") -> TokenUsage:
    return TokenUsage(
        provider_response_id=provider_response_id,
        input_tokens=as_int(usage.get("input_tokens")),
        output_tokens=as_int(usage.get("output_tokens")),
        cache_read_input_tokens=as_int(usage.get("cache_read_input_tokens")),
        cache_write_input_tokens=as_int(usage.get("cache_creation_input_tokens")),
        reasoning_tokens=0,
        metadata=_extras(usage, _ANTHROPIC_USED),
    )


_CHAT_USED = frozenset(
    {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details.cached_tokens",
        "completion_tokens_details.reasoning_tokens",
    }
)


def openai_chat_usage(usage: Mapping[str, Any], provider_response_id: str = "") -> TokenUsage:
    prompt = as_int(usage.get("prompt_tokens"))
    cached = as_int(_get(usage, "prompt_tokens_details", "cached_tokens"))
    return TokenUsage(
        provider_response_id=provider_response_id,
        input_tokens=max(prompt - cached, 0),
        output_tokens=as_int(usage.get("completion_tokens")),
        cache_read_input_tokens=cached,
        cache_write_input_tokens=0,
        reasoning_tokens=as_int(_get(usage, "completion_tokens_details", "reasoning_tokens")),
        metadata=_extras(usage, _CHAT_USED),
    )


_RESPONSES_USED = frozenset(
    {
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "input_tokens_details.cached_tokens",
        "output_tokens_details.reasoning_tokens",
    }
)


def responses_usage(usage: Mapping[str, Any], provider_response_id: str = "") -> TokenUsage:
    total_input = as_int(usage.get("input_tokens"))
    cached = as_int(_get(usage, "input_tokens_details", "cached_tokens"))
    return TokenUsage(
        provider_response_id=provider_response_id,
        input_tokens=max(total_input - cached, 0),
        output_tokens=as_int(usage.get("output_tokens")),
        cache_read_input_tokens=cached,
        cache_write_input_tokens=0,
        reasoning_tokens=as_int(_get(usage, "output_tokens_details", "reasoning_tokens")),
        metadata=_extras(usage, _RESPONSES_USED),
    )
