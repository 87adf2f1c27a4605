"""OpenAI Responses: request translation, the stream handler and blocking replies.

Streams are built here with the project's own data in the shape OpenAI
documents (https://platform.openai.com/docs/api-reference/responses-streaming).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aibridge.core.errors import ClientError
from aibridge.core.model import (
    InterceptionNoted,
    ResponseIdentified,
    StreamFailed,
    ThoughtRecorded,
    TokenUsage,
    ToolCall,
    ToolCallMade,
    UsageReported,
)
from aibridge.core.providers import openai_responses as responses
from tests import strategies as S
from tests.core.tapping import run_tap, sse

RESP = "resp_aib_7f3a"
USAGE = {
    "input_tokens": 1_250,
    "input_tokens_details": {"cached_tokens": 1_024},
    "output_tokens": 77,
    "output_tokens_details": {"reasoning_tokens": 40},
    "total_tokens": 1_327,
}
RECORDED_USAGE = TokenUsage(
    provider_response_id=RESP, input_tokens=226, output_tokens=77, cache_read_input_tokens=1_024, reasoning_tokens=40
)


def ev(payload: dict[str, Any]) -> bytes:
    return sse(payload, payload["type"])


def created() -> bytes:
    return ev({"type": "response.created", "sequence_number": 0,
               "response": {"id": RESP, "object": "response", "status": "in_progress", "output": [], "usage": None}})


def terminal(kind: str = "completed", *, output: list[Any] | None = None, usage: Any = USAGE,
             **extra: Any) -> bytes:
    return ev({"type": f"response.{kind}", "sequence_number": 99,
               "response": {"id": RESP, "object": "response", "status": kind, "output": output or [],
                            "usage": usage, **extra}})


def fn_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def added(item: dict[str, Any], index: int = 0) -> bytes:
    return ev({"type": "response.output_item.added", "output_index": index, "item": item})


def done(item: dict[str, Any], index: int = 0) -> bytes:
    return ev({"type": "response.output_item.done", "output_index": index, "item": item})


def args_delta(item_id: str, fragment: str) -> bytes:
    return ev({"type": "response.function_call_arguments.delta", "item_id": item_id, "delta": fragment})


def args_done(item_id: str, arguments: str) -> bytes:
    return ev({"type": "response.function_call_arguments.done", "item_id": item_id, "arguments": arguments})


def call(call_id: str, tool: str, args: str) -> ToolCallMade:
    return ToolCallMade(call=ToolCall(provider_response_id=RESP, tool_call_id=call_id, tool=tool, input=args))


def audit(*frames: bytes) -> list[Any]:
    body = b"".join(frames)
    out, events = run_tap(responses.StreamHandler(), [body])
    assert out == body
    return events


# -- requests ----------------------------------------------------------------------------


def test_request_bytes_go_upstream_untouched() -> None:
    raw = b'{"model":"gpt-5-codex","input":"rename foo","stream":true,"store":false,"x_vendor":{"k":0}}'
    t = responses.translate_request(raw, orjson.loads(raw))
    assert (t.body, t.model, t.streaming, t.prompt, t.rewritten) == (raw, "gpt-5-codex", True, "rename foo", ())


@pytest.mark.parametrize(
    ("inp", "prompt"),
    [
        ("fix the flaky test", "fix the flaky test"),
        ([{"role": "user", "content": "plain string content"}], "plain string content"),
        ([{"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "first line"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
            {"type": "input_text", "text": "second line"}]}], "first line\nsecond line"),
        # only the last item counts: earlier user items were recorded by earlier turns
        ([{"role": "user", "content": "old question"},
          {"type": "function_call", "call_id": "call_q1", "name": "grep", "arguments": "{}"},
          {"type": "function_call_output", "call_id": "call_q1", "output": "src/x.py"},
          {"role": "user", "content": [{"type": "input_text", "text": "now port it to rust"}]}], "now port it to rust"),
        # a turn that only returns tool output records no prompt
        ([{"role": "user", "content": "list files"},
          {"type": "function_call_output", "call_id": "call_q2", "output": "a b c"}], None),
        ([{"type": "custom_tool_call_output", "call_id": "call_q3", "output": "ok"}], None),
        ([{"role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}], None),
        ([{"role": "developer", "content": "be terse"}], None),
        ([{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}], None),
        ([], None),
    ],
)
def test_prompt_is_the_string_input_or_the_last_user_item(inp: Any, prompt: str | None) -> None:
    body = {"model": "gpt-5", "input": inp}
    assert responses.translate_request(orjson.dumps(body), body).prompt == prompt


def test_chaining_and_background_fields_are_noted() -> None:
    body = {"model": "gpt-5", "input": "go on", "background": True, "previous_response_id": "resp_prev_11",
            "conversation": {"id": "conv_aib_2"}}
    assert responses.translate_request(orjson.dumps(body), body).metadata == {
        "background": True, "previous_response_id": "resp_prev_11", "conversation": "conv_aib_2"}
    body = {"model": "gpt-5", "input": "go on", "background": False, "conversation": "conv_aib_3"}
    assert responses.translate_request(orjson.dumps(body), body).metadata == {"conversation": "conv_aib_3"}


@pytest.mark.parametrize("body", [{"input": "x"}, {"model": "", "input": "x"}, {"model": "gpt-5", "stream": "yes"}])
def test_request_without_a_usable_model_or_stream_flag_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ClientError):
        responses.translate_request(orjson.dumps(body), body)


# -- streams ---------------------------------------------------------------------------


def test_text_stream_reports_id_then_usage() -> None:
    msg = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
           "content": [{"type": "output_text", "text": "done", "annotations": []}]}
    events = audit(created(), added({**msg, "content": [], "status": "in_progress"}),
                   ev({"type": "response.output_text.delta", "item_id": "msg_1", "delta": "done"}),
                   done(msg), terminal(output=[msg]))
    assert events == [ResponseIdentified(provider_response_id=RESP), UsageReported(usage=RECORDED_USAGE)]


def test_function_call_done_event_wins_over_deltas_and_item_wins_over_both() -> None:
    events = audit(
        created(),
        added(fn_item("fc_a", "call_a", "read_file", "", "in_progress")),
        args_delta("fc_a", '{"path":'), args_delta("fc_a", '"READ'),
        args_done("fc_a", '{"path":"README.md"}'),
        done(fn_item("fc_a", "call_a", "read_file", "")),  # an empty final item keeps the done value
        added(fn_item("fc_b", "call_b", "write_file", "", "in_progress"), 1),
        args_delta("fc_b", '{"pa'),
        args_done("fc_b", '{"path":"stale"}'),
        done(fn_item("fc_b", "call_b", "write_file", '{"path":"NEWS.md"}'), 1),
        terminal(),
    )
    assert events[1:3] == [call("call_a", "read_file", '{"path":"README.md"}'),
                           call("call_b", "write_file", '{"path":"NEWS.md"}')]


def test_arguments_only_in_done_events() -> None:
    events = audit(created(), added(fn_item("fc_1", "call_mul", "mul", "", "in_progress")),
                   args_done("fc_1", '{"x":6,"y":7}'), done(fn_item("fc_1", "call_mul", "mul", '{"x":6,"y":7}')),
                   terminal(output=[fn_item("fc_1", "call_mul", "mul", '{"x":6,"y":7}')]))
    assert events == [ResponseIdentified(provider_response_id=RESP), call("call_mul", "mul", '{"x":6,"y":7}'),
                      UsageReported(usage=RECORDED_USAGE)]


def test_zero_argument_call_records_empty_object() -> None:
    events = audit(created(), added(fn_item("fc_0", "call_now", "now", "", "in_progress")),
                   done(fn_item("fc_0", "call_now", "now", "")), terminal())
    assert call("call_now", "now", "{}") in events


def test_custom_tool_call_input_is_recorded_as_a_json_string() -> None:
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n"
    item = {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_patch", "name": "apply_patch", "input": ""}
    events = audit(
        created(), added(item),
        ev({"type": "response.custom_tool_call_input.delta", "item_id": "ctc_1", "delta": patch[:20]}),
        ev({"type": "response.custom_tool_call_input.delta", "item_id": "ctc_1", "delta": patch[20:]}),
        ev({"type": "response.custom_tool_call_input.done", "item_id": "ctc_1", "input": patch}),
        done({**item, "input": patch}), terminal(),
    )
    recorded = [e for e in events if isinstance(e, ToolCallMade)]
    assert recorded == [call("call_patch", "apply_patch", orjson.dumps(patch).decode())]
    assert orjson.loads(recorded[0].call.input) == patch


def test_custom_tool_call_from_deltas_only_when_stream_is_cut() -> None:
    item = {"type": "custom_tool_call", "id": "ctc_2", "call_id": "call_sql", "name": "sql", "input": ""}
    events = audit(created(), added(item),
                   ev({"type": "response.custom_tool_call_input.delta", "item_id": "ctc_2", "delta": "SELECT 1"}))
    assert events[-1] == call("call_sql", "sql", '"SELECT 1"')


def test_parallel_calls_are_each_recorded_once_in_order() -> None:
    one, two = fn_item("fc_p1", "call_p1", "add", '{"a":2,"b":2}'), fn_item("fc_p2", "call_p2", "add", '{"a":9,"b":1}')
    events = audit(created(), added({**one, "arguments": ""}), added({**two, "arguments": ""}, 1),
                   args_delta("fc_p2", '{"a":9,"b":1}'), args_delta("fc_p1", '{"a":2,"b":2}'),
                   done(one), done(two, 1), terminal(output=[one, two]))
    assert [e for e in events if isinstance(e, ToolCallMade)] == [
        call("call_p1", "add", '{"a":2,"b":2}'), call("call_p2", "add", '{"a":9,"b":1}')]


def test_items_the_stream_never_finished_come_from_the_terminal_output() -> None:
    item = fn_item("fc_t", "call_t", "ls", '{"dir":"/srv"}')
    reasoning = {"type": "reasoning", "id": "rs_t", "summary": [{"type": "summary_text", "text": "List it."}]}
    events = audit(created(), added({**item, "arguments": ""}), terminal(output=[reasoning, item]))
    assert events == [ResponseIdentified(provider_response_id=RESP),
                      ThoughtRecorded(content="List it.", source="reasoning_summary"),
                      call("call_t", "ls", '{"dir":"/srv"}'), UsageReported(usage=RECORDED_USAGE)]


def test_reasoning_summaries_and_commentary_are_thoughts_final_answers_are_not() -> None:
    reasoning = {"type": "reasoning", "id": "rs_1", "encrypted_content": "gAAA", "summary": [
        {"type": "summary_text", "text": "**Planning** the rename."},
        {"type": "summary_text", "text": "Check the callers first."}]}
    commentary = {"type": "message", "id": "msg_c", "role": "assistant", "phase": "commentary",
                  "content": [{"type": "output_text", "text": "Looking at the callers now.", "annotations": []}]}
    final = {"type": "message", "id": "msg_f", "role": "assistant", "phase": "final_answer",
             "content": [{"type": "output_text", "text": "Renamed.", "annotations": []}]}
    events = audit(created(), done(reasoning), done(commentary, 1), done(final, 2),
                   terminal(output=[reasoning, commentary, final]))
    assert [e for e in events if isinstance(e, ThoughtRecorded)] == [
        ThoughtRecorded(content="**Planning** the rename.", source="reasoning_summary"),
        ThoughtRecorded(content="Check the callers first.", source="reasoning_summary"),
        ThoughtRecorded(content="Looking at the callers now.", source="commentary"),
    ]


def test_streamed_summary_text_counts_when_the_item_carries_none() -> None:
    events = audit(
        created(),
        ev({"type": "response.reasoning_summary_text.done", "item_id": "rs_s", "summary_index": 1, "text": "Second."}),
        ev({"type": "response.reasoning_summary_text.done", "item_id": "rs_s", "summary_index": 0, "text": "First."}),
        done({"type": "reasoning", "id": "rs_s", "summary": []}),
        terminal(),
    )
    assert [e for e in events if isinstance(e, ThoughtRecorded)] == [
        ThoughtRecorded(content="First.", source="reasoning_summary"),
        ThoughtRecorded(content="Second.", source="reasoning_summary")]


def test_incomplete_keeps_usage_and_notes_the_reason() -> None:
    events = audit(created(), terminal("incomplete", incomplete_details={"reason": "max_output_tokens"}))
    assert events[1:] == [UsageReported(usage=RECORDED_USAGE),
                          InterceptionNoted(metadata={"incomplete_reason": "max_output_tokens"})]


def test_failed_with_null_usage_invents_no_usage() -> None:
    events = audit(created(), terminal("failed", usage=None, error={"code": "server_error", "message": "Boom."}))
    assert events == [ResponseIdentified(provider_response_id=RESP), StreamFailed(message="server_error: Boom.")]


def test_failed_with_usage_records_it() -> None:
    events = audit(created(), terminal("failed", error={"code": "server_error", "message": "Boom."}))
    assert events[1:] == [UsageReported(usage=RECORDED_USAGE), StreamFailed(message="server_error: Boom.")]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"type": "error", "code": "rate_limit_exceeded", "message": "Slow down.", "param": None}, "rate_limit_exceeded: Slow down."),
        ({"type": "error", "error": {"type": "invalid_request_error", "code": None, "message": "No such conversation."}},
         "invalid_request_error: No such conversation."),
        ({"type": "error"}, '{"type":"error"}'),
    ],
)
def test_error_events_fail_the_stream(payload: dict[str, Any], message: str) -> None:
    assert audit(created(), ev(payload))[-1] == StreamFailed(message=message)


def test_malformed_event_data_fails_the_stream_and_is_relayed() -> None:
    events = audit(created(), b"event: response.output_text.delta\ndata: {not json\n\n", terminal())
    assert [type(e) for e in events] == [ResponseIdentified, StreamFailed, UsageReported]


def test_unknown_events_and_items_are_ignored() -> None:
    odd = {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"query": "trio"}}
    events = audit(created(), ev({"type": "response.future_thing.delta", "item_id": "x", "delta": 3}),
                   added(odd), done(odd), sse(b"[1, 2]"), sse(b'"text"'), terminal(output=[odd]))
    assert events == [ResponseIdentified(provider_response_id=RESP), UsageReported(usage=RECORDED_USAGE)]


FULL_STREAM = b"".join([
    created(),
    done({"type": "reasoning", "id": "rs_9", "summary": [{"type": "summary_text", "text": "Think é 漢字."}]}),
    added(fn_item("fc_9", "call_9", "grep", "", "in_progress"), 1),
    args_delta("fc_9", '{"q":"é'), args_delta("fc_9", ' 漢字"}'),
    args_done("fc_9", '{"q":"é 漢字"}'),
    done(fn_item("fc_9", "call_9", "grep", '{"q":"é 漢字"}'), 1),
    terminal(),
])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_chunking_gives_the_same_bytes_and_events(data: st.DataObject) -> None:
    chunks = data.draw(S.chunkings(FULL_STREAM))
    assert run_tap(responses.StreamHandler(), chunks) == run_tap(responses.StreamHandler(), [FULL_STREAM])


# -- blocking replies ------------------------------------------------------------------------


def test_blocking_reply_with_thoughts_tools_and_usage() -> None:
    body = {"id": RESP, "object": "response", "status": "completed", "usage": USAGE, "output": [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Need the sum."}]},
        {"type": "message", "id": "msg_c", "role": "assistant", "phase": "commentary",
         "content": [{"type": "output_text", "text": "Adding."}]},
        fn_item("fc_1", "call_s1", "add", '{"a":1,"b":2}'),
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_s2", "name": "shell", "input": "ls -la"},
        {"type": "image_generation_call", "id": "ig_1", "status": "completed"},
    ]}
    assert responses.audit_body(body) == [
        ResponseIdentified(provider_response_id=RESP),
        ThoughtRecorded(content="Need the sum.", source="reasoning_summary"),
        ThoughtRecorded(content="Adding.", source="commentary"),
        call("call_s1", "add", '{"a":1,"b":2}'),
        call("call_s2", "shell", '"ls -la"'),
        UsageReported(usage=RECORDED_USAGE),
    ]


def test_blocking_incomplete_and_failed_and_background() -> None:
    base = {"id": RESP, "object": "response", "output": []}
    assert responses.audit_body({**base, "status": "incomplete", "usage": USAGE,
                                 "incomplete_details": {"reason": "content_filter"}})[1:] == [
        UsageReported(usage=RECORDED_USAGE), InterceptionNoted(metadata={"incomplete_reason": "content_filter"})]
    assert responses.audit_body({**base, "status": "failed", "usage": None,
                                 "error": {"code": "server_error", "message": "x"}})[1:] == [
        StreamFailed(message="server_error: x")]
    # background mode answers at once with a queued response and no usage yet
    assert responses.audit_body({**base, "status": "queued", "background": True, "usage": None}) == [
        ResponseIdentified(provider_response_id=RESP)]


def test_blocking_error_object_and_non_object() -> None:
    assert responses.audit_body({"error": {"message": "bad", "type": "invalid_request_error", "code": None}}) == [
        StreamFailed(message="invalid_request_error: bad")]
    assert responses.audit_body([1]) == [StreamFailed(message="upstream reply is not a JSON object")]


def test_items_without_ids_are_recorded_once_by_output_index() -> None:
    item = {"type": "function_call", "call_id": "call_noid", "name": "pwd", "arguments": "{}"}
    commentary = {"type": "message", "role": "assistant", "phase": "commentary",
                  "content": [{"type": "output_text", "text": "Checking."}]}
    events = audit(created(), done(commentary, 0), done(item, 1), terminal(output=[commentary, item]))
    assert events[1:] == [ThoughtRecorded(content="Checking.", source="commentary"), call("call_noid", "pwd", "{}"),
                          UsageReported(usage=RECORDED_USAGE)]
