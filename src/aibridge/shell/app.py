"""The ASGI application: auth, routing, body limits, relay, disconnect watch.

One request is one task tree: the relay, and a watcher that waits for the
client to go away and cancels the relay when it does (which closes the
upstream connection: stop paying). Every decision about bytes and records is
the core's; this module moves bytes and hands records to the writer.

Error mapping lives in one place, :meth:`BridgeApp._send_error`: any
:class:`~aibridge.core.errors.BridgeError` raised before the response started
becomes a provider-shaped body with the error's status.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from wsgiref.handlers import format_date_time

import attrs
import httpx
import trio

from aibridge import config as config_mod
from aibridge.core import jsonutil
from aibridge.core.auth import hash_key, presented_credential
from aibridge.core.clients import detect_client, detect_session_id
from aibridge.core.errors import (
    AuthenticationFailed,
    BridgeError,
    PayloadTooLarge,
    PermissionDenied,
    ServiceUnavailable,
    error_response_body,
)
from aibridge.core.headers import client_response_headers
from aibridge.core.jsonutil import parse_request_object
from aibridge.core.model import (
    AuditEvent,
    InterceptionEnded,
    InterceptionNoted,
    InterceptionStarted,
    PromptRecord,
    ResponseIdentified,
    StreamFailed,
    to_record,
)
from aibridge.core.providers import anthropic, openai_chat, openai_responses
from aibridge.core.providers.base import StreamTap, Translation, stream_tap
from aibridge.core.routes import Route, match_route, split_provider
from aibridge.core.sse import KEEPALIVE_COMMENT
from aibridge.core.threads import answered_tool_call_id
from aibridge.shell import store as store_mod
from aibridge.shell.upstream import DirectTarget, Target, UpstreamResponse
from aibridge.shell.writer import AuditWriter

log = logging.getLogger("aibridge.app")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PROVIDER_MODULES: dict[str, Any] = {
    "messages": anthropic,
    "chat": openai_chat,
    "responses": openai_responses,
}
KEY_CACHE_SECONDS = 3.0
INTERCEPTION_HEADER = "x-aibridge-interception-id"


@attrs.frozen(kw_only=True)
class Identity:
    user_id: str
    user_name: str
    key_id: str
    admin: bool
    byok: bool


class ClientGone(Exception):
    """The client disconnected while we were relaying."""


@attrs.define
class Interception:
    """Mutable per-request bookkeeping of one interception (shell-side only)."""

    id: str
    provider_shape: str
    status: str = "completed"
    upstream_status: int | None = None
    error: str | None = None
    response_id: str = ""
    #: facts the response parser noted for the interception's metadata
    metadata: dict[str, Any] = attrs.Factory(dict)
    upstream_seconds: float = 0.0
    #: the client has been sent the whole response; a hang-up now is not a disconnect
    complete: bool = False
    #: streams: the client has been sent the provider's last event
    delivered: bool = False
    #: the user prompt, until the response that answers it is identified
    prompt: PromptRecord | None = None
    #: the bridge error that ended it (the breaker counts upstream timeouts/unreachable)
    failure: BaseException | None = None
    #: what admission control admitted (released when the interception ends)
    ticket: Any = None


class BridgeApp:
    """The ASGI app. ``writer`` receives every record; ``client`` is the shared httpx client."""

    def __init__(
        self,
        config: Any,
        writer: AuditWriter,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        targets: dict[str, Target] | None = None,
        key_cache_seconds: float = KEY_CACHE_SECONDS,
    ) -> None:
        self.config = config
        self.writer = writer
        self.client = client
        self.clock = clock
        self.targets = targets if targets is not None else default_targets(config)
        self._reader = store_mod.open_reader(config.db)
        self._reader_lock = trio.Lock()
        self._key_cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
        #: how long a key lookup is trusted; a revoked key stops working after at most this
        self.key_cache_seconds = key_cache_seconds
        self.in_flight = 0
        self._idle = trio.Event()
        self._idle.set()
        #: optional hooks other modules attach (metrics, API, limits); see run.py
        self.api_handler: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None
        self.metrics: Any = None
        self.admission: Any = None
        #: injected MCP tools and their inner loop (shell/mcp_loop.py), when configured
        self.mcp: Any = None

    # -- ASGI entry -------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        send = _dated(send)
        path: str = scope["path"]
        provider, _ = split_provider(path)
        if provider is not None:
            await self._provider_request(scope, receive, send, provider)
        elif path == "/healthz":
            await _send_json(send, 200, {"status": "ok"})
        elif path == "/readyz":
            await self._readyz(send)
        elif path == "/metrics" and self.metrics is not None:
            await self.metrics.serve(scope, receive, send)
        elif path.startswith("/api/v1/") and self.api_handler is not None:
            await self.api_handler(scope, receive, send)
        else:
            await _send_json(send, 404, {"error": {"message": f"not found: {scope['method']} {path}"}})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _readyz(self, send: Send) -> None:
        # With audit_failure_policy "open" the operator chose availability over
        # auditing: a store that refuses writes degrades readiness but does not
        # take the instance out of rotation.
        policy = self.config.audit_failure_policy
        ok = self.writer.alive and (self.writer.healthy or policy == "open")
        status = "ok" if ok and self.writer.healthy else "degraded" if ok else "unavailable"
        body = {"status": status, "writer_alive": self.writer.alive,
                "store_writable": self.writer.healthy, "error": self.writer.last_error,
                "audit_failure_policy": policy, "records_lost": self.writer.lost}
        if self.mcp is not None:
            body["mcp_servers"] = self.mcp.status()
        await _send_json(send, 200 if ok else 503, body)

    async def wait_idle(self) -> None:
        """Wait until no provider request is in flight (used by tests and shutdown)."""
        await self._idle.wait()

    # -- provider routes -----------------------------------------------------------

    async def _provider_request(self, scope: Scope, receive: Receive, send: Send, shape: str) -> None:
        state = {"started": False}

        async def tracked_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        self.in_flight += 1
        self._idle = trio.Event() if self.in_flight == 1 else self._idle
        try:
            await self._dispatch(scope, receive, tracked_send, shape)
        except BridgeError as exc:
            if not state["started"]:
                await self._send_error(send, shape, exc)
        except Exception:
            # A bug, not a decision: log it, answer 500 in the provider's shape,
            # and keep the server's request task alive (the interception, if one
            # started, is already recorded as failed).
            log.exception("unexpected error serving %s %s", scope["method"], scope["path"])
            if not state["started"]:
                await self._send_error(send, shape, BridgeError("internal error in aibridge; see its log"))
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, shape: str) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        route = match_route(method, path)
        if not self.config.enabled:
            raise ServiceUnavailable("aibridge is disabled")
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        header_map = dict(headers)
        identity = await self._authenticate(header_map)
        body = await self._read_body(receive, header_map)
        query = scope.get("query_string", b"").decode("latin-1")
        if route.kind == "passthrough":
            await self._passthrough(route, method, query, headers, body, identity, send)
        else:
            await self._intercept(route, query, headers, header_map, body, identity, receive, send)

    async def _send_error(self, send: Send, shape: str, exc: BridgeError) -> None:
        body = error_response_body("anthropic" if shape == "anthropic" else "openai", exc)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # -- auth and body -------------------------------------------------------------

    async def _authenticate(self, headers: dict[str, str]) -> Identity:
        cred = presented_credential(headers)
        if cred.key is None:
            raise AuthenticationFailed(
                "missing aibridge key: send it as 'Authorization: Bearer <key>', 'X-Api-Key' or 'X-AIBridge-Token'"
            )
        if cred.byok and not self.config.allow_byok:
            raise PermissionDenied("bring-your-own-key mode (X-AIBridge-Token) is disabled on this gateway")
        key_hash = hash_key(cred.key)
        now = self.clock()
        cached = self._key_cache.get(key_hash)
        if cached is not None and cached[0] > now:
            row = cached[1]
        else:
            async with self._reader_lock:
                row = await trio.to_thread.run_sync(store_mod.lookup_key, self._reader, key_hash)
            if len(self._key_cache) > 10000:
                self._key_cache.clear()
            self._key_cache[key_hash] = (now + self.key_cache_seconds, row)
        if row is None:
            raise AuthenticationFailed("invalid aibridge key")
        if row["revoked_at"] is not None:
            raise AuthenticationFailed("aibridge key has been revoked")
        if row["expires_at"] is not None and row["expires_at"] <= now:
            raise AuthenticationFailed("aibridge key has expired")
        return Identity(
            user_id=row["user_id"],
            user_name=row["user_name"],
            key_id=row["key_id"],
            admin=row["admin"],
            byok=cred.byok,
        )

    async def _read_body(self, receive: Receive, headers: dict[str, str]) -> bytes:
        limit = self.config.max_body_size
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body of {declared} bytes exceeds the {limit}-byte limit")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGoneError("client disconnected while sending the request body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -- passthrough ---------------------------------------------------------------

    async def _passthrough(
        self,
        route: Route,
        method: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        identity: Identity,
        send: Send,
    ) -> None:
        target = self.targets[route.provider]
        if route.provider == "anthropic" and "bedrock" in self.targets:
            # Bedrock answers count_tokens and models itself (see shell/bedrock.py).
            target = self.targets["bedrock"]
        request = target.prepare(route, query, None, headers, byok=identity.byok, body=body, method=method)
        if self.metrics is not None:
            self.metrics.passthrough(route)
        async with target.open(self.client, request) as response:
            await _start_response(send, response, extra=[])
            async for chunk in response.aiter_bytes():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    # -- interception --------------------------------------------------------------

    async def _intercept(
        self,
        route: Route,
        query: str,
        headers: list[tuple[str, str]],
        header_map: dict[str, str],
        raw: bytes,
        identity: Identity,
        receive: Receive,
        send: Send,
    ) -> None:
        assert route.api is not None
        module = PROVIDER_MODULES[route.api]
        parsed = parse_request_object(raw)
        translation: Translation = module.translate_request(raw, parsed)
        loop = self.mcp is not None and self.mcp.applies(route.api, translation.model)
        if loop:
            translation = self.mcp.inject(route.api, translation)
        target = self.targets[route.provider]
        if route.api == "messages" and "bedrock" in self.targets:
            target = self.targets["bedrock"]
        request = target.prepare(
            route, query, translation, headers, byok=identity.byok, body=raw, method="POST"
        )
        if not self.writer.healthy and self.config.audit_failure_policy == "closed":
            raise ServiceUnavailable(
                "audit store is not accepting writes; refusing to proxy unaudited traffic",
                headers={"retry-after": "5"},
            )
        ic = Interception(id=str(uuid.uuid4()), provider_shape=route.provider)
        if self.admission is not None:
            # Charged here, released in the finally below (nothing between can fail
            # short of a closed audit channel at shutdown).
            ic.ticket = await self.admission.check(route, request, identity)

        started_at = self.clock()
        start = InterceptionStarted(
            id=ic.id,
            user_id=identity.user_id,
            key_id=identity.key_id,
            provider=target.provider,
            provider_name=target.provider_name,
            api=route.api,
            model=request.model,
            streaming=translation.streaming,
            client=detect_client(header_map),
            user_agent=header_map.get("user-agent", ""),
            client_session_id=detect_session_id(header_map, parsed),
            credential_kind=request.credential_kind,
            credential_hint=request.credential_hint,
            started_at=started_at,
            metadata={
                **translation.metadata,
                **({"rewritten": list(translation.rewritten)} if translation.rewritten else {}),
            },
            correlating_tool_call_id=answered_tool_call_id(route.api, parsed),
        )
        if translation.prompt is not None:
            # Written with the id of the response that answers it, as soon as
            # the upstream names one (a stream's first event, a blocking
            # reply's body), or when the interception ends without one.
            ic.prompt = PromptRecord(interception_id=ic.id, provider_response_id="", prompt=translation.prompt,
                                     created_at=started_at)
        await self.writer.record(start)
        if self.metrics is not None:
            self.metrics.interception_started(start)

        relay_error: Exception | None = None
        try:
            async with trio.open_nursery() as nursery:
                gone = trio.Event()

                async def watch_disconnect() -> None:
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            if not ic.complete:
                                gone.set()
                                nursery.cancel_scope.cancel()
                            return

                nursery.start_soon(watch_disconnect)
                try:
                    if loop:
                        await self.mcp.run(self, ic, module, route.api, translation, target, request, send,
                                           lambda t: target.prepare(route, query, t, headers, byok=identity.byok,
                                                                    body=raw, method="POST"))
                    else:
                        await self._relay(ic, module, translation, target, request, send)
                except Exception as exc:
                    # Re-raised below, outside the nursery: raised in here it
                    # would reach the handlers wrapped in an ExceptionGroup.
                    relay_error = exc
                finally:
                    nursery.cancel_scope.cancel()
            if relay_error is not None:
                raise relay_error
            if gone.is_set() and not ic.complete and not ic.delivered and ic.status == "completed":
                # an upstream error seen before the hang-up stays the reason
                ic.status = "client_disconnected"
        except BridgeError as exc:
            ic.status = "failed"
            ic.error = exc.message
            ic.upstream_status = ic.upstream_status or None
            ic.failure = exc
            raise
        except BaseException as exc:
            if _only_cancelled(exc):
                # Server shutdown past the grace period cancels us.
                if not ic.complete and not ic.delivered:
                    ic.status = "client_disconnected" if ic.status == "completed" else ic.status
            else:
                ic.status = "failed"
                ic.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if ic.ticket is not None:
                self.admission.finish(ic.ticket, ic)
            if ic.prompt is not None:
                await self.writer.record(ic.prompt)
                ic.prompt = None
            end = InterceptionEnded(
                id=ic.id,
                status=ic.status,
                upstream_status=ic.upstream_status,
                error=ic.error,
                ended_at=self.clock(),
                metadata=ic.metadata,
            )
            await self.writer.record(end)
            if self.metrics is not None:
                self.metrics.interception_ended(start, end, ic)

    async def _record_events(self, ic: Interception, events: list[AuditEvent]) -> None:
        if not events:
            return
        now = self.clock()
        records = []
        for event in events:
            if isinstance(event, StreamFailed):
                ic.status = "failed"
                ic.error = ic.error or event.message
            elif isinstance(event, ResponseIdentified):
                ic.response_id = event.provider_response_id
                if ic.prompt is not None:
                    records.append(attrs.evolve(ic.prompt, provider_response_id=event.provider_response_id))
                    ic.prompt = None
            elif isinstance(event, InterceptionNoted):
                ic.metadata.update(event.metadata)
            record = to_record(ic.id, event, now)
            if record is not None:
                records.append(record)
        if records:
            await self.writer.record(*records)
            if self.metrics is not None:
                self.metrics.records(records)

    async def _relay(
        self,
        ic: Interception,
        module: Any,
        translation: Translation,
        target: Target,
        request: Any,
        send: Send,
    ) -> None:
        extra = [(INTERCEPTION_HEADER, ic.id)]
        waiting = time.perf_counter()
        async with target.open(self.client, request) as opened:
            # Time to the headers, then every wait for body bytes, is upstream's;
            # the overhead metric is wall time minus this.
            ic.upstream_seconds += time.perf_counter() - waiting
            response = TimedResponse(opened, ic)
            ic.upstream_status = response.status_code
            if response.status_code >= 400:
                body = await response.aread()
                ic.status = "failed"
                ic.error = _error_text(body)
                await _start_response(send, response, extra=extra, length=len(body))
                ic.complete = True
                await send({"type": "http.response.body", "body": body})
                return
            content_type = dict(response.headers).get("content-type", "")
            if "text/event-stream" in content_type:
                await self._relay_stream(ic, module, translation, response, send, extra)
            else:
                body = await response.aread()
                try:
                    payload = jsonutil.loads(body) if body else None
                except (ValueError, RecursionError):
                    payload = None
                if payload is None:
                    await self._record_events(ic, [StreamFailed(message="upstream reply is not valid JSON")])
                else:
                    await self._record_events(ic, module.audit_body(payload))
                await _start_response(send, response, extra=extra, length=len(body))
                ic.complete = True
                await send({"type": "http.response.body", "body": body})

    async def _relay_stream(
        self,
        ic: Interception,
        module: Any,
        translation: Translation,
        response: UpstreamResponse,
        send: Send,
        extra: list[tuple[str, str]],
    ) -> None:
        tap = stream_tap(module, filtering=translation.drop_usage_only_chunks)
        await _start_response(send, response, extra=extra)
        closed = False

        async def relay_chunk(chunk: bytes) -> None:
            out, events = tap.receive_data(chunk)
            # Record first: a client that hangs up while these bytes go out
            # cancels the send, and the events (usage, an error) must not be lost.
            await self._record_events(ic, events)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
            if tap.ended:
                # the client has the provider's last event: a hang-up from
                # now on (the OpenAI SDK stops reading at [DONE]) is not one
                ic.delivered = True

        try:
            if self.config.stream_keepalive > 0:
                await _relay_with_keepalive(response, tap, relay_chunk, send, self.config.stream_keepalive)
            else:
                async for chunk in response.aiter_bytes():
                    await relay_chunk(chunk)
            closed = True
            out, events = tap.close()
            # Record before the final send: once the client has its last byte
            # it may hang up, and that must not cost us the usage row.
            await self._record_events(ic, events)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
            ic.complete = True
            await send({"type": "http.response.body", "body": b""})
        except BaseException:
            # Cancelled (client gone) or the upstream broke: keep what was seen.
            if not closed:
                # cut short: a partial event held now is not malformed upstream data
                events = tap.abandon()
                with trio.CancelScope(shield=True):
                    await self._record_events(ic, events)
            raise


class ClientGoneError(BridgeError):
    status = 499


class TimedResponse:
    """An :class:`UpstreamResponse` that adds the time spent awaiting its bytes to ``ic.upstream_seconds``."""

    def __init__(self, inner: UpstreamResponse, ic: Interception) -> None:
        self._inner = inner
        self._ic = ic
        self.status_code = inner.status_code
        self.headers = inner.headers
        self.decoded = inner.decoded

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        chunks = self._inner.aiter_bytes().__aiter__()
        while True:
            waiting = time.perf_counter()
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            finally:
                self._ic.upstream_seconds += time.perf_counter() - waiting
            yield chunk

    async def aread(self) -> bytes:
        waiting = time.perf_counter()
        try:
            return await self._inner.aread()
        finally:
            self._ic.upstream_seconds += time.perf_counter() - waiting


def _only_cancelled(exc: BaseException) -> bool:
    """A cancellation, possibly grouped by the nurseries it passed through."""
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancelled(e) for e in exc.exceptions)
    return False


async def _relay_with_keepalive(
    response: UpstreamResponse,
    tap: StreamTap,
    relay_chunk: Callable[[bytes], Awaitable[None]],
    send: Send,
    keepalive: float,
) -> None:
    """Relay upstream chunks; after ``keepalive`` seconds of silence send an SSE comment.

    The relay reads upstream itself; a watchdog task sleeps until the stream
    has been silent for ``keepalive`` seconds and only then sends a comment.
    (A pump task feeding a channel, with a timeout per read, cost two task
    switches and a cancel scope per chunk: the benchmarks' profile showed it
    as a quarter of the relay's CPU.) The comment goes out only between whole
    events (:attr:`StreamTap.at_event_boundary`) and never while a chunk is
    being sent: the client's bytes stay the upstream's bytes, plus comment
    lines, which every SSE client ignores (DESIGN §4.7).
    """
    last = trio.current_time()
    relaying = False

    async def watchdog() -> None:
        nonlocal last
        while True:
            await trio.sleep_until(last + keepalive)
            if trio.current_time() - last < keepalive:
                continue  # a chunk came meanwhile
            if not relaying and tap.at_event_boundary:
                await send({"type": "http.response.body", "body": KEEPALIVE_COMMENT, "more_body": True})
            last = trio.current_time()

    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watchdog)
        try:
            async for chunk in response.aiter_bytes():
                last = trio.current_time()
                relaying = True
                await relay_chunk(chunk)
                relaying = False
        except Exception as exc:  # raised outside the nursery, ungrouped
            failure = exc
        finally:
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure


def _error_text(body: bytes) -> str:
    try:
        payload = jsonutil.loads(body)
    except (ValueError, RecursionError):
        return body[:500].decode("utf-8", "replace")
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
    return body[:500].decode("utf-8", "replace")


async def _start_response(
    send: Send, response: UpstreamResponse, *, extra: list[tuple[str, str]], length: int | None = None
) -> None:
    headers = client_response_headers(response.headers, decoded=response.decoded)
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers + extra]
    if length is not None:
        raw.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": raw})


def _dated(send: Send) -> Send:
    """Add a ``date`` header to responses that have none (Hypercorn's is off so
    that a relayed reply carries the upstream's ``date`` alone, not two)."""

    async def send_dated(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = message["headers"]
            if not any(name.lower() == b"date" for name, _ in headers):
                message = {**message, "headers": [*headers, (b"date", _http_date())]}
        await send(message)

    return send_dated


_DATE_CACHE: dict[int, bytes] = {}


def _http_date() -> bytes:
    now = int(time.time())
    date = _DATE_CACHE.get(now)
    if date is None:
        _DATE_CACHE.clear()
        date = _DATE_CACHE[now] = format_date_time(now).encode("ascii")
    return date


async def _send_json(send: Send, status: int, payload: Any) -> None:
    body = jsonutil.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def default_targets(config: Any) -> dict[str, Target]:
    targets: dict[str, Target] = {
        "anthropic": DirectTarget(
            provider="anthropic", provider_name="anthropic", base_url=config.anthropic_base_url,
            credential=config.anthropic_key,
        ),
        "openai": DirectTarget(
            provider="openai", provider_name="openai", base_url=config.openai_base_url,
            credential=config.openai_key,
        ),
    }
    if config_mod.bedrock_enabled(config):
        try:
            from aibridge.shell.bedrock import BedrockTarget
        except ImportError:  # pragma: no cover - Bedrock support not installed
            pass
        else:
            targets["bedrock"] = BedrockTarget.from_config(config)
    return targets
