"""The fake provider: an ASGI app answering like Anthropic, OpenAI and (later) Bedrock.

Two modes, per request:

* **Scripted**: tests queue :class:`Reply` values (status, headers, exact body
  bytes, how many bytes per write, pauses, a connection reset); the next
  request takes the next reply, byte for byte.
* **Synthetic**: with nothing queued, it answers the route with a
  well-formed reply: ``chunks`` text deltas, ``latency`` before the first
  byte and ``chunk_delay`` between chunks.

Every request is logged as a :class:`ReceivedRequest` so tests can check
exactly what the bridge sent. Out of process, ``POST /__fake/script`` queues
a reply (JSON) and ``GET /__fake/requests`` lists what arrived.
"""

from __future__ import annotations

import base64
import collections
import itertools
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import attrs
import orjson
import trio

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@attrs.frozen(kw_only=True)
class Reply:
    status: int = 200
    headers: tuple[tuple[str, str], ...] | dict[str, str] = ()
    body: bytes = b""
    #: bytes per write; 0 writes the body at once
    write_size: int = 0
    #: explicit frames to write (overrides body/write_size)
    chunks: tuple[bytes, ...] | None = None
    latency: float = 0.0
    chunk_delay: float = 0.0
    #: after this many bytes, drop the connection without finishing the body
    reset_after: int | None = None
    #: hold the response open after the body (idle stream) for this long
    hold: float = 0.0

    def frames(self) -> list[bytes]:
        if self.chunks is not None:
            return list(self.chunks)
        if self.write_size and self.write_size > 0:
            return [self.body[i : i + self.write_size] for i in range(0, len(self.body), self.write_size)]
        return [self.body]


@attrs.frozen(kw_only=True)
class ReceivedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class ConnectionReset(Exception):
    pass


@attrs.define
class Synthetic:
    chunks: int = 20
    latency: float = 0.0
    chunk_delay: float = 0.0
    text: str = "hello "
    #: keep each synthetic stream open this long after its last frame (idle-stream benchmarks)
    hold: float = 0.0


