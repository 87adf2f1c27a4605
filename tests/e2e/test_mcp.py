"""Injected MCP tools end to end: real MCP server subprocess, real bridge, real SDK clients.

The fake upstream is scripted to answer first with a call to an injected tool,
then with a final answer. The bridge must run the tool on the real MCP server
(``tests/mcp_server.py``), send the call and its result upstream, and give the
client one coherent response in which no injected call, delta or result (and
no ``bmcp_`` name at all, checked on the raw bytes received) appears.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from aibridge.config import ConfigError, load_config
from aibridge.core.mcp import SMALL_FAST_MARKER as SMALL_FAST
from aibridge.fake.upstream import Reply
from tests.conftest import SHARED
from tests.fixtures_txtar import read_txtar
from tests.harness import Stack
from tests.mcp_server import BASE_TOOLS, PROJECTS, running_mcp_server

TOKEN = "tok-mcp-e2e-5521"
SSE = (("content-type", "text/event-stream"),)
JSON = (("content-type", "application/json"),)
INJECTED = ["bmcp_tools_add", "bmcp_tools_archive_project", "bmcp_tools_list_projects", "bmcp_tools_slow_count"]
INES = json.dumps(PROJECTS["ines"])
FAILED = "Error executing tool archive_project"


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    with running_mcp_server(TOKEN) as url:
        yield url


@pytest.fixture
def bridge(make_stack: Any, mcp_url: str) -> Stack:
    stack: Stack = make_stack(
        mcp_server_url=mcp_url,
        mcp_server_name="tools",
        mcp_server_headers=f"Authorization: Bearer {TOKEN}",
        mcp_server_deny="^drop_",
    )
    return stack


# -- the raw bytes the SDK received -------------------------------------------------------


class _Tee(httpx2.SyncByteStream):
    def __init__(self, stream: Any, sink: bytearray) -> None:
        self._stream = stream
        self._sink = sink

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            self._sink += chunk
            yield chunk

    def close(self) -> None:
        self._stream.close()


class RecordingTransport(httpx2.HTTPTransport):
    """An httpx transport that keeps every response byte the SDK received."""

    def __init__(self) -> None:
        super().__init__()
        self.received = bytearray()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = super().handle_request(request)
        response.stream = _Tee(response.stream, self.received)
        return response


def clients(stack: Stack) -> tuple[anthropic.Anthropic, openai.OpenAI, RecordingTransport]:
    transport = RecordingTransport()
    http = httpx2.Client(transport=transport)
    return (
        anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key=stack.key, max_retries=0, http_client=http),
        openai.OpenAI(base_url=stack.url + "/openai/v1", api_key=stack.key, max_retries=0, http_client=http),
        transport,
    )


# -- scripted upstream replies (the project's own data) ----------------------------------


def sse(event: str | None, payload: Any) -> bytes:
    return (f"event: {event}\n".encode() if event else b"") + b"data: " + json.dumps(payload).encode() + b"\n\n"


def anthropic_stream(msg_id: str, blocks: list[dict[str, Any]], stop: str, usage: dict[str, int], output: int) -> Reply:
    frames = [sse("message_start", {"type": "message_start", "message": {
        "id": msg_id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}})]
    frames.append(sse("ping", {"type": "ping"}))
    for i, block in enumerate(blocks):
        if block["type"] == "text":
            frames.append(sse("content_block_start", {"type": "content_block_start", "index": i,
                                                      "content_block": {"type": "text", "text": ""}}))
            for word in block["text"].split(" "):
                frames.append(sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                          "delta": {"type": "text_delta", "text": word + " "}}))
        else:
            frames.append(sse("content_block_start", {"type": "content_block_start", "index": i, "content_block": {
                "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}))
            args = json.dumps(block["input"], separators=(",", ":"))
            for part in (args[:5], args[5:]):
                frames.append(sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                          "delta": {"type": "input_json_delta", "partial_json": part}}))
        frames.append(sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    frames.append(sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                        "usage": {"output_tokens": output}}))
    frames.append(sse("message_stop", {"type": "message_stop"}))
    return Reply(headers=SSE, chunks=tuple(frames))


def anthropic_json(msg_id: str, blocks: list[dict[str, Any]], stop: str, usage: dict[str, int], output: int) -> Reply:
    content = [{"type": "text", "text": " ".join(w for w in b["text"].split(" ")) + " "} if b["type"] == "text" else b
               for b in blocks]
    body = {"id": msg_id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": content,
            "stop_reason": stop, "stop_sequence": None, "usage": {**usage, "output_tokens": output}}
    return Reply(headers=JSON, body=json.dumps(body).encode())


def tool_use(call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": args}


def chat_stream(chunk_id: str, text: str | None, calls: list[tuple[str, str, str]], finish: str,
                usage: dict[str, Any]) -> Reply:
    base = {"id": chunk_id, "object": "chat.completion.chunk", "created": 1767000000, "model": "gpt-4.1"}
    frames = []
    if text is not None:
        frames.append(sse(None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                     "finish_reason": None}]}))
        for word in text.split(" "):
            frames.append(sse(None, {**base, "choices": [{"index": 0, "delta": {"content": word + " "},
                                                         "finish_reason": None}]}))
    for i, (call_id, name, args) in enumerate(calls):
        frames.append(sse(None, {**base, "choices": [{"index": 0, "delta": {"content": None, "tool_calls": [
            {"index": i, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]},
            "finish_reason": None}]}))
        for part in (args[:4], args[4:]):
            frames.append(sse(None, {**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": i, "function": {"arguments": part}}]}, "finish_reason": None}]}))
    frames.append(sse(None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
    frames.append(sse(None, {**base, "choices": [], "usage": usage}))
    frames.append(b"data: [DONE]\n\n")
    return Reply(headers=SSE, chunks=tuple(frames))


def chat_json(chunk_id: str, text: str | None, calls: list[tuple[str, str, str]], finish: str,
              usage: dict[str, Any]) -> Reply:
    message: dict[str, Any] = {"role": "assistant", "content": None if text is None else text + " "}
    if calls:
        message["tool_calls"] = [{"id": c, "type": "function", "function": {"name": n, "arguments": a}}
                                 for c, n, a in calls]
    body = {"id": chunk_id, "object": "chat.completion", "created": 1767000000, "model": "gpt-4.1",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}
    return Reply(headers=JSON, body=json.dumps(body).encode())


def chat_usage(prompt: int, cached: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def responses_object(resp_id: str, output: list[dict[str, Any]], usage: tuple[int, int, int]) -> dict[str, Any]:
    total_in, cached, out = usage
    return {"id": resp_id, "object": "response", "created_at": 1767000000, "status": "completed", "model": "gpt-4.1",
            "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": total_in, "input_tokens_details": {"cached_tokens": cached},
                      "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": total_in + out}}


def function_call(item_id: str, call_id: str, name: str, args: str) -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": args,
            "status": "completed"}


def message_item(item_id: str, text: str) -> dict[str, Any]:
    return {"type": "message", "id": item_id, "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def responses_stream(resp_id: str, output: list[dict[str, Any]], usage: tuple[int, int, int]) -> Reply:
    done = responses_object(resp_id, output, usage)
    seq = iter(range(1000))
    frames = [sse("response.created", {"type": "response.created", "sequence_number": next(seq),
                                       "response": {**done, "status": "in_progress", "output": [], "usage": None}})]
    for i, item in enumerate(output):
        if item["type"] == "function_call":
            frames.append(sse("response.output_item.added", {"type": "response.output_item.added", "sequence_number": next(seq),
                                                             "output_index": i, "item": {**item, "arguments": "", "status": "in_progress"}}))
            frames.append(sse("response.function_call_arguments.delta", {
                "type": "response.function_call_arguments.delta", "sequence_number": next(seq), "item_id": item["id"],
                "output_index": i, "delta": item["arguments"]}))
            frames.append(sse("response.function_call_arguments.done", {
                "type": "response.function_call_arguments.done", "sequence_number": next(seq), "item_id": item["id"],
                "output_index": i, "arguments": item["arguments"]}))
        else:
            text = item["content"][0]["text"]
            frames.append(sse("response.output_item.added", {"type": "response.output_item.added", "sequence_number": next(seq),
                                                             "output_index": i, "item": {**item, "status": "in_progress", "content": []}}))
            frames.append(sse("response.content_part.added", {
                "type": "response.content_part.added", "sequence_number": next(seq), "item_id": item["id"],
                "output_index": i, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}))
            for word in text.split(" "):
                frames.append(sse("response.output_text.delta", {
                    "type": "response.output_text.delta", "sequence_number": next(seq), "item_id": item["id"],
                    "output_index": i, "content_index": 0, "delta": word if word == text.split(" ")[-1] else word + " "}))
            frames.append(sse("response.output_text.done", {
                "type": "response.output_text.done", "sequence_number": next(seq), "item_id": item["id"],
                "output_index": i, "content_index": 0, "text": text}))
            frames.append(sse("response.content_part.done", {
                "type": "response.content_part.done", "sequence_number": next(seq), "item_id": item["id"],
                "output_index": i, "content_index": 0, "part": item["content"][0]}))
        frames.append(sse("response.output_item.done", {"type": "response.output_item.done", "sequence_number": next(seq),
                                                        "output_index": i, "item": item}))
    frames.append(sse("response.completed", {"type": "response.completed", "sequence_number": next(seq), "response": done}))
    return Reply(headers=SSE, chunks=tuple(frames))


def responses_json(resp_id: str, output: list[dict[str, Any]], usage: tuple[int, int, int]) -> Reply:
    return Reply(headers=JSON, body=json.dumps(responses_object(resp_id, output, usage)).encode())


# -- assertions shared by the three APIs --------------------------------------------------------


def usages(item: dict[str, Any]) -> list[tuple[str, int, int, int, int]]:
    return [(u["provider_response_id"], u["input_tokens"], u["output_tokens"], u["cache_read_input_tokens"],
             u["cache_write_input_tokens"]) for u in item["token_usages"]]


def tools_of(item: dict[str, Any]) -> list[tuple[str, str, str, bool, str | None, str | None]]:
    return [(t["tool"], t["tool_call_id"], t["input"], t["injected"], t["server_url"], t["invocation_error"])
            for t in item["tool_usages"]]


def check_hidden(transport: RecordingTransport) -> None:
    assert transport.received, "the client received nothing"
    assert b"bmcp_" not in transport.received
    assert b"list_projects" not in transport.received
    assert INES.encode() not in transport.received


ASK = "which projects does ines own?"


# -- Anthropic Messages --------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "blocking"])
def test_anthropic_runs_injected_tool_and_hides_it(bridge: Stack, mcp_url: str, stream: bool) -> None:
    build = anthropic_stream if stream else anthropic_json
    bridge.script(
        build("msg_mcp_1", [{"type": "text", "text": "Let me look that up."},
                            tool_use("toolu_mcp_1", "bmcp_tools_list_projects", {"owner": "ines"})],
              "tool_use", {"input_tokens": 412, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}, 37),
        build("msg_mcp_2", [{"type": "text", "text": "Ines owns orchard and quay."}],
              "end_turn", {"input_tokens": 90, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 410}, 12),
    )
    client, _, transport = clients(bridge)
    tools = [{"name": "read_file", "description": "Read a file", "input_schema": {"type": "object", "properties": {}}}]
    kwargs: dict[str, Any] = dict(model="claude-sonnet-4-5", max_tokens=256, tools=tools,
                                  messages=[{"role": "user", "content": ASK}])
    if stream:
        with client.messages.stream(**kwargs) as s:
            events = list(s)
            message = s.get_final_message()
        starts = [e.index for e in events if e.type == "content_block_start"]
        assert starts == [0, 1]
    else:
        message = client.messages.create(**kwargs)
    assert [b.type for b in message.content] == ["text", "text"]
    assert "".join(b.text for b in message.content) == "Let me look that up. Ines owns orchard and quay. "
    assert message.stop_reason == "end_turn"
    check_hidden(transport)

    first, second = [r.json() for r in bridge.fake.requests]
    assert [t["name"] for t in first["tools"]] == [*INJECTED, "read_file"]
    assert second["messages"][0] == {"role": "user", "content": ASK}
    assert second["messages"][1]["role"] == "assistant"
    assert second["messages"][1]["content"][-1] == tool_use("toolu_mcp_1", "bmcp_tools_list_projects", {"owner": "ines"})
    assert second["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_mcp_1", "content": INES}]}
    assert second["tools"] == first["tools"]

    item = bridge.only_interception()
    assert item["status"] == "completed"
    assert [p["prompt"] for p in item["user_prompts"]] == [ASK]
    assert usages(item) == [("msg_mcp_1", 412, 37, 0, 0), ("msg_mcp_2", 90, 12, 410, 0)]
    assert tools_of(item) == [("list_projects", "toolu_mcp_1", '{"owner":"ines"}', True, mcp_url, None)]


def test_anthropic_tool_failure_is_fed_back_and_recorded(bridge: Stack, mcp_url: str) -> None:
    usage = {"input_tokens": 50, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    bridge.script(
        anthropic_json("msg_fail_1", [tool_use("toolu_fail_1", "bmcp_tools_archive_project", {"project_id": "prj-4471"})],
                       "tool_use", usage, 9),
        anthropic_json("msg_fail_2", [{"type": "text", "text": "The project is locked."}], "end_turn", usage, 6),
    )
    client, _, transport = clients(bridge)
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                     messages=[{"role": "user", "content": "archive lighthouse"}])
    assert [b.type for b in message.content] == ["text"]
    check_hidden(transport)
    second = bridge.fake.requests[1].json()
    assert second["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_fail_1", "content": FAILED, "is_error": True}]}
    item = bridge.only_interception()
    assert tools_of(item) == [("archive_project", "toolu_fail_1", '{"project_id":"prj-4471"}', True, mcp_url, FAILED)]


def test_iteration_limit_returns_last_response_without_injected_calls(make_stack: Any, mcp_url: str) -> None:
    stack: Stack = make_stack(mcp_server_url=mcp_url, mcp_server_name="tools",
                              mcp_server_headers=f"Authorization: Bearer {TOKEN}", mcp_max_iterations=2)
    usage = {"input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    for n in (1, 2):
        stack.script(anthropic_stream(f"msg_lim_{n}", [{"type": "text", "text": f"step {n}"},
                                                      tool_use(f"toolu_lim_{n}", "bmcp_tools_add", {"a": n, "b": 1})],
                                      "tool_use", usage, 5))
    client, _, transport = clients(stack)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                messages=[{"role": "user", "content": "keep adding"}]) as s:
        message = s.get_final_message()
    assert [b.text for b in message.content if b.type == "text"] == ["step 1 ", "step 2 "]
    assert message.stop_reason == "end_turn"
    assert b"bmcp_" not in transport.received
    assert len(stack.fake.requests) == 2
    item = stack.only_interception()
    assert item["status"] == "completed"
    assert tools_of(item) == [
        ("add", "toolu_lim_1", '{"a":1,"b":1}', True, mcp_url, None),
        ("add", "toolu_lim_2", '{"a":2,"b":1}', True, mcp_url, "not invoked: mcp_max_iterations (2) reached"),
    ]


def test_haiku_requests_get_no_injection(bridge: Stack) -> None:
    client, _, _ = clients(bridge)
    raw = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 16,
                      "messages": [{"role": "user", "content": "title this chat"}]}).encode()
    response = client.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=16,
                                                        messages=[{"role": "user", "content": "title this chat"}])
    assert response.http_response.status_code == 200
    assert "tools" not in bridge.fake.last.json()
    assert json.loads(bridge.fake.last.body) == json.loads(raw)


def test_identical_requests_give_byte_identical_upstream_bodies(bridge: Stack) -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 32, "system": "be brief",
            "tools": [{"name": "grep", "description": "search", "input_schema": {"type": "object"},
                       "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}]}
    usage = {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    for _ in range(2):
        bridge.script(
            anthropic_json("msg_same_1", [tool_use("toolu_same", "bmcp_tools_add", {"a": 1, "b": 1})], "tool_use", usage, 4),
            anthropic_json("msg_same_2", [{"type": "text", "text": "2"}], "end_turn", usage, 1),
        )
        reply = httpx.post(bridge.url + "/anthropic/v1/messages", json=body, headers={"x-api-key": bridge.key})
        assert reply.status_code == 200
    first, follow_up, again, follow_up_again = bridge.fake.requests
    assert first.body == again.body
    # the follow-up (conversation + call + result) is just as stable
    assert follow_up.body == follow_up_again.body
    sent = first.json()
    assert list(sent) == list(body)
    assert [t["name"] for t in sent["tools"]] == [*INJECTED, "grep"]
    assert sent["tools"][-1] == body["tools"][0]


def test_upstream_error_after_a_tool_call_ends_the_stream_with_an_error_event(bridge: Stack, mcp_url: str) -> None:
    usage = {"input_tokens": 30, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    bridge.script(
        anthropic_stream("msg_err_1", [tool_use("toolu_err_1", "bmcp_tools_add", {"a": 2, "b": 3})], "tool_use", usage, 8),
        Reply(status=529, headers=JSON, body=json.dumps(overloaded).encode()),
    )
    client, _, transport = clients(bridge)
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                    messages=[{"role": "user", "content": "add 2 and 3"}]) as s:
            s.get_final_message()
    assert "upstream error 529: Overloaded" in str(info.value)
    assert b"bmcp_" not in transport.received
    second = bridge.fake.requests[1].json()
    assert second["messages"][-1]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_err_1", "content": "5"}]
    item = bridge.only_interception()
    assert (item["status"], item["upstream_status"], item["error"]) == ("failed", 529, "Overloaded")
    assert usages(item) == [("msg_err_1", 30, 8, 0, 0)]
    assert tools_of(item) == [("add", "toolu_err_1", '{"a":2,"b":3}', True, mcp_url, None)]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mcp_servers": [{"name": "kb"}]},
         "invalid mcp_servers (--mcp-servers, from flag): entry 0 (kb): url must be an http:// or https:// URL"),
        ({"mcp_server_url": "http://127.0.0.1:9/mcp", "mcp_server_deny": "(("},
         "invalid mcp_server_deny (--mcp-server-deny, from flag): deny: invalid regular expression"),
        ({"mcp_servers": [{"name": "kb", "url": "http://127.0.0.1:9/mcp"}], "mcp_server_url": "http://127.0.0.1:8/mcp",
          "mcp_server_name": "kb"},
         "invalid mcp_server_name (--mcp-server-name): server name 'kb' is used twice"),
    ],
)
def test_bad_mcp_configuration_fails_with_one_line(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides, env={})
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_bedrock_stream_runs_the_loop_too(make_stack: Any, mcp_url: str) -> None:
    from aibridge.fake.bedrock import FakeBedrock, sse_events, stream_reply
    from tests.e2e.test_bedrock import ACCESS_KEY, BEDROCK, MAIN, SECRET_KEY

    stack: Stack = make_stack(**BEDROCK, mcp_server_url=mcp_url, mcp_server_name="tools",
                              mcp_server_headers=f"Authorization: Bearer {TOKEN}")
    bedrock = FakeBedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region="us-west-2").install(stack.fake)
    usage = {"input_tokens": 64, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    first = anthropic_stream("msg_br_1", [tool_use("toolu_br_1", "bmcp_tools_list_projects", {"owner": "marta"})],
                             "tool_use", usage, 11)
    second = anthropic_stream("msg_br_2", [{"type": "text", "text": "Marta owns lighthouse."}], "end_turn", usage, 5)
    bedrock.script(stream_reply(sse_events(first.frames())), stream_reply(sse_events(second.frames())))
    client, _, transport = clients(stack)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                messages=[{"role": "user", "content": "marta's projects?"}]) as s:
        message = s.get_final_message()
    assert [b.text for b in message.content if b.type == "text"] == ["Marta owns lighthouse. "]
    assert b"bmcp_" not in transport.received
    assert bedrock.all_signatures_valid
    follow_up = stack.fake.requests[1]
    assert follow_up.path == f"/model/{MAIN}/invoke-with-response-stream"
    assert follow_up.json()["messages"][-1]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_br_1", "content": json.dumps(PROJECTS["marta"])}]
    item = stack.only_interception()
    assert (item["provider"], item["model"]) == ("bedrock", MAIN)
    assert usages(item) == [("msg_br_1", 64, 11, 0, 0), ("msg_br_2", 64, 5, 0, 0)]
    assert tools_of(item) == [("list_projects", "toolu_br_1", '{"owner":"marta"}', True, mcp_url, None)]


def test_stream_gets_keepalive_comments_while_a_tool_runs(make_stack: Any, mcp_url: str) -> None:
    stack: Stack = make_stack(mcp_server_url=mcp_url, mcp_server_name="tools", stream_keepalive="0.1",
                              mcp_server_headers=f"Authorization: Bearer {TOKEN}")
    usage = {"input_tokens": 8, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    stack.script(
        anthropic_stream("msg_ka_1", [tool_use("toolu_ka", "bmcp_tools_slow_count", {"seconds": 0.5})], "tool_use", usage, 3),
        anthropic_stream("msg_ka_2", [{"type": "text", "text": "counted"}], "end_turn", usage, 1),
    )
    client, _, transport = clients(stack)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=16,
                                messages=[{"role": "user", "content": "count slowly"}]) as s:
        assert s.get_final_text() == "counted "
    assert b"\n: keepalive\n\n" in transport.received
    assert b"bmcp_" not in transport.received


def test_client_disconnect_while_a_tool_runs_cancels_it_and_records_why(make_stack: Any, mcp_url: str) -> None:
    stack: Stack = make_stack(mcp_server_url=mcp_url, mcp_server_name="tools", stream_keepalive="0.05",
                              mcp_server_headers=f"Authorization: Bearer {TOKEN}")
    usage = {"input_tokens": 8, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    stack.script(anthropic_stream("msg_gone_1", [tool_use("toolu_gone", "bmcp_tools_slow_count", {"seconds": 30})],
                                  "tool_use", usage, 3))
    body = {"model": "claude-sonnet-4-5", "max_tokens": 16, "stream": True,
            "messages": [{"role": "user", "content": "count forever"}]}
    with httpx.stream("POST", stack.url + "/anthropic/v1/messages", json=body,
                      headers={"x-api-key": stack.key}) as reply:
        seen = b""
        for chunk in reply.iter_raw():
            seen += chunk
            if b": keepalive" in seen:  # the tool is running: hang up now
                break
    item = stack.only_interception()
    assert item["status"] == "client_disconnected"
    assert usages(item) == [("msg_gone_1", 8, 3, 0, 0)]
    assert tools_of(item) == [("slow_count", "toolu_gone", '{"seconds":30}', True, mcp_url,
                               "cancelled: the request ended before the tool answered")]
    assert len(stack.fake.requests) == 1


# -- OpenAI Chat -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "blocking"])
def test_chat_runs_injected_tool_and_hides_it(bridge: Stack, mcp_url: str, stream: bool) -> None:
    build = chat_stream if stream else chat_json
    call = ("call_c1", "bmcp_tools_list_projects", '{"owner":"ines"}')
    # the first upstream event is already the injected call: no text preamble at all
    bridge.script(
        build("chatcmpl-mcp-1", None, [call], "tool_calls", chat_usage(300, 0, 18)),
        build("chatcmpl-mcp-2", "Ines owns orchard and quay.", [], "stop", chat_usage(360, 256, 11)),
    )
    _, client, transport = clients(bridge)
    messages = [{"role": "user", "content": ASK}]
    if stream:
        chunks = list(client.chat.completions.create(model="gpt-4.1", messages=messages, stream=True))  # type: ignore[arg-type]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert {c.id for c in chunks} == {"chatcmpl-mcp-1"}
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert all(c.usage is None for c in chunks)
    else:
        reply = client.chat.completions.create(model="gpt-4.1", messages=messages)  # type: ignore[arg-type]
        text = reply.choices[0].message.content or ""
        assert reply.choices[0].message.tool_calls is None
        assert reply.choices[0].finish_reason == "stop"
    assert text == "Ines owns orchard and quay. "
    check_hidden(transport)

    first, second = [r.json() for r in bridge.fake.requests]
    assert [t["function"]["name"] for t in first["tools"]] == INJECTED
    assert second["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_c1", "type": "function", "function": {"name": call[1], "arguments": call[2]}}]},
        {"role": "tool", "tool_call_id": "call_c1", "content": INES},
    ]
    item = bridge.only_interception()
    assert usages(item) == [("chatcmpl-mcp-1", 300, 18, 0, 0), ("chatcmpl-mcp-2", 104, 11, 256, 0)]
    assert tools_of(item) == [("list_projects", "call_c1", '{"owner":"ines"}', True, mcp_url, None)]


def test_chat_client_tool_beside_injected_call_reaches_client(bridge: Stack, mcp_url: str) -> None:
    bridge.script(chat_stream("chatcmpl-mix", "Checking.", [
        ("call_inj", "bmcp_tools_add", '{"a":1,"b":2}'), ("call_cli", "run_tests", '{"path":"src"}')],
        "tool_calls", chat_usage(40, 0, 20)))
    _, client, transport = clients(bridge)
    chunks = list(client.chat.completions.create(
        model="gpt-4.1", stream=True, messages=[{"role": "user", "content": "test it"}],
        tools=[{"type": "function", "function": {"name": "run_tests", "parameters": {"type": "object"}}}]))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert {tc.index for tc in calls} == {0}
    assert [tc.function.name for tc in calls if tc.function and tc.function.name] == ["run_tests"]
    assert "".join(tc.function.arguments or "" for tc in calls if tc.function) == '{"path":"src"}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert b"bmcp_" not in transport.received
    assert len(bridge.fake.requests) == 1
    item = bridge.only_interception()
    assert tools_of(item) == [
        ("run_tests", "call_cli", '{"path":"src"}', False, None, None),
        ("add", "call_inj", '{"a":1,"b":2}', True, mcp_url,
         "not invoked: the response also called client tools, so the turn went to the client"),
    ]


# -- OpenAI Responses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "blocking"])
def test_responses_runs_injected_tool_and_hides_it(bridge: Stack, mcp_url: str, stream: bool) -> None:
    build = responses_stream if stream else responses_json
    call = function_call("fc_r1", "call_r1", "bmcp_tools_list_projects", '{"owner":"ines"}')
    bridge.script(
        build("resp_mcp_1", [call], (700, 512, 30)),
        build("resp_mcp_2", [message_item("msg_r2", "Ines owns orchard and quay.")], (820, 640, 14)),
    )
    _, client, transport = clients(bridge)
    if stream:
        events = list(client.responses.create(model="gpt-4.1", input=ASK, stream=True))
        assert [e.sequence_number for e in events] == list(range(len(events)))
        assert events[0].type == "response.created"
        final = events[-1].response  # type: ignore[union-attr]
        assert events[-1].type == "response.completed"
        assert {e.output_index for e in events if hasattr(e, "output_index")} == {0}
    else:
        final = client.responses.create(model="gpt-4.1", input=ASK)
    assert final.output_text == "Ines owns orchard and quay."
    assert [o.type for o in final.output] == ["message"]
    check_hidden(transport)

    first, second = [r.json() for r in bridge.fake.requests]
    assert [t["name"] for t in first["tools"]] == INJECTED
    assert second["input"] == [{"role": "user", "content": ASK}, call,
                               {"type": "function_call_output", "call_id": "call_r1", "output": INES}]
    item = bridge.only_interception()
    assert usages(item) == [("resp_mcp_1", 188, 30, 512, 0), ("resp_mcp_2", 180, 14, 640, 0)]
    assert tools_of(item) == [("list_projects", "call_r1", '{"owner":"ines"}', True, mcp_url, None)]


# -- startup, readiness, metrics --------------------------------------------------------------------------


def test_failed_servers_are_skipped_and_reported(make_stack: Any, mcp_url: str) -> None:
    stack: Stack = make_stack(mcp_servers=[
        {"name": "tools", "url": mcp_url, "headers": {"Authorization": f"Bearer {TOKEN}"},
         "allow": "^(add|drop_everything)$", "deny": "drop"},
        {"name": "nokey", "url": mcp_url},
        {"name": "down", "url": "http://127.0.0.1:1/mcp"},
    ])
    ready = httpx.get(stack.url + "/readyz").json()
    states = {s["name"]: (s["state"], s["tools"]) for s in ready["mcp_servers"]}
    assert states == {"tools": ("connected", 1), "nokey": ("failed", 0), "down": ("failed", 0)}
    metrics = httpx.get(stack.url + "/metrics").text
    assert 'aibridge_mcp_server_up{server="down"} 0.0' in metrics
    assert 'aibridge_mcp_server_up{server="tools"} 1.0' in metrics
    httpx.post(stack.url + "/openai/v1/chat/completions", headers={"authorization": f"Bearer {stack.key}"},
               json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})
    assert [t["function"]["name"] for t in stack.fake.last.json()["tools"]] == ["bmcp_tools_add"]


# -- conformance over the recorded injected-tool traffic ----------------------------------------------------
#
# Each ``*injected*`` archive is replayed: its first reply (a call to an injected
# ``bmcp_coder_*`` tool) and its ``*/tool-call`` reply. A real MCP server named
# ``coder`` offers generic tools named after the tools those archives call (the
# ones called in ``*error*`` archives always fail). Expected values are read
# straight from the archive, independently of the bridge's parsers.

FIXTURES = SHARED / "fixtures"
INJECTED_FIXTURES = sorted(FIXTURES.rglob("*injected*.txtar")) if FIXTURES.is_dir() else []
SERVER = "coder"


def _api(path: Path) -> str:
    parts = path.relative_to(FIXTURES).parts
    return "messages" if parts[0] == "anthropic" else "chat" if "chatcompletions" in parts else "responses"


def _data_lines(body: bytes) -> list[Any]:
    out = []
    for line in body.decode().splitlines():
        if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
            out.append(json.loads(line[5:]))
    return out


def recorded_calls(api: str, stream: bool, body: bytes) -> list[tuple[str, str, str]]:
    """(call id, tool name, arguments text) of every tool call in one recorded reply."""
    if api == "messages":
        if not stream:
            return [(b["id"], b["name"], json.dumps(b["input"], separators=(",", ":"), ensure_ascii=False))
                    for b in json.loads(body)["content"] if b["type"] == "tool_use"]
        calls: dict[int, list[str]] = {}
        for e in _data_lines(body):
            if e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use":
                calls[e["index"]] = [e["content_block"]["id"], e["content_block"]["name"], ""]
            elif e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta":
                calls[e["index"]][2] += e["delta"]["partial_json"]
        return [(c[0], c[1], c[2] or "{}") for c in calls.values()]
    if api == "chat":
        if not stream:
            message = json.loads(body)["choices"][0]["message"]
            return [(t["id"], t["function"]["name"], t["function"]["arguments"]) for t in message.get("tool_calls") or []]
        slots: dict[int, list[str]] = {}
        for chunk in _data_lines(body):
            for choice in chunk.get("choices") or []:
                for tc in choice["delta"].get("tool_calls") or []:
                    slot = slots.setdefault(tc["index"], ["", "", ""])
                    slot[0] = tc.get("id") or slot[0]
                    slot[1] = tc.get("function", {}).get("name") or slot[1]
                    slot[2] += tc.get("function", {}).get("arguments") or ""
        return [(s[0], s[1], s[2]) for s in slots.values()]
    output = (json.loads(body)["output"] if not stream else
              [e["item"] for e in _data_lines(body) if e["type"] == "response.output_item.done"])
    return [(i["call_id"], i["name"], i["arguments"]) for i in output if i["type"] == "function_call"]


def recorded_usage(api: str, stream: bool, body: bytes) -> tuple[str, int, int, int, int]:
    """(response id, input, output, cache read, cache write) as DESIGN §5 defines them."""
    if api == "messages":
        if stream:
            events = _data_lines(body)
            start = next(e["message"] for e in events if e["type"] == "message_start")
            usage = dict(start["usage"])
            for e in events:
                if e["type"] == "message_delta":
                    usage.update({k: v for k, v in (e.get("usage") or {}).items() if v is not None})
            rid = start["id"]
        else:
            reply = json.loads(body)
            usage, rid = reply["usage"], reply["id"]
        return (rid, usage["input_tokens"], usage["output_tokens"], usage.get("cache_read_input_tokens") or 0,
                usage.get("cache_creation_input_tokens") or 0)
    if api == "chat":
        if stream:
            chunk = [c for c in _data_lines(body) if c.get("usage")][-1]
        else:
            chunk = json.loads(body)
        usage = chunk["usage"]
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        return (chunk["id"], usage["prompt_tokens"] - cached, usage["completion_tokens"], cached, 0)
    if stream:
        response = next(e["response"] for e in _data_lines(body) if e["type"] == "response.completed")
    else:
        response = json.loads(body)
    usage = response["usage"]
    cached = usage["input_tokens_details"]["cached_tokens"]
    return (response["id"], usage["input_tokens"] - cached, usage["output_tokens"], cached, 0)


def _found_cases() -> list[tuple[Path, bool]]:
    cases = []
    for path in INJECTED_FIXTURES:
        sections = read_txtar(path)
        cases += [(path, True)] if "streaming" in sections else []
        cases += [(path, False)] if "non-streaming" in sections else []
    return cases


def _cases() -> list[Any]:
    """The parameters, or one skipped case saying why (not pytest's "got empty parameter set")."""
    return _found_cases() or [pytest.param(None, None, marks=pytest.mark.skip(
        reason=f"recorded injected-tool traffic not found at {FIXTURES}"))]


def _called_tools() -> tuple[tuple[str, ...], tuple[str, ...]]:
    ok: set[str] = set()
    failing: set[str] = set()
    for path, stream in _found_cases():
        sections = read_txtar(path)
        first = sections["streaming" if stream else "non-streaming"]
        for _, name, _ in recorded_calls(_api(path), stream, first):
            (failing if "error" in path.name else ok).add(name.removeprefix(f"bmcp_{SERVER}_"))
    return tuple(sorted(ok)), tuple(sorted(failing))


@pytest.fixture(scope="module")
def conformance_mcp() -> Iterator[tuple[str, tuple[str, ...]]]:
    ok, failing = _called_tools()
    with running_mcp_server(tools=ok, failing=failing) as url:
        yield url, failing


@pytest.mark.parametrize(("path", "stream"), _cases(),
                         ids=lambda v: str(v.relative_to(FIXTURES)) if isinstance(v, Path) else ("stream" if v else "blocking"))
def test_conformance_injected_tool_traffic(make_stack: Any, conformance_mcp: tuple[str, tuple[str, ...]],
                                           path: Path, stream: bool) -> None:
    url, failing = conformance_mcp
    api = _api(path)
    sections = read_txtar(path)
    first = sections["streaming" if stream else "non-streaming"]
    second = sections["streaming/tool-call" if stream else "non-streaming/tool-call"]
    stack: Stack = make_stack(mcp_server_url=url, mcp_server_name=SERVER)
    headers = SSE if stream else JSON
    stack.script(Reply(headers=headers, body=first, write_size=97), Reply(headers=headers, body=second, write_size=97))

    request = json.loads(sections["request"])
    request["stream"] = stream
    if SMALL_FAST in request["model"]:
        # small/fast (haiku) requests get no injection (DESIGN §8): replay this
        # recording's traffic under another model name
        request["model"] = "claude-sonnet-4-5"
    route = {"messages": "/anthropic/v1/messages", "chat": "/openai/v1/chat/completions",
             "responses": "/openai/v1/responses"}[api]
    with httpx.stream("POST", stack.url + route, json=request, headers={"authorization": f"Bearer {stack.key}"}) as reply:
        received = reply.read()
    assert reply.status_code == 200, received
    assert b"bmcp_" not in received

    [(call_id, name, args)] = recorded_calls(api, stream, first)
    tool = name.removeprefix(f"bmcp_{SERVER}_")
    error = f"Error executing tool {tool}" if tool in failing else None
    result = error or f"{tool}: done"
    sent_first, sent_second = [r.json() for r in stack.fake.requests]
    injected = sorted(f"bmcp_{SERVER}_{t}" for t in (*_called_tools()[0], *_called_tools()[1], *BASE_TOOLS))
    if api == "messages":
        assert [t["name"] for t in sent_first["tools"]][: len(injected)] == injected
        assert sent_second["messages"][-2]["content"][-1] == {"type": "tool_use", "id": call_id, "name": name,
                                                              "input": json.loads(args)}
        expected = {"type": "tool_result", "tool_use_id": call_id, "content": result}
        assert sent_second["messages"][-1] == {"role": "user", "content": [expected | ({"is_error": True} if error else {})]}
    elif api == "chat":
        assert [t["function"]["name"] for t in sent_first["tools"]][: len(injected)] == injected
        assert sent_second["messages"][-2]["tool_calls"] == [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]
        assert sent_second["messages"][-1] == {"role": "tool", "tool_call_id": call_id, "content": result}
    else:
        assert [t["name"] for t in sent_first["tools"]][: len(injected)] == injected
        calls = [i for i in sent_second["input"] if isinstance(i, dict) and i.get("type") == "function_call"]
        assert [(c["call_id"], c["name"], c["arguments"]) for c in calls] == [(call_id, name, args)]
        assert sent_second["input"][-1] == {"type": "function_call_output", "call_id": call_id, "output": result}

    item = stack.only_interception()
    assert item["status"] == "completed"
    assert usages(item) == [recorded_usage(api, stream, first), recorded_usage(api, stream, second)]
    assert tools_of(item) == [(tool, call_id, args, True, url, error)]


if not INJECTED_FIXTURES:
    def test_conformance_injected_tool_traffic_skipped() -> None:
        pytest.skip(f"recorded provider traffic not found at {FIXTURES}")
