"""Durations and retention cutoffs.

Duration syntax: an integer and a unit from ``s m h d w``, repeated
(``90d``, ``1h30m``, ``2w``); a bare ``0`` means zero (retention off).
"""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> int:
    """Seconds in ``text``; :class:`DurationError` with a clear message otherwise."""
    value = text.strip().lower() if isinstance(text, str) else ""
    if value == "0":
        return 0
    if not value:
        raise DurationError(f"invalid duration {text!r}: expected e.g. 30s, 10m, 1h30m, 90d or 2w")
    pos = 0
    total = 0
    seen: set[str] = set()
    for match in _PART.finditer(value):
        if match.start() != pos or match.group(2) in seen:
            break
        seen.add(match.group(2))
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value):
        raise DurationError(f"invalid duration {text!r}: expected e.g. 30s, 10m, 1h30m, 90d or 2w")
    return total


def format_duration(seconds: int) -> str:
    """The canonical spelling of ``seconds`` (largest units first); ``0`` for zero."""
    if seconds < 0:
        raise DurationError("durations are not negative")
    if seconds == 0:
        return "0"
    parts = []
    for unit in "wdhms":
        size = _UNITS[unit]
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def cutoff_for(now: float, retention_seconds: int) -> float | None:
    """Interceptions that started before the returned time may be purged; ``None``: keep all."""
    if retention_seconds <= 0:
        return None
    return now - retention_seconds
