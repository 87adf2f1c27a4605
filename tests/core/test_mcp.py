"""The pure side of MCP tool injection: catalogue, injection, turns, follow-ups, rewriters.

Named examples first, then properties: sorting is a fixpoint and ignores input
order, injection is idempotent and keeps the client's tools in order, deny
wins over allow, and the stream rewriters give the same bytes however the
upstream stream is cut.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aibridge.core import jsonutil, mcp
from aibridge.core.mcp import InjectedCall, InjectedTool, ServerSpec, ToolOutcome, Turn
from aibridge.core.sse import SSEParser
from tests.core.tapping import sse
from tests.strategies import chunkings, json_objects

URL = "http://mcp.internal:9000/mcp"


def tool(name: str, server: str = "kb", description: str = "") -> InjectedTool:
    return InjectedTool(server=server, server_url=URL, tool=name, description=description,
                        input_schema={"type": "object", "properties": {"q": {"type": "string"}}})


TOOLS = mcp.catalog([tool("search"), tool("fetch_page"), tool("annotate")])
NAMES = {t.name for t in TOOLS}


def injected(name: str) -> bool:
    return name in NAMES


# -- naming, filtering, catalogue ---------------------------------------------------------------


def test_injected_names_carry_server_and_tool() -> None:
    assert mcp.injected_name("kb", "fetch_page") == "bmcp_kb_fetch_page"
    assert [t.name for t in TOOLS] == ["bmcp_kb_annotate", "bmcp_kb_fetch_page", "bmcp_kb_search"]


@pytest.mark.parametrize(
    ("name", "allow", "deny", "expected"),
    [
        ("search", None, None, True),
        ("search", "^search$", None, True),
        ("fetch_page", "^search$", None, False),
        ("delete_space", None, "^delete_", False),
        ("delete_space", "space", "^delete_", False),  # deny wins
        ("list_space", "space", "^delete_", True),
    ],
)
def test_allow_and_deny(name: str, allow: str | None, deny: str | None, expected: bool) -> None:
    assert mcp.tool_allowed(name, allow, deny) is expected


def test_catalogue_filters_per_server_and_drops_invalid_or_duplicate_names() -> None:
    specs = {"kb": ServerSpec(name="kb", url=URL, deny="^drop"), "ci": ServerSpec(name="ci", url=URL, allow="^run_")}
    listed = [tool("drop_all"), tool("search"), tool("run_job", "ci"), tool("lint", "ci"),
              tool("has.dot"), tool("x" * 70), tool("search")]
    assert [t.name for t in mcp.catalog(listed, specs)] == ["bmcp_ci_run_job", "bmcp_kb_search"]


@pytest.mark.parametrize("model", ["claude-3-5-haiku-latest", "claude-haiku-4-5", "anthropic.Claude-HAIKU-4-5"])
def test_small_fast_models_are_not_eligible(model: str) -> None:
    assert not mcp.eligible(model)
    assert mcp.eligible("claude-sonnet-4-5") and mcp.eligible("gpt-4.1")


# -- configuration ---------------------------------------------------------------------------


def test_server_entries_are_validated() -> None:
    [spec] = mcp.parse_servers([{"name": "kb", "url": URL, "headers": {"Authorization": "Bearer t0k"},
                                 "allow": "^search", "deny": "delete"}])
    assert spec == ServerSpec(name="kb", url=URL, headers=(("Authorization", "Bearer t0k"),), allow="^search",
                              deny="delete")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"name": "kb"}, "entry 0 (kb): url must be an http:// or https:// URL"),
        ([{"name": "k b", "url": URL}], "entry 0: name must be 1-32 letters, digits, '_' or '-', got 'k b'"),
        ([{"name": "kb", "url": URL, "deny": "("}], "entry 0 (kb) deny: invalid regular expression"),
        ([{"name": "kb", "url": URL, "token": "x"}], "entry 0: unknown key 'token'"),
        ([{"name": "kb", "url": URL}, {"name": "kb", "url": URL}], "server name 'kb' is used twice"),
    ],
)
def test_bad_server_entries_fail_with_one_line(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        mcp.parse_servers(value if isinstance(value, list) else [value])
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_headers_from_flag_text() -> None:
    assert mcp.parse_headers("Authorization: Bearer abc==, X-Team: infra", "h") == (
        ("Authorization", "Bearer abc=="), ("X-Team", "infra"))
    assert mcp.parse_headers('{"X-Key": "v"}', "h") == (("X-Key", "v"),)


# -- injection -----------------------------------------------------------------------------------


def test_anthropic_injection_puts_injected_tools_first_and_keeps_everything_else() -> None:
    client_tool = {"name": "grep", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}
    body = {"model": "claude-sonnet-4-5", "tools": [client_tool], "max_tokens": 10, "messages": []}
    new = mcp.inject_tools("messages", body, TOOLS)
    assert list(new) == list(body)
    assert [t["name"] for t in new["tools"]] == [*sorted(NAMES), "grep"]
    assert new["tools"][-1] == client_tool
    assert new["tools"][0] == {"name": "bmcp_kb_annotate", "description": "",
                               "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}


def test_chat_and_responses_tool_shapes() -> None:
    chat = mcp.inject_tools("chat", {"model": "m", "messages": []}, TOOLS[:1])
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "bmcp_kb_annotate", "description": "", "parameters": TOOLS[0].input_schema}}]
    responses = mcp.inject_tools("responses", {"model": "m", "input": "hi"}, TOOLS[:1])
    assert responses["tools"] == [{"type": "function", "name": "bmcp_kb_annotate", "description": "",
                                   "parameters": TOOLS[0].input_schema, "strict": False}]
    assert list(responses) == ["model", "input", "tools"]


def test_tool_choice_is_relaxed_only_in_follow_ups_that_would_force_another_call() -> None:
    assert mcp.relax_tool_choice("messages", {"tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
                                 injected)["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    kept = {"tool_choice": {"type": "tool", "name": "grep"}}
    assert mcp.relax_tool_choice("messages", kept, injected) is kept
    assert mcp.relax_tool_choice("chat", {"tool_choice": "required"}, injected)["tool_choice"] == "auto"
    assert mcp.relax_tool_choice("responses", {"tool_choice": {"type": "function", "name": "bmcp_kb_search"}},
                                 injected)["tool_choice"] == "auto"


# -- properties of injection ----------------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
tool_lists = st.lists(st.builds(tool, names, st.sampled_from(["kb", "ci", "a-b"])), max_size=8)
client_tool_lists = st.lists(st.builds(lambda n: {"name": "c_" + n, "input_schema": {"type": "object"}}, names),
                             max_size=5)


@given(tool_lists, st.randoms(use_true_random=False))
def test_catalogue_is_a_fixpoint_and_ignores_input_order(tools: list[InjectedTool], rnd: random.Random) -> None:
    once = mcp.catalog(tools)
    assert mcp.catalog(once) == once
    shuffled = list(tools)
    rnd.shuffle(shuffled)
    assert mcp.catalog(shuffled) == once
    assert [t.name for t in once] == sorted({t.name for t in tools})


@given(tool_lists, client_tool_lists, json_objects)
def test_injection_is_idempotent_and_keeps_client_tools_in_order(
    tools: list[InjectedTool], client: list[dict[str, Any]], extra: dict[str, Any]
) -> None:
    catalogue = mcp.catalog(tools)
    body = {**extra, "model": "claude-sonnet-4-5", "tools": client}
    once = mcp.inject_tools("messages", body, catalogue)
    assert mcp.inject_tools("messages", once, catalogue) == once
    assert once["tools"][len(catalogue):] == client
    assert [t["name"] for t in once["tools"][: len(catalogue)]] == [t.name for t in catalogue]
    assert {k: v for k, v in once.items() if k != "tools"} == {k: v for k, v in body.items() if k != "tools"}
    # the same request gives the same upstream bytes (prompt caching depends on it)
    assert mcp.encode(mcp.inject_tools("messages", json.loads(json.dumps(body)), catalogue)) == mcp.encode(once)


@given(names, st.from_regex(r"[a-z_]{1,4}", fullmatch=True), st.from_regex(r"[a-z_]{1,4}", fullmatch=True))
def test_deny_wins(name: str, allow: str, deny: str) -> None:
    if mcp.tool_allowed(name, allow, deny):
        assert mcp.tool_allowed(name, allow, None) and mcp.tool_allowed(name, None, deny)
    if mcp.tool_allowed(name, None, deny) is False:
        assert mcp.tool_allowed(name, allow, deny) is False


# -- turns and follow-ups -----------------------------------------------------------------------------


def test_anthropic_turn_and_follow_up() -> None:
    reply = {"id": "msg_1", "content": [
        {"type": "text", "text": "Searching."},
        {"type": "tool_use", "id": "toolu_a", "name": "bmcp_kb_search", "input": {"q": "ssl"}}],
        "stop_reason": "tool_use"}
    turn = mcp.blocking_turn("messages", reply, injected)
    assert turn.injected_calls == (InjectedCall(call_id="toolu_a", name="bmcp_kb_search", arguments='{"q":"ssl"}'),)
    assert turn.wants_tools
    body = {"model": "m", "messages": [{"role": "user", "content": "find ssl docs"}]}
    new = mcp.follow_up("messages", body, turn, [ToolOutcome(call_id="toolu_a", text="boom", is_error=True)], injected)
    assert new["messages"][1:] == [
        {"role": "assistant", "content": reply["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "boom",
                                      "is_error": True}]},
    ]
    assert body["messages"] == [{"role": "user", "content": "find ssl docs"}]


def test_client_call_in_the_same_reply_hands_the_turn_to_the_client() -> None:
    reply = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "bmcp_kb_search", "arguments": "{}"}},
        {"id": "c2", "type": "function", "function": {"name": "run_tests", "arguments": "{}"}}]}}]}
    turn = mcp.blocking_turn("chat", reply, injected)
    assert (len(turn.injected_calls), turn.client_calls, turn.wants_tools) == (1, 1, False)


def test_responses_follow_up_turns_string_input_into_a_message() -> None:
    call = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "bmcp_kb_search", "arguments": "{}"}
    turn = Turn(assistant=[call], injected_calls=(InjectedCall(call_id="call_1", name="bmcp_kb_search",
                                                               arguments="{}"),))
    new = mcp.follow_up("responses", {"model": "m", "input": "find"}, turn,
                        [ToolOutcome(call_id="call_1", text="3 hits")], injected)
    assert new["input"] == [{"role": "user", "content": "find"}, call,
                            {"type": "function_call_output", "call_id": "call_1", "output": "3 hits"}]


def test_final_blocking_merges_visible_output() -> None:
    first = {"id": "msg_1", "content": [{"type": "text", "text": "A"},
                                        {"type": "tool_use", "id": "t", "name": "bmcp_kb_search", "input": {}}],
             "stop_reason": "tool_use"}
    second = {"id": "msg_2", "content": [{"type": "text", "text": "B"}], "stop_reason": "end_turn"}
    assert mcp.final_blocking("messages", [first, second], injected)["content"] == [
        {"type": "text", "text": "A"}, {"type": "text", "text": "B"}]
    assert mcp.final_blocking("messages", [first], injected)["stop_reason"] == "end_turn"


# -- stream rewriters -------------------------------------------------------------------------------------


def anthropic_iteration(msg_id: str, blocks: list[tuple[str, str]], stop: str) -> bytes:
    out = sse({"type": "message_start", "message": {"id": msg_id, "usage": {"input_tokens": 5}}}, "message_start")
    for i, (kind, value) in enumerate(blocks):
        if kind == "text":
            out += sse({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
                       "content_block_start")
            out += sse({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": value}},
                       "content_block_delta")
        else:
            out += sse({"type": "content_block_start", "index": i, "content_block": {
                "type": "tool_use", "id": f"toolu_{i}", "name": kind, "input": {}}}, "content_block_start")
            out += sse({"type": "content_block_delta", "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": value}}, "content_block_delta")
        out += sse({"type": "content_block_stop", "index": i}, "content_block_stop")
    out += sse({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 3}}, "message_delta")
    return out + sse({"type": "message_stop"}, "message_stop")


def play(rewriter: mcp.StreamRewriter, iterations: list[list[bytes]]) -> tuple[bytes, list[Turn]]:
    out = bytearray()
    turns = []
    for chunks in iterations:
        rewriter.start_iteration()
        for chunk in chunks:
            out += rewriter.receive_data(chunk)
        tail, turn = rewriter.end_iteration()
        out += tail
        turns.append(turn)
    return bytes(out) + rewriter.release(), turns


def payloads(data: bytes) -> list[Any]:
    return [jsonutil.loads(e.data) for e in SSEParser().receive_data(data) if e.data and e.data != "[DONE]"]


ANTHROPIC_1 = anthropic_iteration("msg_1", [("text", "Looking."), ("bmcp_kb_search", '{"q":"tls"}')], "tool_use")
ANTHROPIC_2 = anthropic_iteration("msg_2", [("bmcp_kb_fetch_page", "{}"), ("text", "Done.")], "end_turn")


def test_anthropic_stream_hides_injected_blocks_and_renumbers() -> None:
    out, turns = play(mcp.AnthropicRewriter(injected), [[ANTHROPIC_1], [ANTHROPIC_2]])
    events = payloads(out)
    assert b"bmcp_" not in out
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert [e["index"] for e in events if "index" in e] == [0, 0, 0, 1, 1, 1]
    assert events[0]["message"]["id"] == "msg_1"
    assert turns[0].injected_calls == (InjectedCall(call_id="toolu_1", name="bmcp_kb_search", arguments='{"q":"tls"}'),)
    assert turns[0].assistant[1] == {"type": "tool_use", "id": "toolu_1", "name": "bmcp_kb_search", "input": {"q": "tls"}}
    # the first iteration's bytes before the hidden block are the upstream's own
    assert out.startswith(ANTHROPIC_1[: ANTHROPIC_1.index(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1")])


def test_anthropic_stop_reason_when_the_last_turn_only_had_hidden_calls() -> None:
    out, _ = play(mcp.AnthropicRewriter(injected), [[ANTHROPIC_1]])
    assert [e["delta"]["stop_reason"] for e in payloads(out) if e["type"] == "message_delta"] == ["end_turn"]


@given(st.data())
def test_anthropic_rewrite_is_chunking_invariant(data: st.DataObject) -> None:
    whole, _ = play(mcp.AnthropicRewriter(injected), [[ANTHROPIC_1], [ANTHROPIC_2]])
    cut, _ = play(mcp.AnthropicRewriter(injected), [data.draw(chunkings(ANTHROPIC_1)), data.draw(chunkings(ANTHROPIC_2))])
    assert cut == whole


def chat_chunk(chunk_id: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    return sse({"id": chunk_id, "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": delta, "finish_reason": finish}]})


CHAT_1 = (chat_chunk("c-1", {"content": None, "tool_calls": [
    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "bmcp_kb_search", "arguments": ""}}]})
    + chat_chunk("c-1", {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})
    + chat_chunk("c-1", {}, "tool_calls")
    + sse({"id": "c-1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}})
    + b"data: [DONE]\n\n")
CHAT_2 = (chat_chunk("c-2", {"role": "assistant", "content": "Two"}) + chat_chunk("c-2", {"content": " hits"})
          + chat_chunk("c-2", {}, "stop") + sse({"id": "c-2", "choices": [], "usage": {"prompt_tokens": 20}})
          + b"data: [DONE]\n\n")


def test_chat_stream_starting_with_an_injected_call_starts_with_the_answer() -> None:
    rewriter = mcp.ChatRewriter(injected, drop_usage_only=True)
    rewriter.start_iteration()
    assert rewriter.receive_data(CHAT_1) == b""
    _, turn = rewriter.end_iteration()
    assert turn.assistant == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "bmcp_kb_search", "arguments": "{}"}}]}
    rewriter.start_iteration()
    out = rewriter.receive_data(CHAT_2)
    out += rewriter.end_iteration()[0] + rewriter.release()
    chunks = payloads(out)
    assert {c["id"] for c in chunks} == {"c-1"}
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["Two", " hits", None]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert out.endswith(b"data: [DONE]\n\n") and out.count(b"[DONE]") == 1


def test_responses_stream_renumbers_sequence_and_output_indexes() -> None:
    seq = iter(range(100))

    def ev(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, "sequence_number": next(seq), **fields}, kind)

    call = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "bmcp_kb_search", "arguments": "{}"}
    first = (ev("response.created", response={"id": "r1", "tools": [{"type": "function", "name": "bmcp_kb_search"},
                                                                     {"type": "function", "name": "mine"}]})
             + ev("response.output_item.added", output_index=0, item={**call, "arguments": ""})
             + ev("response.function_call_arguments.delta", output_index=0, item_id="fc_1", delta="{}")
             + ev("response.output_item.done", output_index=0, item=call)
             + ev("response.completed", response={"id": "r1", "output": [call]}))
    seq = iter(range(100))
    message = {"type": "message", "id": "m2", "content": [{"type": "output_text", "text": "ok"}]}
    second = (ev("response.created", response={"id": "r2"})
              + ev("response.output_item.added", output_index=0, item=message)
              + ev("response.output_text.delta", output_index=0, item_id="m2", delta="ok")
              + ev("response.output_item.done", output_index=0, item=message)
              + ev("response.completed", response={"id": "r2", "output": [message], "tools": []}))
    out, turns = play(mcp.ResponsesRewriter(injected), [[first], [second]])
    events = payloads(out)
    assert b"bmcp_" not in out
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == ["response.created", "response.output_item.added",
                                           "response.output_text.delta", "response.output_item.done",
                                           "response.completed"]
    assert events[0]["response"]["tools"] == [{"type": "function", "name": "mine"}]
    assert events[-1]["response"]["output"] == [message]
    assert turns[0].injected_calls == (InjectedCall(call_id="call_1", name="bmcp_kb_search", arguments="{}"),)
