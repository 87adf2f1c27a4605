"""The audit store: SQLite through sqlite-utils.

The rest of the program sees only :class:`AuditStore` (write a batch, purge,
key and read queries), so that a PostgreSQL store can follow; nothing outside
this module knows it is SQLite. All methods are synchronous and blocking: the
writer task calls the write side through ``trio.to_thread``, readers open
their own connections.

Schema: created explicitly (never inferred from a first insert), versioned in
``PRAGMA user_version`` with forward migrations in :data:`MIGRATIONS`.
WAL journal, foreign keys on, a busy timeout so that several worker processes
can share one file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
import orjson
import sqlite_utils

from aibridge.core.audit_query import USAGE_GROUPS, InterceptionQuery
from aibridge.core.export import TOKEN_KINDS
from aibridge.core.model import (
    InterceptionEnded,
    InterceptionStarted,
    PromptRecord,
    Record,
    ThoughtRecord,
    TokenUsageRecord,
    ToolUsageRecord,
)

BUSY_TIMEOUT_MS = 5000
CHILD_TABLES = ("token_usages", "user_prompts", "tool_usages", "model_thoughts")


class StoreError(Exception):
    """The store cannot do what was asked (disk full, read-only, locked past the timeout)."""


#: what a read query may raise when the store is unavailable (callers map it to 503)
READ_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, StoreError)


class AuditStore(Protocol):
    def write_batch(self, records: Sequence[Record]) -> None: ...

    def purge(self, cutoff: float, *, batch_size: int = 500) -> int: ...

    def close(self) -> None: ...


def _v1(db: sqlite_utils.Database) -> None:
    db["users"].create(
        {"id": str, "name": str, "created_at": float}, pk="id", not_null={"name"}, if_not_exists=True
    )
    db["users"].create_index(["name"], unique=True, if_not_exists=True)
    db["api_keys"].create(
        {
            "id": str,
            "user_id": str,
            "key_hash": str,
            "prefix": str,
            "admin": int,
            "created_at": float,
            "expires_at": float,
            "revoked_at": float,
        },
        pk="id",
        foreign_keys=[("user_id", "users", "id")],
        not_null={"user_id", "key_hash"},
        if_not_exists=True,
    )
    db["api_keys"].create_index(["key_hash"], unique=True, if_not_exists=True)
    db["interceptions"].create(
        {
            "id": str,
            "user_id": str,
            "key_id": str,
            "provider": str,
            "provider_name": str,
            "api": str,
            "model": str,
            "streaming": int,
            "client": str,
            "user_agent": str,
            "client_session_id": str,
            "credential_kind": str,
            "credential_hint": str,
            "started_at": float,
            "ended_at": float,
            "status": str,
            "upstream_status": int,
            "error": str,
            "metadata": str,
        },
        pk="id",
        foreign_keys=[("user_id", "users", "id")],
        if_not_exists=True,
    )
    db["interceptions"].create_index(["started_at", "id"], if_not_exists=True)
    db["interceptions"].create_index(["user_id", "started_at"], if_not_exists=True)
    db["interceptions"].create_index(["ended_at"], if_not_exists=True)
    db["token_usages"].create(
        {
            "id": int,
            "interception_id": str,
            "provider_response_id": str,
            "input_tokens": int,
            "output_tokens": int,
            "cache_read_input_tokens": int,
            "cache_write_input_tokens": int,
            "reasoning_tokens": int,
            "metadata": str,
            "created_at": float,
        },
        pk="id",
        foreign_keys=[("interception_id", "interceptions", "id")],
        if_not_exists=True,
    )
    db["user_prompts"].create(
        {"id": int, "interception_id": str, "provider_response_id": str, "prompt": str, "created_at": float},
        pk="id",
        foreign_keys=[("interception_id", "interceptions", "id")],
        if_not_exists=True,
    )
    db["tool_usages"].create(
        {
            "id": int,
            "interception_id": str,
            "provider_response_id": str,
            "tool_call_id": str,
            "tool": str,
            "input": str,
            "injected": int,
            "server_url": str,
            "invocation_error": str,
            "created_at": float,
        },
        pk="id",
        foreign_keys=[("interception_id", "interceptions", "id")],
        if_not_exists=True,
    )
    db["model_thoughts"].create(
        {"id": int, "interception_id": str, "content": str, "source": str, "created_at": float},
        pk="id",
        foreign_keys=[("interception_id", "interceptions", "id")],
        if_not_exists=True,
    )
    for table in CHILD_TABLES:
        db[table].create_index(["interception_id"], if_not_exists=True)


def _v2(db: sqlite_utils.Database) -> None:
    """Thread linking: the tool call a request answers, and the interceptions it continues.

    ``correlating_tool_call_id`` is the provider call id the request's last
    message answers (a tool result); ``parent_id`` is the interception that
    recorded that call, ``root_id`` the first interception of the thread.
    """
    for column in ("correlating_tool_call_id", "parent_id", "root_id"):
        db["interceptions"].add_column(column, str)
    db["interceptions"].create_index(["root_id"], if_not_exists=True)
    db["tool_usages"].create_index(["tool_call_id"], if_not_exists=True)


def _v3(db: sqlite_utils.Database) -> None:
    """Indexes for the audit reads (measured by ``benchmarks/bench_store.py``).

    * ``(filter, started_at, id)`` for each list filter, *partial* on ended
      interceptions (the reads never list in-flight ones): a filtered page is
      an index range walked in the order it is returned, the keyset cursor
      ``(started_at, id) < (?, ?)`` starts inside it, and counts and grouped
      usage never touch the table to check ``ended_at``.
    * token usages by interception *covering* the token columns: usage sums
      read the index alone. It replaces v1's plain ``interception_id`` index,
      as ``(user_id, started_at, id)`` replaces v1's ``(user_id, started_at)``.

    Idempotent (drops what it replaces), so it can be re-run on a copy.
    """
    db.execute("DROP INDEX IF EXISTS idx_interceptions_user_id_started_at")
    for column in ("user_id", "provider", "model", "client", "status"):
        db.execute(f"DROP INDEX IF EXISTS idx_interceptions_{column}_started_at_id")
        db.execute(
            f"CREATE INDEX IF NOT EXISTS idx_interceptions_ended_{column}"
            f" ON interceptions ({column}, started_at, id) WHERE ended_at IS NOT NULL"
        )
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_interceptions_ended_started_at"
        " ON interceptions (started_at, id) WHERE ended_at IS NOT NULL"
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_token_usages_interception_tokens ON token_usages (interception_id,"
        " input_tokens, output_tokens, cache_read_input_tokens, cache_write_input_tokens, reasoning_tokens)"
    )
    db.execute("DROP INDEX IF EXISTS idx_token_usages_interception_id")


#: Forward migrations; index i brings the schema from version i to i + 1.
MIGRATIONS = (_v1, _v2, _v3)
SCHEMA_VERSION = len(MIGRATIONS)


def connect(
    path: str | Path, *, readonly: bool = False, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> sqlite_utils.Database:
    """Open a connection with the project's pragmas (WAL, foreign keys, busy timeout)."""
    if readonly:
        uri = f"file:{Path(path).resolve()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=busy_timeout_ms / 1000)
    else:
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=busy_timeout_ms / 1000)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    return sqlite_utils.Database(conn)


