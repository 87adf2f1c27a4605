"""Admission limits: request rate (token buckets) and concurrency, global and per user.

Semantics (documented in README.rst, "Limits"):

* ``rate_limit`` / ``rate_limit_per_user`` are *requests per minute*, enforced
  by a token bucket holding at most that many tokens and refilled
  continuously at ``rate / 60`` tokens a second. A burst of up to ``rate``
  requests passes at once; after that requests pass at the refill rate. A
  refused request is told when the next token arrives (``Retry-After``,
  whole seconds, at least 1).
* ``max_concurrency`` / ``max_concurrency_per_user`` bound interceptions in
  flight. There is no queue: a request over the bound is refused at once
  with ``Retry-After: 1``.
* 0 disables a limit. Every limit is checked before any is charged, so a
  refused request costs no token and holds no slot.

Pure: time comes in as an argument; the shell owns the lock-free single
thread (Trio) that calls this.
"""

from __future__ import annotations

import math

import attrs


@attrs.frozen(kw_only=True)
class LimitSettings:
    max_concurrency: int = 0
    max_concurrency_per_user: int = 0
    rate_limit: int = 0
    rate_limit_per_user: int = 0

    @property
    def any(self) -> bool:
        return bool(
            self.max_concurrency or self.max_concurrency_per_user or self.rate_limit or self.rate_limit_per_user
        )


@attrs.frozen(kw_only=True)
class LimitExceeded:
    """Why a request was refused: ``limit`` names the option; ``retry_after`` in seconds."""

    limit: str
    retry_after: int
    message: str


class TokenBucket:
    """``capacity`` tokens, refilled at ``capacity / 60`` per second (requests per minute)."""

    def __init__(self, per_minute: int, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.tokens = float(per_minute)
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = max(self.updated, now)

    def wait_time(self, now: float) -> float:
        """Seconds until one token is available (0 if one is available now)."""
        self._refill(now)
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0

    @property
    def full(self) -> bool:
        return self.tokens >= self.capacity


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


class Limiter:
    """All four limits. :meth:`acquire` admits or refuses; :meth:`release` ends a request."""

    #: forget full per-user buckets once this many users are tracked
    MAX_TRACKED_USERS = 10000

    def __init__(self, settings: LimitSettings, now: float) -> None:
        self.settings = settings
        self.in_flight = 0
        self.in_flight_by_user: dict[str, int] = {}
        self._global = TokenBucket(settings.rate_limit, now) if settings.rate_limit else None
        self._buckets: dict[str, TokenBucket] = {}

    def _user_bucket(self, user: str, now: float) -> TokenBucket | None:
        if not self.settings.rate_limit_per_user:
            return None
        bucket = self._buckets.get(user)
        if bucket is None:
            if len(self._buckets) >= self.MAX_TRACKED_USERS:
                self._forget_full_buckets(now)
            bucket = self._buckets[user] = TokenBucket(self.settings.rate_limit_per_user, now)
        return bucket

    def _forget_full_buckets(self, now: float) -> None:
        for name in list(self._buckets):
            bucket = self._buckets[name]
            bucket.wait_time(now)
            if bucket.full:
                del self._buckets[name]

    def check(self, user: str, now: float) -> LimitExceeded | None:
        """The first limit this request would exceed, or None. Charges nothing."""
        s = self.settings
        if s.max_concurrency and self.in_flight >= s.max_concurrency:
            return LimitExceeded(
                limit="max_concurrency",
                retry_after=1,
                message=f"too many requests in flight on this gateway (limit {s.max_concurrency})",
            )
        if s.max_concurrency_per_user and self.in_flight_by_user.get(user, 0) >= s.max_concurrency_per_user:
            return LimitExceeded(
                limit="max_concurrency_per_user",
                retry_after=1,
                message=f"too many requests in flight for this user (limit {s.max_concurrency_per_user})",
            )
        if self._global is not None:
            wait = self._global.wait_time(now)
            if wait > 0:
                return LimitExceeded(
                    limit="rate_limit",
                    retry_after=_seconds(wait),
                    message=f"gateway rate limit of {s.rate_limit} requests per minute exceeded",
                )
        bucket = self._user_bucket(user, now)
        if bucket is not None:
            wait = bucket.wait_time(now)
            if wait > 0:
                return LimitExceeded(
                    limit="rate_limit_per_user",
                    retry_after=_seconds(wait),
                    message=f"rate limit of {s.rate_limit_per_user} requests per minute per user exceeded",
                )
        return None

    def acquire(self, user: str, now: float) -> LimitExceeded | None:
        """Admit (charging a token and a slot) or refuse (charging nothing)."""
        refused = self.check(user, now)
        if refused is not None:
            return refused
        if self._global is not None:
            self._global.take(now)
        bucket = self._user_bucket(user, now)
        if bucket is not None:
            bucket.take(now)
        self.in_flight += 1
        self.in_flight_by_user[user] = self.in_flight_by_user.get(user, 0) + 1
        return None

    def release(self, user: str) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        left = self.in_flight_by_user.get(user, 0) - 1
        if left > 0:
            self.in_flight_by_user[user] = left
        else:
            self.in_flight_by_user.pop(user, None)
