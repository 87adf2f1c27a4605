"""A fake upstream that speaks the providers' exact wire formats.

Used by the tests, the benchmarks and ``aibridge demo``. See :mod:`.upstream`.
"""

from __future__ import annotations

from aibridge.fake.upstream import FakeUpstream, ReceivedRequest, Reply

__all__ = ["FakeUpstream", "ReceivedRequest", "Reply"]
