"""The circuit breaker state machine, driven with explicit times."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aibridge.core.breaker import (
    Admitted,
    BreakerSettings,
    BreakerState,
    CircuitBreaker,
    Refused,
    is_breaker_failure,
    outcome_for,
)

SETTINGS = BreakerSettings(failure_threshold=3, interval=10.0, timeout=30.0, max_requests=2)


def fail(b: CircuitBreaker, now: float) -> None:
    d = b.admit(now)
    assert isinstance(d, Admitted)
    b.record(d.generation, "failure", now)


def succeed(b: CircuitBreaker, now: float) -> None:
    d = b.admit(now)
    assert isinstance(d, Admitted)
    b.record(d.generation, "success", now)


def test_consecutive_failures_open_then_half_open_probes_close() -> None:
    b = CircuitBreaker(SETTINGS, now=100.0)
    fail(b, 100.0)
    fail(b, 101.0)
    assert b.state is BreakerState.CLOSED
    fail(b, 102.0)
    assert b.state is BreakerState.OPEN and b.trips == 1
    refused = b.admit(110.0)
    assert refused == Refused(state=BreakerState.OPEN, retry_after=22, reason=refused.reason)
    # timeout passed: half-open, two probes at most at once
    p1, p2 = b.admit(132.0), b.admit(132.0)
    assert isinstance(p1, Admitted) and isinstance(p2, Admitted)
    assert b.state is BreakerState.HALF_OPEN
    third = b.admit(132.0)
    assert isinstance(third, Refused) and third.retry_after == 1
    b.record(p1.generation, "success", 133.0)
    assert b.state is BreakerState.HALF_OPEN
    b.record(p2.generation, "success", 133.0)
    assert b.state is BreakerState.CLOSED
    assert [(t.previous, t.current) for t in b.take_transitions()] == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


def test_a_failed_probe_reopens_for_another_timeout() -> None:
    b = CircuitBreaker(SETTINGS, now=0.0)
    for t in (1.0, 2.0, 3.0):
        fail(b, t)
    probe = b.admit(40.0)
    assert isinstance(probe, Admitted)
    b.record(probe.generation, "failure", 41.0)
    assert b.state is BreakerState.OPEN and b.trips == 2
    refused = b.admit(41.0)
    assert isinstance(refused, Refused) and refused.retry_after == 30


def test_a_success_resets_the_consecutive_count() -> None:
    b = CircuitBreaker(SETTINGS, now=0.0)
    fail(b, 1.0)
    fail(b, 2.0)
    succeed(b, 3.0)
    fail(b, 4.0)
    fail(b, 5.0)
    assert b.state is BreakerState.CLOSED


def test_the_interval_clears_counts_so_sparse_failures_never_trip() -> None:
    b = CircuitBreaker(SETTINGS, now=0.0)
    fail(b, 1.0)
    fail(b, 9.0)
    fail(b, 11.0)  # a new window started at 10
    assert b.state is BreakerState.CLOSED
    assert b.consecutive_failures == 1


def test_outcomes_from_an_older_generation_are_ignored() -> None:
    b = CircuitBreaker(SETTINGS, now=0.0)
    slow = b.admit(0.5)
    assert isinstance(slow, Admitted)
    for t in (1.0, 2.0, 3.0):
        fail(b, t)
    probe = b.admit(35.0)
    assert isinstance(probe, Admitted)
    b.record(slow.generation, "success", 35.0)  # admitted before the trip
    b.record(slow.generation, "success", 35.0)
    assert b.state is BreakerState.HALF_OPEN


def test_ignored_outcome_returns_the_probe_slot() -> None:
    b = CircuitBreaker(BreakerSettings(failure_threshold=1, interval=0, timeout=5, max_requests=1), now=0.0)
    fail(b, 0.0)
    probe = b.admit(6.0)
    assert isinstance(probe, Admitted)
    assert isinstance(b.admit(6.0), Refused)
    b.record(probe.generation, "ignored", 6.0)
    assert isinstance(b.admit(6.0), Admitted)


def test_failure_statuses() -> None:
    assert [s for s in (200, 400, 429, 500, 502, 503, 504, 529) if is_breaker_failure("anthropic", s)] == [
        429, 503, 504, 529,
    ]
    assert not is_breaker_failure("openai", 529)
    assert outcome_for("openai", None, reached_upstream=False) == "ignored"
    assert outcome_for("openai", None, reached_upstream=False, transport_failure=True) == "failure"
    assert outcome_for("openai", 400, reached_upstream=True) == "success"


@given(st.lists(st.tuples(st.floats(0, 5), st.sampled_from(["success", "failure", "ignored"]), st.booleans())))
def test_never_more_probes_than_max_requests_and_refusals_say_when(steps: list[tuple[float, str, bool]]) -> None:
    b = CircuitBreaker(SETTINGS, now=0.0)
    now = 0.0
    pending: list[int] = []
    for dt, outcome, finish_one in steps:
        now += dt
        d = b.admit(now)
        if isinstance(d, Admitted):
            pending.append(d.generation)
        else:
            assert d.retry_after >= 1
        if b.state is BreakerState.HALF_OPEN:
            assert b.in_flight_probes <= SETTINGS.max_requests
        if finish_one and pending:
            b.record(pending.pop(0), outcome, now)  # type: ignore[arg-type]
