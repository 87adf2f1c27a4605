"""Stream keep-alive: SSE comments during upstream silence, only between whole events."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import orjson

from aibridge.core.sse import KEEPALIVE_COMMENT
from aibridge.fake.upstream import Reply, anthropic_stream
from tests.e2e.wire import SSE
from tests.shell.resilience import MESSAGES, anthropic_body

PING = b"event: ping\ndata: {\"type\": \"ping\"}\n\n"


def stream_bytes(stack: Any, body: dict[str, Any]) -> tuple[httpx.Response, bytes]:
    with httpx.stream(
        "POST", stack.url + MESSAGES, content=orjson.dumps(body),
        headers={"x-api-key": stack.key, "content-type": "application/json"}, timeout=10,
    ) as r:
        return r, b"".join(r.iter_raw())


def test_silence_gets_keepalive_comments_between_events_and_pings_pass(make_stack: Any) -> None:
    stack = make_stack(stream_keepalive=0.05)
    frames = anthropic_stream("msg_keepalive_1", "claude-ka", 3, "tick ")
    # message_start, ping, content_block_start, then slow deltas
    chunks = (frames[0], PING, *frames[1:])
    stack.script(Reply(headers=SSE, chunks=chunks, chunk_delay=0.15))
    response, received = stream_bytes(stack, anthropic_body("claude-ka", stream=True))
    assert response.status_code == 200
    upstream = b"".join(chunks)
    # the client got the upstream's bytes exactly, plus keep-alive comments
    assert received.replace(KEEPALIVE_COMMENT, b"") == upstream
    assert KEEPALIVE_COMMENT in received
    assert PING in received
    # every comment sits between two whole events (after a blank line)
    pos = received.find(KEEPALIVE_COMMENT)
    while pos != -1:
        assert received[:pos].endswith(b"\n\n")
        pos = received.find(KEEPALIVE_COMMENT, pos + 1)
    [usage] = stack.only_interception()["token_usages"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (10, 3)


def test_no_comment_splits_an_event_that_arrives_in_pieces(make_stack: Any) -> None:
    stack = make_stack(stream_keepalive=0.05)
    frames = anthropic_stream("msg_keepalive_2", "claude-ka", 2, "split ")
    delta = frames[2]
    half = len(delta) // 2
    # the first delta event is cut in two with silence in the middle
    chunks = (frames[0] + frames[1], delta[:half], delta[half:], *frames[3:])
    stack.script(Reply(headers=SSE, chunks=chunks, chunk_delay=0.15))
    _, received = stream_bytes(stack, anthropic_body("claude-ka", stream=True))
    assert received.replace(KEEPALIVE_COMMENT, b"") == b"".join(chunks)
    assert delta in received  # not interrupted
    assert received.count(KEEPALIVE_COMMENT) >= 1  # the other silences got one


def test_the_sdk_reads_a_stream_with_keepalives(make_stack: Any) -> None:
    stack = make_stack(stream_keepalive=0.05)
    frames = anthropic_stream("msg_keepalive_3", "claude-ka", 2, "sdk ")
    stack.script(Reply(headers=SSE, chunks=tuple(frames), chunk_delay=0.15))
    client = anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key=stack.key, max_retries=0)
    with client.messages.stream(
        model="claude-ka", max_tokens=16, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        assert "".join(stream.text_stream) == "sdk sdk "


def test_keepalive_zero_disables_it(make_stack: Any) -> None:
    stack = make_stack(stream_keepalive=0)
    frames = anthropic_stream("msg_keepalive_4", "claude-ka", 2, "off ")
    stack.script(Reply(headers=SSE, chunks=tuple(frames), chunk_delay=0.1))
    _, received = stream_bytes(stack, anthropic_body("claude-ka", stream=True))
    assert received == b"".join(frames)
