"""Prometheus metrics. Every metric of the process registers on :data:`REGISTRY`.

Labels stay low-cardinality (provider, model, api, status, client); per-user
series only when ``metrics_per_user`` is on. Other modules add their own
metric objects to :data:`REGISTRY` (the circuit breaker and limits do).

What this module owns (DESIGN §10):

* Record-derived counters (interceptions, tokens by kind, prompts, tool
  calls, thoughts, upstream errors) are counted when the writer *commits*
  the records (:meth:`Metrics.on_batch`), so the counters equal the rows in
  the store, and a lost record is not counted as recorded.
* Live request state (in flight, duration, the gateway's own overhead, i.e.
  wall time minus time spent waiting on upstream) comes from the app's hooks.
* Writer state (queue depth, records written and lost) is read at scrape time.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from aibridge.core.model import (
    InterceptionEnded,
    InterceptionStarted,
    PromptRecord,
    Record,
    ThoughtRecord,
    TokenUsageRecord,
    ToolUsageRecord,
)

log = logging.getLogger("aibridge.metrics")

REGISTRY = CollectorRegistry(auto_describe=True)

#: Distinct model label values kept before further models count as "other":
#: the model name comes from clients, and a metric label must not be a way to
#: grow the gateway's memory without bound.
MAX_MODELS = 200
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")

INTERCEPTIONS = Counter(
    "aibridge_interceptions", "Ended interceptions, as recorded in the audit store",
    ["provider", "model", "api", "status", "client"], registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "aibridge_interceptions_in_flight", "Interceptions being relayed now", ["provider", "api"], registry=REGISTRY
)
DURATION = Histogram(
    "aibridge_interception_duration_seconds", "Wall time of an interception, request to last byte",
    ["provider", "api", "status"], registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
OVERHEAD = Histogram(
    "aibridge_gateway_overhead_seconds",
    "The gateway's own time per interception: wall time minus time waiting on upstream",
    ["provider", "api"], registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
PASSTHROUGH = Counter(
    "aibridge_passthrough", "Passthrough requests (not recorded as interceptions)",
    ["provider", "route"], registry=REGISTRY,
)
TOKENS = Counter(
    "aibridge_tokens", "Tokens recorded, by kind (input excludes cache reads and writes)",
    ["provider", "model", "api", "kind"], registry=REGISTRY,
)
PROMPTS = Counter("aibridge_prompts", "User prompts recorded", ["provider", "model", "api"], registry=REGISTRY)
TOOL_CALLS = Counter(
    "aibridge_tool_calls", "Tool calls recorded (injected: run by the gateway over MCP)",
    ["provider", "model", "api", "injected"], registry=REGISTRY,
)
THOUGHTS = Counter("aibridge_thoughts", "Model thoughts recorded", ["provider", "model", "api"], registry=REGISTRY)
UPSTREAM_ERRORS = Counter(
    "aibridge_upstream_errors", "Interceptions that ended failed, by upstream status ('' when none)",
    ["provider", "api", "upstream_status"], registry=REGISTRY,
)
AUDIT_WRITE = Histogram(
    "aibridge_audit_write_seconds", "Time to commit one batch of audit records", registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
USER_INTERCEPTIONS = Counter(
    "aibridge_user_interceptions", "Ended interceptions per user id (only with metrics_per_user)",
    ["user_id"], registry=REGISTRY,
)
USER_TOKENS = Counter(
    "aibridge_user_tokens", "Tokens per user id and kind (only with metrics_per_user)",
    ["user_id", "kind"], registry=REGISTRY,
)


class _WriterCollector(Collector):
    """Queue depth, records written and lost, read from the live writers at scrape time."""

    def __init__(self) -> None:
        self.writers: weakref.WeakSet[Any] = weakref.WeakSet()

    def collect(self) -> Iterator[Any]:
        writers = list(self.writers)
        depth = GaugeMetricFamily("aibridge_audit_queue_depth", "Audit records waiting for the writer")
        depth.add_metric([], sum(w.queue_depth for w in writers))
        yield depth
        written = CounterMetricFamily("aibridge_audit_records_written", "Audit records committed")
        written.add_metric([], sum(w.written for w in writers))
        yield written
        lost = CounterMetricFamily(
            "aibridge_audit_records_lost", "Audit records dropped by the open failure policy (should stay 0)"
        )
        lost.add_metric([], sum(w.lost for w in writers))
        yield lost


WRITERS = _WriterCollector()
REGISTRY.register(WRITERS)

Labels = tuple[str, str, str, str, str]  # provider, model, api, client, user_id


class Metrics:
    """The app's ``metrics`` hook object (see the calls in :mod:`aibridge.shell.app`)."""

    def __init__(self, *, per_user: bool = False) -> None:
        self.per_user = per_user
        self._labels: dict[str, Labels] = {}
        self._models: set[str] = set()

    def _model(self, model: str) -> str:
        if model in self._models:
            return model
        if len(self._models) >= MAX_MODELS:
            return "other"
        self._models.add(model)
        return model

    # -- app hooks ----------------------------------------------------------------------

    def interception_started(self, start: InterceptionStarted) -> None:
        IN_FLIGHT.labels(start.provider, start.api).inc()

    def interception_ended(self, start: InterceptionStarted, end: InterceptionEnded, ic: Any) -> None:
        IN_FLIGHT.labels(start.provider, start.api).dec()
        wall = max(end.ended_at - start.started_at, 0.0)
        DURATION.labels(start.provider, start.api, end.status).observe(wall)
        OVERHEAD.labels(start.provider, start.api).observe(max(wall - getattr(ic, "upstream_seconds", 0.0), 0.0))

    def records(self, records: Sequence[Record]) -> None:
        """Records as produced; counted at commit instead (:meth:`on_batch`)."""

    def passthrough(self, route: Any) -> None:
        PASSTHROUGH.labels(route.provider, route.name).inc()

    async def serve(self, scope: Any, receive: Any, send: Any) -> None:
        body = generate_latest(REGISTRY)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", CONTENT_TYPE_LATEST.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    # -- writer hook ----------------------------------------------------------------------

    def on_batch(self, records: Sequence[Record], seconds: float) -> None:
        AUDIT_WRITE.observe(seconds)
        for r in records:
            if isinstance(r, InterceptionStarted):
                self._labels[r.id] = (r.provider, self._model(r.model), r.api, r.client, r.user_id)
            elif isinstance(r, InterceptionEnded):
                provider, model, api, client, user_id = self._labels.pop(r.id, _UNKNOWN)
                INTERCEPTIONS.labels(provider, model, api, r.status, client).inc()
                if r.status == "failed":
                    status = "" if r.upstream_status is None else str(r.upstream_status)
                    UPSTREAM_ERRORS.labels(provider, api, status).inc()
                if self.per_user:
                    USER_INTERCEPTIONS.labels(user_id).inc()
            else:
                provider, model, api, _, user_id = self._labels.get(r.interception_id, _UNKNOWN)
                if isinstance(r, TokenUsageRecord):
                    u = r.usage
                    counts = (u.input_tokens, u.output_tokens, u.cache_read_input_tokens,
                              u.cache_write_input_tokens, u.reasoning_tokens)
                    for kind, n in zip(TOKEN_KINDS, counts, strict=True):
                        if n:
                            TOKENS.labels(provider, model, api, kind).inc(n)
                            if self.per_user:
                                USER_TOKENS.labels(user_id, kind).inc(n)
                elif isinstance(r, PromptRecord):
                    PROMPTS.labels(provider, model, api).inc()
                elif isinstance(r, ToolUsageRecord):
                    TOOL_CALLS.labels(provider, model, api, str(r.call.injected).lower()).inc()
                elif isinstance(r, ThoughtRecord):
                    THOUGHTS.labels(provider, model, api).inc()


_UNKNOWN: Labels = ("unknown", "unknown", "unknown", "unknown", "unknown")

BatchListener = Callable[[Sequence[Record], float], None]


def add_batch_listener(writer: Any, listener: BatchListener) -> None:
    """Chain ``listener`` onto the writer's ``on_batch`` callback.

    A listener runs in the writer task after each commit; one that raises is
    logged and skipped, never allowed to stop the writer.
    """
    previous: BatchListener | None = writer._on_batch

    def call(records: Sequence[Record], seconds: float) -> None:
        if previous is not None:
            previous(records, seconds)
        try:
            listener(records, seconds)
        except Exception:
            log.exception("audit batch listener %r failed", listener)

    writer._on_batch = call


def install_metrics(app: Any, config: Any) -> None:
    """``APP_EXTENSIONS`` hook: attach metrics to the app and its writer."""
    metrics = Metrics(per_user=bool(config.metrics_per_user))
    app.metrics = metrics
    WRITERS.writers.add(app.writer)
    add_batch_listener(app.writer, metrics.on_batch)