class FakeUpstream:
    def __init__(self, *, synthetic: Synthetic | None = None, keep_requests: int = 10000) -> None:
        self.synthetic = synthetic or Synthetic()
        self._script: collections.deque[Reply] = collections.deque()
        self.requests: collections.deque[ReceivedRequest] = collections.deque(maxlen=keep_requests)
        self.open_streams = 0
        self.closed_early = 0
        self._stream_ended = trio.Event()
        #: requests received so far (the log in ``requests`` may be capped)
        self.received = 0
        self._request_arrived = trio.Event()
        self._ids = itertools.count(1)
        self._cache: dict[tuple[str, bool, int], bytes] = {}
        #: extra route handlers: path prefix -> async handler(scope, body, send) (Bedrock, ...)
        self.routes: dict[str, Callable[..., Awaitable[None]]] = {}

    # -- scripting ------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        self._script.extend(replies)

    def clear(self) -> None:
        self._script.clear()
        self.requests.clear()

    @property
    def last(self) -> ReceivedRequest:
        return self.requests[-1]

    # -- ASGI -----------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        query = scope.get("query_string", b"").decode()
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if path.startswith("/__fake/"):
            await self._control(path, bytes(body), send)
            return
        self.requests.append(
            ReceivedRequest(method=scope["method"], path=path, query=query, headers=headers, body=bytes(body))
        )
        self.received += 1
        self._request_arrived.set()
        self._request_arrived = trio.Event()
        for prefix, handler in self.routes.items():
            if path.startswith(prefix) and not self._script:
                await handler(self, scope, bytes(body), send)
                return
        reply = self._script.popleft() if self._script else self._synthesize(scope["method"], path, bytes(body))
        await self._play(reply, send, receive)

    async def _play(self, reply: Reply, send: Send, receive: Receive | None = None) -> None:
        """Play ``reply``; stop as soon as the peer hangs up (counted in ``closed_early``).

        Hypercorn does not cancel an app whose client went away, it drops its
        sends; so a watcher waits for ``http.disconnect`` and cancels the
        reply, which is how tests see that the bridge closed the upstream
        connection (before the first byte or mid-stream).
        """
        reset: ConnectionReset | None = None
        progress = {"finishing": False}
        async with trio.open_nursery() as nursery:
            if receive is not None:
                nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
            try:
                await self._stream(reply, send, progress)
            except trio.Cancelled:
                # a hang-up while the last (empty) body message goes out is not early
                if not progress["finishing"]:
                    self.closed_early += 1
                raise
            except ConnectionReset as exc:
                reset = exc
            nursery.cancel_scope.cancel()
        if reset is not None:
            raise reset

    async def wait_requests(self, n: int) -> None:
        """Wait until ``n`` requests (in all) have arrived."""
        while self.received < n:
            await self._request_arrived.wait()

    async def wait_streams_closed(self) -> None:
        """Wait until no reply is being played (each finished, or its connection was closed)."""
        while self.open_streams:
            await self._stream_ended.wait()

    async def _stream(self, reply: Reply, send: Send, progress: dict[str, bool]) -> None:
        if reply.latency:
            await trio.sleep(reply.latency)
        headers = reply.headers.items() if isinstance(reply.headers, dict) else reply.headers
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(k.encode(), v.encode()) for k, v in headers],
            }
        )
        self.open_streams += 1
        sent = 0
        try:
            for i, frame in enumerate(reply.frames()):
                if i and reply.chunk_delay:
                    await trio.sleep(reply.chunk_delay)
                if reply.reset_after is not None and sent + len(frame) > reply.reset_after:
                    frame = frame[: reply.reset_after - sent]
                    if frame:
                        await send({"type": "http.response.body", "body": frame, "more_body": True})
                    raise ConnectionReset("scripted reset")
                sent += len(frame)
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            if reply.hold:
                await trio.sleep(reply.hold)
            progress["finishing"] = True
            await send({"type": "http.response.body", "body": b""})
        finally:
            self.open_streams -= 1
            self._stream_ended.set()
            self._stream_ended = trio.Event()

    async def _control(self, path: str, body: bytes, send: Send) -> None:
        if path == "/__fake/script":
            spec = orjson.loads(body)
            items = spec if isinstance(spec, list) else [spec]
            for item in items:
                raw = item.get("body", "")
                data = base64.b64decode(item["body_b64"]) if "body_b64" in item else raw.encode()
                self.script(
                    Reply(
                        status=item.get("status", 200),
                        headers=tuple((k, v) for k, v in item.get("headers", {}).items()),
                        body=data,
                        write_size=item.get("write_size", 0),
                        latency=item.get("latency", 0.0),
                        chunk_delay=item.get("chunk_delay", 0.0),
                        reset_after=item.get("reset_after"),
                    )
                )
            payload: Any = {"queued": len(self._script)}
        elif path == "/__fake/requests":
            payload = [
                {"method": r.method, "path": r.path, "query": r.query, "headers": r.headers,
                 "body": r.body.decode("utf-8", "replace")}
                for r in self.requests
            ]
        else:
            payload = {"error": "unknown control path"}
        data = orjson.dumps(payload)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})

    # -- synthetic replies --------------------------------------------------------

    def _synthesize(self, method: str, path: str, body: bytes) -> Reply:
        s = self.synthetic
        try:
            request = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            request = {}
        if not isinstance(request, dict):
            request = {}
        stream = request.get("stream") is True
        model = str(request.get("model", "fake-model"))
        n = next(self._ids)
        if path.endswith("/messages/count_tokens"):
            return _json_reply({"input_tokens": 42})
        if path.endswith("/models") or "/models/" in path:
            return _json_reply({"data": [{"id": "fake-model", "object": "model", "type": "model"}], "object": "list"})
        if path.endswith("/v1/messages"):
            if stream:
                return Reply(headers=(("content-type", "text/event-stream"),),
                             chunks=tuple(anthropic_stream(f"msg_fake_{n}", model, s.chunks, s.text)),
                             latency=s.latency, chunk_delay=s.chunk_delay, hold=s.hold)
            return _json_reply(anthropic_message(f"msg_fake_{n}", model, s.chunks, s.text), latency=s.latency)
        if path.endswith("/chat/completions"):
            if stream:
                usage = isinstance(request.get("stream_options"), dict) and request["stream_options"].get("include_usage") is True
                return Reply(headers=(("content-type", "text/event-stream"),),
                             chunks=tuple(chat_stream(f"chatcmpl-fake-{n}", model, s.chunks, s.text, usage)),
                             latency=s.latency, chunk_delay=s.chunk_delay, hold=s.hold)
            return _json_reply(chat_completion(f"chatcmpl-fake-{n}", model, s.chunks, s.text), latency=s.latency)
        if path.endswith("/responses"):
            if stream:
                return Reply(headers=(("content-type", "text/event-stream"),),
                             chunks=tuple(responses_stream(f"resp_fake_{n}", model, s.chunks, s.text)),
                             latency=s.latency, chunk_delay=s.chunk_delay, hold=s.hold)
            return _json_reply(responses_object(f"resp_fake_{n}", model, s.chunks, s.text), latency=s.latency)
        return Reply(status=404, headers=(("content-type", "application/json"),),
                     body=orjson.dumps({"error": {"message": f"fake upstream: no route {method} {path}"}}))


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


