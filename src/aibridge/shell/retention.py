"""The retention timer: every ``retention_interval`` it asks the writer to purge.

The decision (what is old enough) is :func:`aibridge.core.retention.cutoff_for`;
the deleting is the writer's, in bounded batches, so requests keep flowing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import trio

from aibridge.core.retention import cutoff_for
from aibridge.shell.writer import AuditWriter

log = logging.getLogger("aibridge.retention")


async def purge_once(writer: AuditWriter, config: Any, now: float) -> int:
    cutoff = cutoff_for(now, int(config.retention))
    prompt_cutoff = cutoff_for(now, int(config.prompt_retention))
    if cutoff is None and prompt_cutoff is None:
        return 0
    deleted = await writer.purge(cutoff, prompt_cutoff)
    if deleted:
        log.info("retention purge deleted %d interceptions", deleted)
    return deleted


async def run_retention_timer(
    writer: AuditWriter,
    config: Any,
    *,
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started()
    if config.retention <= 0 and config.prompt_retention <= 0:
        return
    while True:
        try:
            await purge_once(writer, config, clock())
        except trio.ClosedResourceError:
            return
        await trio.sleep(max(config.retention_interval, 1.0))
