"""Audit read requests: filters, their validation, and who may see what.

Pure: the audit API and the CLI both turn user input into an
:class:`InterceptionQuery` here (same rules, same messages), and
:func:`restrict` applies the visibility rule (admins see everyone, members
only themselves). The store turns a query into SQL; nothing here knows how.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from aibridge.core.errors import ClientError, PermissionDenied
from aibridge.core.times import parse_rfc3339

STATUSES = ("completed", "failed", "client_disconnected")
USAGE_GROUPS = ("user", "model", "provider", "client", "day")
EXPORT_FORMATS = ("jsonl", "csv")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


@attrs.frozen(kw_only=True)
class InterceptionQuery:
    """Filters shared by the list, usage and export reads (all optional, ANDed).

    ``user`` is a name or an id (what a person types); ``user_id`` is the
    visibility restriction set for members (an exact id). Times are seconds
    since the epoch: ``started_after`` is inclusive and ``started_before``
    exclusive, so consecutive windows tile without overlap.
    """

    user: str | None = None
    user_id: str | None = None
    provider: str | None = None
    model: str | None = None
    client: str | None = None
    status: str | None = None
    started_after: float | None = None
    started_before: float | None = None


def parse_time(name: str, text: str) -> float:
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise ClientError(
            f"invalid {name} {text!r}: expected an RFC 3339 time such as 2026-01-31T09:00:00Z"
        ) from None


def parse_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise ClientError(f"invalid limit {text!r}: expected an integer from 1 to {MAX_LIMIT}")
    return value


def build_query(
    *,
    user: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    client: str | None = None,
    status: str | None = None,
    started_after: str | None = None,
    started_before: str | None = None,
) -> InterceptionQuery:
    """Validate textual filters (as typed on a command line or in a URL)."""
    if status is not None and status not in STATUSES:
        raise ClientError(f"invalid status {status!r}: expected one of {', '.join(STATUSES)}")
    after = parse_time("started_after", started_after) if started_after is not None else None
    before = parse_time("started_before", started_before) if started_before is not None else None
    if after is not None and before is not None and before < after:
        raise ClientError(f"started_before ({started_before}) is earlier than started_after ({started_after})")
    return InterceptionQuery(
        user=user or None,
        provider=provider,
        model=model,
        client=client,
        status=status,
        started_after=after,
        started_before=before,
    )


def restrict(
    query: InterceptionQuery, *, user_id: str, user_name: str, admin: bool
) -> InterceptionQuery:
    """Apply visibility: ``me`` means the caller; a member reads only their own records.

    A member naming anyone else gets 403, whether or not that user exists
    (the answer must not reveal who else uses the gateway).
    """
    user = query.user
    if user == "me":
        user = user_id
    if admin:
        return attrs.evolve(query, user=user)
    if user is not None and user not in (user_id, user_name):
        raise PermissionDenied("members can read only their own records")
    return attrs.evolve(query, user=None, user_id=user_id)


LIST_PARAMS = frozenset(
    {"user", "provider", "model", "client", "status", "started_after", "started_before"}
)


def single_params(params: Mapping[str, Sequence[str]], allowed: frozenset[str]) -> dict[str, str]:
    """One value per parameter; unknown or repeated parameters are a 400 (a typo must not widen a query)."""
    out: dict[str, str] = {}
    for name, values in params.items():
        if name not in allowed:
            raise ClientError(f"unknown query parameter {name!r}; expected {', '.join(sorted(allowed))}")
        if len(values) != 1:
            raise ClientError(f"query parameter {name!r} given more than once")
        out[name] = values[0]
    return out


def query_from_params(params: Mapping[str, str]) -> InterceptionQuery:
    return build_query(**{k: v for k, v in params.items() if k in LIST_PARAMS})
