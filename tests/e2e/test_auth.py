"""Authentication and identity (DESIGN §3), end to end through the real bridge.

Where the aibridge key is read from, the credential swap (centralised) or
hand-through (BYOK), the provider-shaped 401/403/404 bodies, the key cache, and
the routes around the provider routes (passthrough, the Coder prefix, query
strings).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from aibridge.shell import store as store_mod
from tests.e2e.wire import post
from tests.harness import Stack

CENTRAL_ANTHROPIC = "sk-ant-central-0123456789"
CENTRAL_OPENAI = "sk-openai-central-0123456789"
ANTHROPIC_REQUEST = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
CHAT_REQUEST = {"model": "gpt-5-nano", "messages": [{"role": "user", "content": "hi"}]}


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def openai_error(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def raw_post(stack: Stack, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(stack.url + path, content=orjson.dumps(body),
                      headers={"content-type": "application/json", **headers}, timeout=10)


def db_bytes(path: str) -> bytes:
    return b"".join(p.read_bytes() for p in Path(path).parent.glob(Path(path).name + "*"))


# -- where the key is read from -------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda k: {"authorization": f"Bearer {k}"}, id="authorization-bearer"),
        pytest.param(lambda k: {"x-api-key": k}, id="x-api-key"),
        pytest.param(lambda k: {"authorization": f"bearer {k}"}, id="bearer-any-case"),
    ],
)
def test_the_key_is_accepted_from_each_header(stack: Stack, headers: Any) -> None:
    reply = raw_post(stack, "/anthropic/v1/messages", ANTHROPIC_REQUEST, headers(stack.key))
    assert reply.status_code == 200
    item = stack.only_interception()
    assert item["user"]["name"] == "alice"
    assert item["credential_kind"] == "centralized"


def test_authorization_is_read_before_x_api_key(stack: Stack) -> None:
    ok = raw_post(stack, "/openai/v1/chat/completions", CHAT_REQUEST,
                  {"authorization": f"Bearer {stack.key}", "x-api-key": "aib_not_a_key"})
    assert ok.status_code == 200
    refused = raw_post(stack, "/openai/v1/chat/completions", CHAT_REQUEST,
                       {"authorization": "Bearer aib_not_a_key", "x-api-key": stack.key})
    assert refused.status_code == 401


def test_the_sdks_authenticate_with_their_usual_key_settings(stack: Stack) -> None:
    # OPENAI_API_KEY -> Authorization: Bearer; ANTHROPIC_API_KEY -> X-Api-Key;
    # ANTHROPIC_AUTH_TOKEN -> Authorization: Bearer
    openai.OpenAI(base_url=stack.url + "/openai/v1", api_key=stack.key, max_retries=0).chat.completions.create(
        **CHAT_REQUEST)
    anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key=stack.key, max_retries=0).messages.create(
        **ANTHROPIC_REQUEST)
    anthropic.Anthropic(base_url=stack.url + "/anthropic", auth_token=stack.key, max_retries=0).messages.create(
        **ANTHROPIC_REQUEST)
    assert [i["status"] for i in stack.interceptions()] == ["completed"] * 3


# -- centralised mode -------------------------------------------------------------------


def test_centralised_mode_swaps_credentials_and_never_leaks_the_provider_key(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reply = raw_post(stack, "/anthropic/v1/messages", ANTHROPIC_REQUEST,
                     {"authorization": f"Bearer {stack.key}", "x-api-key": "also-mine"})
    assert reply.status_code == 200
    anthropic_sent = stack.fake.last
    chat = raw_post(stack, "/openai/v1/chat/completions", CHAT_REQUEST, {"x-api-key": stack.key})
    assert chat.status_code == 200
    openai_sent = stack.fake.last

    # upstream gets the central credential in the provider's own header, and nothing of the client's
    assert anthropic_sent.headers["x-api-key"] == CENTRAL_ANTHROPIC
    assert "authorization" not in anthropic_sent.headers
    assert openai_sent.headers["authorization"] == f"Bearer {CENTRAL_OPENAI}"
    assert "x-api-key" not in openai_sent.headers
    for sent in (anthropic_sent, openai_sent):
        assert stack.key not in repr(sent.headers)
        assert stack.key.encode() not in sent.body

    items = stack.interceptions()
    assert [(i["credential_kind"], i["credential_hint"]) for i in items] == [
        ("centralized", "sk-a...6789"), ("centralized", "sk-o...6789")]
    for secret in (CENTRAL_ANTHROPIC, CENTRAL_OPENAI):
        for response in (reply, chat):
            assert secret not in repr(response.headers)
            assert secret.encode() not in response.content
        assert secret.encode() not in db_bytes(stack.db_path)
        assert secret not in caplog.text
    # the aibridge key itself is stored only as a hash
    assert stack.key.encode() not in db_bytes(stack.db_path)


# -- bring your own key ---------------------------------------------------------------------


def test_byok_sends_the_users_own_key_and_removes_only_the_aibridge_token(stack: Stack) -> None:
    own = "sk-user-own-key-abcdef987654"
    reply = raw_post(stack, "/openai/v1/chat/completions", CHAT_REQUEST,
                     {"x-aibridge-token": stack.key, "authorization": f"Bearer {own}", "openai-organization": "org-7"})
    assert reply.status_code == 200
    sent = stack.fake.last
    assert sent.headers["authorization"] == f"Bearer {own}"
    assert sent.headers["openai-organization"] == "org-7"
    assert "x-aibridge-token" not in sent.headers
    assert CENTRAL_OPENAI not in repr(sent.headers)

    own_ant = "sk-ant-user-own-0000aaaa1111"
    raw_post(stack, "/anthropic/v1/messages", ANTHROPIC_REQUEST, {"x-aibridge-token": stack.key, "x-api-key": own_ant})
    sent = stack.fake.last
    assert sent.headers["x-api-key"] == own_ant
    assert "x-aibridge-token" not in sent.headers

    items = stack.interceptions()
    assert [(i["credential_kind"], i["credential_hint"], i["user"]["name"]) for i in items] == [
        ("byok", "sk-u...7654", "alice"), ("byok", "sk-a...1111", "alice")]
    assert own.encode() not in db_bytes(stack.db_path)
    assert own_ant.encode() not in db_bytes(stack.db_path)


def test_byok_is_refused_with_403_when_disabled(make_stack: Any) -> None:
    stack = make_stack(allow_byok=False)
    reply = raw_post(stack, "/anthropic/v1/messages", ANTHROPIC_REQUEST,
                     {"x-aibridge-token": stack.key, "x-api-key": "sk-ant-user-own-0000aaaa1111"})
    assert reply.status_code == 403
    assert reply.json() == anthropic_error(
        "permission_error", "bring-your-own-key mode (X-AIBridge-Token) is disabled on this gateway")
    reply = raw_post(stack, "/openai/v1/chat/completions", CHAT_REQUEST,
                     {"x-aibridge-token": stack.key, "authorization": "Bearer sk-own"})
    assert reply.status_code == 403
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert len(stack.fake.requests) == 0
    assert stack.count("interceptions") == 0


# -- refusals --------------------------------------------------------------------------------

MISSING = "missing aibridge key: send it as 'Authorization: Bearer <key>', 'X-Api-Key' or 'X-AIBridge-Token'"


def test_missing_and_unknown_keys_get_401_in_each_providers_shape(stack: Stack) -> None:
    cases = [
        ({}, MISSING),
        ({"authorization": "Basic dXNlcjpwdw=="}, MISSING),
        ({"x-api-key": "aib_unknownunknownunknownunknown00"}, "invalid aibridge key"),
    ]
    for headers, message in cases:
        reply = raw_post(stack, "/anthropic/v1/messages", ANTHROPIC_REQUEST, headers)
        assert (reply.status_code, reply.json()) == (401, anthropic_error("authentication_error", message))
        assert reply.headers["content-type"] == "application/json"
        reply = raw_post(stack, "/openai/v1/chat/completions", CHAT_REQUEST, headers)
        assert (reply.status_code, reply.json()) == (
            401, openai_error(message, "invalid_request_error", "invalid_api_key"))
    assert len(stack.fake.requests) == 0
    assert stack.count("interceptions") == 0


def test_the_sdks_see_authentication_errors(stack: Stack) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key="aib_wrong", max_retries=0).messages.create(
            **ANTHROPIC_REQUEST)
    with pytest.raises(openai.AuthenticationError) as info:
        openai.OpenAI(base_url=stack.url + "/openai/v1", api_key="aib_wrong", max_retries=0).chat.completions.create(
            **CHAT_REQUEST)
    assert info.value.code == "invalid_api_key"


def test_expired_key_gets_401(stack: Stack) -> None:
    key = stack.create_key("bob", expires_in=60)
    assert post(stack, "/anthropic/v1/messages", ANTHROPIC_REQUEST, key=key).status_code == 200
    real = stack.app.clock
    stack.app.clock = lambda: real() + 61  # a minute later, without waiting a minute
    reply = post(stack, "/anthropic/v1/messages", ANTHROPIC_REQUEST, key=key)
    assert (reply.status_code, reply.json()) == (401, anthropic_error("authentication_error", "aibridge key has expired"))


def revoke_all(stack: Stack, user: str) -> None:
    store = store_mod.SQLiteStore(stack.db_path)
    try:
        for row in store.list_keys():
            if row["user"] == user:
                assert store.revoke_key(row["id"], time.time())
    finally:
        store.close()


def test_a_revoked_key_stops_working_once_its_cache_entry_lapses(stack: Stack) -> None:
    key = stack.create_key("carol")
    assert post(stack, "/openai/v1/chat/completions", CHAT_REQUEST, key=key).status_code == 200
    revoke_all(stack, "carol")
    # still cached: the lookup is trusted for key_cache_seconds (3 s by default)
    assert stack.app.key_cache_seconds == 3.0
    assert post(stack, "/openai/v1/chat/completions", CHAT_REQUEST, key=key).status_code == 200
    real = stack.app.clock
    stack.app.clock = lambda: real() + stack.app.key_cache_seconds
    reply = post(stack, "/openai/v1/chat/completions", CHAT_REQUEST, key=key)
    assert (reply.status_code, reply.json()) == (
        401, openai_error("aibridge key has been revoked", "invalid_request_error", "invalid_api_key"))


def test_with_a_short_cache_ttl_revocation_takes_effect_at_once(stack: Stack) -> None:
    stack.app.key_cache_seconds = 0.0
    key = stack.create_key("dave")
    assert post(stack, "/anthropic/v1/messages", ANTHROPIC_REQUEST, key=key).status_code == 200
    revoke_all(stack, "dave")
    assert post(stack, "/anthropic/v1/messages", ANTHROPIC_REQUEST, key=key).status_code == 401


# -- routes around the provider routes ------------------------------------------------------


def test_passthrough_routes_are_authenticated_keep_the_query_and_are_not_recorded(stack: Stack) -> None:
    assert httpx.get(stack.url + "/openai/v1/models").status_code == 401
    assert httpx.get(stack.url + "/anthropic/v1/models/claude-x", headers={"x-api-key": "nope"}).status_code == 401
    reply = httpx.get(stack.url + "/anthropic/v1/models?limit=5&after_id=m1", headers={"x-api-key": stack.key})
    assert reply.status_code == 200
    sent = stack.fake.last
    assert (sent.method, sent.path, sent.query) == ("GET", "/v1/models", "limit=5&after_id=m1")
    assert sent.headers["x-api-key"] == CENTRAL_ANTHROPIC
    reply = httpx.get(stack.url + "/openai/v1/models/gpt-5", headers={"authorization": f"Bearer {stack.key}"})
    assert reply.status_code == 200
    assert (stack.fake.last.path, stack.fake.last.headers["authorization"]) == ("/v1/models/gpt-5", f"Bearer {CENTRAL_OPENAI}")
    assert stack.count("interceptions") == 0


def test_routes_are_served_under_the_coder_prefix(stack: Stack) -> None:
    reply = post(stack, "/api/v2/aibridge/anthropic/v1/messages?beta=true", ANTHROPIC_REQUEST)
    assert reply.status_code == 200
    assert (stack.fake.last.path, stack.fake.last.query) == ("/v1/messages", "beta=true")
    client = openai.OpenAI(base_url=stack.url + "/api/v2/aibridge/openai/v1", api_key=stack.key, max_retries=0)
    client.chat.completions.create(**CHAT_REQUEST)
    assert stack.fake.last.path == "/v1/chat/completions"
    assert [m.id for m in client.models.list()] == ["fake-model"]
    assert [(i["provider"], i["api"]) for i in stack.interceptions()] == [("anthropic", "messages"), ("openai", "chat")]


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/anthropic/v1/messages", "beta=true"),
        ("/openai/v1/chat/completions", "api-version=2025-01-01&x=%2F"),
        ("/anthropic/v1/messages/count_tokens", "beta=true"),
        ("/api/v2/aibridge/openai/v1/chat/completions", "trace=1"),
    ],
)
def test_the_query_string_is_preserved(stack: Stack, path: str, query: str) -> None:
    body = ANTHROPIC_REQUEST if "anthropic" in path else CHAT_REQUEST
    reply = post(stack, f"{path}?{query}", body)
    assert reply.status_code == 200
    assert stack.fake.last.query == query


def test_unknown_routes_get_404_in_the_providers_shape(stack: Stack) -> None:
    reply = raw_post(stack, "/openai/v1/embeddings", {"input": "x"}, {"authorization": f"Bearer {stack.key}"})
    assert (reply.status_code, reply.json()) == (
        404, openai_error("route not supported: POST /openai/v1/embeddings", "invalid_request_error", "not_found"))
    reply = httpx.get(stack.url + "/anthropic/v1/messages?x=1", headers={"x-api-key": stack.key})
    assert (reply.status_code, reply.json()) == (
        404, anthropic_error("not_found_error", "route not supported: GET /anthropic/v1/messages"))
    reply = httpx.delete(stack.url + "/api/v2/aibridge/anthropic/v1/files/f1", headers={"x-api-key": stack.key})
    assert (reply.status_code, reply.json()) == (
        404, anthropic_error("not_found_error", "route not supported: DELETE /api/v2/aibridge/anthropic/v1/files/f1"))
    assert len(stack.fake.requests) == 0