def migrate(db: sqlite_utils.Database) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {version} is newer than this aibridge ({SCHEMA_VERSION}); upgrade aibridge"
        )
    for target in range(version, SCHEMA_VERSION):
        with db.conn:
            MIGRATIONS[target](db)
            db.execute(f"PRAGMA user_version = {target + 1}")


def _json(value: dict[str, Any] | None) -> str | None:
    if not value:
        return None
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # a lone surrogate (see write_batch)
        return orjson.dumps(_valid(value)).decode()


def _valid(value: Any) -> Any:
    """``value`` with any lone surrogate in its text replaced by U+FFFD (JSON kept JSON)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {_valid(k): _valid(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_valid(v) for v in value)
    return value


class SQLiteStore:
    """The SQLite implementation of :class:`AuditStore`, plus keys and reads."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = str(path)
        try:
            self.db = connect(self.path, busy_timeout_ms=busy_timeout_ms)
            migrate(self.db)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        self.db.conn.close()

    # -- writes (the writer task only) ---------------------------------------

    def write_batch(self, records: Sequence[Record]) -> None:
        try:
            self._write_batch(records, clean=False)
        except UnicodeEncodeError:
            # Text that is not valid Unicode (a lone surrogate from a "\udc00"
            # escape) cannot be stored as UTF-8. The transaction rolled back;
            # write the batch again with such characters as U+FFFD, rather
            # than lose it (or, as once, the writer and the process with it).
            self._write_batch(records, clean=True)

    def _write_batch(self, records: Sequence[Record], *, clean: bool) -> None:
        starts: list[dict[str, Any]] = []
        usages: list[dict[str, Any]] = []
        prompts: list[dict[str, Any]] = []
        tools: list[dict[str, Any]] = []
        thoughts: list[dict[str, Any]] = []
        ends: list[tuple[Any, ...]] = []
        links: list[tuple[str, str, str]] = []
        for r in records:
            if isinstance(r, InterceptionStarted):
                starts.append(
                    {
                        "id": r.id,
                        "user_id": r.user_id,
                        "key_id": r.key_id,
                        "provider": r.provider,
                        "provider_name": r.provider_name,
                        "api": r.api,
                        "model": r.model,
                        "streaming": int(r.streaming),
                        "client": r.client,
                        "user_agent": r.user_agent,
                        "client_session_id": r.client_session_id,
                        "credential_kind": r.credential_kind,
                        "credential_hint": r.credential_hint,
                        "started_at": r.started_at,
                        "metadata": _json(r.metadata),
                        "correlating_tool_call_id": r.correlating_tool_call_id,
                    }
                )
                if r.correlating_tool_call_id:
                    links.append((r.id, r.user_id, r.correlating_tool_call_id))
            elif isinstance(r, TokenUsageRecord):
                u = r.usage
                usages.append(
                    {
                        "interception_id": r.interception_id,
                        "provider_response_id": u.provider_response_id,
                        "input_tokens": u.input_tokens,
                        "output_tokens": u.output_tokens,
                        "cache_read_input_tokens": u.cache_read_input_tokens,
                        "cache_write_input_tokens": u.cache_write_input_tokens,
                        "reasoning_tokens": u.reasoning_tokens,
                        "metadata": _json(u.metadata),
                        "created_at": r.created_at,
                    }
                )
            elif isinstance(r, PromptRecord):
                prompts.append(
                    {
                        "interception_id": r.interception_id,
                        "provider_response_id": r.provider_response_id,
                        "prompt": r.prompt,
                        "created_at": r.created_at,
                    }
                )
            elif isinstance(r, ToolUsageRecord):
                c = r.call
                tools.append(
                    {
                        "interception_id": r.interception_id,
                        "provider_response_id": c.provider_response_id,
                        "tool_call_id": c.tool_call_id,
                        "tool": c.tool,
                        "input": c.input,
                        "injected": int(c.injected),
                        "server_url": c.server_url,
                        "invocation_error": c.invocation_error,
                        "created_at": r.created_at,
                    }
                )
            elif isinstance(r, ThoughtRecord):
                thoughts.append(
                    {
                        "interception_id": r.interception_id,
                        "content": r.content,
                        "source": r.source,
                        "created_at": r.created_at,
                    }
                )
            elif isinstance(r, InterceptionEnded):
                ends.append((r.status, r.upstream_status, r.error, r.ended_at, _json(r.metadata), r.id))
        if clean:
            for rows in (starts, usages, prompts, tools, thoughts):
                rows[:] = [{k: _valid(v) for k, v in row.items()} for row in rows]
            ends = [tuple(_valid(v) for v in end) for end in ends]
            links = [tuple(_valid(v) for v in link) for link in links]  # type: ignore[misc]
        try:
            # db.atomic(), not the connection's context manager: sqlite-utils'
            # insert_all commits its own transaction when none is open, which
            # made a batch half-committed when a later insert failed (disk
            # full), and every retry then failed on the rows already there.
            with self._lock, self.db.atomic():
                for table, rows in (
                    ("interceptions", starts),
                    ("token_usages", usages),
                    ("user_prompts", prompts),
                    ("tool_usages", tools),
                    ("model_thoughts", thoughts),
                ):
                    if rows:
                        self._insert_rows(table, rows)
                # After the child rows: the parent's tool usage may sit in this same batch.
                for interception_id, user_id, call_id in links:
                    self._link_thread(interception_id, user_id, call_id)
                if ends:
                    self.db.conn.executemany(
                        "UPDATE interceptions SET status = ?, upstream_status = ?, error = ?, ended_at = ?,"
                        " metadata = CASE WHEN ?5 IS NULL THEN metadata"
                        " ELSE json_patch(coalesce(metadata, '{}'), ?5) END"
                        " WHERE id = ?6",
                        ends,
                    )
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def _insert_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        """One prepared INSERT for many rows.

        sqlite-utils' ``insert_all`` re-reads the table's schema on every call;
        on the writer's hot path that was most of a batch's cost (benchmarks).
        Columns are the union of the rows' keys, in first-seen order; a key a
        row lacks is NULL, as with ``insert_all``.
        """
        columns = list(dict.fromkeys(key for row in rows for key in row))
        names = ", ".join(f"[{c}]" for c in columns)
        marks = ", ".join("?" * len(columns))
        self.db.conn.executemany(
            f"INSERT INTO [{table}] ({names}) VALUES ({marks})",
            [tuple(row.get(c) for c in columns) for row in rows],
        )

    def _link_thread(self, interception_id: str, user_id: str, call_id: str) -> None:
        """Point an interception at the one that recorded the tool call it answers.

        Only the same user's interceptions are candidates (a call id sent by
        someone else links nothing); the latest recording of the id wins. The
        root is the parent's root, or the parent itself when it has none.
        """
        row = self.db.execute(
            "SELECT i.id, coalesce(i.root_id, i.id) FROM tool_usages t"
            " JOIN interceptions i ON i.id = t.interception_id"
            " WHERE t.tool_call_id = ? AND i.user_id = ? AND i.id != ?"
            " ORDER BY t.id DESC LIMIT 1",
            (call_id, user_id, interception_id),
        ).fetchone()
        if row is not None:
            self.db.execute(
                "UPDATE interceptions SET parent_id = ?, root_id = ? WHERE id = ?",
                (row[0], row[1], interception_id),
            )

    def purge(self, cutoff: float, *, batch_size: int = 500) -> int:
        """Delete one batch of ended interceptions started before ``cutoff``; returns how many."""
        try:
            with self._lock, self.db.conn:
                ids = [
                    row[0]
                    for row in self.db.execute(
                        "SELECT id FROM interceptions WHERE started_at < ? AND ended_at IS NOT NULL"
                        " ORDER BY started_at LIMIT ?",
                        (cutoff, batch_size),
                    )
                ]
                if not ids:
                    return 0
                marks = ",".join("?" * len(ids))
                for table in CHILD_TABLES:
                    self.db.execute(f"DELETE FROM {table} WHERE interception_id IN ({marks})", ids)
                self.db.execute(f"DELETE FROM interceptions WHERE id IN ({marks})", ids)
                return len(ids)
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def blank_prompts(self, cutoff: float, *, batch_size: int = 500) -> int:
        """Blank prompt text of interceptions started before ``cutoff`` (prompt retention)."""
        try:
            with self._lock, self.db.conn:
                cur = self.db.execute(
                    "UPDATE user_prompts SET prompt = '' WHERE id IN ("
                    " SELECT p.id FROM user_prompts p JOIN interceptions i ON i.id = p.interception_id"
                    " WHERE i.started_at < ? AND p.prompt != '' LIMIT ?)",
                    (cutoff, batch_size),
                )
                return cur.rowcount
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def count_purgeable(self, cutoff: float) -> int:
        """How many interceptions :meth:`purge` would delete for ``cutoff`` (dry runs)."""
        row = self.db.execute(
            "SELECT count(*) FROM interceptions WHERE started_at < ? AND ended_at IS NOT NULL", (cutoff,)
        ).fetchone()
        return int(row[0])

    def check_writable(self) -> None:
        """Raise :class:`StoreError` if a write transaction cannot be started now."""
        try:
            with self._lock:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    # -- users and keys -------------------------------------------------------

    def ensure_user(self, user_id: str, name: str, now: float) -> str:
        with self._lock, self.db.conn:
            row = self.db.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
            if row:
                return str(row[0])
            self.db["users"].insert({"id": user_id, "name": name, "created_at": now})
            return user_id

    def create_key(
        self,
        *,
        key_id: str,
        user_id: str,
        key_hash: str,
        prefix: str,
        admin: bool,
        now: float,
        expires_at: float | None,
    ) -> None:
        with self._lock, self.db.conn:
            self.db["api_keys"].insert(
                {
                    "id": key_id,
                    "user_id": user_id,
                    "key_hash": key_hash,
                    "prefix": prefix,
                    "admin": int(admin),
                    "created_at": now,
                    "expires_at": expires_at,
                    "revoked_at": None,
                }
            )

    def revoke_key(self, key_id: str, now: float) -> bool:
        with self._lock, self.db.conn:
            cur = self.db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE (id = ? OR prefix = ?) AND revoked_at IS NULL",
                (now, key_id, key_id),
            )
            return cur.rowcount > 0

    def list_keys(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT k.id, u.name, k.prefix, k.admin, k.created_at, k.expires_at, k.revoked_at"
            " FROM api_keys k JOIN users u ON u.id = k.user_id ORDER BY k.created_at"
        ).fetchall()
        return [
            {
                "id": r[0],
                "user": r[1],
                "prefix": r[2],
                "admin": bool(r[3]),
                "created_at": r[4],
                "expires_at": r[5],
                "revoked_at": r[6],
            }
            for r in rows
        ]


