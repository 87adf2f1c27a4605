"""Anthropic Messages cases from real gateway bug reports, in this project's own data.

Each test names the situation, drives it through the real bridge against the
fake upstream, and checks exactly what the client saw, what upstream received
and what was recorded.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import orjson
import pytest

from aibridge.fake.upstream import Reply
from tests.e2e.wire import event, json_reply, post, prompts, stream_reply, tool_calls, usage_rows
from tests.harness import Stack

MESSAGES = "/anthropic/v1/messages"
MODEL = "claude-opus-4-1"


def message_start(msg_id: str, usage: dict[str, Any]) -> bytes:
    return event("message_start", {"type": "message_start", "message": {
        "id": msg_id, "type": "message", "role": "assistant", "model": MODEL, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": usage}})


def text_block(index: int, *pieces: str) -> bytes:
    out = event("content_block_start", {"type": "content_block_start", "index": index,
                                         "content_block": {"type": "text", "text": ""}})
    for piece in pieces:
        out += event("content_block_delta", {"type": "content_block_delta", "index": index,
                                              "delta": {"type": "text_delta", "text": piece}})
    return out + event("content_block_stop", {"type": "content_block_stop", "index": index})


def message_end(stop_reason: str, usage: dict[str, Any]) -> bytes:
    return event("message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                    "usage": usage}) + event("message_stop", {"type": "message_stop"})


def streaming_request(prompt: str) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 700, "stream": True,
            "messages": [{"role": "user", "content": prompt}]}


def message_object(msg_id: str, text: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": msg_id, "type": "message", "role": "assistant", "model": MODEL,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": usage}


def test_beta_and_version_headers_and_unknown_fields_reach_upstream_unchanged(stack: Stack) -> None:
    # Without the beta header upstream rejects beta-only fields such as context_management.
    body = orjson.dumps({
        "model": MODEL, "max_tokens": 128,
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919", "keep": {"type": "tool_uses", "value": 2}}]},
        "messages": [{"role": "user", "content": "tidy the old tool output"}],
    })
    beta = "context-management-2025-06-27,fine-grained-tool-streaming-2025-05-14"
    stack.script(json_reply(message_object("msg_beta_71", "tidied", {"input_tokens": 14, "output_tokens": 3})))
    reply = post(stack, MESSAGES, body, headers={"anthropic-version": "2023-06-01", "anthropic-beta": beta})
    assert reply.status_code == 200
    sent = stack.fake.last
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == beta
    assert sent.body == body
    assert sent.path == "/v1/messages"


def test_blocking_cache_buckets_are_disjoint(stack: Stack) -> None:
    # Anthropic's input_tokens already excludes cache reads and writes: store them as they are.
    stack.script(json_reply(message_object("msg_cache_204", "one two three", {
        "input_tokens": 7, "cache_creation_input_tokens": 20480, "cache_read_input_tokens": 0,
        "output_tokens": 311})))
    client = anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key=stack.key, max_retries=0)
    reply = client.messages.create(model=MODEL, max_tokens=900, stream=False,
                                   messages=[{"role": "user", "content": "list three primes"}])
    assert reply.usage.cache_creation_input_tokens == 20480
    item = stack.only_interception()
    assert item["status"] == "completed"
    assert item["upstream_status"] == 200
    assert usage_rows(item) == [{"provider_response_id": "msg_cache_204", "input": 7, "cache_read": 0,
                                 "cache_write": 20480, "output": 311, "reasoning": 0}]
    assert prompts(item) == ["list three primes"]


def test_count_tokens_is_passed_through_with_its_query_and_not_recorded(stack: Stack) -> None:
    body = orjson.dumps({"model": MODEL, "system": "answer tersely",
                         "messages": [{"role": "user", "content": "how long is this?"}],
                         "tools": [{"name": "Glob", "input_schema": {"type": "object", "properties": {}}}]})
    upstream = b'{"input_tokens": 1337}'
    stack.script(Reply(headers=(("content-type", "application/json"),), body=upstream))
    reply = post(stack, MESSAGES + "/count_tokens?beta=true", body)
    assert reply.status_code == 200
    assert reply.content == upstream
    sent = stack.fake.last
    assert (sent.method, sent.path, sent.query) == ("POST", "/v1/messages/count_tokens", "beta=true")
    assert sent.body == body
    assert sent.headers["x-api-key"] == "sk-ant-central-0123456789"
    assert stack.interceptions() == []
    assert stack.count("interceptions") == 0


CUMULATIVE = [
    pytest.param(
        # message_delta repeats every field: it is a snapshot, not an increment
        {"input_tokens": 23, "cache_read_input_tokens": 4, "output_tokens": 1},
        {"input_tokens": 23, "cache_read_input_tokens": 4, "output_tokens": 37},
        {"input": 23, "cache_read": 4, "cache_write": 0, "output": 37},
        id="delta-repeats-all-fields",
    ),
    pytest.param(
        # message_start carries zeros; the real numbers only arrive in message_delta
        {"input_tokens": 0, "output_tokens": 0},
        {"input_tokens": 6150, "cache_creation_input_tokens": 6131, "output_tokens": 9},
        {"input": 6150, "cache_read": 0, "cache_write": 6131, "output": 9},
        id="start-zero-delta-has-input",
    ),
    pytest.param(
        # message_delta only carries output: the input from message_start stands
        {"input_tokens": 41, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1},
        {"output_tokens": 488},
        {"input": 41, "cache_read": 0, "cache_write": 0, "output": 488},
        id="delta-output-only",
    ),
]


@pytest.mark.parametrize(("start_usage", "delta_usage", "expected"), CUMULATIVE)
def test_streamed_usage_snapshots_are_folded_not_added(
    stack: Stack, start_usage: dict[str, Any], delta_usage: dict[str, Any], expected: dict[str, int]
) -> None:
    upstream = (message_start("msg_snap_9", start_usage) + text_block(0, "Alpha, ", "beta, ", "gamma.")
                + message_end("end_turn", delta_usage))
    stack.script(stream_reply(upstream))
    reply = post(stack, MESSAGES, streaming_request("name three greek letters"))
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/event-stream"
    assert reply.content == upstream
    item = stack.only_interception()
    assert item["status"] == "completed"
    assert usage_rows(item) == [{"provider_response_id": "msg_snap_9", "reasoning": 0, **expected}]
    assert prompts(item) == ["name three greek letters"]


def test_error_event_mid_stream_is_relayed_and_fails_the_interception(stack: Stack) -> None:
    upstream = (message_start("msg_mid_3", {"input_tokens": 58, "output_tokens": 1})
                + event("content_block_start", {"type": "content_block_start", "index": 0,
                                                 "content_block": {"type": "text", "text": ""}})
                + event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": {"type": "text_delta", "text": "Mercury, "}})
                + event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    stack.script(stream_reply(upstream))
    reply = post(stack, MESSAGES, streaming_request("list the planets"))
    assert reply.status_code == 200
    assert reply.content == upstream
    item = stack.only_interception()
    assert item["status"] == "failed"
    assert item["upstream_status"] == 200
    assert "overloaded_error" in item["error"]
    [row] = usage_rows(item)
    assert (row["provider_response_id"], row["input"], row["output"]) == ("msg_mid_3", 58, 1)


def test_error_before_the_stream_keeps_status_body_and_retry_headers(stack: Stack) -> None:
    upstream = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded right now"}}'
    stack.script(Reply(status=529, headers=(("content-type", "application/json"), ("retry-after", "11"),
                                            ("x-should-retry", "true"), ("request-id", "req_own_529"),
                                            ("anthropic-ratelimit-requests-remaining", "0")),
                       body=upstream))
    reply = post(stack, MESSAGES, streaming_request("are you there?"))
    assert reply.status_code == 529
    assert reply.content == upstream
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["retry-after"] == "11"
    assert reply.headers["x-should-retry"] == "true"
    assert reply.headers["request-id"] == "req_own_529"
    assert reply.headers["anthropic-ratelimit-requests-remaining"] == "0"
    item = stack.only_interception()
    assert (item["status"], item["upstream_status"]) == ("failed", 529)
    assert item["error"] == "Overloaded right now"
    assert item["token_usages"] == []


def test_error_before_the_stream_reaches_the_sdk_as_an_api_error(stack: Stack) -> None:
    stack.script(Reply(status=529, headers=(("content-type", "application/json"), ("retry-after", "2")),
                       body=b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'))
    client = anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key=stack.key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model=MODEL, max_tokens=10, stream=True,
                               messages=[{"role": "user", "content": "ping"}])
    assert info.value.status_code == 529
    assert info.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}


def test_streamed_tool_arguments_assemble_and_a_tool_without_deltas_gets_empty_object(stack: Stack) -> None:
    upstream = (
        message_start("msg_tools_12", {"input_tokens": 77, "output_tokens": 1})
        + event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_own_grep", "name": "Grep", "input": {}}})
        + event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "input_json_delta", "partial_json": '{"pattern": "TO'}})
        + event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "input_json_delta", "partial_json": 'DO", "path": "src/'}})
        + event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "input_json_delta", "partial_json": '"}'}})
        + event("content_block_stop", {"type": "content_block_stop", "index": 0})
        + event("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_own_status", "name": "GitStatus", "input": {}}})
        + event("content_block_stop", {"type": "content_block_stop", "index": 1})
        + message_end("tool_use", {"output_tokens": 64})
    )
    stack.script(stream_reply(upstream))
    client = anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key=stack.key, max_retries=0)
    with client.messages.stream(model=MODEL, max_tokens=500,
                                messages=[{"role": "user", "content": "find the todos"}]) as stream:
        final = stream.get_final_message()
    assert [(b.name, b.input) for b in final.content if b.type == "tool_use"] == [
        ("Grep", {"pattern": "TODO", "path": "src/"}), ("GitStatus", {})]
    item = stack.only_interception()
    assert tool_calls(item) == [
        ("Grep", "toolu_own_grep", {"pattern": "TODO", "path": "src/"}),
        ("GitStatus", "toolu_own_status", {}),
    ]
    assert all(t["provider_response_id"] == "msg_tools_12" and t["injected"] is False for t in item["tool_usages"])
    [row] = usage_rows(item)
    assert (row["input"], row["output"]) == (77, 64)


def test_a_turn_that_only_returns_tool_results_records_no_prompt(stack: Stack) -> None:
    stack.script(json_reply(message_object("msg_followup_5", "It lists two files.",
                                           {"input_tokens": 93, "output_tokens": 8})))
    request = {
        "model": MODEL, "max_tokens": 300,
        "messages": [
            {"role": "user", "content": "what is in the build dir?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_own_ls", "name": "LS", "input": {"path": "build"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_own_ls", "content": "app.js\napp.css"}]},
        ],
    }
    reply = post(stack, MESSAGES, request)
    assert reply.status_code == 200
    item = stack.only_interception()
    assert item["user_prompts"] == []
    [row] = usage_rows(item)
    assert (row["provider_response_id"], row["input"], row["output"]) == ("msg_followup_5", 93, 8)


def test_every_legal_sse_spelling_is_parsed_and_relayed_unchanged(stack: Stack) -> None:
    start = orjson.dumps({"type": "message_start", "message": {
        "id": "msg_sse_forms", "type": "message", "role": "assistant", "model": MODEL, "content": [],
        "usage": {"input_tokens": 31, "output_tokens": 1}}})
    upstream = (
        b"event:message_start\r\ndata:" + start + b"\r\n\r\n"  # no space after the colon, CRLF
        + b": keep this comment\r\n\r\n"  # a comment block
        # one JSON payload split over two data lines (joined with a newline), plus an id field
        + b'event: content_block_start\ndata: {"type":"content_block_start",\n'
        + b'data: "index":0,"content_block":{"type":"text","text":""}}\nid: 42\n\n'
        # lone CR line ends
        + b'event: content_block_delta\rdata: {"type":"content_block_delta","index":0,'
        + b'"delta":{"type":"text_delta","text":"salut"}}\r\r'
        # trailing spaces after the JSON
        + b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}    \n\n'
        + b'event: message_delta\ndata:{"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        + b'"usage":{"output_tokens":17}}\n\n'
        + b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    stack.script(stream_reply(upstream))
    reply = post(stack, MESSAGES, streaming_request("say hi in french"))
    assert reply.status_code == 200
    assert reply.content == upstream
    item = stack.only_interception()
    assert item["status"] == "completed"
    [row] = usage_rows(item)
    assert (row["provider_response_id"], row["input"], row["output"]) == ("msg_sse_forms", 31, 17)


def test_multibyte_text_split_one_byte_per_write_is_relayed_and_recorded_intact(stack: Stack) -> None:
    prompt = "Grüß mich auf Japanisch 🌸"
    upstream = (message_start("msg_utf8_1", {"input_tokens": 12, "output_tokens": 1})
                + text_block(0, "こんにちは 🌸 ✓")
                + message_end("end_turn", {"output_tokens": 6}))
    stack.script(stream_reply(upstream, write_size=1))
    reply = post(stack, MESSAGES, streaming_request(prompt))
    assert reply.content == upstream
    item = stack.only_interception()
    assert prompts(item) == [prompt]
    [row] = usage_rows(item)
    assert (row["provider_response_id"], row["input"], row["output"]) == ("msg_utf8_1", 12, 6)
    assert "\ufffd" not in orjson.dumps(item).decode()


def test_thinking_blocks_are_recorded_as_model_thoughts(stack: Stack) -> None:
    upstream = (
        message_start("msg_think_2", {"input_tokens": 20, "output_tokens": 1})
        + event("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
        + event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "thinking_delta", "thinking": "Seven is prime; "}})
        + event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "thinking_delta", "thinking": "so is eleven."}})
        + event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "signature_delta", "signature": "c2ln"}})
        + event("content_block_stop", {"type": "content_block_stop", "index": 0})
        + text_block(1, "7 and 11")
        + message_end("end_turn", {"output_tokens": 15})
    )
    stack.script(stream_reply(upstream))
    reply = post(stack, MESSAGES, streaming_request("two primes above five?"))
    assert reply.content == upstream
    item = stack.only_interception()
    assert [(t["content"], t["source"]) for t in item["model_thoughts"]] == [
        ("Seven is prime; so is eleven.", "thinking")]


def test_upstream_dropping_the_connection_mid_stream_fails_with_usage_so_far(stack: Stack) -> None:
    upstream = (message_start("msg_cut_4", {"input_tokens": 66, "cache_read_input_tokens": 512, "output_tokens": 1})
                + text_block(0, "The first part", " and the second"))
    stack.script(stream_reply(upstream + message_end("end_turn", {"output_tokens": 30}), reset_after=len(upstream)))
    with httpx.stream("POST", stack.url + MESSAGES, json=streaming_request("tell me everything"),
                      headers={"x-api-key": stack.key}) as reply:
        received = b""
        with pytest.raises(httpx.RemoteProtocolError):
            for piece in reply.iter_raw():
                received += piece
    assert received == upstream
    item = stack.only_interception()
    assert (item["status"], item["upstream_status"]) == ("failed", 200)
    assert item["error"].startswith("upstream unreachable")
    assert usage_rows(item) == [{"provider_response_id": "msg_cut_4", "input": 66, "cache_read": 512,
                                 "cache_write": 0, "output": 1, "reasoning": 0}]


def test_blocking_tool_use_through_the_sdk(stack: Stack) -> None:
    stack.script(json_reply({
        "id": "msg_block_tools", "type": "message", "role": "assistant", "model": MODEL,
        "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_own_edit", "name": "Edit",
                     "input": {"file": "main.py", "old": "x = 1", "new": "x = 2"}},
                    {"type": "tool_use", "id": "toolu_own_pwd", "name": "Pwd", "input": {}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 120, "output_tokens": 45}}))
    client = anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key=stack.key, max_retries=0)
    reply = client.messages.create(model=MODEL, max_tokens=200,
                                   messages=[{"role": "user", "content": "bump x"}],
                                   tools=[{"name": "Edit", "input_schema": {"type": "object"}},
                                          {"name": "Pwd", "input_schema": {"type": "object"}}])
    assert reply.stop_reason == "tool_use"
    item = stack.only_interception()
    assert tool_calls(item) == [("Edit", "toolu_own_edit", {"file": "main.py", "old": "x = 1", "new": "x = 2"}),
                                ("Pwd", "toolu_own_pwd", {})]
    assert prompts(item) == ["bump x"]
