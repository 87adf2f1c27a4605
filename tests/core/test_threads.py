"""Thread linking: the tool call a request's last message answers, for all three APIs."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aibridge.core.threads import answered_tool_call_id
from tests import strategies as S

CASES: list[tuple[str, str, dict[str, Any], str | None]] = [
    # Anthropic Messages
    ("anthropic tool result", "messages", {"messages": [
        {"role": "user", "content": "run the tests"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_aib1", "name": "bash", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_aib1", "content": "ok"}]},
    ]}, "toolu_aib1"),
    ("anthropic parallel results: the last one", "messages", {"messages": [
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_p1", "content": "a"},
            {"type": "tool_result", "tool_use_id": "toolu_p2", "content": "b"},
            {"type": "text", "text": "<system-reminder>keep going</system-reminder>"}]},
    ]}, "toolu_p2"),
    ("anthropic plain user turn", "messages", {"messages": [{"role": "user", "content": "hello"}]}, None),
    ("anthropic assistant last (prefill)", "messages", {"messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]},
        {"role": "assistant", "content": "Sure"}]}, None),
    ("anthropic no messages", "messages", {}, None),
    # OpenAI Chat
    ("chat tool message", "chat", {"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [{"id": "call_w1", "type": "function",
                                              "function": {"name": "wx", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_w1", "content": "sunny"},
    ]}, "call_w1"),
    ("chat user last", "chat", {"messages": [{"role": "tool", "tool_call_id": "call_old", "content": "x"},
                                             {"role": "user", "content": "thanks"}]}, None),
    ("chat tool message without id", "chat", {"messages": [{"role": "tool", "content": "x"}]}, None),
    # OpenAI Responses
    ("responses function output", "responses", {"input": [
        {"role": "user", "content": "list"},
        {"type": "function_call", "call_id": "call_r1", "name": "ls", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_r1", "output": "a.txt"},
    ]}, "call_r1"),
    ("responses custom tool output", "responses", {"input": [
        {"type": "custom_tool_call_output", "call_id": "call_patch9", "output": "Done!"}]}, "call_patch9"),
    ("responses string input", "responses", {"input": "hi"}, None),
    ("responses user item last", "responses", {"input": [
        {"type": "function_call_output", "call_id": "call_r2", "output": "x"},
        {"role": "user", "content": "now refactor"}]}, None),
    ("unknown api", "embeddings", {"input": [{"type": "function_call_output", "call_id": "c"}]}, None),
]


@pytest.mark.parametrize(("api", "body", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_answered_tool_call_id(api: str, body: dict[str, Any], expected: str | None) -> None:
    before = copy.deepcopy(body)
    assert answered_tool_call_id(api, body) == expected
    assert body == before


@given(api=st.sampled_from(["messages", "chat", "responses", "other"]), body=S.json_values)
def test_any_body_gives_a_string_or_none_and_is_left_alone(api: str, body: Any) -> None:
    before = copy.deepcopy(body)
    result = answered_tool_call_id(api, body)
    assert result is None or (isinstance(result, str) and result)
    assert body == before