def open_reader(path: str | Path) -> sqlite_utils.Database:
    """A separate read connection (readers never share the writer's).

    Memory-mapped reads and a larger page cache: audit reports walk many
    index pages, and a read() per page is what dominated large usage sums.
    """
    db = connect(path)
    db.execute(f"PRAGMA mmap_size = {READER_MMAP_BYTES}")
    db.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
    return db


READER_MMAP_BYTES = 1 << 30
READER_CACHE_KIB = 32 * 1024


def lookup_key(db: sqlite_utils.Database, key_hash: str) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT k.id, k.user_id, u.name, k.admin, k.expires_at, k.revoked_at"
        " FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = ?",
        (key_hash,),
    ).fetchone()
    if row is None:
        return None
    return {
        "key_id": row[0],
        "user_id": row[1],
        "user_name": row[2],
        "admin": bool(row[3]),
        "expires_at": row[4],
        "revoked_at": row[5],
    }


def iter_rows(db: sqlite_utils.Database, sql: str, params: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
    yield from db.execute(sql, tuple(params))


# -- reads ---------------------------------------------------------------------

from aibridge.core.times import rfc3339  # noqa: E402


def _loads(text: str | None) -> dict[str, Any]:
    return orjson.loads(text) if text else {}


_INTERCEPTION_COLUMNS = (
    "i.id, i.user_id, u.name, i.key_id, i.provider, i.provider_name, i.api, i.model, i.streaming,"
    " i.client, i.user_agent, i.client_session_id, i.credential_kind, i.credential_hint, i.status,"
    " i.upstream_status, i.error, i.started_at, i.ended_at, i.metadata,"
    " i.correlating_tool_call_id, i.parent_id, i.root_id"
)


def _interception_base(row: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": row[0],
        "user": {"id": row[1], "name": row[2]},
        "key_id": row[3],
        "provider": row[4],
        "provider_name": row[5],
        "api": row[6],
        "model": row[7],
        "streaming": bool(row[8]),
        "client": row[9],
        "user_agent": row[10],
        "client_session_id": row[11],
        "credential_kind": row[12],
        "credential_hint": row[13],
        "status": row[14],
        "upstream_status": row[15],
        "error": row[16],
        "started_at": rfc3339(row[17]),
        "ended_at": rfc3339(row[18]),
        "metadata": _loads(row[19]),
        # thread linking (beyond the DESIGN §6 keys; see README "Thread linking")
        "correlating_tool_call_id": row[20],
        "parent_id": row[21],
        "root_id": row[22],
        "token_usages": [],
        "user_prompts": [],
        "tool_usages": [],
        "model_thoughts": [],
    }


def _attach_children(db: sqlite_utils.Database, items: list[dict[str, Any]]) -> None:
    """Nest each interception's child rows, in the order they were written."""
    if not items:
        return
    by_id = {item["id"]: item for item in items}
    ids = list(by_id)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for r in db.execute(
            "SELECT interception_id, provider_response_id, input_tokens, output_tokens,"
            " cache_read_input_tokens, cache_write_input_tokens, reasoning_tokens, metadata, created_at"
            f" FROM token_usages WHERE interception_id IN ({marks}) ORDER BY id",
            chunk,
        ):
            by_id[r[0]]["token_usages"].append(
                {
                    "provider_response_id": r[1],
                    "input_tokens": r[2],
                    "output_tokens": r[3],
                    "cache_read_input_tokens": r[4],
                    "cache_write_input_tokens": r[5],
                    "reasoning_tokens": r[6],
                    "metadata": _loads(r[7]),
                    "created_at": rfc3339(r[8]),
                }
            )
        for r in db.execute(
            "SELECT interception_id, provider_response_id, prompt, created_at"
            f" FROM user_prompts WHERE interception_id IN ({marks}) ORDER BY id",
            chunk,
        ):
            by_id[r[0]]["user_prompts"].append(
                {"provider_response_id": r[1], "prompt": r[2], "created_at": rfc3339(r[3])}
            )
        for r in db.execute(
            "SELECT interception_id, provider_response_id, tool_call_id, tool, input, injected,"
            " server_url, invocation_error, created_at"
            f" FROM tool_usages WHERE interception_id IN ({marks}) ORDER BY id",
            chunk,
        ):
            by_id[r[0]]["tool_usages"].append(
                {
                    "provider_response_id": r[1],
                    "tool_call_id": r[2],
                    "tool": r[3],
                    "input": r[4],
                    "injected": bool(r[5]),
                    "server_url": r[6],
                    "invocation_error": r[7],
                    "created_at": rfc3339(r[8]),
                }
            )
        for r in db.execute(
            "SELECT interception_id, content, source, created_at"
            f" FROM model_thoughts WHERE interception_id IN ({marks}) ORDER BY id",
            chunk,
        ):
            by_id[r[0]]["model_thoughts"].append(
                {"content": r[1], "source": r[2], "created_at": rfc3339(r[3])}
            )


class UnknownCursor(ValueError):
    """``after_id`` names no interception the reader may see."""


def _where(query: InterceptionQuery, *, include_in_flight: bool = False) -> tuple[list[str], list[Any]]:
    where = [] if include_in_flight else ["i.ended_at IS NOT NULL"]
    params: list[Any] = []
    if query.user_id is not None:
        where.append("i.user_id = ?")
        params.append(query.user_id)
    if query.user is not None:
        where.append("i.user_id IN (SELECT id FROM users WHERE name = ? OR id = ?)")
        params += [query.user, query.user]
    for column in ("provider", "model", "client", "status"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"i.{column} = ?")
            params.append(value)
    if query.started_after is not None:
        where.append("i.started_at >= ?")
        params.append(query.started_after)
    if query.started_before is not None:
        where.append("i.started_at < ?")
        params.append(query.started_before)
    return where, params


Anchor = tuple[float, str]
"""A keyset position: ``(started_at, id)`` of the last row seen."""


def page_after(
    db: sqlite_utils.Database,
    query: InterceptionQuery | None = None,
    *,
    limit: int = 100,
    anchor: Anchor | None = None,
    include_in_flight: bool = False,
) -> tuple[list[dict[str, Any]], Anchor | None]:
    """Up to ``limit`` interceptions after ``anchor``, newest first by ``(started_at, id)``.

    Returns the page and the anchor of the next one (``None`` when nothing
    follows). Anchors survive the purge of the row they came from, so long
    exports never lose their place.
    """
    where, params = _where(query or InterceptionQuery(), include_in_flight=include_in_flight)
    if anchor is not None:
        # Row-value comparison: SQLite walks the (.., started_at, id) index from here.
        where.append("(i.started_at, i.id) < (?, ?)")
        params += [anchor[0], anchor[1]]
    sql = (
        f"SELECT {_INTERCEPTION_COLUMNS} FROM interceptions i JOIN users u ON u.id = i.user_id"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY i.started_at DESC, i.id DESC LIMIT ?"
    )
    rows = db.execute(sql, (*params, limit + 1)).fetchall()
    page = rows[:limit]
    items = [_interception_base(r) for r in page]
    _attach_children(db, items)
    return items, ((page[-1][17], page[-1][0]) if len(rows) > limit and page else None)


def list_page(
    db: sqlite_utils.Database,
    query: InterceptionQuery | None = None,
    *,
    limit: int = 100,
    after_id: str | None = None,
    include_in_flight: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page, newest first by ``(started_at, id)``, and the cursor of the next page.

    The cursor is the id of the page's last item; ``None`` when nothing follows.
    Raises :class:`UnknownCursor` if ``after_id`` is not an interception the
    query's ``user_id`` may see (a member cannot probe other members' ids).
    """
    query = query or InterceptionQuery()
    anchor: Anchor | None = None
    if after_id is not None:
        sql = "SELECT started_at, id FROM interceptions WHERE id = ?"
        cursor_params: list[Any] = [after_id]
        if query.user_id is not None:
            sql += " AND user_id = ?"
            cursor_params.append(query.user_id)
        row = db.execute(sql, cursor_params).fetchone()
        if row is None:
            raise UnknownCursor(f"after_id {after_id!r} is not a known interception")
        anchor = (row[0], row[1])
    items, next_anchor = page_after(
        db, query, limit=limit, anchor=anchor, include_in_flight=include_in_flight
    )
    return items, (next_anchor[1] if next_anchor else None)


def list_interceptions(
    db: sqlite_utils.Database,
    query: InterceptionQuery | None = None,
    *,
    user: str | None = None,
    limit: int = 100,
    after_id: str | None = None,
    include_in_flight: bool = False,
) -> list[dict[str, Any]]:
    """Interceptions newest first, in the shared JSON shape (children nested)."""
    query = query or InterceptionQuery()
    if user is not None:
        query = attrs.evolve(query, user=user)
    items, _ = list_page(db, query, limit=limit, after_id=after_id, include_in_flight=include_in_flight)
    return items


def iter_interceptions(
    db: sqlite_utils.Database, query: InterceptionQuery | None = None, *, page_size: int = 500
) -> Iterator[dict[str, Any]]:
    """Every matching ended interception, newest first, a page at a time (bounded memory)."""
    anchor: Anchor | None = None
    while True:
        items, anchor = page_after(db, query, limit=page_size, anchor=anchor)
        yield from items
        if anchor is None:
            return


def count_interceptions(db: sqlite_utils.Database, query: InterceptionQuery | None = None) -> int:
    where, params = _where(query or InterceptionQuery())
    sql = "SELECT count(*) FROM interceptions i" + (" WHERE " + " AND ".join(where) if where else "")
    return int(db.execute(sql, params).fetchone()[0])


def get_interception(
    db: sqlite_utils.Database, interception_id: str, *, user_id: str | None = None
) -> dict[str, Any] | None:
    """One interception (in flight included) or ``None``; ``user_id`` restricts visibility."""
    sql = f"SELECT {_INTERCEPTION_COLUMNS} FROM interceptions i JOIN users u ON u.id = i.user_id WHERE i.id = ?"
    params: list[Any] = [interception_id]
    if user_id is not None:
        sql += " AND i.user_id = ?"
        params.append(user_id)
    row = db.execute(sql, params).fetchone()
    if row is None:
        return None
    items = [_interception_base(row)]
    _attach_children(db, items)
    return items[0]


_GROUP_KEYS = {
    "user": "i.user_id",
    "model": "i.model",
    "provider": "i.provider",
    "client": "i.client",
    "day": "date(i.started_at, 'unixepoch')",
}


def usage_report(
    db: sqlite_utils.Database, query: InterceptionQuery | None = None, *, group_by: str = "user"
) -> list[dict[str, Any]]:
    """Ended interceptions and their token sums per group, ordered by the group key.

    Two grouped scans (counts over interceptions, sums over token_usages joined
    to them) merged here: cheaper than joining a per-interception subquery.
    """
    if group_by not in _GROUP_KEYS:
        raise ValueError(f"group_by must be one of {', '.join(USAGE_GROUPS)}")
    key = _GROUP_KEYS[group_by]
    where, params = _where(query or InterceptionQuery())
    clause = " WHERE " + " AND ".join(where) if where else ""
    groups: dict[Any, dict[str, Any]] = {}
    for k, n in db.execute(f"SELECT {key}, count(*) FROM interceptions i{clause} GROUP BY 1", params):
        groups[k] = {"key": k, "interceptions": n, **dict.fromkeys(TOKEN_KINDS, 0)}
    sums = ", ".join(f"coalesce(sum(t.{kind}), 0)" for kind in TOKEN_KINDS)
    for row in db.execute(
        f"SELECT {key}, {sums} FROM token_usages t JOIN interceptions i ON i.id = t.interception_id"
        f"{clause} GROUP BY 1",
        params,
    ):
        if row[0] in groups:
            groups[row[0]].update(zip(TOKEN_KINDS, row[1:], strict=True))
    if group_by == "user" and groups:
        names = dict(db.execute(
            f"SELECT id, name FROM users WHERE id IN ({','.join('?' * len(groups))})", list(groups)
        ).fetchall())
        for user_id, group in groups.items():
            group["key"] = names.get(user_id, user_id)
            group["user_id"] = user_id
    return sorted(groups.values(), key=lambda g: (g["key"] is None, str(g["key"])))
