"""The pure translation core.

Everything under ``aibridge.core`` is plain, synchronous, deterministic code: no
coroutines, no trio, httpx, hypercorn, sqlite, environment, clocks, randomness
or logging. Time and ids come in as arguments. The shell (``aibridge.shell``)
does the I/O; this package makes the decisions. A test walks the imports of
every module here and fails on a forbidden one.
"""

from __future__ import annotations
