"""``aibridge demo``: a fake upstream, a bridge on the embedded store and a demo key.

Sends one streaming request through the bridge, prints the recorded
interception, and keeps serving with a ready-to-paste curl line until Ctrl-C.
"""

from __future__ import annotations

import functools
import secrets
import time
import uuid
from typing import Any

import httpx
import orjson
import trio

from aibridge.config import load_config
from aibridge.core.auth import display_prefix, hash_key, new_key
from aibridge.fake.upstream import FakeUpstream, Synthetic
from aibridge.shell.logs import setup_logging
from aibridge.shell.run import Running, serve_bridge
from aibridge.shell.server import serve_fake_upstream
from aibridge.shell.store import SQLiteStore, get_interception, open_reader


def _demo_key(db: str) -> str:
    store = SQLiteStore(db)
    now = time.time()
    user_id = store.ensure_user(str(uuid.uuid4()), "demo", now)
    key = new_key(secrets.token_bytes(24))
    store.create_key(key_id=str(uuid.uuid4()), user_id=user_id, key_hash=hash_key(key),
                     prefix=display_prefix(key), admin=True, now=now, expires_at=None)
    store.close()
    return key


async def _main(listen: str, db: str) -> None:
    fake = FakeUpstream(synthetic=Synthetic(chunks=8, chunk_delay=0.02, text="demo "), keep_requests=100)
    fake_stop = trio.Event()

    async def bridge(config: Any, *, task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED) -> None:
        # serve_bridge returns by itself on SIGTERM/SIGINT, after draining
        # in-flight requests and the audit writer; only then stop the fake.
        try:
            await serve_bridge(config, task_status=task_status)
        finally:
            fake_stop.set()

    async with trio.open_nursery() as nursery:
        fake_urls = await nursery.start(
            functools.partial(serve_fake_upstream, fake, "127.0.0.1:0", shutdown=fake_stop)
        )
        base = fake_urls[0]
        config = load_config(
            {"listen": listen, "db": db, "anthropic_base_url": base + "/",
             "openai_base_url": base + "/v1/", "anthropic_key": "sk-ant-demo-not-a-real-key",
             "openai_key": "sk-demo-not-a-real-key"},
            env={},
        )
        key = await trio.to_thread.run_sync(_demo_key, db)
        running = await nursery.start(bridge, config)
        url = running.url
        print(f"fake upstream on {base}\naibridge on {url} (audit database {db})\n")
        print("Sending a streaming Anthropic request through the bridge...\n")
        async with httpx.AsyncClient() as client:
            async with client.stream(
                "POST", f"{url}/anthropic/v1/messages",
                headers={"x-api-key": key, "anthropic-version": "2023-06-01", "user-agent": "aibridge-demo"},
                json={"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": True,
                      "messages": [{"role": "user", "content": "Say hello through the bridge"}]},
            ) as response:
                interception_id = response.headers.get("x-aibridge-interception-id")
                async for chunk in response.aiter_text():
                    print(chunk, end="", flush=True)
        await running.app.wait_idle()
        await running.writer.flush()
        reader = open_reader(db)
        record = get_interception(reader, interception_id) if interception_id else None
        reader.conn.close()
        print("\nRecorded interception:\n")
        print(orjson.dumps(record, option=orjson.OPT_INDENT_2).decode())
        print("\nThe bridge keeps serving. Try it (Ctrl-C to stop):\n")
        print(
            f"  curl -sN {url}/anthropic/v1/messages -H 'x-api-key: {key}' "
            "-H 'anthropic-version: 2023-06-01' -H 'content-type: application/json' "
            "-d '{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":64,\"stream\":true,"
            "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'\n"
        )
        print(f"  aibridge interceptions list --db {db}\n", flush=True)


def run_demo(*, listen: str, db: str) -> None:
    setup_logging(json_logs=False, level="warning")
    try:
        trio.run(_main, listen, db)
    except KeyboardInterrupt:
        pass
