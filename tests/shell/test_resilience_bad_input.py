"""Bad input and bad upstream output.

Client side (the cases not covered by ``tests/e2e/test_errors.py`` and
``test_auth.py``): every refusal has a provider-shaped body and nothing
reaches upstream. Upstream side: broken SSE, truncated JSON, a reset
mid-stream or mid-body, gzip that does not decompress. None may crash the
request task; every interception ends with a status; the gateway keeps serving.
"""

from __future__ import annotations

import gzip
import struct
from typing import Any

import httpx
import orjson
import pytest

from aibridge.fake.upstream import Reply, anthropic_message, anthropic_stream, chat_stream
from tests.e2e.wire import JSON, SSE, post
from tests.harness import Stack
from tests.shell.resilience import CHAT, MESSAGES, anthropic_body, chat_body

RESPONSES = "/openai/v1/responses"


def assert_provider_error(reply: httpx.Response, shape: str, status: int) -> str:
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    if shape == "anthropic":
        assert set(body) == {"type", "error"} and body["type"] == "error"
        assert set(body["error"]) == {"type", "message"}
        return str(body["error"]["message"])
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return str(body["error"]["message"])


BAD_REQUESTS = [
    pytest.param(b'{"model": "", "input": "x"}', "'model' is required", id="empty-model"),
    pytest.param(b'{"model": ["gpt"], "input": "x"}', "'model' is required", id="model-list"),
    pytest.param(b'{"model": null, "input": "x"}', "'model' is required", id="model-null"),
    pytest.param(b'{"model": "m", "input": "x", "stream": 1}', "'stream' must be a boolean", id="stream-int"),
    pytest.param(b'{"model": "m", "input": "x", "stream": "true"}', "'stream' must be a boolean", id="stream-str"),
    pytest.param(b"[" * 5000 + b"]" * 5000, "request body is not valid JSON", id="deep-array"),
    pytest.param(b'{"a":' * 3000 + b"1" + b"}" * 3000, "request body is not valid JSON", id="deep-object"),
    pytest.param(b"\xef\xbb\xbf" + b"{", "request body is not valid JSON", id="bom-truncated"),
    pytest.param(b'{"model": "m", "input": "\xc3\x28"}', "request body is not valid JSON", id="bad-utf8-in-string"),
    pytest.param(b"null", "request body must be a JSON object", id="null"),
    pytest.param(b"12", "request body must be a JSON object", id="number"),
    pytest.param(b"NaN", "request body is not valid JSON", id="nan"),
]


@pytest.mark.parametrize(("body", "message"), BAD_REQUESTS)
def test_bad_responses_requests_get_400_and_never_reach_upstream(stack: Stack, body: bytes, message: str) -> None:
    reply = post(stack, RESPONSES, body)
    text = assert_provider_error(reply, "openai", 400)
    assert message in text
    assert len(stack.fake.requests) == 0
    assert stack.count("interceptions") == 0


def test_wrong_types_on_each_route(stack: Stack) -> None:
    cases = [
        (MESSAGES, "anthropic", {"model": "m", "max_tokens": 1, "messages": {"role": "user"}}, "'messages'"),
        (MESSAGES, "anthropic", {"model": "m", "max_tokens": 1, "messages": [], "stream": None, "x": 1}, None),
        (CHAT, "openai", {"model": "m", "messages": None}, "'messages'"),
        (CHAT, "openai", {"model": 3.5, "messages": []}, "'model'"),
        (CHAT, "openai", {"model": "m", "messages": [], "stream": [True]}, "'stream'"),
    ]
    for path, shape, body, message in cases:
        reply = post(stack, path, body)
        if message is None:  # "stream": null means not streaming; that one is fine
            assert reply.status_code == 200
            continue
        assert message in assert_provider_error(reply, shape, 400)
    assert len(stack.fake.requests) == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="none"),
        pytest.param({"authorization": "Basic YWxpY2U6c2VjcmV0"}, id="basic-scheme"),
        pytest.param({"authorization": "Bearer"}, id="bearer-without-key"),
        pytest.param({"authorization": "Token aib_abc"}, id="other-scheme"),
        pytest.param({"x-aibridge-token": "", "x-api-key": ""}, id="empty-values"),
        pytest.param({"authorization": "Bearer aib_not-a-real-key"}, id="unknown-key"),
        pytest.param({"x-api-key": "aib_\u00e9t\u00e9".encode("latin-1")}, id="latin1-key"),
    ],
)
def test_missing_or_malformed_credentials_get_401_in_both_shapes(stack: Stack, headers: dict[str, Any]) -> None:
    for path, shape in ((MESSAGES, "anthropic"), (CHAT, "openai"), (RESPONSES, "openai")):
        sent = {"content-type": "application/json", **headers}
        reply = httpx.post(stack.url + path, content=orjson.dumps(chat_body("m")), headers=sent)
        assert_provider_error(reply, shape, 401)
    assert len(stack.fake.requests) == 0


