"""OpenAI Chat Completions cases from real gateway bug reports, in this project's own data."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from aibridge.fake.upstream import Reply
from tests.e2e.wire import event, json_reply, post, prompts, stream_reply, tool_calls, usage_rows
from tests.harness import Stack

CHAT = "/openai/v1/chat/completions"
MODEL = "gpt-5-mini"


def chunk(chunk_id: str, choices: list[dict[str, Any]], **extra: Any) -> bytes:
    return event(None, {"id": chunk_id, "object": "chat.completion.chunk", "model": MODEL,
                        "choices": choices, **extra})


def completion(chunk_id: str, text: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": chunk_id, "object": "chat.completion", "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage}


def openai_client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/openai/v1", api_key=stack.key, max_retries=0)


def test_blocking_cached_tokens_are_split_out_of_prompt_tokens(stack: Stack) -> None:
    # OpenAI's prompt_tokens includes cached_tokens: input = prompt - cached.
    stack.script(json_reply(completion("chatcmpl-own-cache", "done", {
        "prompt_tokens": 3010, "completion_tokens": 412, "total_tokens": 3422,
        "prompt_tokens_details": {"cached_tokens": 2816},
        "completion_tokens_details": {"reasoning_tokens": 64}})))
    reply = openai_client(stack).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "summarise the diff"}])
    assert reply.choices[0].message.content == "done"
    item = stack.only_interception()
    assert (item["status"], item["upstream_status"], item["streaming"]) == ("completed", 200, False)
    assert usage_rows(item) == [{"provider_response_id": "chatcmpl-own-cache", "input": 194,
                                 "cache_read": 2816, "cache_write": 0, "output": 412, "reasoning": 64}]
    assert prompts(item) == ["summarise the diff"]


def test_parallel_tool_call_deltas_keyed_by_index_interleave_and_assemble(stack: Stack) -> None:
    cid = "chatcmpl-own-tools"
    upstream = (
        # indexes start at 3, not 0, and there is no text preamble
        chunk(cid, [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
            {"index": 3, "id": "call_own_list", "type": "function",
             "function": {"name": "list_dir", "arguments": ""}}]}, "finish_reason": None}])
        + chunk(cid, [{"index": 0, "delta": {"tool_calls": [
            {"index": 3, "function": {"arguments": '{"dir'}}]}, "finish_reason": None}])
        + chunk(cid, [{"index": 0, "delta": {"tool_calls": [
            {"index": 4, "id": "call_own_mv", "type": "function",
             "function": {"name": "move_file", "arguments": '{"from":'}}]}, "finish_reason": None}])
        + chunk(cid, [{"index": 0, "delta": {"tool_calls": [
            {"index": 3, "function": {"arguments": '":"docs"}'}}]}, "finish_reason": None}])
        + chunk(cid, [{"index": 0, "delta": {"tool_calls": [
            {"index": 4, "function": {"arguments": '"a.md","to":"b.md"}'}}]}, "finish_reason": None}])
        + chunk(cid, [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])
        + chunk(cid, [], usage={"prompt_tokens": 121, "completion_tokens": 45, "total_tokens": 166})
        + b"data: [DONE]\n\n"
    )
    stack.script(stream_reply(upstream))
    request = {
        "model": MODEL, "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "tidy the docs"}],
        "tools": [
            {"type": "function", "function": {"name": "list_dir", "parameters": {
                "type": "object", "properties": {"dir": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "move_file", "parameters": {
                "type": "object", "properties": {"from": {"type": "string"}, "to": {"type": "string"}}}}},
        ],
    }
    reply = post(stack, CHAT, request)
    assert reply.status_code == 200
    # the client asked for usage itself, so nothing is filtered
    assert reply.content == upstream
    assert stack.fake.last.json() == request
    item = stack.only_interception()
    assert tool_calls(item) == [
        ("list_dir", "call_own_list", {"dir": "docs"}),
        ("move_file", "call_own_mv", {"from": "a.md", "to": "b.md"}),
    ]
    [row] = usage_rows(item)
    assert (row["provider_response_id"], row["input"], row["output"]) == (cid, 121, 45)


def test_parallel_tool_calls_through_the_sdk(stack: Stack) -> None:
    cid = "chatcmpl-own-sdk-tools"
    upstream = (
        chunk(cid, [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
            {"index": 0, "id": "call_w1", "type": "function", "function": {"name": "weather", "arguments": ""}},
            {"index": 1, "id": "call_w2", "type": "function", "function": {"name": "weather", "arguments": ""}},
        ]}, "finish_reason": None}])
        + chunk(cid, [{"index": 0, "delta": {"tool_calls": [
            {"index": 1, "function": {"arguments": '{"city":"Oslo"}'}},
            {"index": 0, "function": {"arguments": '{"city":"Lima"}'}}]}, "finish_reason": None}])
        + chunk(cid, [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])
        + chunk(cid, [], usage={"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70})
        + b"data: [DONE]\n\n"
    )
    stack.script(stream_reply(upstream))
    chunks = list(openai_client(stack).chat.completions.create(
        model=MODEL, stream=True, messages=[{"role": "user", "content": "weather in Lima and Oslo"}]))
    # the bridge asked for the usage chunk; the client did not, so it never sees it
    assert all(c.choices for c in chunks)
    assert len(chunks) == 3
    item = stack.only_interception()
    assert tool_calls(item) == [("weather", "call_w1", {"city": "Lima"}), ("weather", "call_w2", {"city": "Oslo"})]
    [row] = usage_rows(item)
    assert (row["input"], row["output"]) == (50, 20)


def test_usage_on_a_chunk_that_still_has_choices_is_recorded(stack: Stack) -> None:
    cid = "chatcmpl-own-late-usage"
    upstream = (
        chunk(cid, [{"index": 0, "delta": {"role": "assistant", "content": "fi"}, "finish_reason": None}])
        + chunk(cid, [{"index": 0, "delta": {"content": "ne"}, "finish_reason": "stop"}])
        + chunk(cid, [{"index": 0, "delta": {}}], usage={
            "prompt_tokens": 20480, "completion_tokens": 3, "total_tokens": 20483,
            "prompt_tokens_details": {"cached_tokens": 19968}})
        + b"data: [DONE]\n\n"
    )
    stack.script(stream_reply(upstream))
    request = {"model": MODEL, "messages": [{"role": "user", "content": "how are you?"}], "stream": True}
    reply = post(stack, CHAT, request)
    assert reply.status_code == 200
    # that chunk carries choices, so it is not the usage-only chunk the bridge may drop
    assert reply.content == upstream
    # the client did not ask for usage: the bridge asked upstream anyway
    assert stack.fake.last.json()["stream_options"] == {"include_usage": True}
    item = stack.only_interception()
    assert usage_rows(item) == [{"provider_response_id": cid, "input": 512, "cache_read": 19968,
                                 "cache_write": 0, "output": 3, "reasoning": 0}]
    assert item["metadata"] == {"rewritten": ["stream_options.include_usage"]}


def test_usage_only_chunk_is_dropped_from_a_client_that_did_not_ask_for_it(stack: Stack) -> None:
    cid = "chatcmpl-own-drop"
    kept = (chunk(cid, [{"index": 0, "delta": {"role": "assistant", "content": "yes"}, "finish_reason": None}])
            + b": upstream comment\n\n"
            + chunk(cid, [{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    usage = chunk(cid, [], usage={"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10})
    stack.script(stream_reply(kept + usage + b"data: [DONE]\n\n", write_size=7))
    reply = post(stack, CHAT, {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "ok?"}]})
    assert reply.content == kept + b"data: [DONE]\n\n"
    [row] = usage_rows(stack.only_interception())
    assert (row["input"], row["output"]) == (9, 1)


def test_rate_limit_before_the_stream_keeps_status_and_retry_headers(stack: Stack) -> None:
    upstream = b'{"error": {"message": "Slow down", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}'
    stack.script(Reply(status=429, headers=(("content-type", "application/json"), ("retry-after", "45"),
                                            ("x-ratelimit-remaining-requests", "0"),
                                            ("x-ratelimit-reset-requests", "45s"),
                                            ("x-request-id", "req_own_429")), body=upstream))
    reply = post(stack, CHAT, {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "go"}]})
    assert reply.status_code == 429
    assert reply.content == upstream
    assert reply.headers["retry-after"] == "45"
    assert reply.headers["x-ratelimit-remaining-requests"] == "0"
    assert reply.headers["x-ratelimit-reset-requests"] == "45s"
    assert reply.headers["x-request-id"] == "req_own_429"
    item = stack.only_interception()
    assert (item["status"], item["upstream_status"], item["error"]) == ("failed", 429, "Slow down")


def test_rate_limit_reaches_the_sdk_as_rate_limit_error(stack: Stack) -> None:
    stack.script(Reply(status=429, headers=(("content-type", "application/json"), ("retry-after", "1")),
                       body=b'{"error":{"message":"Slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}'))
    with pytest.raises(openai.RateLimitError) as info:
        openai_client(stack).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "rate_limit_exceeded"


def test_blocking_request_values_are_not_rewritten(stack: Stack) -> None:
    # explicit false and 0 stay, omitted keys stay omitted, unknown keys survive, key order kept
    body = (b'{"model":"gpt-5-mini","stream":false,"top_p":0,"store":false,'
            b'"x_gateway_hint":{"tier":"low","retain":false},"n":1,'
            b'"messages":[{"role":"user","content":"fine?"}]}')
    stack.script(json_reply(completion("chatcmpl-own-keep", "fine",
                                       {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6})))
    reply = post(stack, CHAT, body)
    assert reply.status_code == 200
    assert stack.fake.last.body == body


def test_streaming_rewrite_changes_only_include_usage(stack: Stack) -> None:
    # the one required rewrite: everything else keeps its value and position
    body = (b'{"model":"gpt-5-mini","stream":true,"temperature":0,"parallel_tool_calls":false,'
            b'"stream_options":{"include_obfuscation":false},"x_vendor":{"a":[1,2.5,null]},'
            b'"messages":[{"role":"user","content":"go on"}],"seed":0}')
    stack.script(stream_reply(chunk("chatcmpl-own-rw", [{"index": 0, "delta": {"content": "k"},
                                                          "finish_reason": "stop"}]) + b"data: [DONE]\n\n"))
    post(stack, CHAT, body)
    sent = stack.fake.last.body
    expected = orjson.loads(body)
    expected["stream_options"]["include_usage"] = True
    assert list(orjson.loads(sent)) == list(expected)
    assert orjson.loads(sent) == expected
    assert list(orjson.loads(sent)["stream_options"]) == ["include_obfuscation", "include_usage"]


def test_error_object_mid_stream_is_relayed_and_fails_the_interception(stack: Stack) -> None:
    cid = "chatcmpl-own-midfail"
    upstream = (
        chunk(cid, [{"index": 0, "delta": {"role": "assistant", "content": "Par"}, "finish_reason": None}])
        + event(None, {"error": {"message": "The server had an error while processing your request.",
                                 "type": "server_error", "param": None, "code": None}})
    )
    stack.script(stream_reply(upstream))
    reply = post(stack, CHAT, {"model": MODEL, "stream": True, "stream_options": {"include_usage": True},
                               "messages": [{"role": "user", "content": "capital of France?"}]})
    assert reply.status_code == 200
    assert reply.content == upstream
    item = stack.only_interception()
    assert (item["status"], item["upstream_status"], item["error"]) == (
        "failed", 200, "The server had an error while processing your request.")
    assert item["token_usages"] == []


def test_blocking_tool_calls_through_the_sdk(stack: Stack) -> None:
    stack.script(json_reply({
        "id": "chatcmpl-own-blocking-tools", "object": "chat.completion", "model": MODEL,
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "tool_calls": [
                {"id": "call_rg", "type": "function", "function": {"name": "ripgrep", "arguments": '{"q":"fixme"}'}},
                {"id": "call_now", "type": "function", "function": {"name": "now", "arguments": ""}},
            ]}}],
        "usage": {"prompt_tokens": 88, "completion_tokens": 19, "total_tokens": 107}}))
    reply = openai_client(stack).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "find fixmes, and what time is it"}],
        tools=[{"type": "function", "function": {"name": "ripgrep", "parameters": {"type": "object"}}},
               {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}])
    calls = reply.choices[0].message.tool_calls or []
    assert [c.id for c in calls] == ["call_rg", "call_now"]
    item = stack.only_interception()
    assert tool_calls(item) == [("ripgrep", "call_rg", {"q": "fixme"}), ("now", "call_now", {})]
    assert usage_rows(item) == [{"provider_response_id": "chatcmpl-own-blocking-tools", "input": 88,
                                 "cache_read": 0, "cache_write": 0, "output": 19, "reasoning": 0}]


def test_one_byte_writes_crlf_and_multibyte_text_survive_the_usage_chunk_filter(stack: Stack) -> None:
    # The bridge holds bytes back per event only to drop its own usage chunk;
    # everything else must still reach the client byte for byte.
    cid = "chatcmpl-own-bytes"

    def crlf(frame: bytes) -> bytes:
        return frame.replace(b"\n", b"\r\n")

    kept = (
        crlf(chunk(cid, [{"index": 0, "delta": {"role": "assistant", "content": "Ünïcödé ✓ 🚀"},
                          "finish_reason": None}]))
        + crlf(chunk(cid, [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_bytes", "type": "function",
             "function": {"name": "note", "arguments": '{"text":"日本語 ✓"}'}}]}, "finish_reason": None}]))
        + b": ping\r\n\r\n"
        + crlf(chunk(cid, [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]))
    )
    usage = crlf(chunk(cid, [], usage={"prompt_tokens": 17, "completion_tokens": 11, "total_tokens": 28}))
    done = b"data: [DONE]\r\n\r\n"
    stack.script(stream_reply(kept + usage + done, write_size=1))
    reply = post(stack, CHAT, {"model": MODEL, "stream": True,
                               "messages": [{"role": "user", "content": "note this: 日本語"}]})
    assert reply.content == kept + done
    item = stack.only_interception()
    assert tool_calls(item) == [("note", "call_bytes", {"text": "日本語 ✓"})]
    assert prompts(item) == ["note this: 日本語"]
    [row] = usage_rows(item)
    assert (row["input"], row["output"]) == (17, 11)
    assert "\ufffd" not in orjson.dumps(item).decode()
