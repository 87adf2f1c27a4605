"""Token accounting (DESIGN §5): one rule per provider, disjoint input kinds.

Examples name the situation each rule is for; properties check the folding of
Anthropic's cumulative snapshots and the invariant
``input + cache read + cache write == the provider's total input``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from aibridge.core.model import TokenUsage
from aibridge.core.usage import (
    anthropic_usage,
    as_int,
    merge_snapshot,
    openai_chat_usage,
    responses_usage,
)
from tests import strategies as S

# -- Anthropic ------------------------------------------------------------------------------


def test_anthropic_reply_with_cache_read_and_extra_kinds() -> None:
    usage = {
        "cache_creation": {"ephemeral_1h_input_tokens": 300, "ephemeral_5m_input_tokens": 12},
        "cache_creation_input_tokens": 312,
        "cache_read_input_tokens": 18_250,
        "input_tokens": 7,
        "output_tokens": 91,
        "server_tool_use": {"web_search_requests": 2},
        "service_tier": "standard",
    }
    assert anthropic_usage(usage, "msg_a1") == TokenUsage(
        provider_response_id="msg_a1",
        input_tokens=7,
        output_tokens=91,
        cache_read_input_tokens=18_250,
        cache_write_input_tokens=312,
        reasoning_tokens=0,
        metadata={
            "cache_creation.ephemeral_1h_input_tokens": 300,
            "cache_creation.ephemeral_5m_input_tokens": 12,
            "server_tool_use.web_search_requests": 2,
            "service_tier": "standard",
        },
    )


def test_anthropic_stream_snapshots_are_not_added() -> None:
    # message_start says output 1 so far; message_delta says 377 in total.
    start = {"input_tokens": 25, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}
    delta = {"output_tokens": 377}
    usage = anthropic_usage(merge_snapshot(merge_snapshot(None, start), delta))
    assert (usage.input_tokens, usage.output_tokens) == (25, 377)


def test_anthropic_delta_repeating_cumulative_input_counts_it_once() -> None:
    # Newer API versions repeat the input counts in message_delta.
    start = {"input_tokens": 2100, "cache_read_input_tokens": 40_000, "output_tokens": 3}
    delta = {"input_tokens": 2100, "cache_read_input_tokens": 40_000, "output_tokens": 503}
    usage = anthropic_usage(merge_snapshot(merge_snapshot(None, start), delta))
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (2100, 40_000, 503)


def test_anthropic_null_fields_in_a_later_snapshot_keep_the_earlier_value() -> None:
    start = {"input_tokens": 40, "cache_creation_input_tokens": 1024, "output_tokens": 1}
    delta = {"input_tokens": None, "cache_creation_input_tokens": None, "output_tokens": 64}
    usage = anthropic_usage(merge_snapshot(merge_snapshot(None, start), delta))
    assert (usage.input_tokens, usage.cache_write_input_tokens, usage.output_tokens) == (40, 1024, 64)


def test_anthropic_nested_extras_fold_per_leaf() -> None:
    start = {"cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 0}}
    delta = {"cache_creation": {"ephemeral_1h_input_tokens": 7}}
    assert merge_snapshot(merge_snapshot(None, start), delta) == {
        "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 7}
    }


# -- OpenAI ----------------------------------------------------------------------------------


def test_openai_chat_prompt_tokens_include_cached_tokens() -> None:
    usage = {
        "prompt_tokens": 1_300,
        "completion_tokens": 420,
        "total_tokens": 1_720,
        "prompt_tokens_details": {"cached_tokens": 1_152, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }
    assert openai_chat_usage(usage, "chatcmpl-9") == TokenUsage(
        provider_response_id="chatcmpl-9",
        input_tokens=148,
        output_tokens=420,
        cache_read_input_tokens=1_152,
        cache_write_input_tokens=0,
        reasoning_tokens=256,
        metadata={
            "prompt_tokens_details.audio_tokens": 0,
            "completion_tokens_details.audio_tokens": 0,
            "completion_tokens_details.accepted_prediction_tokens": 0,
            "completion_tokens_details.rejected_prediction_tokens": 0,
        },
    )


def test_openai_chat_without_details_has_no_cache_or_reasoning() -> None:
    usage = openai_chat_usage({"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40})
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.reasoning_tokens) == (31, 0, 0)


def test_responses_input_tokens_include_cached_tokens() -> None:
    usage = {
        "input_tokens": 5_000,
        "input_tokens_details": {"cached_tokens": 4_608},
        "output_tokens": 77,
        "output_tokens_details": {"reasoning_tokens": 64},
        "total_tokens": 5_077,
    }
    assert responses_usage(usage, "resp_3") == TokenUsage(
        provider_response_id="resp_3",
        input_tokens=392,
        output_tokens=77,
        cache_read_input_tokens=4_608,
        reasoning_tokens=64,
    )


def test_token_counts_only_accept_integers() -> None:
    assert [as_int(v) for v in (12, 12.0, 12.5, "12", True, None, [1])] == [12, 12, 0, 0, 0, 0, 0]


# -- properties: folding -----------------------------------------------------------------------


def _fold(snapshots: list[dict[str, Any]]) -> dict[str, Any] | None:
    merged: dict[str, Any] | None = None
    for snap in snapshots:
        merged = merge_snapshot(merged, snap)
    return merged


@given(st.lists(S.anthropic_usages, min_size=1, max_size=5))
def test_per_field_the_latest_non_null_value_wins(snapshots: list[dict[str, Any]]) -> None:
    merged = _fold(snapshots)
    assert merged is not None
    for field in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        seen = [s[field] for s in snapshots if s.get(field) is not None]
        assert merged.get(field) == (seen[-1] if seen else None)
    usage = anthropic_usage(merged)
    seen_out = [s["output_tokens"] for s in snapshots if s.get("output_tokens") is not None]
    # never added: the recorded count is one snapshot's, not a sum
    assert usage.output_tokens == (seen_out[-1] if seen_out else 0)


@given(st.lists(S.anthropic_usages, max_size=4), S.anthropic_usages)
def test_folding_the_same_snapshot_twice_is_a_fixpoint(before: list[dict[str, Any]], snap: dict[str, Any]) -> None:
    once = merge_snapshot(_fold(before), snap)
    assert merge_snapshot(once, snap) == once


@given(S.anthropic_usages, S.anthropic_usages)
def test_message_delta_wins_over_message_start_where_it_reports(start: dict[str, Any], delta: dict[str, Any]) -> None:
    merged = merge_snapshot(merge_snapshot(None, start), delta)
    for key, value in delta.items():
        if value is not None and not isinstance(value, dict):
            assert merged[key] == value
    for key, value in start.items():
        if value is not None and delta.get(key) is None and not isinstance(value, dict):
            assert merged[key] == value


# -- properties: the invariant -----------------------------------------------------------------


@given(S.anthropic_usages)
def test_anthropic_input_kinds_add_up_to_the_total_input(usage: dict[str, Any]) -> None:
    total = sum(usage.get(k) or 0 for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))
    assert anthropic_usage(usage).total_input_tokens == total


@given(S.openai_chat_usages())
def test_openai_chat_input_kinds_add_up_to_prompt_tokens(usage: dict[str, Any]) -> None:
    recorded = openai_chat_usage(usage)
    assert recorded.total_input_tokens == usage["prompt_tokens"]
    assert recorded.cache_read_input_tokens == ((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    assert recorded.output_tokens == usage["completion_tokens"]


@given(S.responses_usages())
def test_responses_input_kinds_add_up_to_input_tokens(usage: dict[str, Any]) -> None:
    recorded = responses_usage(usage)
    assert recorded.total_input_tokens == usage["input_tokens"]
    assert recorded.output_tokens == usage["output_tokens"]


# -- properties: extras go to metadata ----------------------------------------------------------


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out.update(_leaves(item, f"{prefix}{key}."))
        elif item is not None:
            out[f"{prefix}{key}"] = item
    return out


ANTHROPIC_COLUMNS = {"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}
CHAT_COLUMNS = {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details.cached_tokens",
                "completion_tokens_details.reasoning_tokens"}
RESPONSES_COLUMNS = {"input_tokens", "output_tokens", "total_tokens", "input_tokens_details.cached_tokens",
                     "output_tokens_details.reasoning_tokens"}


@given(S.anthropic_usages)
def test_anthropic_extras_are_metadata(usage: dict[str, Any]) -> None:
    expected = {k: v for k, v in _leaves(usage).items() if k not in ANTHROPIC_COLUMNS}
    assert anthropic_usage(usage).metadata == expected


@given(S.openai_chat_usages())
def test_openai_chat_extras_are_metadata(usage: dict[str, Any]) -> None:
    expected = {k: v for k, v in _leaves(usage).items() if k not in CHAT_COLUMNS}
    assert openai_chat_usage(usage).metadata == expected


@given(S.responses_usages())
def test_responses_extras_are_metadata(usage: dict[str, Any]) -> None:
    expected = {k: v for k, v in _leaves(usage).items() if k not in RESPONSES_COLUMNS}
    assert responses_usage(usage).metadata == expected
