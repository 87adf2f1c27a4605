"""The real SDKs through a real bridge to the fake upstream: exact bytes and records."""

from __future__ import annotations

import anthropic
import openai

from aibridge.fake.upstream import Reply
from tests.harness import Stack


def test_anthropic_sdk_streaming_is_recorded(stack: Stack) -> None:
    client = anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key=stack.key, max_retries=0)
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hello there"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == "hello " * 20
    item = stack.only_interception()
    assert item["status"] == "completed"
    assert item["provider"] == "anthropic"
    assert item["api"] == "messages"
    assert item["streaming"] is True
    assert item["client"] == "Anthropic SDK"
    assert item["user"]["name"] == "alice"
    assert [p["prompt"] for p in item["user_prompts"]] == ["hello there"]
    [usage] = item["token_usages"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["provider_response_id"]) == (10, 20, "msg_fake_1")
    # the central key went upstream, the aibridge key did not
    assert stack.fake.last.headers["x-api-key"] == "sk-ant-central-0123456789"
    assert "authorization" not in stack.fake.last.headers


def test_openai_sdk_blocking_chat_is_recorded(stack: Stack) -> None:
    client = openai.OpenAI(base_url=stack.url + "/openai/v1", api_key=stack.key, max_retries=0)
    reply = client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "say ok"}])
    assert reply.choices[0].message.content == "hello " * 20
    item = stack.only_interception()
    assert item["status"] == "completed"
    assert item["streaming"] is False
    [usage] = item["token_usages"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (10, 20)
    assert stack.fake.last.headers["authorization"] == "Bearer sk-openai-central-0123456789"
    assert stack.fake.last.path == "/v1/chat/completions"


def test_openai_sdk_streaming_chat_drops_usage_chunk_it_did_not_ask_for(stack: Stack) -> None:
    client = openai.OpenAI(base_url=stack.url + "/openai/v1", api_key=stack.key, max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "say ok"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    assert stack.fake.last.json()["stream_options"] == {"include_usage": True}
    [usage] = stack.only_interception()["token_usages"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (10, 20)


def test_openai_sdk_responses_stream_helper_reads_the_synthetic_stream(stack: Stack) -> None:
    """The fake's Responses stream has every event the SDK's stream helper assembles from."""
    client = openai.OpenAI(base_url=stack.url + "/openai/v1", api_key=stack.key, max_retries=0)
    with client.responses.stream(model="gpt-4.1", input="say ok") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "hello " * 20
    item = stack.only_interception()
    assert (item["api"], item["status"], item["streaming"]) == ("responses", "completed", True)
    assert [p["prompt"] for p in item["user_prompts"]] == ["say ok"]
    [usage] = item["token_usages"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (10, 20)


def test_the_prompt_carries_the_id_of_the_response_that_answered_it(stack: Stack) -> None:
    claude = anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key=stack.key, max_retries=0)
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                messages=[{"role": "user", "content": "first"}]) as stream:
        stream.until_done()
    gpt = openai.OpenAI(base_url=stack.url + "/openai/v1", api_key=stack.key, max_retries=0)
    gpt.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "second"}])
    gpt.responses.create(model="gpt-4.1", input="third")
    stack.script(Reply(status=500, headers=(("content-type", "application/json"),),
                       body=b'{"error": {"message": "boom", "type": "server_error"}}'))
    try:
        gpt.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "fourth"}])
    except openai.InternalServerError:
        pass
    stack.settle()
    recorded = {p["prompt"]: (p["provider_response_id"], [u["provider_response_id"] for u in item["token_usages"]])
                for item in stack.interceptions() for p in item["user_prompts"]}
    assert recorded == {
        "first": ("msg_fake_1", ["msg_fake_1"]),
        "second": ("chatcmpl-fake-2", ["chatcmpl-fake-2"]),
        "third": ("resp_fake_3", ["resp_fake_3"]),
        "fourth": ("", []),  # no response answered it; the prompt is still recorded
    }
