"""Rate and concurrency limits, with explicit times."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aibridge.core.limits import Limiter, LimitSettings, TokenBucket


def test_rate_limit_is_requests_per_minute_with_a_burst_of_the_same_size() -> None:
    limiter = Limiter(LimitSettings(rate_limit=3), now=0.0)
    assert [limiter.acquire("u", 0.0) for _ in range(3)] == [None, None, None]
    refused = limiter.acquire("u", 0.0)
    assert refused is not None
    assert (refused.limit, refused.retry_after) == ("rate_limit", 20)
    # one token every 20 s
    assert limiter.acquire("u", 19.0) is not None
    assert limiter.acquire("u", 20.0) is None


def test_per_user_rate_limit_keeps_users_apart() -> None:
    limiter = Limiter(LimitSettings(rate_limit_per_user=2), now=0.0)
    assert limiter.acquire("ann", 0.0) is None
    assert limiter.acquire("ann", 0.0) is None
    refused = limiter.acquire("ann", 1.0)
    assert refused is not None and refused.limit == "rate_limit_per_user" and refused.retry_after == 29
    assert limiter.acquire("bob", 1.0) is None


def test_concurrency_limits_release_and_charge_nothing_when_refused() -> None:
    limiter = Limiter(LimitSettings(max_concurrency=3, max_concurrency_per_user=2, rate_limit=100), now=0.0)
    assert limiter.acquire("ann", 0.0) is None
    assert limiter.acquire("ann", 0.0) is None
    refused = limiter.acquire("ann", 0.0)
    assert refused is not None and (refused.limit, refused.retry_after) == ("max_concurrency_per_user", 1)
    assert limiter.acquire("bob", 0.0) is None
    refused = limiter.acquire("cat", 0.0)
    assert refused is not None and refused.limit == "max_concurrency"
    assert limiter.in_flight == 3 and limiter.in_flight_by_user == {"ann": 2, "bob": 1}
    limiter.release("ann")
    assert limiter.acquire("cat", 0.0) is None
    # 4 admitted requests cost 4 tokens, the 2 refused ones none
    bucket = limiter._global
    assert bucket is not None and bucket.tokens == 96.0
    for user in ("ann", "bob", "cat"):
        limiter.release(user)
    assert limiter.in_flight == 0 and limiter.in_flight_by_user == {}


@given(st.integers(1, 600), st.lists(st.floats(0, 30, allow_nan=False), max_size=200))
def test_a_bucket_never_admits_more_than_capacity_plus_refill(per_minute: int, gaps: list[float]) -> None:
    bucket = TokenBucket(per_minute, now=0.0)
    now = 0.0
    admitted = 0
    for gap in gaps:
        now += gap
        if bucket.wait_time(now) == 0:
            bucket.take(now)
            admitted += 1
    assert admitted <= per_minute + now * per_minute / 60 + 1e-6
