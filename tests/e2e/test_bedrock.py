"""Claude Code's path through Bedrock: the real ``anthropic`` SDK -> aibridge -> a fake Bedrock.

The fake recomputes every SigV4 signature with botocore and frames replies
as real AWS event streams; the client must see plain Anthropic traffic and
the audit rows must read exactly as for direct Anthropic traffic, with
provider ``bedrock`` and the Bedrock model id.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import attrs
import httpx
import orjson
import pytest

from aibridge.fake.bedrock import FakeBedrock, error_reply, json_reply, sse_events, stream_reply
from tests.conftest import SHARED
from tests.harness import Stack

ACCESS_KEY = "AKIAFAKEBEDROCK0001"
SECRET_KEY = "fake/secret+key/for-bedrock-tests-0001"
MAIN = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
SMALL = "global.anthropic.claude-haiku-4-5-20251001-v1:0"
MAIN_PATH = "/model/global.anthropic.claude-sonnet-4-5-20250929-v1%3A0"
BEDROCK = {
    "bedrock_base_url": "{fake_url}",
    "bedrock_region": "us-west-2",
    "bedrock_access_key": ACCESS_KEY,
    "bedrock_access_key_secret": SECRET_KEY,
}


def start(tmp_path: Path, *, secret: str = SECRET_KEY, **overrides: Any) -> tuple[Stack, FakeBedrock]:
    stack = Stack(tmp_path, **{**BEDROCK, "bedrock_access_key_secret": secret, **overrides}).start()
    fake = FakeBedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region="us-west-2").install(stack.fake)
    return stack, fake


@pytest.fixture
def bedrock(tmp_path: Path) -> Iterator[tuple[Stack, FakeBedrock]]:
    stack, fake = start(tmp_path)
    try:
        yield stack, fake
    finally:
        stack.stop()


def sdk(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key=stack.key, max_retries=0)


def raw_path(stack: Stack) -> str:
    """The path as it arrived on the wire (the model id stays percent-encoded)."""
    return stack.fake.last.path


# -- streaming, blocking -----------------------------------------------------------------


def test_streaming_text_is_relayed_as_anthropic_sse_and_recorded(bedrock: tuple[Stack, FakeBedrock]) -> None:
    stack, fake = bedrock
    with sdk(stack).messages.stream(
        model="claude-sonnet-4-5", max_tokens=300,
        messages=[{"role": "user", "content": "name three rivers"}],
        metadata={"user_id": "u-77"},
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == "bedrock " * 5
    assert fake.all_signatures_valid and len(fake.checks) == 1
    sent = stack.fake.last
    assert sent.path == f"/model/{MAIN}/invoke-with-response-stream"
    assert sent.query == ""
    assert sent.json() == {
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 300,
        "messages": [{"role": "user", "content": "name three rivers"}],
    }
    assert sent.headers["accept"] == "application/vnd.amazon.eventstream"
    assert "x-api-key" not in sent.headers
    item = stack.only_interception()
    assert (item["provider"], item["provider_name"], item["api"]) == ("bedrock", "bedrock", "messages")
    assert item["model"] == MAIN
    assert (item["status"], item["upstream_status"], item["streaming"]) == ("completed", 200, True)
    assert item["credential_kind"] == "centralized"
    assert item["credential_hint"] == "AKIA...0001"
    assert [p["prompt"] for p in item["user_prompts"]] == ["name three rivers"]
    [usage] = item["token_usages"]
    assert (usage["provider_response_id"], usage["input_tokens"], usage["output_tokens"]) == ("msg_bdrk_fake_1", 10, 5)


def test_blocking_reply_is_anthropic_json_and_haiku_maps_to_the_small_model(
    bedrock: tuple[Stack, FakeBedrock],
) -> None:
    stack, fake = bedrock
    reply = sdk(stack).messages.create(
        model="claude-haiku-4-5-20251001", max_tokens=50,
        messages=[{"role": "user", "content": [{"type": "text", "text": "one word please"}]}],
    )
    assert reply.content[0].text == "bedrock " * 5  # type: ignore[union-attr]
    assert reply.id == "msg_bdrk_fake_1"
    assert fake.all_signatures_valid
    assert stack.fake.last.path == f"/model/{SMALL}/invoke"
    assert stack.fake.last.headers["accept"] == "application/json"
    item = stack.only_interception()
    assert (item["model"], item["streaming"], item["status"]) == (SMALL, False, "completed")
    [usage] = item["token_usages"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (10, 5)
    assert [p["prompt"] for p in item["user_prompts"]] == ["one word please"]


def test_claude_code_query_and_betas_are_rewritten_for_bedrock(bedrock: tuple[Stack, FakeBedrock]) -> None:
    stack, fake = bedrock
    body = {
        "model": "claude-sonnet-4-5-20250929", "max_tokens": 2048, "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"user_id": "user_abc_account__session_0f0f"}, "service_tier": "auto",
        "temperature": 0, "context_management": {"edits": []},
    }
    response = httpx.post(
        stack.url + "/anthropic/v1/messages?beta=true",
        headers={"x-api-key": stack.key, "anthropic-version": "2023-06-01",
                 "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27"},
        content=orjson.dumps(body),
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert fake.all_signatures_valid
    sent = stack.fake.last
    assert sent.query == ""
    assert list(sent.json()) == ["anthropic_version", "anthropic_beta", "max_tokens", "messages", "temperature",
                                 "context_management"]
    assert sent.json()["anthropic_beta"] == ["interleaved-thinking-2025-05-14", "context-management-2025-06-27"]
    assert sent.json()["temperature"] == 0
    assert "anthropic-beta" not in sent.headers


# -- tools and thinking ----------------------------------------------------------------------

TOOL_THINKING_EVENTS = [
    {"type": "message_start", "message": {
        "id": "msg_bdrk_tools_7", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 812, "cache_creation_input_tokens": 64, "cache_read_input_tokens": 2048,
                  "output_tokens": 3}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "The user wants "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "the forecast."}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "c2lnLWJkcms="}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_bdrk_01Weather", "name": "get_forecast", "input": {}}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Lis"}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "bon\", \"days\": 3}"}},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 97}},
    {"type": "message_stop", "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": 812, "outputTokenCount": 97, "invocationLatency": 1200, "firstByteLatency": 300}},
]


def test_streamed_tool_call_and_thinking_are_recorded(bedrock: tuple[Stack, FakeBedrock]) -> None:
    stack, fake = bedrock
    # 7-byte writes: frames split everywhere, prelude and CRC included.
    fake.script(stream_reply(TOOL_THINKING_EVENTS, write_size=7))
    with sdk(stack).messages.stream(
        model="claude-sonnet-4-5", max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048},
        tools=[{"name": "get_forecast", "description": "weather", "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": "weather in Lisbon?"}],
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "tool_use"]
    assert final.content[1].input == {"city": "Lisbon", "days": 3}  # type: ignore[union-attr]
    assert final.content[0].signature == "c2lnLWJkcms="  # type: ignore[union-attr]
    assert fake.all_signatures_valid
    assert stack.fake.last.json()["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    item = stack.only_interception()
    assert item["status"] == "completed"
    [usage] = item["token_usages"]
    assert usage["provider_response_id"] == "msg_bdrk_tools_7"
    assert (usage["input_tokens"], usage["cache_write_input_tokens"], usage["cache_read_input_tokens"],
            usage["output_tokens"]) == (812, 64, 2048, 97)
    [tool] = item["tool_usages"]
    assert (tool["tool"], tool["tool_call_id"], orjson.loads(tool["input"])) == (
        "get_forecast", "toolu_bdrk_01Weather", {"city": "Lisbon", "days": 3})
    assert [(t["content"], t["source"]) for t in item["model_thoughts"]] == [("The user wants the forecast.", "thinking")]


def test_blocking_tool_call_is_recorded(bedrock: tuple[Stack, FakeBedrock]) -> None:
    stack, fake = bedrock
    fake.script(json_reply({
        "id": "msg_bdrk_block_3", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "tool_use", "id": "toolu_bdrk_02", "name": "list_files", "input": {"dir": "/srv"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 120, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 30, "output_tokens": 18},
    }))
    reply = sdk(stack).messages.create(
        model="claude-opus-4-1", max_tokens=100, messages=[{"role": "user", "content": "ls /srv"}],
        tools=[{"name": "list_files", "input_schema": {"type": "object"}}],
    )
    assert reply.content[0].input == {"dir": "/srv"}  # type: ignore[union-attr]
    item = stack.only_interception()
    assert item["model"] == MAIN
    [tool] = item["tool_usages"]
    assert (tool["tool"], orjson.loads(tool["input"])) == ("list_files", {"dir": "/srv"})
    [usage] = item["token_usages"]
    assert (usage["input_tokens"], usage["cache_read_input_tokens"], usage["output_tokens"]) == (120, 30, 18)
    assert fake.all_signatures_valid


# -- errors -------------------------------------------------------------------------------------


def test_exception_frame_mid_stream_becomes_an_anthropic_error_event(bedrock: tuple[Stack, FakeBedrock]) -> None:
    stack, fake = bedrock
    events = [e for e in TOOL_THINKING_EVENTS[:4]]
    fake.script(stream_reply(events, exception=("throttlingException", "Too many tokens, please wait.")))
    response = httpx.post(
        stack.url + "/anthropic/v1/messages",
        headers={"x-api-key": stack.key},
        json={"model": "claude-sonnet-4-5", "max_tokens": 10, "stream": True,
              "messages": [{"role": "user", "content": "go"}]},
    )
    assert response.status_code == 200
    tail = response.content.split(b"\n\n")[-2]
    assert tail == (b'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error",'
                    b'"message":"throttlingException: Too many tokens, please wait."}}')
    item = stack.only_interception()
    assert item["status"] == "failed"
    assert item["error"] == "rate_limit_error: throttlingException: Too many tokens, please wait."
    [usage] = item["token_usages"]  # what was seen before the failure is kept
    assert (usage["input_tokens"], usage["output_tokens"]) == (812, 3)
    assert fake.all_signatures_valid


def test_sdk_raises_on_a_mid_stream_exception_frame(bedrock: tuple[Stack, FakeBedrock]) -> None:
    stack, fake = bedrock
    fake.script(stream_reply(TOOL_THINKING_EVENTS[:1], exception=("modelStreamErrorException", "model crashed")))
    with pytest.raises(anthropic.APIStatusError) as caught:  # noqa: PT012 - the stream raises while iterating
        with sdk(stack).messages.stream(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "go"}]
        ) as stream:
            stream.get_final_message()
    assert caught.value.body == {"type": "error", "error": {
        "type": "api_error", "message": "modelStreamErrorException: model crashed"}}
    assert stack.only_interception()["status"] == "failed"


def test_http_400_before_the_stream_reaches_the_client_in_anthropic_shape(bedrock: tuple[Stack, FakeBedrock]) -> None:
    stack, fake = bedrock
    fake.script(error_reply(400, "ValidationException", "messages.0.content: Field required"))
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(stack).messages.create(model="claude-sonnet-4-5", max_tokens=10,
                                   messages=[{"role": "user", "content": "x"}], stream=True)
    assert caught.value.status_code == 400
    assert caught.value.body == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "ValidationException: messages.0.content: Field required"}}
    assert caught.value.response.headers["x-amzn-requestid"] == "4d1c0f7e-0000-4000-8000-00000000e000"
    item = stack.only_interception()
    assert (item["status"], item["upstream_status"]) == ("failed", 400)
    assert item["error"] == "ValidationException: messages.0.content: Field required"
    assert item["token_usages"] == []
    assert fake.all_signatures_valid


def test_throttling_429_maps_to_rate_limit_error(bedrock: tuple[Stack, FakeBedrock]) -> None:
    stack, fake = bedrock
    fake.script(error_reply(429, "ThrottlingException", "Too many requests, please wait before trying again."))
    with pytest.raises(anthropic.RateLimitError) as caught:
        sdk(stack).messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert stack.only_interception()["upstream_status"] == 429


def test_a_wrong_secret_is_refused_by_the_signature_check(tmp_path: Path) -> None:
    stack, fake = start(tmp_path, secret="not-the-right-secret-at-all")
    try:
        with pytest.raises(anthropic.PermissionDeniedError) as caught:
            sdk(stack).messages.create(model="claude-sonnet-4-5", max_tokens=10,
                                       messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == 403
        assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
        assert [c.valid for c in fake.checks] == [False]
        assert fake.checks[0].reason == "signature mismatch"
    finally:
        stack.stop()


# -- passthrough routes ---------------------------------------------------------------------------


def test_count_tokens_uses_bedrock_count_tokens(bedrock: tuple[Stack, FakeBedrock]) -> None:
    stack, fake = bedrock
    result = sdk(stack).messages.count_tokens(
        model="claude-3-5-haiku-latest", messages=[{"role": "user", "content": "count me"}], system="be brief",
    )
    assert result.input_tokens == 42
    sent = stack.fake.last
    assert sent.path == f"/model/{SMALL}/count-tokens"
    inner = orjson.loads(base64.b64decode(sent.json()["input"]["invokeModel"]["body"]))
    assert inner == {"anthropic_version": "bedrock-2023-05-31",
                     "messages": [{"role": "user", "content": "count me"}], "system": "be brief", "max_tokens": 1}
    assert fake.all_signatures_valid
    assert stack.interceptions() == []


def test_models_lists_the_configured_bedrock_models(bedrock: tuple[Stack, FakeBedrock]) -> None:
    stack, fake = bedrock
    page = sdk(stack).models.list()
    assert [m.id for m in page.data] == [MAIN, SMALL]
    assert sdk(stack).models.retrieve(SMALL).id == SMALL
    with pytest.raises(anthropic.NotFoundError):
        sdk(stack).models.retrieve("claude-2.1")
    assert fake.checks == []  # answered locally, nothing sent to Bedrock


# -- conformance with the shared recording ------------------------------------------------------------


def _txtar(path: Path) -> dict[str, str]:
    sections: dict[str, str] = {}
    name = None
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("-- ") and line.rstrip().endswith(" --"):
            name = line.strip()[3:-3]
            sections[name] = ""
        elif name is not None:
            sections[name] += line
    return sections


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "blocking"])
def test_conformance_simple_bedrock_recording(bedrock: tuple[Stack, FakeBedrock], streaming: bool) -> None:
    path = SHARED / "fixtures" / "anthropic" / "simple_bedrock.txtar"
    if not path.exists():
        pytest.skip(f"shared fixtures not present at {path}")
    stack, fake = bedrock
    sections = _txtar(path)
    request = orjson.loads(sections["request"])
    request["stream"] = streaming
    if streaming:
        fake.script(stream_reply(sse_events([sections["streaming"].encode()])))
    else:
        fake.script(json_reply(orjson.loads(sections["non-streaming"])))
    response = httpx.post(stack.url + "/anthropic/v1/messages", headers={"x-api-key": stack.key},
                          content=orjson.dumps(request))
    assert response.status_code == 200
    sent = stack.fake.last.json()
    for field in ("model", "stream", "metadata", "service_tier", "container", "inference_geo",
                  "output_config", "context_management"):
        assert field not in sent
    assert sent["anthropic_version"] == "bedrock-2023-05-31"
    effort_ratio = {"low": 0.2, "medium": 0.5, "high": 0.8, "max": 0.95}[request["output_config"]["effort"]]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": int(request["max_tokens"] * effort_ratio)}
    assert sent["messages"] == request["messages"]
    if streaming:
        assert sse_events([response.content]) == sse_events([sections["streaming"].encode()])
    else:
        assert response.json() == orjson.loads(sections["non-streaming"])
    expected = sse_events([sections["streaming"].encode()])
    item = stack.only_interception()
    assert item["status"] == "completed"
    [usage] = item["token_usages"]
    assert usage["provider_response_id"] == expected[0]["message"]["id"]
    assert usage["output_tokens"] == expected[-2]["usage"]["output_tokens"]
    assert fake.all_signatures_valid


# -- BYOK with a Bedrock API key ----------------------------------------------------------------------


def test_byok_sends_the_users_bedrock_api_key_instead_of_signing(tmp_path: Path) -> None:
    stack, fake = start(tmp_path)
    fake.api_keys = frozenset({"ABSKbedrock-user-key-000111"})
    try:
        client = anthropic.Anthropic(
            base_url=stack.url + "/anthropic", api_key="ABSKbedrock-user-key-000111", max_retries=0,
            default_headers={"X-AIBridge-Token": stack.key},
        )
        reply = client.messages.create(model="claude-sonnet-4-5", max_tokens=10,
                                       messages=[{"role": "user", "content": "hi"}])
        assert reply.id == "msg_bdrk_fake_1"
        assert stack.fake.last.headers["authorization"] == "Bearer ABSKbedrock-user-key-000111"
        assert "x-amz-date" not in stack.fake.last.headers
        assert [c.reason for c in fake.checks] == ["Bedrock API key"]
        item = stack.only_interception()
        assert (item["credential_kind"], item["credential_hint"]) == ("byok", "ABSK...0111")
    finally:
        stack.stop()


# -- startup -----------------------------------------------------------------------------------------


def _config(**overrides: Any) -> Any:
    from aibridge.config import load_config

    return load_config({"db": ":memory:", **overrides}, env={})


def test_region_gives_the_public_endpoint_and_base_url_wins() -> None:
    from aibridge.shell.bedrock import BedrockTarget

    keys = {"bedrock_access_key": ACCESS_KEY, "bedrock_access_key_secret": SECRET_KEY}
    target = BedrockTarget.from_config(_config(bedrock_region="eu-central-1", **keys))
    assert (target.base_url, target.region) == ("https://bedrock-runtime.eu-central-1.amazonaws.com", "eu-central-1")
    target = BedrockTarget.from_config(_config(bedrock_base_url="https://vpce-0a1b.bedrock-runtime.ap-south-1.vpce.amazonaws.com", **keys))
    assert target.region == "ap-south-1"
    target = BedrockTarget.from_config(_config(bedrock_region="us-east-1", bedrock_base_url="http://proxy.internal:8080", **keys))
    assert (target.base_url, target.region) == ("http://proxy.internal:8080", "us-east-1")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"bedrock_base_url": "http://proxy.internal:8080"}, "invalid bedrock_region: required with a bedrock_base_url"),
        ({"bedrock_region": "Virginia"}, "invalid bedrock_region: 'Virginia' is not an AWS region name"),
        ({"bedrock_region": "us-east-1", "bedrock_model": ""}, "invalid bedrock_model"),
    ],
)
def test_invalid_bedrock_configuration_fails_at_startup(overrides: dict[str, Any], message: str) -> None:
    from aibridge.config import ConfigError
    from aibridge.shell.bedrock import BedrockTarget

    keys = {"bedrock_access_key": ACCESS_KEY, "bedrock_access_key_secret": SECRET_KEY}
    with pytest.raises(ConfigError, match=message):
        BedrockTarget.from_config(_config(**keys, **overrides))


def _no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_no_credentials_anywhere_is_a_clear_startup_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from aibridge.cli import main

    _no_aws_environment(monkeypatch, tmp_path)
    result = CliRunner().invoke(main, ["serve", "--db", str(tmp_path / "a.db"), "--bedrock-region", "us-east-1"])
    assert result.exit_code == 2
    assert "no AWS credentials were found" in result.output


def test_default_chain_credentials_are_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from aibridge.shell.bedrock import BedrockTarget

    _no_aws_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENVIRONMENT9")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    target = BedrockTarget.from_config(_config(bedrock_region="us-east-1"))
    assert target.credentials.access_key == "AKIAFROMENVIRONMENT9"


def test_client_disconnect_mid_stream_keeps_usage_so_far(bedrock: tuple[Stack, FakeBedrock]) -> None:
    stack, fake = bedrock
    deltas = [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "word "}}] * 30
    events = [TOOL_THINKING_EVENTS[0], {"type": "content_block_start", "index": 0,
                                        "content_block": {"type": "text", "text": ""}}, *deltas]
    fake.script(attrs.evolve(stream_reply(events), chunk_delay=0.03))
    with httpx.stream("POST", stack.url + "/anthropic/v1/messages", headers={"x-api-key": stack.key},
                      json={"model": "claude-sonnet-4-5", "max_tokens": 10, "stream": True,
                            "messages": [{"role": "user", "content": "talk"}]}) as response:
        assert next(response.iter_raw()).startswith(b"event: message_start\ndata: ")
    item = stack.only_interception()
    assert (item["status"], item["upstream_status"], item["model"]) == ("client_disconnected", 200, MAIN)
    [usage] = item["token_usages"]
    assert (usage["provider_response_id"], usage["input_tokens"]) == ("msg_bdrk_tools_7", 812)
    assert stack.app.in_flight == 0
