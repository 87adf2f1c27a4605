"""Fuzz harnesses: one function per parser or fold of the core, bytes in.

Every harness takes arbitrary bytes and checks the invariant of its module:
*any input either parses or raises the module's own error* (a
:class:`~aibridge.core.errors.ProtocolError` for the byte parsers, a
:class:`~aibridge.core.errors.ClientError` for request translation), and
never anything else; where cheap, it also checks a property that must hold
for every input (chunking invariance, relay transparency).

The same functions are driven three ways:

* ``python -m fuzz.run HARNESS`` under atheris (coverage-guided), when installed;
* Hypothesis in ``tests/fuzz/`` (the structured strategies of ``tests/strategies.py``
  and raw bytes; ``fuzz_one_input`` makes those HypoFuzz-able too);
* ``tests/fuzz/test_corpus.py`` replays ``fuzz/corpus/HARNESS/*`` in CI so the
  harnesses never rot.

The first byte of the input (when there is one) chooses how the rest is cut
into chunks, so one corpus file also exercises the incremental paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aibridge.core import jsonutil
from aibridge.core.errors import ClientError, ProtocolError
from aibridge.core.eventstream import EventStreamDecoder, EventStreamError
from aibridge.core.providers import anthropic, bedrock, openai_chat, openai_responses
from aibridge.core.providers.base import StreamTap
from aibridge.core.sse import SSEError, SSEParser
from aibridge.core.usage import anthropic_usage, merge_snapshot, openai_chat_usage, responses_usage

PROVIDERS: dict[str, Any] = {"messages": anthropic, "chat": openai_chat, "responses": openai_responses}


def split(data: bytes) -> tuple[bytes, list[bytes]]:
    """(the payload, the payload cut into chunks of a size chosen by the first byte)."""
    if not data:
        return b"", []
    size = data[0] % 17 or len(data)
    payload = data[1:]
    return payload, [payload[i : i + size] for i in range(0, len(payload), size)]


def _sse_events(chunks: list[bytes]) -> list[tuple[str, str | None, str | None, int | None, bytes]]:
    parser = SSEParser(max_event_size=4096)
    events = []
    for chunk in chunks:
        events.extend(parser.receive_data(chunk))
    events.extend(parser.close())
    return [(e.data, e.event, e.id, e.retry, e.raw) for e in events]


def fuzz_sse(data: bytes) -> None:
    """SSE parser: only SSEError; the same events whole or in pieces."""
    payload, chunks = split(data)
    try:
        pieces = _sse_events(chunks)
    except SSEError:
        return
    try:
        whole = _sse_events([payload] if payload else [])
    except SSEError:
        return
    assert [p[:4] for p in pieces] == [w[:4] for w in whole]


def fuzz_eventstream(data: bytes) -> None:
    """AWS event-stream decoder: only EventStreamError; same messages whole or in pieces."""
    payload, chunks = split(data)

    def decode(parts: list[bytes]) -> list[Any] | None:
        decoder = EventStreamDecoder()
        out: list[Any] = []
        try:
            for part in parts:
                out.extend(decoder.receive_data(part))
            out.extend(decoder.close())
        except EventStreamError:
            return None
        return out

    pieces = decode(chunks)
    whole = decode([payload] if payload else [])
    if pieces is not None and whole is not None:
        assert pieces == whole


def fuzz_bedrock_stream(data: bytes) -> None:
    """Bedrock event stream to Anthropic SSE: never raises; the output is parseable SSE."""
    _, chunks = split(data)
    translator = bedrock.StreamTranslator()
    out = b"".join(translator.receive_data(chunk) for chunk in chunks) + translator.close()
    parser = SSEParser()
    parser.receive_data(out)
    parser.close()


def fuzz_request(data: bytes) -> None:
    """Request parsing and every provider's translation: a Translation or ClientError."""
    try:
        parsed = jsonutil.parse_request_object(data)
    except ClientError:
        return
    for module in PROVIDERS.values():
        try:
            translation = module.translate_request(data, parsed)
        except ClientError:
            continue
        assert isinstance(translation.body, bytes)
        assert isinstance(translation.model, str) and translation.model
        if not translation.rewritten:
            assert translation.body == data  # minimal rewrites: the client's bytes, untouched
    try:
        bedrock.translate_request(data, parsed, beta_headers=["fine-grained-tool-streaming-2025-05-14"],
                                  model="bedrock-model", small_fast_model="bedrock-haiku")
    except ClientError:
        pass


def _tap(api: str, filtering: bool) -> StreamTap:
    module = PROVIDERS[api]
    return StreamTap(module.StreamHandler(), filtering=filtering,
                     is_terminator=getattr(module, "is_done", lambda data: False))


def fuzz_stream(data: bytes) -> None:
    """Each provider's stream tap: never raises but ProtocolError; relays bytes unchanged."""
    payload, chunks = split(data)
    for api in PROVIDERS:
        for filtering in (False, True) if api == "chat" else (False,):
            tap = _tap(api, filtering)
            out = bytearray()
            try:
                for chunk in chunks:
                    relayed, _ = tap.receive_data(chunk)
                    out += relayed
                relayed, _ = tap.close()
                out += relayed
            except ProtocolError:
                continue
            if not filtering:
                assert bytes(out) == payload


def fuzz_blocking(data: bytes) -> None:
    """Blocking replies: any JSON value is audited without raising."""
    try:
        payload = jsonutil.loads(data)
    except (ValueError, RecursionError):
        return
    for module in PROVIDERS.values():
        module.audit_body(payload)


USAGE_FOLDS: tuple[Callable[..., Any], ...] = (anthropic_usage, openai_chat_usage, responses_usage)


def fuzz_usage(data: bytes) -> None:
    """Usage folds: any JSON object gives integer token counts; snapshots merge."""
    try:
        payload = jsonutil.loads(data)
    except (ValueError, RecursionError):
        return
    if not isinstance(payload, dict):
        return
    for fold in USAGE_FOLDS:
        usage = fold(payload, "resp_fuzz")
        counts = (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens,
                  usage.cache_write_input_tokens, usage.reasoning_tokens)
        assert all(type(c) is int for c in counts)
    merged = merge_snapshot(payload, payload)
    assert merge_snapshot(merged, payload) == merged  # folding the same snapshot again is a fixpoint


HARNESSES: dict[str, Callable[[bytes], None]] = {
    "sse": fuzz_sse,
    "eventstream": fuzz_eventstream,
    "bedrock_stream": fuzz_bedrock_stream,
    "request": fuzz_request,
    "stream": fuzz_stream,
    "blocking": fuzz_blocking,
    "usage": fuzz_usage,
}
