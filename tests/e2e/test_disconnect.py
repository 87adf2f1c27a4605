"""A client that hangs up: the upstream request is cancelled (stop paying) and nothing outlives it.

The fake upstream counts replies whose connection was closed before they
finished (``closed_early``); ``wait_streams_closed`` waits for that event
rather than sleeping.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx
import trio

from aibridge.fake.upstream import Reply
from tests.e2e.wire import SSE, event
from tests.harness import Stack

REQUEST = {"model": "claude-sonnet-4-5", "max_tokens": 900, "stream": True,
           "messages": [{"role": "user", "content": "write a long story"}]}
CHAT_REQUEST = {"model": "gpt-5", "stream": True, "messages": [{"role": "user", "content": "a long story please"}]}


def long_anthropic_stream() -> tuple[bytes, ...]:
    start = event("message_start", {"type": "message_start", "message": {
        "id": "msg_gone_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [], "usage": {"input_tokens": 321, "cache_read_input_tokens": 4000, "output_tokens": 1}}})
    block = event("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}})
    delta = event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": "Once upon a time. "}})
    return (start + block, *([delta] * 200))


def count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

    return walk(trio.lowlevel.current_root_task())


async def _count_tasks_async() -> int:
    await trio.testing.wait_all_tasks_blocked()
    return count_tasks()


def tasks(stack: Stack) -> int:
    import trio.testing  # noqa: F401 - wait_all_tasks_blocked

    return int(stack.call(_count_tasks_async))


def wait_upstream_closed(stack: Stack) -> None:
    stack.call(stack.fake.wait_streams_closed)
    stack.settle()


def test_disconnect_mid_stream_closes_upstream_and_keeps_usage_so_far(stack: Stack) -> None:
    baseline = tasks(stack)
    stack.script(Reply(headers=SSE, chunks=long_anthropic_stream(), chunk_delay=0.05))
    with httpx.stream("POST", stack.url + "/anthropic/v1/messages", json=REQUEST,
                      headers={"x-api-key": stack.key}) as reply:
        assert reply.status_code == 200
        first = next(reply.iter_raw())
        assert first.startswith(b"event: message_start")
    # the client has gone; the bridge must hang up on upstream long before its 200 chunks end
    wait_upstream_closed(stack)
    assert stack.fake.closed_early == 1
    assert stack.fake.open_streams == 0
    assert stack.app.in_flight == 0
    item = stack.only_interception()
    assert item["status"] == "client_disconnected"
    assert item["upstream_status"] == 200
    assert item["ended_at"] is not None
    [usage] = item["token_usages"]
    assert (usage["provider_response_id"], usage["input_tokens"], usage["cache_read_input_tokens"],
            usage["output_tokens"]) == ("msg_gone_1", 321, 4000, 1)
    assert [p["prompt"] for p in item["user_prompts"]] == ["write a long story"]
    assert tasks(stack) == baseline


def test_disconnect_before_the_first_byte_cancels_the_upstream_request(stack: Stack) -> None:
    baseline = tasks(stack)
    stack.script(Reply(headers=SSE, chunks=long_anthropic_stream(), latency=30.0))
    # a raw socket: send the request, wait until upstream has it, then hang up without reading
    host, port = stack.url.removeprefix("http://").split(":")
    body = httpx.Request("POST", stack.url + "/anthropic/v1/messages", json=REQUEST,
                         headers={"x-api-key": stack.key})
    head = f"POST /anthropic/v1/messages HTTP/1.1\r\nhost: {host}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in body.headers.items() if k.lower() != "host") + "\r\n"
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + body.read())
        stack.call(stack.fake.wait_requests, 1)
    wait_upstream_closed(stack)
    assert stack.fake.closed_early == 1
    assert stack.app.in_flight == 0
    item = stack.only_interception()
    assert item["status"] == "client_disconnected"
    assert item["token_usages"] == []
    assert item["upstream_status"] is None
    assert tasks(stack) == baseline


def test_openai_disconnect_mid_stream(stack: Stack) -> None:
    base = {"id": "chatcmpl-gone", "object": "chat.completion.chunk", "model": "gpt-5"}
    first = event(None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "It"},
                                              "finish_reason": None}]})
    more = event(None, {**base, "choices": [{"index": 0, "delta": {"content": " was"}, "finish_reason": None}]})
    stack.script(Reply(headers=SSE, chunks=(first, *([more] * 100)), chunk_delay=0.05))
    client_saw: list[Any] = []
    with httpx.stream("POST", stack.url + "/openai/v1/chat/completions", json=CHAT_REQUEST,
                      headers={"authorization": f"Bearer {stack.key}"}) as reply:
        client_saw.append(next(reply.iter_raw()))
    wait_upstream_closed(stack)
    assert stack.fake.closed_early == 1
    item = stack.only_interception()
    assert item["status"] == "client_disconnected"
    assert item["token_usages"] == []
    assert stack.app.in_flight == 0


def test_a_completed_stream_is_not_a_disconnect(stack: Stack) -> None:
    stop = event("message_stop", {"type": "message_stop"})
    stack.script(Reply(headers=SSE, chunks=(*long_anthropic_stream()[:3], stop)))
    with httpx.stream("POST", stack.url + "/anthropic/v1/messages", json=REQUEST,
                      headers={"x-api-key": stack.key}) as reply:
        reply.read()
    wait_upstream_closed(stack)
    assert stack.fake.closed_early == 0
    assert stack.only_interception()["status"] == "completed"


def test_a_hang_up_while_an_event_is_half_received_is_a_disconnect_not_malformed_data(stack: Stack) -> None:
    """The upstream's writes split events; the client leaves while the bridge holds half of one."""
    start, *deltas = long_anthropic_stream()
    # every write ends in the middle of an event: [whole event + first half of the next]
    stream = start + b"".join(deltas)
    cut = len(start) + len(deltas[0]) // 2
    writes = (stream[:cut], *(stream[i:i + len(deltas[0])] for i in range(cut, len(stream), len(deltas[0]))))
    stack.script(Reply(headers=SSE, chunks=writes, chunk_delay=0.05))
    with httpx.stream("POST", stack.url + "/anthropic/v1/messages", json=REQUEST,
                      headers={"x-api-key": stack.key}) as reply:
        received = next(reply.iter_raw())
        assert received == writes[0]  # relayed as it came: half an event included
    wait_upstream_closed(stack)
    item = stack.only_interception()
    assert (item["status"], item["error"]) == ("client_disconnected", None)
    [usage] = item["token_usages"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (321, 1)


def test_a_hang_up_after_the_last_event_is_a_completed_stream(stack: Stack) -> None:
    """The OpenAI SDK stops reading at [DONE]; the upstream's end of stream comes later."""
    base = {"id": "chatcmpl-done", "object": "chat.completion.chunk", "model": "gpt-5"}
    text = event(None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Done."},
                                             "finish_reason": "stop"}]})
    usage = event(None, {**base, "choices": [], "usage": {"prompt_tokens": 17, "completion_tokens": 2,
                                                          "total_tokens": 19}})
    done = b"data: [DONE]\n\n"
    # the upstream holds its connection open for a while after [DONE]
    stack.script(Reply(headers=SSE, chunks=(text + usage + done, b"", b"", b"", b"", b""), chunk_delay=0.2))
    with httpx.stream("POST", stack.url + "/openai/v1/chat/completions",
                      json={**CHAT_REQUEST, "stream_options": {"include_usage": True}},
                      headers={"authorization": f"Bearer {stack.key}"}) as reply:
        assert next(reply.iter_raw()).endswith(done)
    wait_upstream_closed(stack)
    item = stack.only_interception()
    assert (item["status"], item["error"]) == ("completed", None)
    [recorded] = item["token_usages"]
    assert (recorded["input_tokens"], recorded["output_tokens"]) == (17, 2)
