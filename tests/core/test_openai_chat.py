"""OpenAI Chat Completions: the include_usage rewrite, the stream tap, blocking replies.

Chunks are built with the project's own data in the documented shape
(https://platform.openai.com/docs/api-reference/chat-streaming).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aibridge.core import jsonutil
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
from aibridge.core.providers import openai_chat
from tests import strategies as S
from tests.core.tapping import run_tap, sse

CHAT_ID = "chatcmpl-aibridgeTest7"
DONE = b"data: [DONE]\n\n"
USAGE = {"prompt_tokens": 812, "completion_tokens": 57, "total_tokens": 869,
         "prompt_tokens_details": {"cached_tokens": 768}, "completion_tokens_details": {"reasoning_tokens": 32}}


def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None, **extra: Any) -> bytes:
    return sse({"id": CHAT_ID, "object": "chat.completion.chunk", "created": 1_760_000_000, "model": "gpt-4.1",
                "choices": choices, "usage": usage, **extra})


def delta(d: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    return {"index": index, "delta": d, "finish_reason": finish}


def tool_delta(index: int, *, call_id: str | None = None, name: str | None = None, args: str = "") -> bytes:
    tc: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if call_id is not None:
        tc.update(id=call_id, type="function")
        tc["function"]["name"] = name
    return chunk([delta({"tool_calls": [tc]})])


USAGE_ONLY = chunk([], USAGE)
TEXT_STREAM = [
    chunk([delta({"role": "assistant", "content": ""})]),
    chunk([delta({"content": "Use "})]),
    chunk([delta({"content": "pathlib."})]),
    chunk([delta({}, "stop")]),
]


def usage_event(**kwargs: Any) -> UsageReported:
    return UsageReported(usage=TokenUsage(provider_response_id=CHAT_ID, **kwargs))


def call(call_id: str, name: str, args: str) -> ToolCallMade:
    return ToolCallMade(call=ToolCall(provider_response_id=CHAT_ID, tool_call_id=call_id, tool=name, input=args))


def tap(*frames: bytes, filtering: bool = False) -> tuple[bytes, list[Any]]:
    return run_tap(openai_chat.StreamHandler(), [b"".join(frames)], filtering=filtering,
                   is_terminator=openai_chat.is_done)


RECORDED_USAGE = usage_event(input_tokens=44, output_tokens=57, cache_read_input_tokens=768, reasoning_tokens=32)


# -- streams ------------------------------------------------------------------------------------------


def test_client_asked_for_usage_gets_every_byte() -> None:
    body = b"".join([*TEXT_STREAM, USAGE_ONLY, DONE])
    out, events = tap(body)
    assert out == body
    assert events == [ResponseIdentified(provider_response_id=CHAT_ID), RECORDED_USAGE]


def test_usage_chunk_the_bridge_asked_for_is_dropped_and_nothing_else() -> None:
    body = b"".join([*TEXT_STREAM, USAGE_ONLY, DONE])
    out, events = tap(body, filtering=True)
    assert out == b"".join([*TEXT_STREAM, DONE])
    assert events[-1] == RECORDED_USAGE


def test_usage_only_chunk_without_a_choices_key_is_dropped_too() -> None:
    usage_only = sse({"id": CHAT_ID, "object": "chat.completion.chunk", "usage": USAGE})
    out, events = tap(*TEXT_STREAM, usage_only, DONE, filtering=True)
    assert out == b"".join([*TEXT_STREAM, DONE])
    assert events[-1] == RECORDED_USAGE


def test_comments_and_blank_lines_around_the_dropped_chunk_are_kept_with_their_neighbours() -> None:
    body = b"".join(TEXT_STREAM) + b": processing\n\n" + USAGE_ONLY + DONE + b": trailing comment\n"
    out, _ = tap(body, filtering=True)
    # the comment block before the usage chunk travels with it (it is part of its raw bytes)
    assert out == b"".join(TEXT_STREAM) + DONE + b": trailing comment\n"


def test_dropping_does_not_depend_on_where_the_network_cut_a_crlf() -> None:
    # The parser dispatches on a CR at a chunk's end; the LF that follows in the
    # next chunk belongs with that event, whether it was released or dropped.
    body = b"".join([*TEXT_STREAM, USAGE_ONLY, DONE]).replace(b"\n", b"\r\n")
    expected = b"".join([*TEXT_STREAM, DONE]).replace(b"\n", b"\r\n")
    before_usage = body.index(USAGE_ONLY.replace(b"\n", b"\r\n"))
    for cut in (before_usage - 1, before_usage + len(USAGE_ONLY) + 1):  # between a CR and its LF
        assert body[cut - 1 : cut + 1] == b"\r\n"
        out, _ = run_tap(openai_chat.StreamHandler(), [body[:cut], body[cut:]], filtering=True,
                         is_terminator=openai_chat.is_done)
        assert out == expected, cut


def test_usage_on_a_chunk_that_still_has_choices_is_recorded_and_never_dropped() -> None:
    last = chunk([delta({}, "stop")], USAGE)
    body = b"".join([*TEXT_STREAM[:-1], last, DONE])
    out, events = tap(body, filtering=True)
    assert out == body
    assert events[-1] == RECORDED_USAGE


def test_parallel_tool_calls_keyed_by_index_not_starting_at_zero_and_interleaved() -> None:
    body = b"".join([
        chunk([delta({"role": "assistant", "content": None})]),
        tool_delta(2, call_id="call_weather", name="get_weather"),
        tool_delta(5, call_id="call_time", name="get_time"),
        tool_delta(2, args='{"city": '),
        tool_delta(5, args='{"tz": "Europe/Oslo"}'),
        tool_delta(2, args='"Bergen"}'),
        chunk([delta({}, "tool_calls")]),
        USAGE_ONLY,
        DONE,
    ])
    _, events = tap(body)
    assert [e for e in events if isinstance(e, ToolCallMade)] == [
        call("call_weather", "get_weather", '{"city": "Bergen"}'),
        call("call_time", "get_time", '{"tz": "Europe/Oslo"}'),
    ]


def test_whole_calls_reusing_index_zero_are_separate_calls() -> None:
    # Some OpenAI-compatible servers send each parallel call complete, all at index 0.
    body = b"".join([
        tool_delta(0, call_id="call_a", name="read", args='{"p": "a"}'),
        tool_delta(0, call_id="call_b", name="read", args='{"p": "b"}'),
        DONE,
    ])
    _, events = tap(body)
    assert [e for e in events if isinstance(e, ToolCallMade)] == [
        call("call_a", "read", '{"p": "a"}'),
        call("call_b", "read", '{"p": "b"}'),
    ]


def test_tool_with_no_arguments_records_an_empty_object() -> None:
    _, events = tap(tool_delta(0, call_id="call_now", name="now"), DONE)
    assert call("call_now", "now", "{}") in events


def test_reasoning_content_is_a_thought() -> None:
    _, events = tap(chunk([delta({"reasoning_content": "Compare "})]), chunk([delta({"reasoning_content": "both."})]), DONE)
    assert ThoughtRecorded(content="Compare both.", source="reasoning_content") in events


def test_mid_stream_error_fails_the_interception_and_is_relayed() -> None:
    error = sse({"error": {"message": "The server had an error processing your request.", "type": "server_error"}})
    body = b"".join([*TEXT_STREAM[:2], error])
    out, events = tap(body, filtering=True)
    assert out == body
    assert StreamFailed(message="The server had an error processing your request.") in events


def test_done_is_not_json_and_malformed_data_is_reported() -> None:
    out, events = tap(TEXT_STREAM[0], b"data: {\"id\": \n\n", DONE)
    assert [e for e in events if isinstance(e, StreamFailed)] == [StreamFailed(message='malformed event data: {"id":')]


@settings(max_examples=300)
@given(st.data())
def test_any_chunking_gives_the_same_events_and_bytes(data: st.DataObject) -> None:
    body = b"".join([
        *TEXT_STREAM[:2],
        tool_delta(1, call_id="call_x", name="grep"),
        tool_delta(1, args='{"q": "ünïcode ✓"}'),
        chunk([delta({}, "tool_calls")]),
        USAGE_ONLY,
        DONE,
    ]).replace(b"\n", data.draw(S.line_endings))
    filtering = data.draw(st.booleans())
    whole = run_tap(openai_chat.StreamHandler(), [body], filtering=filtering, is_terminator=openai_chat.is_done)
    chunks = data.draw(S.chunkings(body))
    assert run_tap(openai_chat.StreamHandler(), chunks, filtering=filtering, is_terminator=openai_chat.is_done) == whole


# -- blocking replies --------------------------------------------------------------------------------------


def test_blocking_reply_with_tool_calls_and_usage() -> None:
    reply = {
        "id": CHAT_ID, "object": "chat.completion", "model": "gpt-4.1",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "open_pr", "arguments": '{"title":"Fix CI"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "whoami", "arguments": ""}},
            ]}}],
        "usage": USAGE,
    }
    assert openai_chat.audit_body(reply) == [
        ResponseIdentified(provider_response_id=CHAT_ID),
        call("call_1", "open_pr", '{"title":"Fix CI"}'),
        call("call_2", "whoami", "{}"),
        RECORDED_USAGE,
    ]


def test_arguments_sent_as_an_object_are_recorded_as_json_text() -> None:
    # Some OpenAI-compatible servers send arguments unencoded.
    reply = {"id": CHAT_ID, "choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [
        {"id": "call_o", "type": "function", "function": {"name": "f", "arguments": {"k": [1, 2]}}}]}}]}
    assert call("call_o", "f", '{"k":[1,2]}') in openai_chat.audit_body(reply)
    _, events = tap(chunk([delta({"tool_calls": [{"index": 0, "id": "call_o", "function": {"name": "f", "arguments": {"k": 1}}}]})]), DONE)
    assert call("call_o", "f", '{"k":1}') in events


def test_blocking_error_body() -> None:
    body = {"error": {"message": "context_length_exceeded", "type": "invalid_request_error"}}
    assert openai_chat.audit_body(body) == [StreamFailed(message="context_length_exceeded")]


# -- request translation --------------------------------------------------------------------------------------

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "why is CI red?"}]}]


def translate(raw: bytes) -> Any:
    return openai_chat.translate_request(raw, jsonutil.loads(raw))


def test_blocking_request_is_unchanged() -> None:
    raw = json.dumps({"model": "gpt-4.1", "messages": MESSAGES, "temperature": 0}, indent=1).encode()
    t = translate(raw)
    assert (t.body, t.streaming, t.prompt, t.rewritten, t.drop_usage_only_chunks) == (raw, False, "why is CI red?", (), False)


def test_streaming_request_that_asks_for_usage_is_unchanged() -> None:
    raw = b'{"model":"gpt-4.1","messages":[],"stream":true,"stream_options":{"include_usage":true}}'
    t = translate(raw)
    assert (t.body, t.drop_usage_only_chunks) == (raw, False)


def test_streaming_request_gets_include_usage_spliced_into_its_own_bytes() -> None:
    # 1.0 stays 1.0, the 20-digit integer stays as written, the layout stays
    raw = b'{\n  "model": "gpt-4.1",\n  "messages": [],\n  "top_p": 1.0,\n  "seed": 12345678901234567890,\n  "stream": true\n}\n'
    t = translate(raw)
    assert t.body == (b'{\n  "model": "gpt-4.1",\n  "messages": [],\n  "top_p": 1.0,\n  "seed": 12345678901234567890,\n  "stream": true,'
                      b'"stream_options":{"include_usage":true}\n}\n')
    assert (t.rewritten, t.drop_usage_only_chunks) == (("stream_options.include_usage",), True)


def test_explicit_include_usage_false_becomes_true_and_other_options_survive() -> None:
    raw = b'{"model":"m","messages":[],"stream":true,"stream_options": {"include_obfuscation": false, "include_usage": false}, "n": 0}'
    t = translate(raw)
    assert t.body == b'{"model":"m","messages":[],"stream":true,"stream_options": {"include_obfuscation": false, "include_usage": true}, "n": 0}'
    assert t.drop_usage_only_chunks is True


def test_stream_options_null_is_replaced() -> None:
    t = translate(b'{"model":"m","messages":[],"stream":true,"stream_options":null}')
    assert t.body == b'{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}'


@pytest.mark.parametrize(
    "body",
    [
        {"messages": []},
        {"model": None, "messages": []},
        {"model": "gpt-4.1", "messages": "hello"},
        {"model": "gpt-4.1", "messages": [], "stream": "yes"},
        {"model": "gpt-4.1", "messages": [], "stream": 0},
    ],
    ids=["no model", "model null", "messages string", "stream string", "stream zero"],
)
def test_wrong_types_are_client_errors(body: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as info:
        openai_chat.translate_request(orjson.dumps(body), body)
    assert info.value.status == 400


options = st.none() | st.dictionaries(
    st.sampled_from(["include_usage", "include_obfuscation", "x_vendor"]), S.json_scalars, max_size=3
)


@given(S.json_objects, st.booleans(), st.just("absent") | options, st.sampled_from([None, 1, 2]))
def test_only_include_usage_ever_changes(
    extra: dict[str, Any], stream: bool, stream_options: Any, indent: int | None
) -> None:
    extra = {k: v for k, v in extra.items() if k not in ("model", "stream_options")}
    body = {"model": "gpt-4.1", **extra, "messages": MESSAGES, "stream": stream}
    if stream_options != "absent":
        body["stream_options"] = stream_options
    raw = json.dumps(body, indent=indent, ensure_ascii=False).encode()
    body = orjson.loads(raw)  # what the bridge parsed (duplicate keys already resolved)
    t = openai_chat.translate_request(raw, body)
    asked = isinstance(body.get("stream_options"), dict) and body["stream_options"].get("include_usage") is True
    if not stream or asked:
        assert t.body == raw and t.rewritten == ()
        return
    sent = orjson.loads(t.body)
    assert list(sent) == list(body) + ([] if "stream_options" in body else ["stream_options"])
    assert {k: v for k, v in sent.items() if k != "stream_options"} == {k: v for k, v in body.items() if k != "stream_options"}
    before = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
    assert sent["stream_options"] == {**before, "include_usage": True}
    assert list(sent["stream_options"]) == list({**before, "include_usage": True})
    if "stream_options" not in body:
        # the client's bytes, with one member inserted before the closing brace
        added = b',"stream_options":{"include_usage":true}'
        assert t.body.replace(added, b"", 1) == raw
