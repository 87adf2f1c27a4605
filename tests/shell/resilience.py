"""Helpers shared by the resilience tests (not a test module)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aibridge.shell.admission import Admission
from aibridge.shell.metrics import REGISTRY
from tests.harness import Stack

MESSAGES = "/anthropic/v1/messages"
CHAT = "/openai/v1/chat/completions"


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it is truthy (for state only observable from outside)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def manual_admission(stack: Stack) -> ManualClock:
    """Give the running app an admission control driven by a clock the test moves."""
    clock = ManualClock()
    stack.app.admission = Admission(stack.config, clock=clock)
    return clock


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def anthropic_body(model: str, text: str = "hi", *, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "max_tokens": 16, "stream": stream, "messages": [{"role": "user", "content": text}]}


def chat_body(model: str, text: str = "hi", *, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}
