"""Bedrock translation tables: model mapping, beta filtering, field stripping, replies."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aibridge.core.errors import ClientError
from aibridge.core.eventstream import Header, Message, encode_message
from aibridge.core.providers import bedrock
from aibridge.core.sse import SSEParser
from tests.strategies import anthropic_stream_events, chunkings, json_objects

MAIN = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
SMALL = "global.anthropic.claude-haiku-4-5-20251001-v1:0"
OPUS45 = "us.anthropic.claude-opus-4-5-20251101-v1:0"
SONNET46 = "global.anthropic.claude-sonnet-4-6-v1:0"
MODELS = {"model": MAIN, "small_fast_model": SMALL}


def translate(body: dict[str, Any], betas: tuple[str, ...] = ()) -> Any:
    return bedrock.translate_request(orjson.dumps(body), body, beta_headers=betas, **MODELS)


# -- model mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_model", "expected"),
    [
        ("claude-3-5-haiku-20241022", SMALL),
        ("claude-haiku-4-5", SMALL),
        ("Claude-HAIKU-latest", SMALL),
        ("claude-sonnet-4-5-20250929", MAIN),
        ("claude-opus-4-1", MAIN),
        ("gpt-4.1", MAIN),
        ("", MAIN),
    ],
)
def test_model_mapping(client_model: str, expected: str) -> None:
    assert bedrock.select_model(client_model, **MODELS) == expected


# -- beta filtering -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header_values", "model", "kept", "dropped"),
    [
        ([], MAIN, [], []),
        (["interleaved-thinking-2025-05-14"], MAIN, ["interleaved-thinking-2025-05-14"], []),
        # Claude Code's usual header: one comma-separated value, odd spacing
        (["claude-code-20250219, interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"], MAIN,
         ["interleaved-thinking-2025-05-14"], ["claude-code-20250219", "fine-grained-tool-streaming-2025-05-14"]),
        # repeated header lines, a duplicate flag
        (["token-efficient-tools-2025-02-19", "token-efficient-tools-2025-02-19,prompt-caching-scope-2026-01-05"],
         MAIN, ["token-efficient-tools-2025-02-19"], ["prompt-caching-scope-2026-01-05"]),
        # model-gated flags
        (["effort-2025-11-24"], MAIN, [], ["effort-2025-11-24"]),
        (["effort-2025-11-24"], OPUS45, ["effort-2025-11-24"], []),
        (["context-management-2025-06-27"], SMALL, ["context-management-2025-06-27"], []),
        (["context-management-2025-06-27"], OPUS45, [], ["context-management-2025-06-27"]),
        (["context-1m-2025-08-07"], MAIN, ["context-1m-2025-08-07"], []),
        ([" , ,"], MAIN, [], []),
    ],
)
def test_beta_filtering(header_values: list[str], model: str, kept: list[str], dropped: list[str]) -> None:
    assert bedrock.filter_betas(bedrock.split_betas(header_values), model) == (kept, dropped)


def test_every_supported_beta_is_one_row() -> None:
    flags = [rule.flag for rule in bedrock.SUPPORTED_BETAS]
    assert len(flags) == len(set(flags))
    assert all(flag in flags for _, flag in bedrock.BETA_GATED_FIELDS)


# -- field stripping -----------------------------------------------------------------------------------

CLAUDE_CODE_BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5-20250929",
    "messages": [{"role": "user", "content": [{"type": "text", "text": "fix the bug",
                                                "cache_control": {"type": "ephemeral"}}]}],
    "temperature": 1,
    "system": [{"type": "text", "text": "You are Claude Code."}],
    "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
    "metadata": {"user_id": "user_0b1c_account__session_77"},
    "max_tokens": 32000,
    "stream": True,
    "top_k": 0,
    "stop_sequences": [],
}


@pytest.mark.parametrize(
    ("extra", "betas", "expect_dropped", "expect_kept"),
    [
        ({}, (), ["model", "metadata", "stream"], []),
        ({"service_tier": "auto", "container": "ctr_1", "inference_geo": "us", "mcp_servers": []}, (),
         ["model", "metadata", "stream", "service_tier", "container", "inference_geo", "mcp_servers"], []),
        ({"context_management": {"edits": []}}, (), ["context_management"], []),
        ({"context_management": {"edits": []}}, ("context-management-2025-06-27",), [], ["context_management"]),
        ({"output_config": {"effort": "low"}}, ("effort-2025-11-24",), ["output_config"], []),  # Sonnet: not allowed
        ({"anthropic_version": "2023-06-01"}, (), [], []),
    ],
)
def test_field_stripping(extra: dict[str, Any], betas: tuple[str, ...], expect_dropped: list[str],
                         expect_kept: list[str]) -> None:
    body = {**CLAUDE_CODE_BODY, **extra}
    result = bedrock.rewrite_body(body, beta_headers=betas, bedrock_model=MAIN)
    for field in expect_dropped:
        assert field not in result.body
    for field in expect_kept:
        assert result.body[field] == body[field]
    assert result.body["anthropic_version"] == "bedrock-2023-05-31"


def test_rewrite_keeps_order_values_and_unknown_fields() -> None:
    body = {**CLAUDE_CODE_BODY, "x_vendor_field": {"keep": False}}
    result = bedrock.rewrite_body(body, beta_headers=["interleaved-thinking-2025-05-14"], bedrock_model=MAIN)
    assert list(result.body) == ["anthropic_version", "anthropic_beta", "messages", "temperature", "system",
                                 "tools", "max_tokens", "top_k", "stop_sequences", "x_vendor_field"]
    assert result.body["top_k"] == 0 and result.body["stop_sequences"] == []
    assert result.body["messages"] == body["messages"]  # cache_control breakpoints survive
    assert result.dropped_fields == ("model", "metadata", "stream")
    assert result.rewritten == ("anthropic_version", "model", "metadata", "stream", "anthropic_beta")


@pytest.mark.parametrize(
    ("thinking", "max_tokens", "effort", "model", "expected"),
    [
        ({"type": "adaptive"}, 32000, None, MAIN, {"type": "enabled", "budget_tokens": 25600}),
        ({"type": "adaptive"}, 32000, "medium", MAIN, {"type": "enabled", "budget_tokens": 16000}),
        ({"type": "adaptive"}, 10000, "low", MAIN, {"type": "enabled", "budget_tokens": 2000}),
        ({"type": "adaptive"}, 20000, "max", MAIN, {"type": "enabled", "budget_tokens": 19000}),
        ({"type": "adaptive"}, 4000, "low", MAIN, {"type": "disabled"}),  # 800 < 1024
        ({"type": "adaptive"}, 32000, "medium", SONNET46, {"type": "adaptive"}),  # native
        ({"type": "enabled", "budget_tokens": 5000}, 32000, None, MAIN, {"type": "enabled", "budget_tokens": 5000}),
    ],
)
def test_adaptive_thinking_conversion(thinking: dict[str, Any], max_tokens: int, effort: str | None, model: str,
                                      expected: dict[str, Any]) -> None:
    body: dict[str, Any] = {"model": "m", "max_tokens": max_tokens, "thinking": thinking, "messages": []}
    if effort:
        body["output_config"] = {"effort": effort}
    assert bedrock.rewrite_body(body, beta_headers=(), bedrock_model=model).body["thinking"] == expected


@given(json_objects, st.lists(st.sampled_from([r.flag for r in bedrock.SUPPORTED_BETAS] + ["x-beta"]), max_size=3))
def test_rewrite_properties(body: dict[str, Any], betas: list[str]) -> None:
    body.pop("thinking", None)
    result = bedrock.rewrite_body(body, beta_headers=betas, bedrock_model=MAIN)
    out = result.body
    assert next(iter(out)) == "anthropic_version"
    assert not set(out) & set(bedrock.UNSUPPORTED_FIELDS)
    assert set(out.get("anthropic_beta", [])) <= {r.flag for r in bedrock.SUPPORTED_BETAS}
    survivors = [k for k in body if k in out and k not in ("anthropic_version", "anthropic_beta")]
    assert [k for k in out if k in survivors] == survivors
    assert all(out[k] == body[k] for k in survivors)
    # a fixpoint: rewriting the rewrite changes nothing
    again = bedrock.rewrite_body(out, beta_headers=(), bedrock_model=MAIN).body
    assert again == out


# -- request translation -----------------------------------------------------------------------------


def test_streaming_request_goes_to_invoke_with_response_stream() -> None:
    t = translate(CLAUDE_CODE_BODY)
    assert t.path == "/model/global.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
    assert (t.model, t.streaming, t.prompt) == (MAIN, True, "fix the bug")
    assert dict(t.headers) == {"content-type": "application/json", "accept": "application/vnd.amazon.eventstream"}
    assert orjson.loads(t.body)["max_tokens"] == 32000


def test_blocking_request_and_arn_model_ids_are_percent_encoded() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3"
    body = {"model": "claude-opus-4-1", "max_tokens": 5, "messages": []}
    t = bedrock.translate_request(b"", body, beta_headers=(), model=arn, small_fast_model=SMALL)
    assert t.path == "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2c3/invoke"
    assert (t.streaming, dict(t.headers)["accept"]) == (False, "application/json")


@pytest.mark.parametrize("body", [{"messages": []}, {"model": "m", "messages": [], "stream": "yes"}, {"model": "m"}])
def test_invalid_requests_are_client_errors(body: dict[str, Any]) -> None:
    with pytest.raises(ClientError):
        translate(body)


def test_count_tokens_wraps_an_invoke_model_body() -> None:
    body = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}], "system": "s"}
    t = bedrock.translate_count_tokens(body, beta_headers=(), **MODELS)
    assert t.path == "/model/global.anthropic.claude-haiku-4-5-20251001-v1%3A0/count-tokens"
    wrapped = orjson.loads(t.body)
    inner = orjson.loads(base64.b64decode(wrapped["input"]["invokeModel"]["body"]))
    assert inner == {"anthropic_version": "bedrock-2023-05-31", "messages": [{"role": "user", "content": "hi"}],
                     "system": "s", "max_tokens": 1}
    assert bedrock.count_tokens_reply({"inputTokens": 17}) == b'{"input_tokens":17}'
    with pytest.raises(ValueError):
        bedrock.count_tokens_reply({"inputTokens": "17"})


def test_models_list_shape() -> None:
    assert orjson.loads(bedrock.models_list([MAIN, SMALL, MAIN])) == {
        "data": [bedrock.model_object(MAIN), bedrock.model_object(SMALL)],
        "has_more": False, "first_id": MAIN, "last_id": SMALL,
    }


# -- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exception", "status", "expected"),
    [
        ("throttlingException", None, "rate_limit_error"),
        ("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/", 429, "rate_limit_error"),
        ("modelStreamErrorException", None, "api_error"),
        ("internalServerException", None, "api_error"),
        ("validationException", None, "invalid_request_error"),
        ("serviceUnavailableException", None, "overloaded_error"),
        ("modelTimeoutException", None, "timeout_error"),
        ("AccessDeniedException", 403, "permission_error"),
        ("ResourceNotFoundException", 404, "not_found_error"),
        ("SomethingNewException", 400, "invalid_request_error"),
        ("SomethingNewException", 418, "invalid_request_error"),
        ("", 503, "overloaded_error"),
        ("", 502, "api_error"),
        ("", None, "api_error"),
    ],
)
def test_exception_mapping(exception: str, status: int | None, expected: str) -> None:
    assert bedrock.error_type_for(exception, status) == expected


def test_http_errors_become_anthropic_error_bodies() -> None:
    assert orjson.loads(bedrock.translate_error(400, "ValidationException:http://x/", b'{"message":"bad"}')) == {
        "type": "error", "error": {"type": "invalid_request_error", "message": "ValidationException: bad"}}
    # no header: the body's __type names it
    assert orjson.loads(bedrock.translate_error(
        429, "", b'{"__type":"com.amazon.coral#ThrottlingException","Message":"slow down"}')) == {
        "type": "error", "error": {"type": "rate_limit_error", "message": "ThrottlingException: slow down"}}
    assert orjson.loads(bedrock.translate_error(502, "", b"<html>Bad Gateway</html>")) == {
        "type": "error", "error": {"type": "api_error", "message": "<html>Bad Gateway</html>"}}


# -- stream translation -----------------------------------------------------------------------------------


def chunk(event: Any) -> Message:
    payload = orjson.dumps({"bytes": base64.b64encode(orjson.dumps(event)).decode(), "p": "abc"})
    return Message(headers=(Header.string(":event-type", "chunk"), Header.string(":message-type", "event")),
                   payload=payload)


def test_chunk_frame_becomes_one_sse_event() -> None:
    sse = bedrock.frame_to_sse(chunk({"type": "content_block_delta", "index": 0,
                                      "delta": {"type": "text_delta", "text": "hé"}}))
    assert sse == ('event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                   '"delta":{"type":"text_delta","text":"hé"}}\n\n').encode()


def test_exception_and_error_frames_become_anthropic_error_events() -> None:
    exc = Message(headers=(Header.string(":message-type", "exception"),
                           Header.string(":exception-type", "serviceUnavailableException")),
                  payload=b'{"message":"Bedrock is unable to process your request."}')
    assert bedrock.frame_to_sse(exc) == (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"serviceUnavailableException: Bedrock is unable to process your request."}}\n\n')
    err = Message(headers=(Header.string(":message-type", "error"), Header.string(":error-code", "InternalFailure"),
                           Header.string(":error-message", "oops")))
    assert b'"type":"api_error","message":"InternalFailure: oops"' in bedrock.frame_to_sse(err)


def test_other_frames_are_skipped_and_bad_chunks_reported() -> None:
    assert bedrock.frame_to_sse(Message(headers=(Header.string(":message-type", "event"),
                                                 Header.string(":event-type", "initial-response")))) == b""
    bad = Message(headers=(Header.string(":event-type", "chunk"), Header.string(":message-type", "event")),
                  payload=b'{"bytes":"!!!"}')
    assert b'"type":"api_error","message":"malformed Bedrock chunk' in bedrock.frame_to_sse(bad)


def _sse_payloads(data: bytes) -> list[Any]:
    parser = SSEParser()
    return [orjson.loads(e.data) for e in parser.receive_data(data) + parser.close()]


@given(st.lists(anthropic_stream_events, max_size=6), st.data())
def test_stream_translation_is_lossless_under_any_chunking(events: list[Any], data: st.DataObject) -> None:
    stream = b"".join(encode_message(chunk(e)) for e in events)
    translator = bedrock.StreamTranslator()
    out = b"".join(translator.receive_data(p) for p in data.draw(chunkings(stream))) + translator.close()
    assert _sse_payloads(out) == events


def test_corrupt_or_truncated_streams_end_with_one_error_event() -> None:
    good = encode_message(chunk({"type": "ping"}))
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    translator = bedrock.StreamTranslator()
    out = translator.receive_data(good + bytes(bad)) + translator.receive_data(good) + translator.close()
    payloads = _sse_payloads(out)
    assert payloads[0] == {"type": "ping"}
    assert payloads[1]["error"]["type"] == "api_error"
    assert payloads[1]["error"]["message"].startswith("corrupt Bedrock event stream: message CRC mismatch")
    assert len(payloads) == 2
    translator = bedrock.StreamTranslator()
    out = translator.receive_data(good[:-3]) + translator.close()
    assert _sse_payloads(out)[0]["error"]["message"].startswith("truncated Bedrock event stream")
