"""Anthropic Messages: request translation, the stream tap and blocking replies.

Streams are built here with the project's own data in the shape Anthropic
documents (https://docs.anthropic.com/en/api/messages-streaming).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aibridge.core.errors import ClientError
from aibridge.core.model import (
    ResponseIdentified,
    StreamFailed,
    ThoughtRecorded,
    TokenUsage,
    ToolCall,
    ToolCallMade,
    UsageReported,
)
from aibridge.core.providers import anthropic
from tests import strategies as S
from tests.core.tapping import run_tap, sse

MSG_ID = "msg_0aibridgeTest01"


def message_start(usage: dict[str, Any] | None = None) -> bytes:
    usage = usage or {"input_tokens": 31, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4_096, "output_tokens": 2}
    return sse({"type": "message_start", "message": {"id": MSG_ID, "type": "message", "role": "assistant",
                "model": "claude-sonnet-4-5", "content": [], "stop_reason": None, "usage": usage}}, "message_start")


def block_start(index: int, block: dict[str, Any]) -> bytes:
    return sse({"type": "content_block_start", "index": index, "content_block": block}, "content_block_start")


def delta(index: int, d: dict[str, Any]) -> bytes:
    return sse({"type": "content_block_delta", "index": index, "delta": d}, "content_block_delta")


def json_delta(index: int, fragment: str) -> bytes:
    return delta(index, {"type": "input_json_delta", "partial_json": fragment})


def block_stop(index: int) -> bytes:
    return sse({"type": "content_block_stop", "index": index}, "content_block_stop")


def message_delta(usage: dict[str, Any], stop_reason: str = "end_turn") -> bytes:
    return sse({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": usage},
               "message_delta")


MESSAGE_STOP = sse({"type": "message_stop"}, "message_stop")
PING = sse({"type": "ping"}, "ping")


def tool(index: int, call_id: str, name: str) -> bytes:
    return block_start(index, {"type": "tool_use", "id": call_id, "name": name, "input": {}})


def call(call_id: str, name: str, args: str) -> ToolCallMade:
    return ToolCallMade(call=ToolCall(provider_response_id=MSG_ID, tool_call_id=call_id, tool=name, input=args))


def usage_event(**kwargs: Any) -> UsageReported:
    return UsageReported(usage=TokenUsage(provider_response_id=MSG_ID, **kwargs))


def tap(*frames: bytes) -> list[Any]:
    body = b"".join(frames)
    out, events = run_tap(anthropic.StreamHandler(), [body])
    assert out == body  # never filtered: the client gets the upstream bytes
    return events


# -- streams: examples ------------------------------------------------------------------------

THINKING_AND_TWO_TOOLS = [
    message_start(),
    block_start(0, {"type": "thinking", "thinking": ""}),
    delta(0, {"type": "thinking_delta", "thinking": "The user wants the build fixed; "}),
    delta(0, {"type": "thinking_delta", "thinking": "check the Makefile and the CI log."}),
    delta(0, {"type": "signature_delta", "signature": "c2lnbmF0dXJlLWZvci10ZXN0cw=="}),
    block_stop(0),
    block_start(1, {"type": "text", "text": ""}),
    delta(1, {"type": "text_delta", "text": "Looking at both."}),
    block_stop(1),
    tool(2, "toolu_01Makefile", "Read"),
    PING,
    json_delta(2, ""),
    json_delta(2, '{"file_path": "/srv/'),
    json_delta(2, 'app/Makefile"}'),
    block_stop(2),
    tool(3, "toolu_02CiLog", "Bash"),
    json_delta(3, '{"command": "tail -n 50 ci.log", '),
    json_delta(3, '"timeout": 0}'),
    block_stop(3),
    message_delta({"output_tokens": 188}, stop_reason="tool_use"),
    MESSAGE_STOP,
]


def test_thinking_and_parallel_tool_calls() -> None:
    assert tap(*THINKING_AND_TWO_TOOLS) == [
        ResponseIdentified(provider_response_id=MSG_ID),
        ThoughtRecorded(content="The user wants the build fixed; check the Makefile and the CI log.", source="thinking"),
        call("toolu_01Makefile", "Read", '{"file_path": "/srv/app/Makefile"}'),
        call("toolu_02CiLog", "Bash", '{"command": "tail -n 50 ci.log", "timeout": 0}'),
        usage_event(input_tokens=31, output_tokens=188, cache_read_input_tokens=4_096),
    ]


def test_tool_with_no_arguments_records_an_empty_object() -> None:
    events = tap(message_start(), tool(0, "toolu_03Now", "CurrentTime"), json_delta(0, ""), block_stop(0),
                 message_delta({"output_tokens": 9}), MESSAGE_STOP)
    assert call("toolu_03Now", "CurrentTime", "{}") in events


def test_deltas_are_assembled_per_block_index_even_when_interleaved() -> None:
    events = tap(message_start(), tool(4, "toolu_a", "Grep"), tool(6, "toolu_b", "Glob"),
                 json_delta(6, '{"pattern": '), json_delta(4, '{"query": "TODO"'), json_delta(6, '"*.py"}'),
                 json_delta(4, "}"), block_stop(6), block_stop(4), MESSAGE_STOP)
    assert [e for e in events if isinstance(e, ToolCallMade)] == [
        call("toolu_b", "Glob", '{"pattern": "*.py"}'),
        call("toolu_a", "Grep", '{"query": "TODO"}'),
    ]


def test_input_given_at_block_start_counts_only_without_deltas() -> None:
    start = block_start(0, {"type": "tool_use", "id": "toolu_s", "name": "Echo", "input": {"v": 1}})
    assert call("toolu_s", "Echo", '{"v":1}') in tap(message_start(), start, block_stop(0))
    events = tap(message_start(), start, json_delta(0, '{"v": '), json_delta(0, "1}"), block_stop(0))
    assert call("toolu_s", "Echo", '{"v": 1}') in events


def test_server_tool_use_is_a_tool_call() -> None:
    events = tap(message_start(), block_start(0, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
                 json_delta(0, '{"query": "trio nurseries"}'), block_stop(0), MESSAGE_STOP)
    assert call("srvtoolu_1", "web_search", '{"query": "trio nurseries"}') in events


def test_usage_snapshots_fold_and_extras_are_kept() -> None:
    start = {"input_tokens": 12, "cache_creation_input_tokens": 2_048, "cache_read_input_tokens": 0, "output_tokens": 1,
             "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 2_048}}
    end = {"input_tokens": 12, "cache_creation_input_tokens": 2_048, "cache_read_input_tokens": 0, "output_tokens": 40,
           "server_tool_use": {"web_search_requests": 1}}
    events = tap(message_start(start), message_delta(end), MESSAGE_STOP)
    assert events[-1] == usage_event(
        input_tokens=12, output_tokens=40, cache_write_input_tokens=2_048,
        metadata={"cache_creation.ephemeral_5m_input_tokens": 0, "cache_creation.ephemeral_1h_input_tokens": 2_048,
                  "server_tool_use.web_search_requests": 1},
    )


def test_mid_stream_error_fails_and_keeps_the_usage_seen_so_far() -> None:
    events = tap(message_start(), block_start(0, {"type": "text", "text": ""}), PING,
                 sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error"))
    assert events == [
        ResponseIdentified(provider_response_id=MSG_ID),
        StreamFailed(message="overloaded_error: Overloaded"),
        usage_event(input_tokens=31, output_tokens=2, cache_read_input_tokens=4_096),
    ]


def test_truncated_stream_still_records_the_open_tool_call_and_thought() -> None:
    events = tap(message_start(), block_start(0, {"type": "thinking", "thinking": ""}),
                 delta(0, {"type": "thinking_delta", "thinking": "half a thought"}),
                 tool(1, "toolu_cut", "Edit"), json_delta(1, '{"path": "a.py"'))
    assert ThoughtRecorded(content="half a thought", source="thinking") in events
    assert call("toolu_cut", "Edit", '{"path": "a.py"') in events


def test_malformed_event_data_is_reported_and_relayed() -> None:
    body = message_start() + b"event: content_block_delta\ndata: {not json\n\n" + MESSAGE_STOP
    out, events = run_tap(anthropic.StreamHandler(), [body])
    assert out == body
    assert [e for e in events if isinstance(e, StreamFailed)] == [StreamFailed(message="malformed event data: {not json")]


# -- streams: any chunking -----------------------------------------------------------------------


@given(st.data())
def test_any_chunking_gives_the_same_audit_events(data: st.DataObject) -> None:
    body = b"".join(THINKING_AND_TWO_TOOLS).replace(b"\n", data.draw(S.line_endings))
    whole_out, whole = run_tap(anthropic.StreamHandler(), [body])
    chunks = data.draw(S.chunkings(body))
    out, events = run_tap(anthropic.StreamHandler(), chunks)
    assert events == whole
    assert out == whole_out == body


# -- blocking replies ------------------------------------------------------------------------------


def test_blocking_reply_with_thinking_tools_and_usage() -> None:
    reply = {
        "id": MSG_ID, "type": "message", "role": "assistant", "model": "claude-opus-4-1",
        "content": [
            {"type": "thinking", "thinking": "Two files to read.", "signature": "c2ln"},
            {"type": "text", "text": "Reading them now."},
            {"type": "tool_use", "id": "toolu_x1", "name": "Read", "input": {"file_path": "/etc/hosts"}},
            {"type": "tool_use", "id": "toolu_x2", "name": "ListDir", "input": {}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 3, "cache_creation_input_tokens": 510, "cache_read_input_tokens": 9_000,
                  "output_tokens": 70, "service_tier": "standard"},
    }
    assert anthropic.audit_body(reply) == [
        ResponseIdentified(provider_response_id=MSG_ID),
        ThoughtRecorded(content="Two files to read.", source="thinking"),
        call("toolu_x1", "Read", '{"file_path":"/etc/hosts"}'),
        call("toolu_x2", "ListDir", "{}"),
        usage_event(input_tokens=3, output_tokens=70, cache_read_input_tokens=9_000, cache_write_input_tokens=510,
                    metadata={"service_tier": "standard"}),
    ]


def test_blocking_error_body_and_non_object() -> None:
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}
    assert anthropic.audit_body(body) == [StreamFailed(message="invalid_request_error: max_tokens: too large")]
    assert anthropic.audit_body([1, 2]) == [StreamFailed(message="upstream reply is not a JSON object")]


# -- request translation ----------------------------------------------------------------------------


def test_request_bytes_go_upstream_unchanged_with_the_prompt() -> None:
    raw = (b'{"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": true, "x_unknown": 0,\n'
           b' "messages": [{"role": "user", "content": [{"type": "text", "text": "ctx", "cache_control": {"type": "ephemeral"}},'
           b' {"type": "text", "text": "fix the flaky test"}]}]}')
    t = anthropic.translate_request(raw, orjson.loads(raw))
    assert t.body is raw
    assert (t.model, t.streaming, t.prompt, t.rewritten) == ("claude-sonnet-4-5", True, "fix the flaky test", ())


def test_tool_result_turn_has_no_prompt() -> None:
    body = {"model": "m", "messages": [
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ls", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a.py"}]},
    ]}
    assert anthropic.translate_request(orjson.dumps(body), body).prompt is None


@pytest.mark.parametrize(
    "body",
    [
        {"messages": []},
        {"model": 7, "messages": []},
        {"model": "", "messages": []},
        {"model": "m"},
        {"model": "m", "messages": {"role": "user"}},
        {"model": "m", "messages": [], "stream": "true"},
        {"model": "m", "messages": [], "stream": 1},
    ],
    ids=["no model", "model int", "model empty", "no messages", "messages object", "stream string", "stream int"],
)
def test_wrong_types_are_client_errors(body: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as info:
        anthropic.translate_request(orjson.dumps(body), body)
    assert info.value.status == 400


@given(S.json_objects, st.booleans())
def test_translation_never_changes_the_body(extra: dict[str, Any], stream: bool) -> None:
    body = {**extra, "model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    raw = orjson.dumps(body, option=orjson.OPT_INDENT_2)
    assert anthropic.translate_request(raw, body).body == raw
