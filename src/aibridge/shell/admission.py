"""Admission control: rate and concurrency limits and the upstream circuit breaker.

The app calls :meth:`Admission.check` after a request is authenticated and
translated and before its interception starts, and :meth:`Admission.finish`
when the interception ends (whatever the outcome). Decisions are the core's
(:mod:`aibridge.core.limits`, :mod:`aibridge.core.breaker`); this module keeps
their state for the process, reads the clock, maps refusals to provider-shaped
errors (429 for limits, 503 for an open breaker, both with ``Retry-After``) and
exports the metrics.

Everything here runs on the Trio thread without awaiting between a check and
its charge, so no lock is needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import attrs
from prometheus_client import Counter, Gauge

from aibridge.core.breaker import (
    Admitted,
    BreakerSettings,
    CircuitBreaker,
    outcome_for,
)
from aibridge.core.errors import RateLimited, ServiceUnavailable, UpstreamError
from aibridge.core.limits import Limiter, LimitSettings
from aibridge.core.routes import Route
from aibridge.shell.metrics import REGISTRY

log = logging.getLogger("aibridge.admission")

BREAKER_STATE = Gauge(
    "aibridge_circuit_breaker_state",
    "Circuit breaker state per provider, route and model (0 closed, 1 open, 2 half-open)",
    ["provider", "route", "model"],
    registry=REGISTRY,
)
BREAKER_TRIPS = Counter(
    "aibridge_circuit_breaker_trips",
    "Times a circuit breaker opened",
    ["provider", "route", "model"],
    registry=REGISTRY,
)
BREAKER_REJECTS = Counter(
    "aibridge_circuit_breaker_rejects",
    "Requests refused by an open or saturated half-open circuit breaker",
    ["provider", "route", "model"],
    registry=REGISTRY,
)
LIMIT_REJECTS = Counter(
    "aibridge_limit_rejects",
    "Requests refused by a rate or concurrency limit",
    ["limit"],
    registry=REGISTRY,
)

BreakerKey = tuple[str, str, str]
#: forget idle (closed, clean) breakers beyond this many keys: models come from clients
MAX_BREAKERS = 1000


@attrs.define
class Ticket:
    """What :meth:`Admission.check` admitted; handed back to :meth:`Admission.finish`."""

    user: str
    limited: bool
    breaker_key: BreakerKey | None = None
    generation: int = 0
    finished: bool = False


def settings_from_config(config: Any) -> tuple[LimitSettings, BreakerSettings | None]:
    limits = LimitSettings(
        max_concurrency=config.max_concurrency,
        max_concurrency_per_user=config.max_concurrency_per_user,
        rate_limit=config.rate_limit,
        rate_limit_per_user=config.rate_limit_per_user,
    )
    breaker = None
    if config.circuit_breaker_enabled:
        breaker = BreakerSettings(
            failure_threshold=max(config.circuit_breaker_failure_threshold, 1),
            interval=config.circuit_breaker_interval,
            timeout=config.circuit_breaker_timeout,
            max_requests=max(config.circuit_breaker_max_requests, 1),
        )
    return limits, breaker


class Admission:
    def __init__(self, config: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        limit_settings, self.breaker_settings = settings_from_config(config)
        self.limiter = Limiter(limit_settings, clock()) if limit_settings.any else None
        self.breakers: dict[BreakerKey, CircuitBreaker] = {}

    # -- the app's two calls ------------------------------------------------------

    async def check(self, route: Route, request: Any, identity: Any) -> Ticket:
        """Admit the request or raise a provider-shaped 429/503 (nothing is charged then)."""
        now = self.clock()
        ticket = Ticket(user=identity.user_id, limited=False)
        breaker: CircuitBreaker | None = None
        if self.breaker_settings is not None:
            key = (route.provider, route.name, request.model or "")
            breaker = self._breaker(key, now)
            decision = breaker.admit(now)
            self._observe(key, breaker)
            if not isinstance(decision, Admitted):
                BREAKER_REJECTS.labels(*key).inc()
                raise ServiceUnavailable(
                    f"{decision.reason}; upstream {route.provider} {route.name} for model "
                    f"{key[2]!r} is not being called (retry in {decision.retry_after}s)",
                    headers={"retry-after": str(decision.retry_after)},
                )
            ticket.breaker_key = key
            ticket.generation = decision.generation
        if self.limiter is not None:
            refused = self.limiter.acquire(identity.user_id, now)
            if refused is not None:
                if breaker is not None:
                    # give the half-open probe slot back: this request never went upstream
                    breaker.record(ticket.generation, "ignored", now)
                LIMIT_REJECTS.labels(refused.limit).inc()
                raise RateLimited(refused.message, headers={"retry-after": str(refused.retry_after)})
            ticket.limited = True
        return ticket

    def finish(self, ticket: Ticket, ic: Any) -> None:
        """The interception ended: free its slot and tell the breaker how upstream did."""
        if ticket.finished:
            return
        ticket.finished = True
        if ticket.limited and self.limiter is not None:
            self.limiter.release(ticket.user)
        if ticket.breaker_key is None:
            return
        key = ticket.breaker_key
        breaker = self.breakers.get(key)
        if breaker is None:
            return
        status = ic.upstream_status
        error = getattr(ic, "failure", None)
        transport = status is None and isinstance(error, UpstreamError)
        outcome = outcome_for(key[0], status, reached_upstream=status is not None, transport_failure=transport)
        breaker.record(ticket.generation, outcome, self.clock())
        self._observe(key, breaker)

    # -- breakers -------------------------------------------------------------------

    def _breaker(self, key: BreakerKey, now: float) -> CircuitBreaker:
        breaker = self.breakers.get(key)
        if breaker is None:
            assert self.breaker_settings is not None
            if len(self.breakers) >= MAX_BREAKERS:
                for old in [k for k, b in self.breakers.items() if b.idle]:
                    del self.breakers[old]
            breaker = self.breakers[key] = CircuitBreaker(self.breaker_settings, now)
            BREAKER_STATE.labels(*key).set(0)
        return breaker

    def _observe(self, key: BreakerKey, breaker: CircuitBreaker) -> None:
        for transition in breaker.take_transitions():
            log.warning(
                "circuit breaker %s/%s/%s: %s -> %s",
                *key,
                transition.previous.value,
                transition.current.value,
            )
            if transition.current.value == "open":
                BREAKER_TRIPS.labels(*key).inc()
        BREAKER_STATE.labels(*key).set(breaker.state.gauge)

    def state(self, provider: str, route: str, model: str) -> str:
        """The breaker state for a key now ("closed" if none exists); for tests and ops."""
        breaker = self.breakers.get((provider, route, model))
        if breaker is None:
            return "closed"
        return breaker.current_state(self.clock()).value


def install_admission(app: Any, config: Any) -> None:
    """APP_EXTENSIONS hook: give the app its admission control."""
    app.admission = Admission(config)
