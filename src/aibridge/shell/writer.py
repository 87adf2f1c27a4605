"""The single audit writer: one task owns every write to the store.

Requests (and the retention timer) send records and commands into a bounded
memory channel; the writer takes whatever is queued (up to ``max_batch``),
writes it in one transaction on a worker thread, and repeats. Closing every
send side ends the loop after the queue is drained and committed.

Failure policy (DESIGN §6): while the store refuses writes, the writer keeps
the failed batch and retries with backoff, and :attr:`AuditWriter.healthy` is
false so the app can refuse new interceptions (``closed``). With ``open`` the
batch is dropped after a few attempts and counted in :attr:`lost`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from aibridge.core.model import Record
from aibridge.shell.store import AuditStore, StoreError

log = logging.getLogger("aibridge.writer")


@attrs.frozen(eq=False)
class Flush:
    """Set ``done`` once everything queued before it is committed."""

    done: trio.Event = attrs.field(factory=trio.Event)


@attrs.frozen(eq=False)
class Purge:
    """Delete ended interceptions started before ``cutoff`` (in bounded batches)."""

    cutoff: float | None
    prompt_cutoff: float | None = None
    done: trio.Event = attrs.field(factory=trio.Event)
    result: list[int] = attrs.field(factory=list)


Item = Record | Flush | Purge


class AuditWriter:
    def __init__(
        self,
        store: AuditStore,
        *,
        capacity: int = 10000,
        max_batch: int = 2000,
        policy: str = "closed",
        on_batch: Callable[[Sequence[Record], float], None] | None = None,
        purge_batch: int = 500,
        probe_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.send_channel, self._receive = trio.open_memory_channel[Item](capacity)
        self.max_batch = max_batch
        self.policy = policy
        self.healthy = True
        self.alive = False
        self.lost = 0
        self.written = 0
        self.last_error: str | None = None
        self._on_batch = on_batch
        self._purge_batch = purge_batch
        #: when idle this long, check that the store still takes writes (0: never)
        self.probe_interval = probe_interval

    @property
    def queue_depth(self) -> int:
        return self._receive.statistics().current_buffer_used

    async def record(self, *records: Record) -> None:
        """Queue records; shielded so a cancelled request still gets its rows written."""
        with trio.CancelScope(shield=True):
            for r in records:
                await self.send_channel.send(r)

    async def flush(self) -> None:
        item = Flush()
        await self.send_channel.send(item)
        await item.done.wait()

    async def purge(self, cutoff: float | None, prompt_cutoff: float | None = None) -> int:
        item = Purge(cutoff=cutoff, prompt_cutoff=prompt_cutoff)
        await self.send_channel.send(item)
        await item.done.wait()
        return item.result[0] if item.result else 0

    def close(self) -> None:
        self.send_channel.close()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.alive = True
        task_status.started()
        try:
            async with self._receive:
                while True:
                    first: Item | None = None
                    try:
                        # A store that fails while nothing is written would go
                        # unnoticed until the next request: probe it when idle.
                        with trio.move_on_after(self.probe_interval or math.inf):
                            first = await self._receive.receive()
                    except trio.EndOfChannel:
                        break
                    if first is None:
                        await self._probe()
                        continue
                    batch: list[Item] = [first]
                    while len(batch) < self.max_batch:
                        try:
                            batch.append(self._receive.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    await self._process(batch)
        finally:
            self.alive = False

    async def _probe(self) -> None:
        check = getattr(self.store, "check_writable", None)
        if check is None:
            return
        try:
            await trio.to_thread.run_sync(check)
        except StoreError as exc:
            if self.healthy:
                log.error("audit store is not writable: %s", exc)
            self.healthy = False
            self.last_error = str(exc)
        else:
            if not self.healthy:
                log.info("audit store is writable again")
            self.healthy = True
            self.last_error = None

    async def _process(self, batch: list[Item]) -> None:
        records: list[Record] = []
        for item in batch:
            if isinstance(item, (Flush, Purge)):
                await self._write(records)
                records = []
                if isinstance(item, Purge):
                    item.result.append(await self._purge(item))
                item.done.set()
            else:
                records.append(item)
        await self._write(records)

    async def _write(self, records: list[Record]) -> None:
        if not records:
            return
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self.store.write_batch, records)
            except StoreError as exc:
                attempt += 1
                self.healthy = False
                self.last_error = str(exc)
                log.error("audit store write failed (attempt %d): %s", attempt, exc)
                if self.policy == "open" and attempt >= 3:
                    self.lost += len(records)
                    return
                await trio.sleep(min(0.05 * 2**attempt, 2.0))
                continue
            except Exception:
                # A bug, not the store: say so loudly, count the batch lost, and
                # keep the writer (and every other request's records) going.
                log.exception("audit batch of %d records could not be written", len(records))
                self.lost += len(records)
                return
            self.healthy = True
            self.last_error = None
            self.written += len(records)
            if self._on_batch is not None:
                self._on_batch(records, time.perf_counter() - started)
            return

    async def _purge(self, item: Purge) -> int:
        total = 0
        try:
            if item.prompt_cutoff is not None:
                while await trio.to_thread.run_sync(
                    lambda: self.store.blank_prompts(item.prompt_cutoff, batch_size=self._purge_batch)  # type: ignore[attr-defined]
                ):
                    # Like the purge below: queued audit records go in between batches.
                    await self._drain_some()
            if item.cutoff is not None:
                while True:
                    n = await trio.to_thread.run_sync(
                        lambda: self.store.purge(item.cutoff, batch_size=self._purge_batch)  # type: ignore[arg-type]
                    )
                    total += n
                    if n < self._purge_batch:
                        break
                    # Let queued audit records in between purge batches.
                    await self._drain_some()
        except StoreError as exc:
            log.error("retention purge failed: %s", exc)
        return total

    async def _drain_some(self) -> None:
        records: list[Any] = []
        deferred: list[Item] = []
        while len(records) < self.max_batch:
            try:
                item = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if isinstance(item, (Flush, Purge)):
                deferred.append(item)
                break
            records.append(item)
        await self._write(records)
        for item in deferred:
            await self._process([item])
