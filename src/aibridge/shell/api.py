"""The REST audit API under ``/api/v1/`` (DESIGN §6).

Endpoints (all ``GET``, JSON, RFC 3339 times, authenticated with aibridge
keys exactly like provider routes):

* ``/api/v1/interceptions``: filtered, newest first, keyset-paged with
  ``after_id``; the response carries ``next_after_id``.
* ``/api/v1/interceptions/{id}``: one interception (404 when it is not
  visible to the caller, whether or not it exists).
* ``/api/v1/usage?group_by=...``: interception counts and token sums.
* ``/api/v1/export?format=jsonl|csv``: every matching record, streamed a page
  at a time (never all in memory).

Validation and visibility are the core's (:mod:`aibridge.core.audit_query`);
queries are the store's. Reads run on worker threads (``trio.to_thread``)
over a small pool of read connections, never the writer's.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs

import trio

from aibridge.core import audit_query, jsonutil
from aibridge.core.audit_query import EXPORT_FORMATS, LIST_PARAMS, USAGE_GROUPS
from aibridge.core.errors import BridgeError, ClientError, RouteNotSupported, ServiceUnavailable
from aibridge.core.export import CSV_COLUMNS, encode_csv, encode_jsonl
from aibridge.shell import store as store_mod
from aibridge.shell.app import BridgeApp, Identity, Receive, Scope, Send

T = TypeVar("T")
PREFIX = "/api/v1/"
EXPORT_PAGE = 500
_ONE = re.compile(r"/api/v1/interceptions/([^/]+)")


class MethodNotAllowed(ClientError):
    status = 405


class ReaderPool:
    """A few read connections, each used by one worker thread at a time."""

    def __init__(self, path: str, size: int = 4) -> None:
        self.path = path
        self._idle: list[Any] = []
        self._limiter = trio.CapacityLimiter(size)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async with self._limiter:
            db = self._idle.pop() if self._idle else None
            try:
                if db is None:
                    db = await trio.to_thread.run_sync(store_mod.open_reader, self.path)
                # Not abandoned on cancel: the connection is never used by two threads.
                return await trio.to_thread.run_sync(functools.partial(fn, db, *args, **kwargs))
            except store_mod.READ_ERRORS as exc:
                raise ServiceUnavailable(f"audit store read failed: {exc}") from exc
            finally:
                if db is not None:
                    self._idle.append(db)

    def close(self) -> None:
        for db in self._idle:
            db.conn.close()
        self._idle.clear()


class AuditAPI:
    """ASGI callable for paths under ``/api/v1/``; set as ``BridgeApp.api_handler``."""

    def __init__(self, app: BridgeApp, readers: ReaderPool) -> None:
        self.app = app
        self.readers = readers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = {"value": False}

        async def tracked(message: Any) -> None:
            if message["type"] == "http.response.start":
                started["value"] = True
            await send(message)

        try:
            await self._route(scope, receive, tracked)
        except BridgeError as exc:
            if started["value"]:
                raise
            headers = [(k.lower(), v) for k, v in exc.headers.items()]
            await send_json(send, exc.status, {"error": {"message": exc.message}}, headers=headers)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"].rstrip("/")
        one = _ONE.fullmatch(path)
        if path not in ("/api/v1/interceptions", "/api/v1/usage", "/api/v1/export") and one is None:
            raise RouteNotSupported(f"not found: {scope['method']} {scope['path']}")
        if scope["method"] != "GET":
            raise MethodNotAllowed(f"method {scope['method']} not allowed; use GET", headers={"Allow": "GET"})
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        identity = await self.app._authenticate(headers)
        raw = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        if one is not None:
            await self._one(identity, one.group(1), raw, send)
        elif path.endswith("/interceptions"):
            await self._list(identity, raw, send)
        elif path.endswith("/usage"):
            await self._usage(identity, raw, send)
        else:
            await self._export(identity, raw, receive, send)

    # -- endpoints ---------------------------------------------------------------------

    async def _list(self, identity: Identity, raw: dict[str, list[str]], send: Send) -> None:
        params = audit_query.single_params(raw, LIST_PARAMS | {"limit", "after_id"})
        query = _visible(identity, audit_query.query_from_params(params))
        limit = audit_query.parse_limit(params["limit"]) if "limit" in params else audit_query.DEFAULT_LIMIT
        try:
            items, next_id = await self.readers.run(
                store_mod.list_page, query, limit=limit, after_id=params.get("after_id") or None
            )
        except store_mod.UnknownCursor as exc:
            raise ClientError(str(exc)) from None
        await send_json(send, 200, {"interceptions": items, "next_after_id": next_id})

    async def _one(self, identity: Identity, interception_id: str, raw: dict[str, list[str]], send: Send) -> None:
        audit_query.single_params(raw, frozenset())
        item = await self.readers.run(
            store_mod.get_interception, interception_id, user_id=None if identity.admin else identity.user_id
        )
        if item is None:
            raise RouteNotSupported(f"interception {interception_id} not found")
        await send_json(send, 200, item)

    async def _usage(self, identity: Identity, raw: dict[str, list[str]], send: Send) -> None:
        params = audit_query.single_params(raw, LIST_PARAMS | {"group_by"})
        group_by = params.pop("group_by", "user")
        if group_by not in USAGE_GROUPS:
            raise ClientError(f"invalid group_by {group_by!r}: expected one of {', '.join(USAGE_GROUPS)}")
        query = _visible(identity, audit_query.query_from_params(params))
        groups = await self.readers.run(store_mod.usage_report, query, group_by=group_by)
        await send_json(send, 200, {"group_by": group_by, "usage": groups})

    async def _export(self, identity: Identity, raw: dict[str, list[str]], receive: Receive, send: Send) -> None:
        params = audit_query.single_params(raw, LIST_PARAMS | {"format"})
        fmt = params.pop("format", "jsonl")
        if fmt not in EXPORT_FORMATS:
            raise ClientError(f"invalid format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
        query = _visible(identity, audit_query.query_from_params(params))
        # First page before the headers, so a store failure is still a clean 503.
        items, anchor = await self.readers.run(store_mod.page_after, query, limit=EXPORT_PAGE)
        content_type = "application/x-ndjson" if fmt == "jsonl" else "text/csv; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-disposition", f'attachment; filename="aibridge-interceptions.{fmt}"'.encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )

        def encode(page: list[dict[str, Any]], first: bool) -> bytes:
            if fmt == "jsonl":
                return encode_jsonl(page)
            return encode_csv(page, header=first).encode()

        async with trio.open_nursery() as nursery:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_disconnect)
            first = True
            while True:
                body = encode(items, first)
                first = False
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                if anchor is None:
                    break
                items, anchor = await self.readers.run(
                    store_mod.page_after, query, limit=EXPORT_PAGE, anchor=anchor
                )
            await send({"type": "http.response.body", "body": b""})
            nursery.cancel_scope.cancel()


def _visible(identity: Identity, query: audit_query.InterceptionQuery) -> audit_query.InterceptionQuery:
    return audit_query.restrict(
        query, user_id=identity.user_id, user_name=identity.user_name, admin=identity.admin
    )


async def send_json(
    send: Send, status: int, payload: Any, *, headers: list[tuple[str, str]] | None = None
) -> None:
    body = jsonutil.dumps(payload)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers or []]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def install_api(app: BridgeApp, config: Any) -> None:
    """``APP_EXTENSIONS`` hook: serve the audit API from this app."""
    app.api_handler = AuditAPI(app, ReaderPool(config.db))


__all__ = ["CSV_COLUMNS", "AuditAPI", "ReaderPool", "install_api"]
