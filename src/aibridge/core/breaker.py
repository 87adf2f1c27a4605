"""The circuit breaker: a pure state machine per provider x route x model.

The model is sony/gobreaker (which Coder's AI Bridge uses), with time passed
in as an argument so that tests drive it without a clock:

* **closed**: requests pass. ``failure_threshold`` *consecutive* failures
  trip it open. The counts are cleared every ``interval`` seconds (a cyclic
  window, 0 = never), so sparse failures spread over a long time never trip.
* **open**: requests are refused without calling upstream, with a retry
  hint of the time left. After ``timeout`` seconds it turns half-open.
* **half-open**: at most ``max_requests`` probe requests pass at once; the
  rest are refused. ``max_requests`` consecutive successes close it; any
  failure opens it again for another ``timeout``.

Outcomes reported for a request admitted in an earlier *generation* (before
the state last changed or the window last reset) are ignored, as in
gobreaker: a slow success from before a trip must not close the breaker.

What counts as a failure is decided by :func:`is_breaker_failure` (upstream
429/503/504 and Anthropic's 529 "overloaded", plus an upstream that could
not be reached or timed out); every other outcome is a
success, except an outcome that says nothing about the upstream (the client
went away before the upstream answered), which only returns the probe slot.

This module must stay pure: no clock, no I/O, no logging.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Literal

import attrs

#: statuses that mean "the upstream is overloaded or failing": open the breaker
FAILURE_STATUSES = frozenset({429, 503, 504})
#: Anthropic's "overloaded_error" status
ANTHROPIC_OVERLOADED = 529

Outcome = Literal["success", "failure", "ignored"]


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def gauge(self) -> int:
        """The value exported in the state gauge: 0 closed, 1 open, 2 half-open."""
        return {"closed": 0, "open": 1, "half_open": 2}[self.value]


@attrs.frozen(kw_only=True)
class BreakerSettings:
    failure_threshold: int = 5
    interval: float = 10.0
    timeout: float = 30.0
    max_requests: int = 3

    def __attrs_post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if self.max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        if self.interval < 0 or self.timeout < 0:
            raise ValueError("interval and timeout must not be negative")


@attrs.frozen(kw_only=True)
class Admitted:
    """The request may go upstream; report its outcome with this generation."""

    generation: int


@attrs.frozen(kw_only=True)
class Refused:
    """The breaker refuses the request; ``retry_after`` is in whole seconds (>= 1)."""

    state: BreakerState
    retry_after: int
    reason: str


Decision = Admitted | Refused


def is_breaker_failure(provider: str, status: int | None) -> bool:
    """Does an upstream status count against the breaker?"""
    if status is None:
        return False
    return status in FAILURE_STATUSES or (provider == "anthropic" and status == ANTHROPIC_OVERLOADED)


def outcome_for(
    provider: str, status: int | None, *, reached_upstream: bool, transport_failure: bool = False
) -> Outcome:
    """Classify a finished request for :meth:`CircuitBreaker.record`.

    ``transport_failure``: the upstream could not be reached or timed out (the
    bridge answered 502/504 itself); that counts as a failure too.
    """
    if is_breaker_failure(provider, status) or transport_failure:
        return "failure"
    if status is None and not reached_upstream:
        return "ignored"
    return "success"


@attrs.frozen(kw_only=True)
class Transition:
    """The state changed (for metrics and logs)."""

    previous: BreakerState
    current: BreakerState


class CircuitBreaker:
    """One breaker. Call :meth:`admit` before a request and :meth:`record` after it."""

    def __init__(self, settings: BreakerSettings, now: float) -> None:
        self.settings = settings
        self.state = BreakerState.CLOSED
        self.generation = 0
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.in_flight_probes = 0
        self.trips = 0
        self._expiry = now + settings.interval if settings.interval > 0 else math.inf
        self.transitions: list[Transition] = []

    # -- state bookkeeping -------------------------------------------------------

    def _set_state(self, state: BreakerState, now: float) -> None:
        if state is self.state:
            return
        self.transitions.append(Transition(previous=self.state, current=state))
        self.state = state
        if state is BreakerState.OPEN:
            self.trips += 1
        self._new_generation(now)

    def _new_generation(self, now: float) -> None:
        self.generation += 1
        self.consecutive_failures = 0
        self.consecutive_successes = 0
        self.in_flight_probes = 0
        if self.state is BreakerState.CLOSED:
            self._expiry = now + self.settings.interval if self.settings.interval > 0 else math.inf
        elif self.state is BreakerState.OPEN:
            self._expiry = now + self.settings.timeout
        else:
            self._expiry = math.inf

    def current_state(self, now: float) -> BreakerState:
        """The state at ``now`` (open turns half-open once its timeout passed)."""
        if self.state is BreakerState.CLOSED:
            if self._expiry <= now:
                self._new_generation(now)
        elif self.state is BreakerState.OPEN and self._expiry <= now:
            self._set_state(BreakerState.HALF_OPEN, now)
        return self.state

    def take_transitions(self) -> list[Transition]:
        out, self.transitions = self.transitions, []
        return out

    # -- requests ------------------------------------------------------------------

    def admit(self, now: float) -> Decision:
        state = self.current_state(now)
        if state is BreakerState.OPEN:
            return Refused(
                state=state,
                retry_after=max(1, math.ceil(self._expiry - now)),
                reason="circuit breaker is open after repeated upstream failures",
            )
        if state is BreakerState.HALF_OPEN:
            if self.in_flight_probes >= self.settings.max_requests:
                return Refused(
                    state=state,
                    retry_after=1,
                    reason="circuit breaker is half-open and its probe requests are in flight",
                )
            self.in_flight_probes += 1
        return Admitted(generation=self.generation)

    def record(self, generation: int, outcome: Outcome, now: float) -> None:
        state = self.current_state(now)
        if generation != self.generation:
            return
        if outcome == "ignored":
            if state is BreakerState.HALF_OPEN and self.in_flight_probes > 0:
                self.in_flight_probes -= 1
            return
        if outcome == "success":
            self.consecutive_failures = 0
            self.consecutive_successes += 1
            if state is BreakerState.HALF_OPEN:
                self.in_flight_probes = max(0, self.in_flight_probes - 1)
                if self.consecutive_successes >= self.settings.max_requests:
                    self._set_state(BreakerState.CLOSED, now)
            return
        self.consecutive_successes = 0
        self.consecutive_failures += 1
        if state is BreakerState.HALF_OPEN:
            self._set_state(BreakerState.OPEN, now)
        elif self.consecutive_failures >= self.settings.failure_threshold:
            self._set_state(BreakerState.OPEN, now)

    @property
    def idle(self) -> bool:
        """Closed with nothing counted: safe to forget (bounds memory on many models)."""
        return (
            self.state is BreakerState.CLOSED
            and self.consecutive_failures == 0
            and self.in_flight_probes == 0
        )
