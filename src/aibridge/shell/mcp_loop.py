"""The hidden inner agent loop of injected MCP tools (DESIGN §8), and its startup.

:func:`install_mcp` (an ``APP_EXTENSIONS`` hook) lists the tools of every
configured server at startup; a server that fails is logged, marked
``failed`` (``/readyz``, metric ``aibridge_mcp_server_up``) and skipped. The
app then asks :meth:`MCPRuntime.applies` per interception, injects the tools
with :meth:`MCPRuntime.inject` and hands the request to :meth:`MCPRuntime.run`
instead of its plain relay.

The loop: call upstream, audit the reply with the provider's own
``StreamHandler``/``audit_body`` (usage per upstream response, tool calls),
and while the model called only injected tools, call them over MCP, append
the call and its result and call upstream again, at most
``mcp_max_iterations`` upstream calls. Every decision about bodies and bytes is
:mod:`aibridge.core.mcp`'s; this module moves bytes, calls tools and records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio
from prometheus_client import Counter, Gauge

from aibridge.config import ConfigError
from aibridge.core import jsonutil
from aibridge.core import mcp as core
from aibridge.core.errors import BridgeError
from aibridge.core.model import AuditEvent, StreamFailed, ToolCall, ToolCallMade
from aibridge.core.providers.base import Translation, stream_tap
from aibridge.core.sse import KEEPALIVE_COMMENT
from aibridge.shell import app as app_mod
from aibridge.shell.metrics import REGISTRY
from aibridge.shell.upstream import PreparedRequest, Target, UpstreamResponse

log = logging.getLogger("aibridge.mcp")

LIST_TIMEOUT = 10.0

SERVER_UP = Gauge(
    "aibridge_mcp_server_up", "1 when the MCP server's tools were listed at startup, 0 when it failed",
    ["server"], registry=REGISTRY,
)
SERVER_TOOLS = Gauge(
    "aibridge_mcp_server_tools", "tools injected from this MCP server", ["server"], registry=REGISTRY,
)
TOOL_INVOCATIONS = Counter(
    "aibridge_mcp_tool_invocations_total", "injected MCP tool calls run by the inner loop",
    ["server", "outcome"], registry=REGISTRY,
)

Send = app_mod.Send


@attrs.define
class ServerState:
    spec: core.ServerSpec
    state: str = "pending"  # "connected" | "failed"
    error: str | None = None
    tools: tuple[core.InjectedTool, ...] = ()


class MCPRuntime:
    """The configured servers, the injected tool catalogue, and the loop."""

    def __init__(self, servers: Sequence[ServerState], *, max_iterations: int, call_timeout: float) -> None:
        self.servers = list(servers)
        self.max_iterations = max_iterations
        self.call_timeout = call_timeout
        specs = {s.spec.name: s.spec for s in self.servers}
        self.tools = core.catalog((t for s in self.servers for t in s.tools), specs)
        self.by_name = {t.name: t for t in self.tools}
        self._specs = specs

    # -- startup ------------------------------------------------------------------

    @classmethod
    async def connect(cls, specs: Sequence[core.ServerSpec], *, max_iterations: int, call_timeout: float) -> MCPRuntime:
        states = [ServerState(spec=s) for s in specs]
        client = mcp_client()

        async def one(state: ServerState) -> None:
            try:
                state.tools = tuple(await client.list_tools(state.spec, seconds=LIST_TIMEOUT))
                state.state = "connected"
            except client.MCPError as exc:
                state.state, state.error = "failed", str(exc)
                log.warning("MCP server %s (%s) skipped: %s", state.spec.name, state.spec.url, exc)

        async with trio.open_nursery() as nursery:
            for state in states:
                nursery.start_soon(one, state)
        runtime = cls(states, max_iterations=max_iterations, call_timeout=call_timeout)
        for state in states:
            count = sum(1 for t in runtime.tools if t.server == state.spec.name)
            SERVER_UP.labels(state.spec.name).set(1 if state.state == "connected" else 0)
            SERVER_TOOLS.labels(state.spec.name).set(count)
            if state.state == "connected":
                log.info("MCP server %s (%s): %d tools injected", state.spec.name, state.spec.url, count)
        return runtime

    def status(self) -> list[dict[str, Any]]:
        """Per server, for ``/readyz`` (never the headers: they may carry tokens)."""
        return [
            {"name": s.spec.name, "url": s.spec.url, "state": s.state, "error": s.error,
             "tools": sum(1 for t in self.tools if t.server == s.spec.name)}
            for s in self.servers
        ]

    # -- per request ------------------------------------------------------------------

    def is_injected(self, name: str) -> bool:
        return name in self.by_name

    def applies(self, api: str, model: str) -> bool:
        return bool(self.tools) and self.max_iterations > 0 and core.eligible(model)

    def inject(self, api: str, translation: Translation) -> Translation:
        body = core.inject_tools(api, jsonutil.loads(translation.body), self.tools)
        return attrs.evolve(translation, body=core.encode(body), rewritten=(*translation.rewritten, "tools"))

    async def run(
        self,
        app: Any,
        ic: Any,
        module: Any,
        api: str,
        translation: Translation,
        target: Target,
        request: PreparedRequest,
        send: Send,
        prepare: Callable[[Translation], PreparedRequest],
    ) -> None:
        loop = _Loop(self, app, ic, module, api, send)
        await loop.run(translation, target, request, prepare)


class _Loop:
    """One interception's loop (state shared between iterations)."""

    def __init__(self, runtime: MCPRuntime, app: Any, ic: Any, module: Any, api: str, send: Send) -> None:
        self.rt = runtime
        self.app = app
        self.ic = ic
        self.module = module
        self.api = api
        self.send = send
        self.extra = [(app_mod.INTERCEPTION_HEADER, ic.id)]
        self.started = False
        self.rewriter: core.StreamRewriter | None = None
        #: injected calls the parsers reported, by call id, waiting for their outcome
        self.pending: dict[str, ToolCall] = {}

    async def run(
        self,
        translation: Translation,
        target: Target,
        request: PreparedRequest,
        prepare: Callable[[Translation], PreparedRequest],
    ) -> None:
        body = jsonutil.loads(translation.body)
        payloads: list[Any] = []
        iteration = 0
        try:
            while True:
                iteration += 1
                async with target.open(self.app.client, request) as response:
                    self.ic.upstream_status = response.status_code
                    if response.status_code >= 400:
                        await self._upstream_error(response)
                        return
                    streaming = "text/event-stream" in dict(response.headers).get("content-type", "")
                    if streaming:
                        turn = await self._stream_iteration(response, translation)
                    else:
                        data = await response.aread()
                        try:
                            payload = jsonutil.loads(data) if data else None
                        except (ValueError, RecursionError):
                            payload = None
                        if payload is None:
                            await self._record([StreamFailed(message="upstream reply is not valid JSON")])
                            await self._finish_blocking(response, data)
                            return
                        await self._record(self.module.audit_body(payload))
                        payloads.append(payload)
                        turn = core.blocking_turn(self.api, payload, self.rt.is_injected)
                failed = self.ic.status == "failed"
                if turn.wants_tools and not failed and iteration < self.rt.max_iterations:
                    outcomes = await self._invoke(turn.injected_calls)
                    body = core.follow_up(self.api, body, turn, outcomes, self.rt.is_injected)
                    request = prepare(attrs.evolve(translation, body=core.encode(body)))
                    continue
                if turn.injected_calls:
                    if failed:
                        reason = "not invoked: the upstream response failed"
                    elif turn.client_calls:
                        reason = "not invoked: the response also called client tools, so the turn went to the client"
                    else:
                        reason = f"not invoked: mcp_max_iterations ({self.rt.max_iterations}) reached"
                    await self._flush_pending(reason)
                if streaming:
                    assert self.rewriter is not None
                    await self._body(self.rewriter.release())
                    self.ic.complete = True
                    await self.send({"type": "http.response.body", "body": b""})
                else:
                    final = core.final_blocking(self.api, payloads, self.rt.is_injected)
                    await self._finish_blocking(response, core.encode(final))
                return
        except BridgeError as exc:
            # Headers already sent (a stream): end it with a provider-shaped error event.
            if self.started and self.rewriter is not None and not self.ic.complete:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await self._body(self.rewriter.error_event(exc.message))
            raise
        finally:
            with trio.CancelScope(shield=True):
                await self._flush_pending("not invoked: the request ended first")

    # -- upstream replies ---------------------------------------------------------------

    async def _upstream_error(self, response: UpstreamResponse) -> None:
        data = await response.aread()
        self.ic.status = "failed"
        self.ic.error = app_mod._error_text(data)
        if self.started:
            assert self.rewriter is not None
            await self._body(self.rewriter.error_event(f"upstream error {response.status_code}: {self.ic.error}"))
            self.ic.complete = True
            await self.send({"type": "http.response.body", "body": b""})
            return
        await self._finish_blocking(response, data)

    async def _finish_blocking(self, response: UpstreamResponse, data: bytes) -> None:
        await app_mod._start_response(self.send, response, extra=self.extra, length=len(data))
        self.ic.complete = True
        await self.send({"type": "http.response.body", "body": data})

    async def _body(self, data: bytes) -> None:
        if data:
            await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def _stream_iteration(self, response: UpstreamResponse, translation: Translation) -> core.Turn:
        if self.rewriter is None:
            self.rewriter = core.stream_rewriter(
                self.api, self.rt.is_injected, drop_usage_only=translation.drop_usage_only_chunks
            )
        rewriter = self.rewriter
        if not self.started:
            await app_mod._start_response(self.send, response, extra=self.extra)
            self.started = True
        rewriter.start_iteration()
        tap = stream_tap(self.module)

        async def relay_chunk(chunk: bytes) -> None:
            _, events = tap.receive_data(chunk)
            await self._body(rewriter.receive_data(chunk))
            await self._record(events)

        closed = False
        try:
            keepalive = float(getattr(self.app.config, "stream_keepalive", 0) or 0)
            relay = getattr(app_mod, "_relay_with_keepalive", None)
            if relay is not None and keepalive > 0:
                await relay(response, tap, relay_chunk, self.send, keepalive)
            else:
                async for chunk in response.aiter_bytes():
                    await relay_chunk(chunk)
            closed = True
            _, events = tap.close()
            await self._record(events)
            out, turn = rewriter.end_iteration()
            await self._body(out)
            return turn
        except BaseException:
            if not closed:
                events = tap.abandon()
                with trio.CancelScope(shield=True):
                    await self._record(events)
            raise

    # -- records --------------------------------------------------------------------------

    async def _record(self, events: list[AuditEvent]) -> None:
        """Record the parsers' events; injected calls wait for their outcome (see :meth:`_invoke`)."""
        rest: list[AuditEvent] = []
        for event in events:
            if isinstance(event, ToolCallMade) and self.rt.is_injected(event.call.tool):
                self.pending[event.call.tool_call_id] = event.call
            else:
                rest.append(event)
        await self.app._record_events(self.ic, rest)

    def _usage_of(self, call_id: str, name: str, arguments: str, error: str | None) -> ToolCall:
        tool = self.rt.by_name[name]
        seen = self.pending.pop(call_id, None)
        return ToolCall(
            provider_response_id=seen.provider_response_id if seen else self.ic.response_id,
            tool_call_id=call_id,
            tool=tool.tool,
            input=seen.input if seen else arguments,
            injected=True,
            server_url=tool.server_url,
            invocation_error=error,
        )

    async def _flush_pending(self, reason: str) -> None:
        calls = [self._usage_of(c.tool_call_id, c.tool, c.input, reason) for c in list(self.pending.values())]
        if calls:
            await self.app._record_events(self.ic, [ToolCallMade(call=c) for c in calls])

    # -- tools ------------------------------------------------------------------------------

    async def _invoke(self, calls: Sequence[core.InjectedCall]) -> list[core.ToolOutcome]:
        outcomes: list[core.ToolOutcome | None] = [None] * len(calls)

        async def one(i: int, call: core.InjectedCall) -> None:
            outcome: core.ToolOutcome | None = None
            try:
                outcome = await self._call(call)
                outcomes[i] = outcome
            finally:
                error: str | None
                if outcome is None:
                    error = "cancelled: the request ended before the tool answered"
                else:
                    error = outcome.text if outcome.is_error else None
                usage = self._usage_of(call.call_id, call.name, call.arguments, error)
                with trio.CancelScope(shield=True):
                    await self.app._record_events(self.ic, [ToolCallMade(call=usage)])

        keepalive = float(getattr(self.app.config, "stream_keepalive", 0) or 0)
        async with trio.open_nursery() as outer:
            if self.started and keepalive > 0:
                # The client's stream is between whole events here: a comment
                # keeps idle-timeout proxies from cutting it while tools run.
                outer.start_soon(self._keep_alive, keepalive)
            async with trio.open_nursery() as nursery:
                for i, call in enumerate(calls):
                    nursery.start_soon(one, i, call)
            outer.cancel_scope.cancel()
        return [o for o in outcomes if o is not None]

    async def _keep_alive(self, period: float) -> None:
        while True:
            await trio.sleep(period)
            await self._body(KEEPALIVE_COMMENT)

    async def _call(self, call: core.InjectedCall) -> core.ToolOutcome:
        tool = self.rt.by_name[call.name]
        spec = self.rt._specs[tool.server]
        try:
            arguments = jsonutil.loads(call.arguments or "{}")
        except (ValueError, RecursionError):
            arguments = None
        if not isinstance(arguments, dict):
            TOOL_INVOCATIONS.labels(tool.server, "error").inc()
            return core.ToolOutcome(call_id=call.call_id, text=f"invalid tool arguments (not a JSON object): {call.arguments[:200]}",
                                    is_error=True)
        client = mcp_client()
        try:
            result = await client.call_tool(spec, tool.tool, arguments, seconds=self.rt.call_timeout)
        except client.MCPError as exc:
            log.warning("MCP tool %s on %s failed: %s", tool.tool, tool.server, exc)
            TOOL_INVOCATIONS.labels(tool.server, "error").inc()
            return core.ToolOutcome(call_id=call.call_id, text=str(exc), is_error=True)
        TOOL_INVOCATIONS.labels(tool.server, "error" if result.is_error else "ok").inc()
        return core.ToolOutcome(call_id=call.call_id, text=result.text, is_error=result.is_error)