def test_wrong_methods_get_provider_shaped_errors(stack: Stack) -> None:
    auth = {"x-api-key": stack.key}
    for method, path, shape in (
        ("GET", CHAT, "openai"),
        ("PUT", MESSAGES, "anthropic"),
        ("DELETE", RESPONSES, "openai"),
        ("PATCH", "/openai/v1/models", "openai"),
        ("POST", "/anthropic/v1/models", "anthropic"),
    ):
        reply = httpx.request(method, stack.url + path, headers=auth, content=b"{}")
        message = assert_provider_error(reply, shape, 404)
        assert message == f"route not supported: {method} {path}"
    assert len(stack.fake.requests) == 0


def test_a_declared_length_over_the_limit_is_refused_before_reading(make_stack: Any) -> None:
    stack = make_stack(max_body_size="1KiB")
    reply = httpx.post(
        stack.url + RESPONSES, content=b"{" + b" " * 4000 + b"}",
        headers={"authorization": f"Bearer {stack.key}", "content-type": "application/json"},
    )
    assert "exceeds the 1024-byte limit" in assert_provider_error(reply, "openai", 413)
    assert len(stack.fake.requests) == 0


# -- bad upstream output ------------------------------------------------------------------------


def bad_gzip_length(data: bytes) -> bytes:
    """Valid deflate data whose gzip trailer states the wrong length."""
    packed = gzip.compress(data)
    return packed[:-4] + struct.pack("<I", len(data) + 7)


def still_serving(stack: Stack) -> None:
    assert post(stack, MESSAGES, anthropic_body("claude-after-the-storm")).status_code == 200


def test_gzip_with_a_wrong_length_in_a_blocking_reply_is_502(stack: Stack) -> None:
    message = orjson.dumps(anthropic_message("msg_bad_gzip", "claude-gz", 2, "zz "))
    stack.script(Reply(headers=(*JSON, ("content-encoding", "gzip")), body=bad_gzip_length(message)))
    reply = post(stack, MESSAGES, anthropic_body("claude-gz"))
    text = assert_provider_error(reply, "anthropic", 502)
    assert "could not be decoded" in text and "incorrect length check" in text
    still_serving(stack)
    first = stack.interceptions()[0]
    assert (first["status"], first["upstream_status"]) == ("failed", 200)
    assert "could not be decoded" in first["error"]


def test_gzip_with_a_wrong_length_in_a_stream_ends_it_failed_with_usage_so_far(stack: Stack) -> None:
    stream = b"".join(anthropic_stream("msg_bad_gzip_stream", "claude-gz", 3, "yy "))
    stack.script(Reply(headers=(*SSE, ("content-encoding", "gzip")), body=bad_gzip_length(stream), write_size=64))
    with pytest.raises(httpx.RemoteProtocolError):  # the client sees a broken stream, not a clean end
        post(stack, MESSAGES, anthropic_body("claude-gz", stream=True))
    still_serving(stack)
    first = stack.interceptions()[0]
    assert first["status"] == "failed"
    assert "could not be decoded" in first["error"]
    # the usage snapshot seen before the bad trailer: message_start's, or message_delta's
    # when that decompressed before the error (TCP may coalesce the writes)
    [usage] = first["token_usages"]
    assert (usage["provider_response_id"], usage["input_tokens"]) == ("msg_bad_gzip_stream", 10)
    assert usage["output_tokens"] in (1, 3)


