"""Client, session and thread detection end to end, for all three intercepted APIs.

A thread: the model asks for a tool call in one interception; the client runs
the tool and sends the result in the next request, which is linked to the
first (parent) and to the first of the whole chain (root). Detection only
reads: the upstream receives the client's bytes whatever the headers say.
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aibridge.fake.upstream import Reply
from tests.e2e.wire import JSON, json_reply, post
from tests.harness import Stack

SESSION = "0b7e6f3a-91c2-4d5e-8f60-7a1b2c3d4e5f"
CODEX_HEADERS = {"user-agent": "codex_cli_rs/0.58.0 (Debian 12; x86_64) tmux", "originator": "codex_cli_rs",
                 "session_id": SESSION}


def responses_call(resp_id: str, call_id: str, name: str, args: str) -> Reply:
    return json_reply({"id": resp_id, "object": "response", "status": "completed", "model": "gpt-5-codex",
                       "output": [{"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id,
                                   "name": name, "arguments": args, "status": "completed"}],
                       "usage": {"input_tokens": 100, "output_tokens": 10, "total_tokens": 110}})


def responses_text(resp_id: str) -> Reply:
    return json_reply({"id": resp_id, "object": "response", "status": "completed", "model": "gpt-5-codex",
                       "output": [{"type": "message", "id": "m", "role": "assistant", "status": "completed",
                                   "content": [{"type": "output_text", "text": "All done.", "annotations": []}]}],
                       "usage": {"input_tokens": 150, "output_tokens": 4, "total_tokens": 154}})


def test_codex_thread_links_parent_and_root_through_a_chain(stack: Stack) -> None:
    stack.script(responses_call("resp_t1", "call_t1", "shell", '{"cmd":["ls"]}'),
                 responses_call("resp_t2", "call_t2", "shell", '{"cmd":["cat","a.txt"]}'),
                 responses_text("resp_t3"))
    history: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "input_text", "text": "what is in a.txt?"}]}]
    post(stack, "/openai/v1/responses", {"model": "gpt-5-codex", "input": history}, headers=CODEX_HEADERS)
    history += [{"type": "function_call", "call_id": "call_t1", "name": "shell", "arguments": '{"cmd":["ls"]}'},
                {"type": "function_call_output", "call_id": "call_t1", "output": "a.txt"}]
    post(stack, "/openai/v1/responses", {"model": "gpt-5-codex", "input": history}, headers=CODEX_HEADERS)
    history += [{"type": "function_call", "call_id": "call_t2", "name": "shell", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_t2", "output": "hello"}]
    post(stack, "/openai/v1/responses", {"model": "gpt-5-codex", "input": history}, headers=CODEX_HEADERS)
    first, second, third = stack.interceptions()
    assert [(i["client"], i["client_session_id"]) for i in (first, second, third)] == [("Codex", SESSION)] * 3
    assert [i["correlating_tool_call_id"] for i in (first, second, third)] == [None, "call_t1", "call_t2"]
    assert [i["parent_id"] for i in (first, second, third)] == [None, first["id"], second["id"]]
    assert [i["root_id"] for i in (first, second, third)] == [None, first["id"], first["id"]]
    # a tool-result turn records no prompt
    assert [len(i["user_prompts"]) for i in (first, second, third)] == [1, 0, 0]


def test_a_call_id_from_another_user_links_nothing(stack: Stack) -> None:
    stack.script(responses_call("resp_u1", "call_u1", "shell", "{}"), responses_text("resp_u2"))
    post(stack, "/openai/v1/responses", {"model": "gpt-5", "input": "go"})
    bob = stack.create_key("bob")
    post(stack, "/openai/v1/responses", {"model": "gpt-5", "input": [
        {"type": "function_call_output", "call_id": "call_u1", "output": "x"}]}, key=bob)
    _, theirs = stack.interceptions()
    assert (theirs["user"]["name"], theirs["correlating_tool_call_id"], theirs["parent_id"]) == ("bob", "call_u1", None)


def test_claude_code_thread_over_anthropic_messages(stack: Stack) -> None:
    tool_turn = {"id": "msg_cc_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                 "content": [{"type": "tool_use", "id": "toolu_cc_1", "name": "Bash", "input": {"command": "pwd"}}],
                 "stop_reason": "tool_use", "usage": {"input_tokens": 12, "output_tokens": 9}}
    final = {**tool_turn, "id": "msg_cc_2", "content": [{"type": "text", "text": "/srv"}], "stop_reason": "end_turn"}
    stack.script(json_reply(tool_turn), json_reply(final))
    sdk = anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key=stack.key, max_retries=0,
                              default_headers={"user-agent": "claude-cli/2.0.14 (external, cli)",
                                               "x-claude-code-session-id": SESSION})
    messages: list[Any] = [{"role": "user", "content": "where am I?"}]
    sdk.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=messages)
    messages += [{"role": "assistant", "content": tool_turn["content"]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_cc_1", "content": "/srv"}]}]
    sdk.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=messages)
    first, second = stack.interceptions()
    assert [(i["client"], i["client_session_id"]) for i in (first, second)] == [("Claude Code", SESSION)] * 2
    assert (second["correlating_tool_call_id"], second["parent_id"], second["root_id"]) == (
        "toolu_cc_1", first["id"], first["id"])


def test_older_claude_code_session_from_metadata_user_id(stack: Stack) -> None:
    user_id = f"user_{'ab' * 32}_account_0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7_session_{SESSION}"
    post(stack, "/anthropic/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 8, "metadata": {"user_id": user_id},
                                           "messages": [{"role": "user", "content": "hi"}]},
         headers={"user-agent": "claude-cli/1.0.60 (external, cli)"})
    item = stack.only_interception()
    assert (item["client"], item["client_session_id"]) == ("Claude Code", SESSION)


def test_opencode_thread_over_openai_chat(stack: Stack) -> None:
    tool_turn = {"id": "chatcmpl-oc-1", "object": "chat.completion", "model": "gpt-4.1", "choices": [
        {"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_oc_1", "type": "function", "function": {"name": "read", "arguments": '{"path":"go.mod"}'}}]}}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38}}
    stack.script(json_reply(tool_turn))
    sdk = openai.OpenAI(base_url=stack.url + "/openai/v1", api_key=stack.key, max_retries=0,
                        default_headers={"user-agent": "opencode/1.0.20 ai-sdk/openai-compatible/1.0.19",
                                         "x-opencode-session": "ses_own_91"})
    messages: list[Any] = [{"role": "user", "content": "which go version?"}]
    sdk.chat.completions.create(model="gpt-4.1", messages=messages)
    messages += [{"role": "assistant", "tool_calls": tool_turn["choices"][0]["message"]["tool_calls"]},
                 {"role": "tool", "tool_call_id": "call_oc_1", "content": "go 1.23"}]
    sdk.chat.completions.create(model="gpt-4.1", messages=messages)
    first, second = stack.interceptions()
    assert [(i["client"], i["client_session_id"]) for i in (first, second)] == [("opencode", "ses_own_91")] * 2
    assert (second["correlating_tool_call_id"], second["parent_id"], second["root_id"]) == (
        "call_oc_1", first["id"], first["id"])


# -- detection never alters a request ----------------------------------------------------------

TOKEN = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_"), min_size=1, max_size=16)
VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(str.strip)
CLIENT_HEADERS = st.dictionaries(
    st.sampled_from(["user-agent", "originator", "session_id", "x-claude-code-session-id", "x-title",
                     "x-stainless-lang", "copilot-integration-id", "x-opencode-session", "x-kilocode-taskid",
                     "x-cursor-client-version", "vscode-sessionid"]) | TOKEN.map(lambda t: "x-own-" + t),
    VALUE, max_size=5)
EXTRA_FIELDS = st.dictionaries(TOKEN.map(lambda t: "x_" + t), st.none() | st.booleans() | st.integers(-(2**53), 2**53) | VALUE,
                               max_size=4)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=CLIENT_HEADERS, extra=EXTRA_FIELDS, user_id=VALUE,
       last=st.sampled_from(["user", "function_call_output", "custom_tool_call_output"]))
def test_detection_never_changes_the_forwarded_body(
    stack: Stack, headers: dict[str, str], extra: dict[str, Any], user_id: str, last: str
) -> None:
    item: dict[str, Any] = ({"role": "user", "content": "hi"} if last == "user"
                            else {"type": last, "call_id": "call_prop", "output": "ok"})
    body = {"model": "gpt-5", "input": [item], "metadata": {"user_id": user_id}, **extra}
    raw = orjson.dumps(body, option=orjson.OPT_INDENT_2)  # odd spacing must survive too
    reply = post(stack, "/openai/v1/responses", raw, headers=headers)
    assert reply.status_code == 200
    sent = stack.fake.last
    assert sent.body == raw
    if headers.get("user-agent"):
        assert sent.headers["user-agent"] == headers["user-agent"]


def test_detection_headers_pass_through_upstream(stack: Stack) -> None:
    stack.script(Reply(headers=JSON, body=b'{"id":"resp_h","object":"response","status":"completed","output":[]}'))
    post(stack, "/openai/v1/responses", {"model": "gpt-5", "input": "hi"}, headers=CODEX_HEADERS)
    sent = stack.fake.last.headers
    assert {k: sent[k] for k in CODEX_HEADERS} == CODEX_HEADERS