def mcp_client() -> Any:
    """The MCP client module, imported only when MCP servers are configured: the
    official ``mcp`` SDK is an optional extra (``pip install 'aibridge[mcp]'``)."""
    try:
        from aibridge.shell import mcp_client as module
    except ImportError as exc:
        raise ConfigError(
            f"MCP servers are configured but the MCP client is not installed ({exc}); "
            "install it with: pip install 'aibridge[mcp]'"
        ) from None
    return module


def configured_servers(config: Any) -> tuple[core.ServerSpec, ...]:
    """The YAML ``mcp_servers`` list plus the one server of the flag/env form."""
    specs = tuple(getattr(config, "mcp_servers", ()) or ())
    url = getattr(config, "mcp_server_url", None)
    if url:
        specs += (
            core.ServerSpec(
                name=getattr(config, "mcp_server_name", None) or "mcp",
                url=url,
                headers=tuple(getattr(config, "mcp_server_headers", None) or ()),
                allow=getattr(config, "mcp_server_allow", None),
                deny=getattr(config, "mcp_server_deny", None),
            ),
        )
    return specs


async def install_mcp(app: Any, config: Any) -> None:
    """``APP_EXTENSIONS`` hook: connect to the configured MCP servers and attach the loop."""
    specs = configured_servers(config)
    if not specs:
        return
    mcp_client()  # a missing SDK is a configuration error, said at startup
    app.mcp = await MCPRuntime.connect(
        specs, max_iterations=config.mcp_max_iterations, call_timeout=float(config.upstream_timeout)
    )
