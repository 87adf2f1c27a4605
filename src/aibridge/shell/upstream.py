"""The upstream side: one httpx client, exception mapping, and provider targets.

httpx and httpcore exceptions become the core's :class:`UpstreamUnreachable`
(502) or :class:`UpstreamTimeout` (504) in :func:`map_exceptions`, and nowhere
else (httpcore's own ``map_exceptions`` is the model).

A *target* knows how to reach one upstream: the URL, the credential, and any
transformation of the reply into the client's wire format. :class:`DirectTarget`
serves OpenAI and Anthropic (and any compatible endpoint); Bedrock adds its own.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import attrs
import httpx
import trio

from aibridge.core.auth import mask_secret
from aibridge.core.errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from aibridge.core.headers import upstream_request_headers
from aibridge.core.providers.base import Translation
from aibridge.core.routes import Route, join_url


@contextlib.contextmanager
def map_exceptions() -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"upstream timed out: {type(exc).__name__}") from exc
    except httpx.DecodingError as exc:
        # compressed reply that does not decompress (bad gzip length/CRC, truncated)
        raise UpstreamError(f"upstream reply could not be decoded: {exc}") from exc
    except (httpx.TransportError, httpx.StreamError) as exc:
        raise UpstreamUnreachable(f"upstream unreachable: {type(exc).__name__}: {exc}") from exc


class ShardedTransport(httpx.AsyncBaseTransport):
    """Several connection pools; each request goes to the one with the fewest in flight.

    httpcore's pool walks all of its connections twice per request, polls
    the socket of every idle one and counts the idle ones once per idle
    connection (quadratic); at 32 concurrent requests one pool was the
    bridge's largest single cost and eight gave 1.3 to 1.6 times the
    throughput (README, Benchmarks). Least-busy rather than round-robin:
    light traffic stays on the first pool and keeps reusing its warm
    keep-alive connections instead of spreading over eight that expire.
    """

    def __init__(self, shards: list[httpx.AsyncHTTPTransport]) -> None:
        self.shards = shards
        self.in_flight = [0] * len(shards)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        in_flight = self.in_flight
        index = in_flight.index(min(in_flight))
        in_flight[index] += 1
        try:
            response = await self.shards[index].handle_async_request(request)
        except BaseException:
            in_flight[index] -= 1
            raise
        response.stream = _Release(response.stream, self, index)
        return response

    async def aclose(self) -> None:
        for shard in self.shards:
            await shard.aclose()


class _Release(httpx.AsyncByteStream):
    """A response stream that gives its pool's in-flight slot back when closed."""

    def __init__(self, stream: Any, owner: ShardedTransport, index: int) -> None:
        self.stream, self.owner, self.index = stream, owner, index

    def __aiter__(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        return self.stream.__aiter__()  # no extra generator layer per chunk

    async def aclose(self) -> None:
        if self.owner is not None:
            self.owner.in_flight[self.index] -= 1
            self.owner = None  # type: ignore[assignment]
        await self.stream.aclose()


#: the connection pools of each client made by :func:`open_client`
_TRANSPORTS: weakref.WeakKeyDictionary[httpx.AsyncClient, ShardedTransport] = weakref.WeakKeyDictionary()


def open_client(*, timeout: float, max_connections: int = 1000, pools: int = 8) -> httpx.AsyncClient:
    transport = ShardedTransport([
        httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=max(1, max_connections // pools),
                                max_keepalive_connections=max(1, 256 // pools)),
            trust_env=False,
        )
        for _ in range(pools)
    ])
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
        transport=transport,
        follow_redirects=False,
        trust_env=False,
    )
    _TRANSPORTS[client] = transport
    return client


@attrs.frozen(kw_only=True)
class PreparedRequest:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    #: the model as sent upstream (what gets recorded)
    model: str
    credential_kind: str
    credential_hint: str


class UpstreamResponse(Protocol):
    status_code: int
    headers: list[tuple[str, str]]
    #: the reply was decoded (compressed upstream, or translated): framing headers are dropped
    decoded: bool

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aread(self) -> bytes: ...


class HttpxResponse:
    """An httpx streaming response as an :class:`UpstreamResponse`; raw bytes unless compressed."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status_code = response.status_code
        self.headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in response.headers.raw]
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        self.decoded = encoding not in ("", "identity")

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        with map_exceptions():
            if self.decoded:
                async for chunk in self._response.aiter_bytes():
                    yield chunk
            else:
                async for chunk in self._response.aiter_raw():
                    yield chunk

    async def aread(self) -> bytes:
        chunks = [c async for c in self.aiter_bytes()]
        return b"".join(chunks)


class Target(Protocol):
    provider: str
    provider_name: str

    def prepare(
        self,
        route: Route,
        query: str,
        translation: Translation | None,
        client_headers: list[tuple[str, str]],
        *,
        byok: bool,
        body: bytes,
        method: str,
    ) -> PreparedRequest: ...

    def open(self, client: httpx.AsyncClient, request: PreparedRequest) -> contextlib.AbstractAsyncContextManager[UpstreamResponse]: ...


def _byok_hint(client_headers: list[tuple[str, str]]) -> str:
    for name, value in client_headers:
        if name == "x-api-key":
            return mask_secret(value)
        if name == "authorization":
            return mask_secret(value.partition(" ")[2] or value)
    return ""


@attrs.define
class DirectTarget:
    """An OpenAI- or Anthropic-compatible endpoint reached over HTTP."""

    provider: str
    provider_name: str
    base_url: str
    credential: str | None

    def prepare(
        self,
        route: Route,
        query: str,
        translation: Translation | None,
        client_headers: list[tuple[str, str]],
        *,
        byok: bool,
        body: bytes,
        method: str,
    ) -> PreparedRequest:
        path = route.upstream_path
        if translation is not None and translation.path is not None:
            path = translation.path
        headers = upstream_request_headers(
            client_headers, provider=self.provider, credential=self.credential, byok=byok
        )
        if translation is not None:
            headers.extend(translation.headers)
        return PreparedRequest(
            method=method,
            url=join_url(self.base_url, path, query),
            headers=headers,
            body=translation.body if translation is not None else body,
            model=translation.model if translation is not None else "",
            credential_kind="byok" if byok else "centralized",
            credential_hint=_byok_hint(client_headers) if byok else mask_secret(self.credential),
        )

    def open(self, client: httpx.AsyncClient, request: PreparedRequest) -> contextlib.AbstractAsyncContextManager[UpstreamResponse]:
        return open_httpx(client, request)


@contextlib.asynccontextmanager
async def open_httpx(client: httpx.AsyncClient, request: PreparedRequest) -> AsyncIterator[HttpxResponse]:
    """Send ``request`` and stream the reply; shared by every target that speaks HTTP."""
    with map_exceptions():
        req = client.build_request(
            request.method, request.url, headers=request.headers, content=request.body
        )
        # Straight to the connection pool: the client's send() layers (auth,
        # redirects, event hooks, its cookie jar) do nothing for a gateway
        # but cost about a tenth of the bridge's CPU per request (benchmarks),
        # and a shared cookie jar would carry one user's upstream cookies
        # into every other user's requests.
        transport = _TRANSPORTS.get(client)
        if transport is not None:
            response = await transport.handle_async_request(req)
        else:
            response = await client.send(req, stream=True)
    try:
        yield HttpxResponse(response)
    finally:
        # Shielded: a client disconnect cancels us, and the upstream
        # connection must still be closed (stop paying for tokens).
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await response.aclose()


def describe(target: Any) -> str:
    return f"{target.provider_name} ({getattr(target, 'base_url', '')})"