def _json_reply(payload: Any, *, latency: float = 0.0) -> Reply:
    return Reply(headers=(("content-type", "application/json"),), body=orjson.dumps(payload), latency=latency)


def _sse(event: str | None, payload: Any) -> bytes:
    data = orjson.dumps(payload)
    return (b"event: " + event.encode() + b"\n" if event else b"") + b"data: " + data + b"\n\n"


def anthropic_stream(msg_id: str, model: str, chunks: int, text: str) -> list[bytes]:
    frames = [
        _sse("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}}}),
        _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    for _ in range(chunks):
        frames.append(_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                   "delta": {"type": "text_delta", "text": text}}))
    frames += [
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": chunks}}),
        _sse("message_stop", {"type": "message_stop"}),
    ]
    return frames


def anthropic_message(msg_id: str, model: str, chunks: int, text: str) -> dict[str, Any]:
    return {"id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text * chunks}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 10, "cache_creation_input_tokens": 0,
                                              "cache_read_input_tokens": 0, "output_tokens": chunks}}


def chat_stream(chunk_id: str, model: str, chunks: int, text: str, usage: bool) -> list[bytes]:
    base = {"id": chunk_id, "object": "chat.completion.chunk", "created": 0, "model": model}
    frames = [_sse(None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
    for _ in range(chunks):
        frames.append(_sse(None, {**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}))
    frames.append(_sse(None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    if usage:
        frames.append(_sse(None, {**base, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": chunks,
                                                                   "total_tokens": 10 + chunks}}))
    frames.append(b"data: [DONE]\n\n")
    return frames


def chat_completion(chunk_id: str, model: str, chunks: int, text: str) -> dict[str, Any]:
    return {"id": chunk_id, "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text * chunks}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": chunks, "total_tokens": 10 + chunks}}


def responses_object(resp_id: str, model: str, chunks: int, text: str) -> dict[str, Any]:
    return {"id": resp_id, "object": "response", "created_at": 0, "status": "completed", "model": model,
            "output": [{"type": "message", "id": f"msg_{resp_id}", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": text * chunks, "annotations": []}]}],
            "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": chunks,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 10 + chunks}}


def responses_stream(resp_id: str, model: str, chunks: int, text: str) -> list[bytes]:
    done = responses_object(resp_id, model, chunks, text)
    created = {**done, "status": "in_progress", "output": [], "usage": None}
    seq = itertools.count()
    item_id = f"msg_{resp_id}"
    frames = [_sse("response.created", {"type": "response.created", "sequence_number": next(seq), "response": created}),
              _sse("response.output_item.added", {"type": "response.output_item.added", "sequence_number": next(seq),
                                                  "output_index": 0, "item": {"type": "message", "id": item_id, "role": "assistant",
                                                                              "status": "in_progress", "content": []}}),
              _sse("response.content_part.added", {"type": "response.content_part.added", "sequence_number": next(seq),
                                                   "item_id": item_id, "output_index": 0, "content_index": 0,
                                                   "part": {"type": "output_text", "text": "", "annotations": []}})]
    for _ in range(chunks):
        frames.append(_sse("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": next(seq),
                                                          "item_id": item_id, "output_index": 0, "content_index": 0, "delta": text}))
    part = done["output"][0]["content"][0]
    frames.append(_sse("response.output_text.done", {"type": "response.output_text.done", "sequence_number": next(seq),
                                                     "item_id": item_id, "output_index": 0, "content_index": 0,
                                                     "text": part["text"]}))
    frames.append(_sse("response.content_part.done", {"type": "response.content_part.done", "sequence_number": next(seq),
                                                      "item_id": item_id, "output_index": 0, "content_index": 0,
                                                      "part": part}))
    frames.append(_sse("response.output_item.done", {"type": "response.output_item.done", "sequence_number": next(seq),
                                                     "output_index": 0, "item": done["output"][0]}))
    frames.append(_sse("response.completed", {"type": "response.completed", "sequence_number": next(seq), "response": done}))
    return frames
