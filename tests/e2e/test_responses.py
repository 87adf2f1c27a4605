"""OpenAI Responses end to end: the real ``openai`` SDK through a real bridge to the fake upstream.

Each test states its own upstream bytes (the project's own data, in the shape
OpenAI documents) and checks what the client received byte for byte and what
was recorded, exactly. The Responses cases from real gateway bug reports are
here too, rewritten with this project's data.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson

from aibridge.fake.upstream import Reply
from tests.e2e.wire import (
    JSON,
    event,
    json_reply,
    post,
    prompts,
    stream_reply,
    tool_calls,
    usage_rows,
)
from tests.harness import Stack

RESPONSES = "/openai/v1/responses"
MODEL = "gpt-5-codex"
ADD_TOOL = {"type": "function", "name": "add", "description": "Add two integers.",
            "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                           "required": ["a", "b"], "additionalProperties": False}, "strict": True}
PATCH_TOOL = {"type": "custom", "name": "apply_patch", "description": "Apply a patch in the V4A format."}
PATCH = "*** Begin Patch\n*** Update File: src/app.py\n@@\n-print('hi')\n+print('hello')\n*** End Patch\n"


def client(stack: Stack, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/openai/v1", api_key=stack.key, max_retries=0,
                         default_headers=headers or None)


def usage(total_in: int, cached: int, out: int, reasoning: int = 0) -> dict[str, Any]:
    return {"input_tokens": total_in, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": total_in + out}


def response(resp_id: str, output: list[dict[str, Any]], use: dict[str, Any] | None, status: str = "completed",
             **extra: Any) -> dict[str, Any]:
    return {"id": resp_id, "object": "response", "created_at": 1_767_000_000, "status": status, "model": MODEL,
            "output": output, "usage": use, "error": None, "incomplete_details": None, **extra}


def ev(payload: dict[str, Any]) -> bytes:
    return event(payload["type"], payload)


def tool_stream(resp_id: str) -> bytes:
    """A reasoning summary, a commentary preamble, a function call and a custom tool call."""
    reasoning = {"type": "reasoning", "id": "rs_e2e", "summary": [
        {"type": "summary_text", "text": "Add first, then patch the greeting."}]}
    commentary = {"type": "message", "id": "msg_e2e_c", "role": "assistant", "status": "completed",
                  "phase": "commentary", "content": [{"type": "output_text", "text": "Adding, then patching.",
                                                      "annotations": []}]}
    fn = {"type": "function_call", "id": "fc_e2e", "call_id": "call_add_e2e", "name": "add",
          "arguments": '{"a":40,"b":2}', "status": "completed"}
    custom = {"type": "custom_tool_call", "id": "ctc_e2e", "call_id": "call_patch_e2e", "name": "apply_patch",
              "input": PATCH, "status": "completed"}
    output = [reasoning, commentary, fn, custom]
    seq = iter(range(100))
    frames = [
        ev({"type": "response.created", "sequence_number": next(seq),
            "response": response(resp_id, [], None, "in_progress")}),
        ev({"type": "response.output_item.added", "sequence_number": next(seq), "output_index": 0,
            "item": {**reasoning, "summary": []}}),
        ev({"type": "response.reasoning_summary_text.done", "sequence_number": next(seq), "item_id": "rs_e2e",
            "output_index": 0, "summary_index": 0, "text": reasoning["summary"][0]["text"]}),
        ev({"type": "response.output_item.done", "sequence_number": next(seq), "output_index": 0, "item": reasoning}),
        ev({"type": "response.output_item.done", "sequence_number": next(seq), "output_index": 1, "item": commentary}),
        ev({"type": "response.output_item.added", "sequence_number": next(seq), "output_index": 2,
            "item": {**fn, "arguments": "", "status": "in_progress"}}),
        ev({"type": "response.function_call_arguments.delta", "sequence_number": next(seq), "item_id": "fc_e2e",
            "output_index": 2, "delta": '{"a":40,'}),
        ev({"type": "response.function_call_arguments.delta", "sequence_number": next(seq), "item_id": "fc_e2e",
            "output_index": 2, "delta": '"b":2}'}),
        ev({"type": "response.function_call_arguments.done", "sequence_number": next(seq), "item_id": "fc_e2e",
            "output_index": 2, "arguments": '{"a":40,"b":2}'}),
        ev({"type": "response.output_item.done", "sequence_number": next(seq), "output_index": 2, "item": fn}),
        ev({"type": "response.output_item.added", "sequence_number": next(seq), "output_index": 3,
            "item": {**custom, "input": "", "status": "in_progress"}}),
        ev({"type": "response.custom_tool_call_input.delta", "sequence_number": next(seq), "item_id": "ctc_e2e",
            "output_index": 3, "delta": PATCH[:31]}),
        ev({"type": "response.custom_tool_call_input.delta", "sequence_number": next(seq), "item_id": "ctc_e2e",
            "output_index": 3, "delta": PATCH[31:]}),
        ev({"type": "response.custom_tool_call_input.done", "sequence_number": next(seq), "item_id": "ctc_e2e",
            "output_index": 3, "input": PATCH}),
        ev({"type": "response.output_item.done", "sequence_number": next(seq), "output_index": 3, "item": custom}),
        ev({"type": "response.completed", "sequence_number": next(seq),
            "response": response(resp_id, output, usage(5_120, 4_608, 260, 128))}),
    ]
    return b"".join(frames)


def assert_tool_turn_recorded(
    item: dict[str, Any], resp_id: str, *, streaming: bool, prompt: str = "add 40 and 2, then fix the greeting"
) -> None:
    assert (item["status"], item["upstream_status"], item["streaming"]) == ("completed", 200, streaming)
    assert (item["provider"], item["api"], item["model"], item["client"]) == ("openai", "responses", MODEL,
                                                                            "OpenAI SDK")
    assert prompts(item) == [prompt]
    assert usage_rows(item) == [{"provider_response_id": resp_id, "input": 512, "cache_read": 4_608,
                                 "cache_write": 0, "output": 260, "reasoning": 128}]
    assert tool_calls(item) == [("add", "call_add_e2e", {"a": 40, "b": 2}),
                                ("apply_patch", "call_patch_e2e", PATCH)]
    assert [t["provider_response_id"] for t in item["tool_usages"]] == [resp_id, resp_id]
    assert [(t["content"], t["source"]) for t in item["model_thoughts"]] == [
        ("Add first, then patch the greeting.", "reasoning_summary"), ("Adding, then patching.", "commentary")]


def test_sdk_streaming_with_function_and_custom_tools(stack: Stack) -> None:
    body = tool_stream("resp_e2e_stream")
    stack.script(stream_reply(body, write_size=97), stream_reply(body, write_size=13))
    sdk = client(stack)
    kwargs: dict[str, Any] = {"model": MODEL, "input": "add 40 and 2, then fix the greeting",
                              "tools": [ADD_TOOL, PATCH_TOOL], "stream": True}
    with sdk.responses.with_streaming_response.create(**kwargs) as raw:
        received = b"".join(raw.iter_bytes())
    assert received == body
    with sdk.responses.create(**kwargs) as stream:
        events = list(stream)
    final = events[-1].response
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call", "custom_tool_call"]
    first, second = stack.interceptions()
    for item in (first, second):
        assert_tool_turn_recorded(item, "resp_e2e_stream", streaming=True)
    # the client's bytes went upstream unchanged
    sent = stack.fake.last
    assert sent.path == "/v1/responses"
    assert orjson.loads(sent.body)["tools"] == [ADD_TOOL, PATCH_TOOL]


def test_sdk_blocking_with_function_and_custom_tools(stack: Stack) -> None:
    output = [
        {"type": "reasoning", "id": "rs_b", "summary": [{"type": "summary_text", "text": "Add first, then patch the greeting."}]},
        {"type": "message", "id": "msg_b", "role": "assistant", "status": "completed", "phase": "commentary",
         "content": [{"type": "output_text", "text": "Adding, then patching.", "annotations": []}]},
        {"type": "function_call", "id": "fc_b", "call_id": "call_add_e2e", "name": "add",
         "arguments": '{"a":40,"b":2}', "status": "completed"},
        {"type": "custom_tool_call", "id": "ctc_b", "call_id": "call_patch_e2e", "name": "apply_patch",
         "input": PATCH, "status": "completed"},
    ]
    upstream = orjson.dumps(response("resp_e2e_block", output, usage(5_120, 4_608, 260, 128)))
    stack.script(Reply(headers=JSON, body=upstream))
    raw = client(stack).responses.with_raw_response.create(
        model=MODEL, input=[{"role": "user", "content": [{"type": "input_text", "text": "add 40 and 2, then fix"},
                                                         {"type": "input_text", "text": "the greeting"}]}],
        tools=[ADD_TOOL, PATCH_TOOL])
    assert raw.http_response.content == upstream
    parsed = raw.parse()
    assert parsed.output[3].type == "custom_tool_call"
    item = stack.only_interception()
    assert raw.headers["x-aibridge-interception-id"] == item["id"]
    assert_tool_turn_recorded(item, "resp_e2e_block", streaming=False, prompt="add 40 and 2, then fix\nthe greeting")


# -- the cases, in this project's data -------------------------------------------------------


def test_case_blocking_cached_tokens_are_split_out_of_input(stack: Stack) -> None:
    upstream = orjson.dumps(response("resp_own_cache", [
        {"type": "message", "id": "msg_c1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "ok", "annotations": []}]}], usage(9_000, 8_704, 510, 320)))
    stack.script(Reply(headers=JSON, body=upstream))
    reply = post(stack, RESPONSES, {"model": MODEL, "input": "ping the build"})
    assert (reply.status_code, reply.content) == (200, upstream)
    item = stack.only_interception()
    assert usage_rows(item) == [{"provider_response_id": "resp_own_cache", "input": 296, "cache_read": 8_704,
                                 "cache_write": 0, "output": 510, "reasoning": 320}]
    assert prompts(item) == ["ping the build"]


def test_case_failed_with_null_usage_records_no_usage_and_fails(stack: Stack) -> None:
    upstream = ev({"type": "response.created", "sequence_number": 0,
                   "response": response("resp_own_fail", [], None, "in_progress")}) + ev(
        {"type": "response.failed", "sequence_number": 1,
         "response": response("resp_own_fail", [], None, "failed",
                              error={"code": "server_error", "message": "Upstream model crashed."})})
    stack.script(stream_reply(upstream))
    reply = post(stack, RESPONSES, {"model": MODEL, "input": "summarise", "stream": True})
    assert (reply.status_code, reply.content) == (200, upstream)
    item = stack.only_interception()
    assert (item["status"], item["error"], item["token_usages"]) == (
        "failed", "server_error: Upstream model crashed.", [])
    assert prompts(item) == ["summarise"]


def test_case_incomplete_keeps_usage_and_ends_completed(stack: Stack) -> None:
    upstream = b"".join([
        ev({"type": "response.created", "sequence_number": 0,
            "response": response("resp_own_inc", [], None, "in_progress")}),
        ev({"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_i", "output_index": 0,
            "content_index": 0, "delta": "The first half of"}),
        ev({"type": "response.incomplete", "sequence_number": 2, "response": response(
            "resp_own_inc", [], usage(64, 0, 24), "incomplete", incomplete_details={"reason": "max_output_tokens"})}),
    ])
    stack.script(stream_reply(upstream, write_size=50))
    reply = post(stack, RESPONSES, {"model": MODEL, "input": "write an essay", "stream": True,
                                    "max_output_tokens": 24})
    assert reply.content == upstream
    item = stack.only_interception()
    assert (item["status"], item["error"]) == ("completed", None)
    assert item["metadata"] == {"incomplete_reason": "max_output_tokens"}
    assert usage_rows(item) == [{"provider_response_id": "resp_own_inc", "input": 64, "cache_read": 0,
                                 "cache_write": 0, "output": 24, "reasoning": 0}]


def test_case_arguments_only_in_done_events(stack: Stack) -> None:
    fn = {"type": "function_call", "id": "fc_own", "call_id": "call_own_mul", "name": "mul",
          "arguments": '{"x":6,"y":7}', "status": "completed"}
    upstream = b"".join([
        ev({"type": "response.created", "sequence_number": 0,
            "response": response("resp_own_done", [], None, "in_progress")}),
        ev({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
            "item": {**fn, "arguments": "", "status": "in_progress"}}),
        ev({"type": "response.function_call_arguments.done", "sequence_number": 2, "item_id": "fc_own",
            "output_index": 0, "arguments": fn["arguments"]}),
        ev({"type": "response.output_item.done", "sequence_number": 3, "output_index": 0, "item": fn}),
        ev({"type": "response.completed", "sequence_number": 4,
            "response": response("resp_own_done", [fn], usage(71, 0, 15))}),
    ])
    stack.script(stream_reply(upstream))
    reply = post(stack, RESPONSES, {"model": MODEL, "input": "multiply 6 by 7", "stream": True,
                                    "tools": [{"type": "function", "name": "mul", "parameters": {"type": "object"}}]})
    assert reply.content == upstream
    item = stack.only_interception()
    assert tool_calls(item) == [("mul", "call_own_mul", {"x": 6, "y": 7})]
    assert usage_rows(item)[0]["input"] == 71 and usage_rows(item)[0]["output"] == 15
    assert prompts(item) == ["multiply 6 by 7"]


def test_case_only_the_last_input_item_is_the_prompt(stack: Stack) -> None:
    stack.script(json_reply(response("resp_own_last", [], usage(44, 0, 3))))
    post(stack, RESPONSES, {"model": MODEL, "input": [
        {"role": "user", "content": "hello"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi!"}]},
        {"type": "function_call", "call_id": "call_own_cat", "name": "cat", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_own_cat", "output": "README"},
        {"role": "user", "content": [{"type": "input_text", "text": "now add a changelog"}]},
    ]})
    item = stack.only_interception()
    assert prompts(item) == ["now add a changelog"]
    assert item["correlating_tool_call_id"] is None


# -- errors ------------------------------------------------------------------------------------


def test_error_event_mid_stream_is_relayed_and_fails(stack: Stack) -> None:
    upstream = b"".join([
        ev({"type": "response.created", "sequence_number": 0,
            "response": response("resp_own_err", [], None, "in_progress")}),
        ev({"type": "response.output_text.delta", "sequence_number": 1, "item_id": "m", "output_index": 0,
            "content_index": 0, "delta": "Hel"}),
        ev({"type": "error", "sequence_number": 2, "code": "server_is_overloaded",
            "message": "Try again shortly.", "param": None}),
    ])
    stack.script(stream_reply(upstream))
    reply = post(stack, RESPONSES, {"model": MODEL, "input": "hi", "stream": True})
    assert (reply.status_code, reply.content) == (200, upstream)
    item = stack.only_interception()
    assert (item["status"], item["error"], item["token_usages"]) == (
        "failed", "server_is_overloaded: Try again shortly.", [])


def test_blocking_reply_that_is_not_json_is_relayed_as_is_and_fails(stack: Stack) -> None:
    upstream = b'{"id": "resp_own_bad", "object": "response", "output": [,]'
    stack.script(Reply(headers=JSON, body=upstream))
    reply = post(stack, RESPONSES, {"model": MODEL, "input": "hi"})
    assert (reply.status_code, reply.content) == (200, upstream)
    item = stack.only_interception()
    assert (item["status"], item["upstream_status"], item["error"]) == ("failed", 200, "upstream reply is not valid JSON")


def test_upstream_error_status_reaches_the_sdk(stack: Stack) -> None:
    body = {"error": {"message": "Rate limit reached for gpt-5-codex.", "type": "rate_limit_error",
                      "param": None, "code": "rate_limit_exceeded"}}
    stack.script(json_reply(body, status=429, headers=(("retry-after", "7"), ("x-request-id", "req_own_1"))))
    try:
        client(stack).responses.create(model=MODEL, input="hi")
    except openai.RateLimitError as exc:
        assert exc.response.headers["retry-after"] == "7"
        assert exc.body == body["error"]
    else:  # pragma: no cover - the bridge must not swallow the 429
        raise AssertionError("expected a RateLimitError")
    item = stack.only_interception()
    assert (item["status"], item["upstream_status"], item["error"]) == (
        "failed", 429, "Rate limit reached for gpt-5-codex.")


# -- background mode and passthrough routes ------------------------------------------------------


def test_background_request_is_recorded_without_usage_and_later_reads_pass_through(stack: Stack) -> None:
    queued = orjson.dumps(response("resp_own_bg", [], None, "queued", background=True))
    done = orjson.dumps(response("resp_own_bg", [
        {"type": "message", "id": "m_bg", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Long answer.", "annotations": []}]}],
        usage(1_000, 0, 2_000), background=True))
    stack.script(Reply(headers=JSON, body=queued), Reply(headers=JSON, body=done))
    sdk = client(stack)
    started = sdk.responses.create(model=MODEL, input="think hard about this", background=True)
    assert started.status == "queued"
    polled = sdk.responses.retrieve("resp_own_bg")
    assert polled.status == "completed"
    assert (stack.fake.last.method, stack.fake.last.path) == ("GET", "/v1/responses/resp_own_bg")
    item = stack.only_interception()  # the poll is a passthrough: not an interception
    assert (item["status"], item["token_usages"], item["metadata"]) == ("completed", [], {"background": True})
    assert prompts(item) == ["think hard about this"]


def test_passthrough_routes_reach_upstream_unrecorded(stack: Stack) -> None:
    sdk = client(stack)
    deleted = orjson.dumps({"id": "resp_own_p", "object": "response", "deleted": True})
    cancelled = orjson.dumps(response("resp_own_p", [], None, "cancelled", background=True))
    items = orjson.dumps({"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False})
    conv = orjson.dumps({"id": "conv_own_1", "object": "conversation", "created_at": 1, "metadata": {}})
    conv_deleted = orjson.dumps({"id": "conv_own_1", "object": "conversation.deleted", "deleted": True})
    stack.script(*(Reply(headers=JSON, body=b) for b in (deleted, cancelled, items, conv, conv, items, conv_deleted)))
    sdk.responses.delete("resp_own_p")
    assert sdk.responses.cancel("resp_own_p").status == "cancelled"
    assert list(sdk.responses.input_items.list("resp_own_p", limit=5, order="asc")) == []
    assert sdk.conversations.create(metadata={}).id == "conv_own_1"
    assert sdk.conversations.retrieve("conv_own_1").id == "conv_own_1"
    assert list(sdk.conversations.items.list("conv_own_1")) == []
    sdk.conversations.delete("conv_own_1")
    seen = [(r.method, r.path, r.query) for r in stack.fake.requests]
    assert seen == [
        ("DELETE", "/v1/responses/resp_own_p", ""),
        ("POST", "/v1/responses/resp_own_p/cancel", ""),
        ("GET", "/v1/responses/resp_own_p/input_items", "limit=5&order=asc"),
        ("POST", "/v1/conversations", ""),
        ("GET", "/v1/conversations/conv_own_1", ""),
        ("GET", "/v1/conversations/conv_own_1/items", ""),
        ("DELETE", "/v1/conversations/conv_own_1", ""),
    ]
    assert all(r.headers["authorization"] == "Bearer sk-openai-central-0123456789" for r in stack.fake.requests)
    assert stack.interceptions() == []
    # and a passthrough needs an aibridge key like everything else
    assert httpx.get(stack.url + "/openai/v1/responses/resp_own_p").status_code == 401


def test_unsupported_responses_subroute_is_404(stack: Stack) -> None:
    reply = httpx.post(stack.url + "/openai/v1/responses/resp_x/fork", headers={"authorization": f"Bearer {stack.key}"})
    assert reply.status_code == 404
    assert reply.json()["error"]["message"] == "route not supported: POST /openai/v1/responses/resp_x/fork"