def test_reset_mid_stream_fails_the_interception_and_keeps_usage(stack: Stack) -> None:
    frames = anthropic_stream("msg_reset", "claude-reset", 4, "rr ")
    cut = len(frames[0]) + len(frames[1]) + 5
    stack.script(Reply(headers=SSE, chunks=tuple(frames), reset_after=cut))
    with pytest.raises(httpx.RemoteProtocolError):
        post(stack, MESSAGES, anthropic_body("claude-reset", stream=True))
    still_serving(stack)
    first = stack.interceptions()[0]
    assert (first["status"], first["upstream_status"]) == ("failed", 200)
    assert first["error"].startswith("upstream unreachable")
    assert [(u["provider_response_id"], u["input_tokens"]) for u in first["token_usages"]] == [("msg_reset", 10)]


def test_reset_mid_body_of_a_blocking_reply_is_502(stack: Stack) -> None:
    message = orjson.dumps(anthropic_message("msg_reset_blocking", "claude-reset", 2, "qq "))
    stack.script(Reply(headers=JSON, body=message, write_size=16, reset_after=40))
    reply = post(stack, MESSAGES, anthropic_body("claude-reset"))
    assert_provider_error(reply, "anthropic", 502)
    still_serving(stack)
    assert stack.interceptions()[0]["status"] == "failed"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\x00\xff\xfe binary junk \r\r\n\n\x80\x81", id="binary-junk"),
        pytest.param(b'data: {"choices": [{"delta": {"content": "trunc', id="truncated-json-no-newline"),
        pytest.param(b'data: {"choices": [{"delta": \n\ndata: [DONE]\n\n', id="truncated-json-event"),
        pytest.param(b'data: [1, 2, 3]\n\ndata: "str"\n\ndata: 7\n\ndata: null\n\n', id="json-not-objects"),
        pytest.param(b'data: {"choices": "nope", "usage": [1]}\n\ndata: {"choices": [7, null, {"delta": 3}]}\n\n', id="wrong-shapes"),
        pytest.param(b"event: x\n" * 1000, id="fields-without-data"),
        pytest.param(b"", id="empty-stream"),
    ],
)
def test_broken_sse_is_relayed_as_is_and_the_interception_ends(stack: Stack, body: bytes) -> None:
    stack.script(Reply(headers=SSE, body=body, write_size=7))
    reply = post(stack, CHAT, chat_body("gpt-junk", stream=True))
    assert reply.status_code == 200
    assert reply.content == body
    still_serving(stack)
    first = stack.interceptions()[0]
    assert first["status"] in {"completed", "failed"}
    assert first["ended_at"] is not None


def test_a_truncated_json_reply_is_relayed_and_recorded_failed(stack: Stack) -> None:
    stack.script(Reply(headers=JSON, body=b'{"id": "chatcmpl-trunc", "choices": [{"mess'))
    reply = post(stack, CHAT, chat_body("gpt-trunc"))
    assert (reply.status_code, reply.content) == (200, b'{"id": "chatcmpl-trunc", "choices": [{"mess')
    item = stack.only_interception()
    assert (item["status"], item["error"]) == ("failed", "upstream reply is not valid JSON")


def test_an_openai_stream_cut_before_done_keeps_what_was_seen(stack: Stack) -> None:
    frames = chat_stream("chatcmpl-cut", "gpt-cut", 3, "cc ", True)
    body = b"".join(frames[:-2])  # no usage chunk, no [DONE]
    stack.script(Reply(headers=SSE, body=body))
    reply = post(stack, CHAT, {**chat_body("gpt-cut", stream=True), "stream_options": {"include_usage": True}})
    assert reply.content == body
    item = stack.only_interception()
    assert item["status"] in {"completed", "failed"}
    assert item["token_usages"] == []
