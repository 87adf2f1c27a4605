"""Concurrency and rate limits through a real bridge: 429, Retry-After, provider shapes."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import anthropic
import httpx
import orjson
import pytest
import trio

from aibridge.fake.upstream import FakeUpstream, Reply, anthropic_stream, chat_completion
from tests.e2e.wire import post
from tests.harness import Stack
from tests.shell.resilience import (
    CHAT,
    MESSAGES,
    anthropic_body,
    chat_body,
    manual_admission,
    metric,
    wait_for,
)


def hold_upstream(stack: Stack) -> trio.Event:
    """Make the fake upstream wait for the returned event before answering chat requests."""
    gate: trio.Event = stack.call(_make_event)

    async def held(fake: FakeUpstream, scope: Any, body: bytes, send: Any) -> None:
        await gate.wait()
        model = orjson.loads(body)["model"]
        reply = Reply(headers=(("content-type", "application/json"),),
                      body=orjson.dumps(chat_completion("chatcmpl-held", model, 2, "ok ")))
        await fake._play(reply, send)

    stack.fake.routes["/v1/chat/completions"] = held
    return gate


async def _make_event() -> trio.Event:
    return trio.Event()


def test_concurrency_limits_global_and_per_user(make_stack: Any) -> None:
    stack = make_stack(max_concurrency=3, max_concurrency_per_user=2)
    bob, cat = stack.create_key("bob"), stack.create_key("cat")
    gate = hold_upstream(stack)
    before = metric("aibridge_limit_rejects_total", limit="max_concurrency_per_user")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        held = [pool.submit(post, stack, CHAT, chat_body("gpt-held")) for _ in range(2)]
        wait_for(lambda: len(stack.fake.requests) == 2, what="two held requests upstream")

        # alice has two in flight: her third is refused at once, in OpenAI's shape
        refused = post(stack, CHAT, chat_body("gpt-held"))
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        error = orjson.loads(refused.content)["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        assert "per user" in error["message"] or "for this user" in error["message"]
        assert metric("aibridge_limit_rejects_total", limit="max_concurrency_per_user") == before + 1

        # bob takes the third global slot; cat finds the gateway full
        held.append(pool.submit(post, stack, CHAT, chat_body("gpt-held"), key=bob))
        wait_for(lambda: len(stack.fake.requests) == 3, what="bob's request upstream")
        full = post(stack, CHAT, chat_body("gpt-held"), key=cat)
        assert full.status_code == 429
        assert "on this gateway" in orjson.loads(full.content)["error"]["message"]

        stack.call(_set, gate)
        assert [f.result().status_code for f in held] == [200, 200, 200]
    stack.settle()
    assert stack.app.admission.limiter.in_flight == 0
    assert stack.app.admission.limiter.in_flight_by_user == {}
    # refused requests never reached upstream and are not interceptions
    assert len(stack.fake.requests) == 3
    assert len(stack.interceptions()) == 3
    # the slots are free again
    assert post(stack, CHAT, chat_body("gpt-held"), key=cat).status_code == 200


async def _set(event: trio.Event) -> None:
    event.set()


def test_per_user_rate_limit_in_anthropic_shape_with_retry_after(make_stack: Any) -> None:
    stack = make_stack(rate_limit_per_user=2, rate_limit=100)
    clock = manual_admission(stack)
    bob = stack.create_key("bob")
    assert [post(stack, MESSAGES, anthropic_body("claude-rl")).status_code for _ in range(2)] == [200, 200]
    refused = post(stack, MESSAGES, anthropic_body("claude-rl"))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "30"
    assert orjson.loads(refused.content) == {
        "type": "error",
        "error": {"type": "rate_limit_error",
                  "message": "rate limit of 2 requests per minute per user exceeded"},
    }
    # the SDK maps it to its RateLimitError
    client = anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key=stack.key, max_retries=0)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="claude-rl", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    # another user has their own bucket; alice gets a token back after 30 s
    assert post(stack, MESSAGES, anthropic_body("claude-rl"), key=bob).status_code == 200
    clock.now += 30
    assert post(stack, MESSAGES, anthropic_body("claude-rl")).status_code == 200
    assert len(stack.fake.requests) == 4


def test_global_rate_limit(make_stack: Any) -> None:
    stack = make_stack(rate_limit=3)
    manual_admission(stack)
    bob = stack.create_key("bob")
    codes = [post(stack, CHAT, chat_body("gpt-rl"), key=k).status_code for k in (stack.key, bob, stack.key, bob)]
    assert codes == [200, 200, 200, 429]
    refused = post(stack, CHAT, chat_body("gpt-rl"))
    assert refused.headers["retry-after"] == "20"
    assert "gateway rate limit of 3 requests per minute" in orjson.loads(refused.content)["error"]["message"]


def test_a_client_that_hangs_up_mid_stream_gives_its_slot_back(make_stack: Any) -> None:
    stack = make_stack(max_concurrency_per_user=1)
    frames = anthropic_stream("msg_slot", "claude-slot", 50, "s ")
    stack.script(Reply(headers=(("content-type", "text/event-stream"),), chunks=tuple(frames), chunk_delay=0.05))
    with httpx.stream("POST", stack.url + MESSAGES, content=orjson.dumps(anthropic_body("claude-slot", stream=True)),
                      headers={"x-api-key": stack.key}, timeout=10) as reply:
        pieces = reply.iter_raw()
        assert next(pieces).startswith(b"event: message_start")
        # while the stream runs the user's one slot is taken
        assert post(stack, MESSAGES, anthropic_body("claude-slot")).status_code == 429
    # leaving the block hangs up mid-stream
    stack.settle()
    assert stack.app.admission.limiter.in_flight == 0
    assert post(stack, MESSAGES, anthropic_body("claude-slot")).status_code == 200
    assert [i["status"] for i in stack.interceptions()] == ["client_disconnected", "completed"]
