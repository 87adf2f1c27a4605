"""Export encodings of the interception JSON shape (DESIGN §6): JSON lines and CSV.

Pure functions from the shared JSON shape (a dict per interception, children
nested) to text, so the audit API and the CLI stream exactly the same bytes.
JSON lines carry the shape unchanged; CSV has one row per interception with
token usages summed and children flattened (see :data:`CSV_COLUMNS`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from aibridge.core import jsonutil

TOKEN_KINDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_write_input_tokens",
    "reasoning_tokens",
)

#: CSV columns, in order. Scalars are copied; ``user_id``/``user_name`` come
#: from ``user``; the five token columns are sums over ``token_usages``;
#: ``token_usages`` is how many usage rows there were; ``prompt`` is the
#: recorded prompt (empty when none); ``tool_calls`` the number of tool
#: usages and ``tools`` their names as a JSON array (in call order);
#: ``thoughts`` the number of model thoughts; ``metadata`` JSON text.
#: Booleans are ``true``/``false``; missing values are empty cells.
CSV_COLUMNS = (
    "id",
    "user_id",
    "user_name",
    "key_id",
    "provider",
    "provider_name",
    "api",
    "model",
    "streaming",
    "client",
    "user_agent",
    "client_session_id",
    "credential_kind",
    "credential_hint",
    "status",
    "upstream_status",
    "error",
    "started_at",
    "ended_at",
    *TOKEN_KINDS,
    "token_usages",
    "prompt",
    "tool_calls",
    "tools",
    "thoughts",
    "metadata",
)

_SCALARS = frozenset(CSV_COLUMNS[:19]) - {"user_id", "user_name"}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_record(item: dict[str, Any]) -> dict[str, str]:
    """The CSV row of one interception, keyed by column name."""
    row: dict[str, str] = {}
    for column in CSV_COLUMNS:
        if column in _SCALARS:
            row[column] = _cell(item.get(column))
    row["user_id"] = _cell(item["user"]["id"])
    row["user_name"] = _cell(item["user"]["name"])
    for kind in TOKEN_KINDS:
        row[kind] = str(sum(u[kind] or 0 for u in item["token_usages"]))
    row["token_usages"] = str(len(item["token_usages"]))
    row["prompt"] = "\n".join(p["prompt"] or "" for p in item["user_prompts"])
    row["tool_calls"] = str(len(item["tool_usages"]))
    row["tools"] = jsonutil.dumps([t["tool"] for t in item["tool_usages"]]).decode()
    row["thoughts"] = str(len(item["model_thoughts"]))
    row["metadata"] = jsonutil.dumps(item.get("metadata") or {}).decode()
    return row


def encode_csv(items: Iterable[dict[str, Any]], *, header: bool = False) -> str:
    """CSV text (RFC 4180, CRLF line ends) for ``items``, optionally led by the header row."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    if header:
        writer.writeheader()
    for item in items:
        writer.writerow(csv_record(item))
    return out.getvalue()


def encode_jsonl(items: Iterable[dict[str, Any]]) -> bytes:
    """One JSON object per line, each the shared interception shape."""
    return b"".join(jsonutil.dumps(item) + b"\n" for item in items)
