"""The MCP client side: list a server's tools and call them over Streamable HTTP.

Built on the official ``mcp`` Python SDK (``mcp.Client`` over
``streamable_http_client``). The SDK is anyio-based and runs unchanged under
Trio (anyio detects the running event loop), which ``tests/e2e/test_mcp.py``
exercises against a real SDK server in a subprocess.

One short MCP session per operation: the tool list is fetched at startup,
and each tool call opens its own session. That costs a handshake per call,
but no background task has to hold sessions open across requests, a server
restart never leaves a stale session behind, and a cancelled client request
cancels exactly its own MCP call.

SDK and transport exceptions become :class:`MCPError` here and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
import httpx2
import trio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from aibridge.core import jsonutil
from aibridge.core.mcp import InjectedTool, ServerSpec

log = logging.getLogger("aibridge.mcp")

CONNECT_TIMEOUT = 10.0


class MCPError(Exception):
    """An MCP server could not be reached or answered with a protocol error."""


@contextlib.contextmanager
def map_exceptions(server: ServerSpec) -> Iterator[None]:
    try:
        yield
    except MCPError:
        raise
    except trio.TooSlowError:
        raise MCPError(f"MCP server {server.name} timed out") from None
    except BaseExceptionGroup as group:  # anyio task groups wrap transport failures
        if not all(isinstance(e, Exception) for e in _leaves(group)):
            raise  # a cancellation (client gone, shutdown) stays a cancellation
        first = _leaves(group)[0]
        raise MCPError(f"MCP server {server.name}: {type(first).__name__}: {first}") from None
    except Exception as exc:  # noqa: BLE001 - every SDK/transport failure is one domain error
        raise MCPError(f"MCP server {server.name}: {type(exc).__name__}: {exc}") from None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


@contextlib.asynccontextmanager
async def open_session(server: ServerSpec, *, seconds: float) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(
        headers=dict(server.headers),
        timeout=httpx2.Timeout(min(seconds, CONNECT_TIMEOUT), read=seconds),
    )
    async with http, Client(streamable_http_client(server.url, http_client=http), read_timeout_seconds=seconds) as client:
        yield client


async def list_tools(server: ServerSpec, *, seconds: float) -> list[InjectedTool]:
    """Every tool the server lists (all pages), as unfiltered :class:`InjectedTool` values."""
    tools: list[InjectedTool] = []
    with map_exceptions(server), trio.fail_after(seconds):
        async with open_session(server, seconds=seconds) as client:
            cursor: str | None = None
            while True:
                page = await client.list_tools(cursor=cursor)
                for t in page.tools:
                    tools.append(
                        InjectedTool(
                            server=server.name,
                            server_url=server.url,
                            tool=t.name,
                            description=t.description or "",
                            input_schema=dict(t.input_schema or {}),
                        )
                    )
                cursor = page.next_cursor
                if not cursor:
                    return tools


@attrs.frozen(kw_only=True)
class CallResult:
    text: str
    is_error: bool


async def call_tool(server: ServerSpec, tool: str, arguments: dict[str, Any], *, seconds: float) -> CallResult:
    """Call one tool; a tool-level failure (``isError``) is a result, not an exception."""
    with map_exceptions(server), trio.fail_after(seconds):
        async with open_session(server, seconds=seconds) as client:
            result = await client.call_tool(tool, arguments)
    return CallResult(text=result_text(result), is_error=bool(getattr(result, "is_error", False)))


def result_text(result: Any) -> str:
    """The text a model gets back: text parts joined by newlines; other parts as JSON."""
    parts: list[str] = []
    for item in getattr(result, "content", None) or []:
        if getattr(item, "type", None) == "text":
            parts.append(item.text)
        else:
            parts.append(jsonutil.dumps(item.model_dump(mode="json", exclude_none=True)).decode())
    if not parts and getattr(result, "structured_content", None) is not None:
        parts.append(jsonutil.dumps(result.structured_content).decode())
    return "\n".join(parts)
