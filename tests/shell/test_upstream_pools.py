"""The bridge's upstream connection pools: light traffic reuses one warm connection,
concurrent requests spread over the pools, and every slot is given back."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import trio

from aibridge.core.errors import UpstreamUnreachable
from aibridge.fake.upstream import FakeUpstream, Reply
from aibridge.shell.server import serve_fake_upstream
from aibridge.shell.upstream import PreparedRequest, ShardedTransport, open_client, open_httpx


def prepared(url: str) -> PreparedRequest:
    return PreparedRequest(method="POST", url=url, headers=[("content-type", "application/json")],
                           body=b"{}", model="m", credential_kind="centralized", credential_hint="")


async def test_pools_share_light_traffic_on_one_connection_and_spread_concurrent_requests() -> None:
    fake = FakeUpstream()
    peers: list[tuple[str, int]] = []
    gate = trio.Event()

    async def answer(fake: FakeUpstream, scope: Any, body: bytes, send: Any) -> None:
        peers.append(tuple(scope["client"]))
        if scope["path"] == "/held":
            await gate.wait()
        await fake._play(Reply(headers=(("content-type", "application/json"),), body=b'{"ok":1}'), send)

    fake.routes["/"] = answer
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        [base] = await nursery.start(functools.partial(serve_fake_upstream, fake, "127.0.0.1:0", shutdown=stop))
        async with open_client(timeout=10) as client:
            transport = client._transport
            assert isinstance(transport, ShardedTransport)
            assert len(transport.shards) == 8

            # one at a time: always the first pool, always the same keep-alive connection
            for _ in range(20):
                async with open_httpx(client, prepared(base + "/light")) as response:
                    assert response.status_code == 200
                    assert await response.aread() == b'{"ok":1}'
            assert len(peers) == 20 and len(set(peers)) == 1
            assert transport.in_flight == [0] * 8

            # 24 at once: three in flight on each pool
            async def held() -> None:
                async with open_httpx(client, prepared(base + "/held")) as response:
                    assert await response.aread() == b'{"ok":1}'

            async with trio.open_nursery() as requests:
                for _ in range(24):
                    requests.start_soon(held)
                await fake.wait_requests(44)
                assert transport.in_flight == [3] * 8
                gate.set()
            assert transport.in_flight == [0] * 8

            # a failed request gives its slot back too
            with pytest.raises(UpstreamUnreachable):
                async with open_httpx(client, prepared("http://127.0.0.1:9/nothing-listens")):
                    pass
            assert transport.in_flight == [0] * 8

            # a client that hangs up mid-request (cancelled) gives its slot back
            with trio.move_on_after(0.2):
                gate = trio.Event()
                await held()
            assert transport.in_flight == [0] * 8
        stop.set()

