"""A real stack for tests: fake upstream + bridge on port 0, real SQLite file.

Both servers run under Hypercorn in one Trio loop on a background thread, so
tests drive them with the real (synchronous) ``openai`` and ``anthropic`` SDKs
and plain httpx, and read the audit database with a separate connection, as
an operator would. Nothing of our own is mocked.

``settle()`` waits for the events that make records durable (no request in
flight, then a writer flush) instead of sleeping.
"""

from __future__ import annotations

import functools
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from aibridge.config import load_config
from aibridge.core.auth import display_prefix, hash_key, new_key
from aibridge.fake.upstream import FakeUpstream, Reply
from aibridge.shell import store as store_mod
from aibridge.shell.run import Running, serve_bridge
from aibridge.shell.server import serve_fake_upstream


class Stack:
    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        self.tmp_path = tmp_path
        self.db_path = str(tmp_path / "aibridge.db")
        self.fake = FakeUpstream()
        self.overrides = overrides
        self.running: Running | None = None
        self.fake_url = ""
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._fake_stop: trio.Event | None = None
        self.config: Any = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> Stack:
        # Create the schema (and the default key) before the bridge opens it.
        self.key = self.create_key("alice")
        self._thread = threading.Thread(target=self._thread_main, name="aibridge-test-stack", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("stack did not start in 30 s")
        if self._error is not None:
            raise self._error
        return self

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._fake_stop = trio.Event()
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                functools.partial(serve_fake_upstream, self.fake, "127.0.0.1:0", shutdown=self._fake_stop)
            )
            self.fake_url = urls[0]
            flags = {
                "listen": "127.0.0.1:0",
                "db": self.db_path,
                "anthropic_base_url": self.fake_url + "/",
                "openai_base_url": self.fake_url + "/v1/",
                "anthropic_key": "sk-ant-central-0123456789",
                "openai_key": "sk-openai-central-0123456789",
                "retention": "0",
            }
            # "{fake_url}" in a string override is the fake upstream's URL
            # (e.g. bedrock_base_url="{fake_url}"), known only once it listens.
            flags.update(
                {k: v.replace("{fake_url}", self.fake_url) if isinstance(v, str) else v
                 for k, v in self.overrides.items()}
            )
            self.config = load_config(flags, env={})

            async def bridge(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                await serve_bridge(self.config, handle_signals=False, task_status=task_status)
                # the bridge returned (writer drained): now stop the fake upstream
                assert self._fake_stop is not None
                self._fake_stop.set()

            self.running = await nursery.start(bridge)
            self._ready.set()

    def stop(self, timeout: float = 30) -> None:
        if self.running is not None and self._token is not None:
            try:
                trio.from_thread.run_sync(self.running.stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("stack did not stop")

    # -- helpers ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.running is not None
        return self.running.url

    @property
    def app(self) -> Any:
        assert self.running is not None
        return self.running.app

    def call(self, afn: Callable[..., Any], *args: Any) -> Any:
        """Run an async function in the stack's Trio loop and return its result."""
        return trio.from_thread.run(afn, *args, trio_token=self._token)

    def settle(self) -> None:
        """Wait until no request is in flight and every queued record is committed."""
        assert self.running is not None
        self.call(self.running.app.wait_idle)
        self.call(self.running.writer.flush)

    def create_key(self, user: str, *, admin: bool = False, expires_in: float | None = None) -> str:
        store = store_mod.SQLiteStore(self.db_path)
        now = time.time()
        user_id = store.ensure_user(str(uuid.uuid4()), user, now)
        key = new_key(secrets.token_bytes(24))
        store.create_key(
            key_id=str(uuid.uuid4()), user_id=user_id, key_hash=hash_key(key), prefix=display_prefix(key),
            admin=admin, now=now, expires_at=None if expires_in is None else now + expires_in,
        )
        store.close()
        return key

    def script(self, *replies: Reply) -> None:
        self.fake.script(*replies)

    def interceptions(self, **filters: Any) -> list[dict[str, Any]]:
        """Every ended interception, oldest first, in the audit JSON shape."""
        self.settle()
        reader = store_mod.open_reader(self.db_path)
        try:
            items = store_mod.list_interceptions(reader, limit=1000, **filters)
        finally:
            reader.conn.close()
        return list(reversed(items))

    def only_interception(self) -> dict[str, Any]:
        items = self.interceptions()
        assert len(items) == 1, f"expected one interception, got {len(items)}"
        return items[0]

    def count(self, table: str) -> int:
        self.settle()
        reader = store_mod.open_reader(self.db_path)
        try:
            return int(reader.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        finally:
            reader.conn.close()
