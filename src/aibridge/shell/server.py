"""Process-level entry points: the gateway, the fake upstream."""

from __future__ import annotations

import functools
import logging
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from aibridge.fake.upstream import FakeUpstream, Synthetic
from aibridge.shell.run import run

log = logging.getLogger("aibridge.server")


def run_server(config: Any) -> None:
    """Run the gateway in this process (``workers`` > 1 is handled by :mod:`.workers`)."""
    if config.workers > 1:
        from aibridge.shell.workers import run_workers

        run_workers(config)
        return
    run(config)


async def serve_fake_upstream(
    fake: FakeUpstream,
    listen: str = "127.0.0.1:0",
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    hc = HypercornConfig()
    hc.bind = [listen]
    hc.accesslog = None
    # Through our logging setup, like the bridge: Hypercorn's default "-" adds
    # a second stderr handler (its "Running on" line printed twice).
    hc.errorlog = logging.getLogger("hypercorn.error")  # type: ignore[assignment]
    hc.graceful_timeout = 1.0
    hc.keep_alive_timeout = 75
    hc.backlog = 1024
    trigger = (shutdown if shutdown is not None else trio.Event()).wait
    await serve(fake, hc, shutdown_trigger=trigger, task_status=task_status)  # type: ignore[arg-type]


def run_fake_upstream(listen: str, *, chunks: int, latency: float, chunk_delay: float, hold: float = 0.0) -> None:
    synthetic = Synthetic(chunks=chunks, latency=latency, chunk_delay=chunk_delay, hold=hold)
    fake = FakeUpstream(synthetic=synthetic, keep_requests=100)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(functools.partial(serve_fake_upstream, fake, listen))
            print(f"fake upstream listening on {urls[0]}", flush=True)

    trio.run(main)
