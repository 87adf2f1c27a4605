"""The circuit breaker through a real bridge: trip, refuse without calling upstream, probe, close."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.e2e.wire import json_reply, post
from tests.shell.resilience import MESSAGES, anthropic_body, chat_body, manual_admission, metric

OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded (upstream)"}}


@pytest.fixture
def breaker_stack(make_stack: Any) -> Any:
    return make_stack(
        circuit_breaker_enabled=True,
        circuit_breaker_failure_threshold=3,
        circuit_breaker_timeout=30,
        circuit_breaker_interval=10,
        circuit_breaker_max_requests=2,
    )


def test_full_cycle_open_half_open_closed_per_model(breaker_stack: Any) -> None:
    stack = breaker_stack
    clock = manual_admission(stack)
    model, other = "claude-breaker-cycle", "claude-breaker-bystander"
    labels = {"provider": "anthropic", "route": "messages", "model": model}
    trips_before = metric("aibridge_circuit_breaker_trips_total", **labels)
    rejects_before = metric("aibridge_circuit_breaker_rejects_total", **labels)

    # Three consecutive 529/503/429 from upstream are relayed as they came, then it opens.
    stack.script(
        json_reply(OVERLOADED, status=529),
        json_reply(OVERLOADED, status=503),
        json_reply(OVERLOADED, status=429, headers=(("retry-after", "7"),)),
    )
    statuses = []
    for _ in range(3):
        statuses.append(post(stack, MESSAGES, anthropic_body(model)).status_code)
        stack.settle()
    assert statuses == [529, 503, 429]
    stack.settle()  # the outcome is reported when the interception ends, just after the reply
    assert stack.app.admission.state("anthropic", "messages", model) == "open"
    assert metric("aibridge_circuit_breaker_state", **labels) == 1
    assert metric("aibridge_circuit_breaker_trips_total", **labels) == trips_before + 1

    # Open: 503, Retry-After, Anthropic's shape, and upstream is not called.
    clock.now += 12
    upstream_calls = len(stack.fake.requests)
    refused = post(stack, MESSAGES, anthropic_body(model))
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "18"
    body = orjson.loads(refused.content)
    assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"
    assert "circuit breaker is open" in body["error"]["message"]
    assert len(stack.fake.requests) == upstream_calls
    assert metric("aibridge_circuit_breaker_rejects_total", **labels) == rejects_before + 1
    exposed = httpx.get(stack.url + "/metrics").text
    assert f'aibridge_circuit_breaker_state{{model="{model}",provider="anthropic",route="messages"}} 1.0' in exposed

    # Another model on the same route is not affected.
    assert post(stack, MESSAGES, anthropic_body(other)).status_code == 200

    # The SDK sees a retryable overloaded error.
    client = anthropic.Anthropic(base_url=stack.url + "/anthropic", api_key=stack.key, max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(model=model, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503

    # After the timeout: half-open; two successful probes close it.
    clock.now += 18
    assert stack.app.admission.state("anthropic", "messages", model) == "half_open"
    assert post(stack, MESSAGES, anthropic_body(model)).status_code == 200
    assert post(stack, MESSAGES, anthropic_body(model)).status_code == 200
    stack.settle()
    assert stack.app.admission.state("anthropic", "messages", model) == "closed"
    assert metric("aibridge_circuit_breaker_state", **labels) == 0

    # Refused requests are not interceptions; the six that went upstream are.
    items = [i for i in stack.interceptions() if i["model"] == model]
    assert [(i["status"], i["upstream_status"]) for i in items] == [
        ("failed", 529), ("failed", 503), ("failed", 429), ("completed", 200), ("completed", 200),
    ]


def test_a_failed_half_open_probe_reopens(breaker_stack: Any) -> None:
    stack = breaker_stack
    clock = manual_admission(stack)
    model = "gpt-breaker-reopen"
    stack.script(*[json_reply({"error": {"message": "busy", "type": "server_error"}}, status=504)] * 4)
    for _ in range(3):
        assert post(stack, "/openai/v1/chat/completions", chat_body(model)).status_code == 504
        stack.settle()
    clock.now += 30
    assert post(stack, "/openai/v1/chat/completions", chat_body(model)).status_code == 504
    stack.settle()
    assert stack.app.admission.state("openai", "chat", model) == "open"
    refused = post(stack, "/openai/v1/chat/completions", chat_body(model))
    assert refused.status_code == 503 and refused.headers["retry-after"] == "30"
    assert orjson.loads(refused.content)["error"]["code"] == "service_unavailable"


def test_non_overload_errors_do_not_trip_it(breaker_stack: Any) -> None:
    stack = breaker_stack
    manual_admission(stack)
    model = "claude-breaker-400s"
    bad = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
    stack.script(*[json_reply(bad, status=400)] * 5, *[json_reply(OVERLOADED, status=500)] * 2)
    statuses = []
    for _ in range(7):
        statuses.append(post(stack, MESSAGES, anthropic_body(model)).status_code)
        stack.settle()
    assert statuses == [400] * 5 + [500] * 2
    assert stack.app.admission.state("anthropic", "messages", model) == "closed"


def test_an_unreachable_upstream_counts_as_a_failure(make_stack: Any) -> None:
    stack = make_stack(
        circuit_breaker_enabled=True, circuit_breaker_failure_threshold=2, openai_base_url="http://127.0.0.1:9/v1/"
    )
    manual_admission(stack)
    model = "gpt-breaker-unreachable"
    statuses = []
    for _ in range(3):
        statuses.append(post(stack, "/openai/v1/chat/completions", chat_body(model)).status_code)
        stack.settle()
    assert statuses == [502, 502, 503]
