"""Errors and limits (DESIGN §4): unreachable and slow upstreams, body limits, bad
requests, the ``enabled`` switch, and compressed upstream replies."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from aibridge.fake.upstream import Reply
from tests.e2e.wire import SSE, event, post
from tests.harness import Stack

MESSAGES = "/anthropic/v1/messages"
CHAT = "/openai/v1/chat/completions"
ANTHROPIC_REQUEST = {"model": "claude-sonnet-4-5", "max_tokens": 30, "messages": [{"role": "user", "content": "hey"}]}
CHAT_REQUEST = {"model": "gpt-5", "messages": [{"role": "user", "content": "hey"}]}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- upstream unreachable and slow ------------------------------------------------------------


def test_unreachable_upstream_is_502_in_provider_shape_and_recorded_failed(make_stack: Any) -> None:
    port = closed_port()
    stack = make_stack(anthropic_base_url=f"http://127.0.0.1:{port}/",
                       openai_base_url=f"http://127.0.0.1:{port}/v1/")
    reply = post(stack, MESSAGES, ANTHROPIC_REQUEST)
    assert reply.status_code == 502
    body = reply.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert body["error"]["message"].startswith("upstream unreachable: ConnectError")
    reply = post(stack, CHAT, CHAT_REQUEST)
    assert reply.status_code == 502
    assert (reply.json()["error"]["type"], reply.json()["error"]["code"]) == ("server_error", "bad_gateway")
    items = stack.interceptions()
    assert [(i["status"], i["upstream_status"]) for i in items] == [("failed", None), ("failed", None)]
    assert all(i["error"].startswith("upstream unreachable") for i in items)
    # passthrough routes map the same way
    assert httpx.get(stack.url + "/openai/v1/models", headers={"x-api-key": stack.key}).status_code == 502


def test_upstream_timeout_is_504_in_provider_shape_and_recorded_failed(make_stack: Any) -> None:
    stack = make_stack(upstream_timeout="0.3")
    stack.script(Reply(headers=SSE, body=b"", latency=5.0), Reply(headers=SSE, body=b"", latency=5.0))
    reply = post(stack, MESSAGES, {**ANTHROPIC_REQUEST, "stream": True})
    assert reply.status_code == 504
    assert reply.json() == {"type": "error", "error": {"type": "timeout_error",
                                                       "message": "upstream timed out: ReadTimeout"}}
    with pytest.raises(openai.APIStatusError) as info:
        openai.OpenAI(base_url=stack.url + "/openai/v1", api_key=stack.key, max_retries=0).chat.completions.create(
            **CHAT_REQUEST)
    assert info.value.status_code == 504
    assert info.value.code == "gateway_timeout"
    items = stack.interceptions()
    assert [(i["status"], i["upstream_status"], i["error"]) for i in items] == [
        ("failed", None, "upstream timed out: ReadTimeout")] * 2
    # the bridge gave up on both: the fake saw both connections close before replying
    stack.call(stack.fake.wait_streams_closed)
    assert stack.fake.closed_early == 2


def test_upstream_going_silent_mid_stream_fails_the_interception_with_usage_so_far(make_stack: Any) -> None:
    stack = make_stack(upstream_timeout="0.3")
    start = event("message_start", {"type": "message_start", "message": {
        "id": "msg_stall", "usage": {"input_tokens": 44, "output_tokens": 1}}})
    stack.script(Reply(headers=SSE, chunks=(start, b"event: ping\ndata: {\"type\": \"ping\"}\n\n"), chunk_delay=5.0))
    with httpx.stream("POST", stack.url + MESSAGES, json={**ANTHROPIC_REQUEST, "stream": True},
                      headers={"x-api-key": stack.key}) as reply:
        assert reply.status_code == 200
        received = b""
        with pytest.raises(httpx.RemoteProtocolError):
            for piece in reply.iter_raw():
                received += piece
    # the client saw what upstream sent, then a broken stream (not a clean end it might trust)
    assert received == start
    item = stack.only_interception()
    assert (item["status"], item["upstream_status"], item["error"]) == (
        "failed", 200, "upstream timed out: ReadTimeout")
    [usage] = item["token_usages"]
    assert (usage["provider_response_id"], usage["input_tokens"]) == ("msg_stall", 44)


# -- request limits and validation --------------------------------------------------------------


def test_bodies_above_max_body_size_get_413_and_never_reach_upstream(make_stack: Any) -> None:
    stack = make_stack(max_body_size="2KiB")
    big = {**ANTHROPIC_REQUEST, "messages": [{"role": "user", "content": "x" * 3000}]}
    reply = post(stack, MESSAGES, big)
    assert reply.status_code == 413
    assert reply.json()["type"] == "error"
    assert reply.json()["error"]["type"] == "request_too_large"
    assert "2048-byte limit" in reply.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no content-length: the limit holds while reading
        data = orjson.dumps({**CHAT_REQUEST, "messages": [{"role": "user", "content": "y" * 5000}]})
        for i in range(0, len(data), 500):
            yield data[i : i + 500]

    reply = httpx.post(stack.url + CHAT, content=chunks(),
                       headers={"authorization": f"Bearer {stack.key}", "content-type": "application/json"})
    assert reply.status_code == 413
    assert (reply.json()["error"]["type"], reply.json()["error"]["code"]) == (
        "invalid_request_error", "request_too_large")
    # just under the limit passes
    assert post(stack, MESSAGES, {**ANTHROPIC_REQUEST, "messages": [{"role": "user", "content": "z" * 1800}]}
                ).status_code == 200
    assert len(stack.fake.requests) == 1
    assert stack.count("interceptions") == 1


BAD_BODIES = [
    pytest.param(b'{"model": "m", "messages": [', "request body is not valid JSON", id="truncated-json"),
    pytest.param(b"", "request body is empty; expected a JSON object", id="empty"),
    pytest.param(b'[{"model": "m"}]', "request body must be a JSON object, not list", id="array"),
    pytest.param(b'"hello"', "request body must be a JSON object, not str", id="string"),
    pytest.param(b'{"messages": []}', "'model' is required and must be a non-empty string", id="no-model"),
    pytest.param(b'{"model": 7, "messages": []}', "'model' is required and must be a non-empty string", id="model-int"),
    pytest.param(b'{"model": "m", "messages": "hi"}', "'messages' is required and must be an array", id="messages-str"),
    pytest.param(b'{"model": "m", "messages": [], "stream": "yes"}', "'stream' must be a boolean", id="stream-str"),
    pytest.param(b'\xff\xfe{"model"}', "request body is not valid JSON", id="not-utf8"),
    pytest.param(b'{"model": "m", "max_tokens": NaN, "messages": []}', "request body is not valid JSON", id="nan"),
    pytest.param(b'{"model": "m", "temperature": -Infinity, "messages": []}', "request body is not valid JSON",
                 id="infinity"),
    pytest.param(b'{"model": "m", "temperature": 1e999, "messages": []}', "request body is not valid JSON",
                 id="overflow"),
    pytest.param(b'{"model": "m", "messages": [{"role": "user", "content": "\\udc00"}]}',
                 "request body is not valid JSON: a \\u escape is a lone surrogate: not valid Unicode text",
                 id="lone-surrogate"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
def test_malformed_requests_get_400_in_provider_shape_and_never_reach_upstream(
    stack: Stack, body: bytes, message: str
) -> None:
    reply = post(stack, MESSAGES, body)
    assert reply.status_code == 400
    error = reply.json()
    assert (error["type"], error["error"]["type"]) == ("error", "invalid_request_error")
    assert error["error"]["message"].startswith(message)
    reply = post(stack, CHAT, body)
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert reply.json()["error"]["message"].startswith(message)
    assert len(stack.fake.requests) == 0
    assert stack.count("interceptions") == 0


def test_the_sdk_sees_a_bad_request_error(stack: Stack) -> None:
    client = anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key=stack.key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages="not a list")  # type: ignore[arg-type]


# -- the enabled switch -------------------------------------------------------------------------


def test_disabled_gateway_answers_provider_routes_with_503_and_keeps_operator_routes(make_stack: Any) -> None:
    stack = make_stack(enabled=False)
    reply = post(stack, MESSAGES, ANTHROPIC_REQUEST)
    assert (reply.status_code, reply.json()) == (
        503, {"type": "error", "error": {"type": "overloaded_error", "message": "aibridge is disabled"}})
    reply = post(stack, CHAT, CHAT_REQUEST)
    assert (reply.status_code, reply.json()) == (503, {"error": {
        "message": "aibridge is disabled", "type": "server_error", "param": None, "code": "service_unavailable"}})
    assert httpx.get(stack.url + "/api/v2/aibridge/openai/v1/models", headers={"x-api-key": stack.key}
                     ).status_code == 503
    assert httpx.get(stack.url + "/healthz").status_code == 200
    ready = httpx.get(stack.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    assert len(stack.fake.requests) == 0


# -- compressed upstream replies ------------------------------------------------------------------


def test_gzip_from_upstream_is_decoded_and_content_encoding_dropped(stack: Stack) -> None:
    message = orjson.dumps({"id": "msg_gz_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                            "content": [{"type": "text", "text": "squeezed " * 50}], "stop_reason": "end_turn",
                            "usage": {"input_tokens": 15, "output_tokens": 100}})
    stack.script(Reply(headers=(("content-type", "application/json"), ("content-encoding", "gzip")),
                       body=gzip.compress(message)))
    reply = post(stack, MESSAGES, ANTHROPIC_REQUEST, headers={"accept-encoding": "identity"})
    assert reply.status_code == 200
    assert "content-encoding" not in reply.headers
    assert reply.headers["content-length"] == str(len(message))
    assert reply.content == message
    # upstream was asked for identity encoding (the client's own accept-encoding is not forwarded)
    assert stack.fake.last.headers["accept-encoding"] == "identity"

    stream = (event("message_start", {"type": "message_start", "message": {
        "id": "msg_gz_2", "usage": {"input_tokens": 16, "output_tokens": 1}}})
        + event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                  "usage": {"output_tokens": 9}})
        + event("message_stop", {"type": "message_stop"}))
    packed = gzip.compress(stream)
    stack.script(Reply(headers=(("content-type", "text/event-stream"), ("content-encoding", "gzip")),
                       body=packed, write_size=20))
    reply = post(stack, MESSAGES, {**ANTHROPIC_REQUEST, "stream": True}, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in reply.headers
    assert reply.content == stream

    stack.script(Reply(headers=(("content-type", "application/json"), ("content-encoding", "gzip")),
                       body=gzip.compress(b'{"input_tokens": 808}')))
    reply = post(stack, MESSAGES + "/count_tokens", ANTHROPIC_REQUEST, headers={"accept-encoding": "identity"})
    assert ("content-encoding" in reply.headers, reply.content) == (False, b'{"input_tokens": 808}')

    items = stack.interceptions()
    assert [(u["provider_response_id"], u["input_tokens"], u["output_tokens"])
            for i in items for u in i["token_usages"]] == [("msg_gz_1", 15, 100), ("msg_gz_2", 16, 9)]


TRUNCATED = [
    pytest.param("/anthropic/v1/messages",
                 {"model": "claude-sonnet-4-5", "max_tokens": 50, "stream": True,
                  "messages": [{"role": "user", "content": "hey"}]},
                 event("message_start", {"type": "message_start", "message": {
                     "id": "msg_cut", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                     "content": [], "usage": {"input_tokens": 12, "output_tokens": 1}}})
                 + event("message_delta", {"type": "message_delta", "delta": {"stop_reason": None},
                                           "usage": {"output_tokens": 9}}),
                 (12, 9), id="anthropic-no-message_stop"),
    pytest.param("/openai/v1/chat/completions",
                 {**CHAT_REQUEST, "stream": True, "stream_options": {"include_usage": True}},
                 event(None, {"id": "chatcmpl-cut", "object": "chat.completion.chunk", "model": "gpt-5",
                              "choices": [{"index": 0, "delta": {"content": "It"}, "finish_reason": None}]})
                 + event(None, {"id": "chatcmpl-cut", "object": "chat.completion.chunk", "model": "gpt-5",
                                "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1,
                                                         "total_tokens": 6}}),
                 (5, 1), id="chat-no-done"),
    pytest.param("/openai/v1/responses", {"model": "gpt-5", "input": "hey", "stream": True},
                 event("response.created", {"type": "response.created", "sequence_number": 0, "response": {
                     "id": "resp_cut", "object": "response", "status": "in_progress", "output": []}}),
                 None, id="responses-no-terminal-event"),
]


@pytest.mark.parametrize(("path", "request_body", "upstream", "tokens"), TRUNCATED)
def test_a_stream_that_closes_before_its_last_event_is_recorded_failed(
    stack: Stack, path: str, request_body: dict[str, Any], upstream: bytes, tokens: tuple[int, int] | None
) -> None:
    stack.script(Reply(headers=SSE, body=upstream))
    reply = post(stack, path, request_body)
    assert (reply.status_code, reply.content) == (200, upstream)  # relayed as it came
    stack.settle()
    item = stack.only_interception()
    assert (item["status"], item["error"]) == ("failed", "upstream stream ended before its last event")
    assert [(u["input_tokens"], u["output_tokens"]) for u in item["token_usages"]] == ([tokens] if tokens else [])
