"""The nursery tree (DESIGN §1), and the clean shutdown order.

::

    open httpx client
    └─ root nursery
       ├─ audit writer task            (last to finish: drains and commits)
       └─ serving nursery
          ├─ hypercorn.trio.serve       (explicit shutdown_trigger)
          ├─ retention timer
          └─ signal watcher             (SIGTERM/SIGINT -> stop)

On stop: Hypercorn stops accepting and gives in-flight requests
``shutdown_grace`` seconds; then the serving nursery is cancelled, the audit
channel is closed, the writer drains and commits, and we return (exit 0).
"""

from __future__ import annotations

import functools
import logging
import signal
from collections.abc import Callable
from typing import Any

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from aibridge import config as config_mod
from aibridge.shell.admission import install_admission
from aibridge.shell.api import install_api
from aibridge.shell.app import BridgeApp
from aibridge.shell.audit_log import install_audit_log
from aibridge.shell.mcp_loop import install_mcp
from aibridge.shell.metrics import install_metrics
from aibridge.shell.retention import run_retention_timer
from aibridge.shell.store import SQLiteStore
from aibridge.shell.upstream import open_client
from aibridge.shell.writer import AuditWriter

log = logging.getLogger("aibridge.run")

#: functions called with the app after it is built: (app, config) -> None.
#: Optional subsystems (metrics, audit API, limits, MCP) register here.
APP_EXTENSIONS: list[Callable[[BridgeApp, Any], Any]] = []
APP_EXTENSIONS += [install_metrics, install_api, install_audit_log]
APP_EXTENSIONS.append(install_admission)
APP_EXTENSIONS.append(install_mcp)


@attrs.define
class Running:
    app: BridgeApp
    writer: AuditWriter
    urls: list[str]
    stop: trio.Event

    @property
    def url(self) -> str:
        return self.urls[0]


def missing_credentials(config: Any) -> list[str]:
    """Providers with no central key: said once at startup, since requests to
    them go upstream with only what the user brings (BYOK) or none."""
    missing = [("openai", config.openai_key, "AIBRIDGE_OPENAI_KEY")]
    if not config_mod.bedrock_enabled(config):
        missing.append(("anthropic", config.anthropic_key, "AIBRIDGE_ANTHROPIC_KEY"))
    byok = ("users must bring their own provider key (X-AIBridge-Token)" if config.allow_byok
            else "requests reach the provider without a key and fail there")
    return [f"no central {name} key ({env} or --{name}-key): {byok}"
            for name, key, env in missing if not key]


def hypercorn_config(config: Any) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [config.listen]
    hc.graceful_timeout = float(config.shutdown_grace)
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")  # type: ignore[assignment]
    hc.keep_alive_timeout = 75
    hc.backlog = 1024
    hc.include_server_header = False
    hc.include_date_header = False  # the app adds one where the reply has none (app._dated)
    return hc


async def serve_bridge(
    config: Any,
    *,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    store = SQLiteStore(config.db, busy_timeout_ms=int(config.audit_busy_timeout * 1000))
    writer = AuditWriter(store, capacity=max(config.audit_queue_size, 1), policy=config.audit_failure_policy)
    try:
        async with open_client(timeout=config.upstream_timeout) as client:
            async with trio.open_nursery() as root:
                await root.start(writer.serve)
                try:
                    app = BridgeApp(config, writer, client)
                    for extend in APP_EXTENSIONS:
                        result = extend(app, config)
                        if hasattr(result, "__await__"):
                            await result
                    stop = trio.Event()
                    async with trio.open_nursery() as serving:

                        async def run_server(*, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
                            await serve(app, hypercorn_config(config), shutdown_trigger=stop.wait, task_status=task_status)  # type: ignore[arg-type]
                            serving.cancel_scope.cancel()

                        urls = await serving.start(run_server)
                        await serving.start(functools.partial(run_retention_timer, writer, config))
                        if handle_signals:
                            serving.start_soon(_watch_signals, stop)
                        log.info("aibridge listening on %s", ", ".join(urls))
                        for warning in missing_credentials(config):
                            log.warning("%s", warning)
                        task_status.started(Running(app=app, writer=writer, urls=urls, stop=stop))
                finally:
                    writer.close()
    finally:
        store.close()
    log.info("aibridge stopped; audit writer drained")


async def _watch_signals(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            stop.set()
            return


def run(config: Any) -> None:
    trio.run(functools.partial(serve_bridge, config))
