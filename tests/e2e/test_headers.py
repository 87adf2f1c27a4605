"""Which headers cross the bridge (DESIGN §4 rule 3), checked on the wire both ways."""

from __future__ import annotations

import re

import httpx
import orjson

from aibridge.fake.upstream import Reply
from tests.harness import Stack

REQUEST = orjson.dumps({"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "yo"}]})


def test_request_headers_forwarded_and_dropped(stack: Stack) -> None:
    headers = [
        ("content-type", "application/json"),
        ("authorization", f"Bearer {stack.key}"),
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "token-efficient-tools-2025-02-19"),
        ("user-agent", "claude-cli/2.0.14 (external, cli)"),
        ("x-claude-code-session-id", "sess-own-77"),
        ("x-stainless-lang", "js"),
        ("x-vendor-trace", "abc123"),
        ("accept-encoding", "gzip, br"),
        ("connection", "keep-alive, x-hop-private"),
        ("x-hop-private", "drop me"),
        ("te", "trailers"),
        ("proxy-authorization", "Basic cHJveHk6cHc="),
    ]
    reply = httpx.post(stack.url + "/anthropic/v1/messages", content=REQUEST, headers=headers)
    assert reply.status_code == 200
    sent = stack.fake.last.headers
    for name in ("anthropic-version", "anthropic-beta", "user-agent", "x-claude-code-session-id",
                 "x-stainless-lang", "x-vendor-trace", "content-type"):
        assert sent[name] == dict(headers)[name], name
    for name in ("x-hop-private", "te", "proxy-authorization", "authorization"):
        assert name not in sent, name
    assert sent["accept-encoding"] == "identity"
    assert sent["x-api-key"] == "sk-ant-central-0123456789"
    assert sent["content-length"] == str(len(REQUEST))
    item = stack.only_interception()
    assert (item["client"], item["client_session_id"], item["user_agent"]) == (
        "Claude Code", "sess-own-77", "claude-cli/2.0.14 (external, cli)")


def test_response_headers_pass_through_with_the_interception_id(stack: Stack) -> None:
    body = orjson.dumps({"id": "msg_hdr", "type": "message", "role": "assistant", "content": [],
                         "usage": {"input_tokens": 1, "output_tokens": 1}})
    stack.script(Reply(headers=(("content-type", "application/json"), ("request-id", "req_own_hdr"),
                                ("anthropic-ratelimit-tokens-remaining", "9000"), ("x-upstream-extra", "kept"),
                                ("content-length", str(len(body)))), body=body))
    reply = httpx.post(stack.url + "/anthropic/v1/messages", content=REQUEST,
                       headers={"x-api-key": stack.key, "content-type": "application/json"})
    assert reply.headers["request-id"] == "req_own_hdr"
    assert reply.headers["anthropic-ratelimit-tokens-remaining"] == "9000"
    assert reply.headers["x-upstream-extra"] == "kept"
    assert reply.headers.get_list("content-length") == [str(len(body))]
    interception_id = reply.headers["x-aibridge-interception-id"]
    assert re.fullmatch(r"[0-9a-f-]{36}", interception_id)
    assert stack.only_interception()["id"] == interception_id


def test_upstream_cookies_reach_the_client_and_never_another_users_request(stack: Stack) -> None:
    """Set-Cookie is the client's business: relayed to it, never kept by the bridge's pool."""
    body = orjson.dumps({"id": "msg_ck", "type": "message", "role": "assistant", "content": [],
                         "usage": {"input_tokens": 1, "output_tokens": 1}})
    stack.script(Reply(headers=(("content-type", "application/json"),
                                ("set-cookie", "__cf_bm=alice-only; Path=/; HttpOnly")), body=body))
    alice = httpx.post(stack.url + "/anthropic/v1/messages", content=REQUEST,
                       headers={"x-api-key": stack.key, "content-type": "application/json"})
    assert alice.status_code == 200
    assert alice.headers["set-cookie"] == "__cf_bm=alice-only; Path=/; HttpOnly"

    bob = httpx.post(stack.url + "/anthropic/v1/messages", content=REQUEST,
                     headers={"x-api-key": stack.create_key("bob"), "content-type": "application/json"})
    assert bob.status_code == 200
    assert "cookie" not in stack.fake.last.headers
    assert len(stack.fake.requests) == 2


def test_one_date_header_the_upstreams_on_relayed_replies_and_ours_on_local_ones(stack: Stack) -> None:
    stack.script(Reply(headers=(("content-type", "application/json"),), body=orjson.dumps(
        {"id": "msg_date", "type": "message", "role": "assistant", "content": [],
         "usage": {"input_tokens": 1, "output_tokens": 1}})))
    relayed = httpx.post(stack.url + "/anthropic/v1/messages", content=REQUEST,
                         headers={"x-api-key": stack.key, "content-type": "application/json"})
    assert relayed.status_code == 200
    [date] = relayed.headers.get_list("date")
    assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT", date)
    for local in (httpx.get(stack.url + "/healthz"),
                  httpx.post(stack.url + "/anthropic/v1/messages", content=REQUEST),
                  httpx.get(stack.url + "/nowhere")):
        assert len(local.headers.get_list("date")) == 1, local.status_code
