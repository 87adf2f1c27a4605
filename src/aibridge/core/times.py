"""RFC 3339 time formatting and parsing (UTC). The clock itself is the shell's."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch; ``ValueError`` for anything that is not RFC 3339."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset (RFC 3339 needs one, e.g. Z)")
    return parsed.timestamp()
