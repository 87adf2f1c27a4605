"""Micro-benchmarks of the pure core: SSE parsing, the stream tap, usage folding, request translation.

Run for numbers with ``python -m pytest tests/benchmarks --benchmark-enable``.
In the normal suite (``--benchmark-disable`` in pyproject's addopts) each body
runs once as an ordinary test, so the benchmarks and their exact assertions
never rot. The stream is the fake upstream's synthetic Anthropic message: the
same bytes the end-to-end benchmark relays.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aibridge.core.model import ResponseIdentified, UsageReported
from aibridge.core.providers import anthropic, openai_chat
from aibridge.core.providers.base import StreamTap
from aibridge.core.sse import SSEParser
from aibridge.core.usage import anthropic_usage, merge_snapshot, openai_chat_usage
from aibridge.fake.upstream import anthropic_stream, chat_stream

CHUNKS = 200
ANTHROPIC_FRAMES = anthropic_stream("msg_bench_7", "claude-sonnet-4-5", CHUNKS, "tide ")
CHAT_FRAMES = chat_stream("chatcmpl-bench-7", "gpt-4.1", CHUNKS, "tide ", usage=True)


def _network_chunks(frames: list[bytes], size: int = 1400) -> list[bytes]:
    """The stream re-cut at a TCP segment size, so events straddle reads."""
    data = b"".join(frames)
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_sse_parse_anthropic_stream(benchmark: Any) -> None:
    chunks = _network_chunks(ANTHROPIC_FRAMES)

    def parse() -> int:
        parser = SSEParser()
        n = 0
        for chunk in chunks:
            n += len(parser.receive_data(chunk))
        return n + len(parser.close())

    assert benchmark(parse) == CHUNKS + 5


def test_sse_parse_one_frame_per_read(benchmark: Any) -> None:
    """The paced case: every upstream write arrives as its own read."""

    def parse() -> int:
        parser = SSEParser()
        return sum(len(parser.receive_data(frame)) for frame in ANTHROPIC_FRAMES)

    assert benchmark(parse) == CHUNKS + 5


def test_stream_tap_anthropic(benchmark: Any) -> None:
    def relay() -> tuple[int, list[Any]]:
        tap = StreamTap(anthropic.StreamHandler())
        relayed = 0
        events: list[Any] = []
        for frame in ANTHROPIC_FRAMES:
            out, audit = tap.receive_data(frame)
            relayed += len(out)
            events += audit
        out, audit = tap.close()
        return relayed + len(out), events + audit

    relayed, events = benchmark(relay)
    assert relayed == sum(len(f) for f in ANTHROPIC_FRAMES)
    assert events[0] == ResponseIdentified(provider_response_id="msg_bench_7")
    [usage] = [e.usage for e in events if isinstance(e, UsageReported)]
    assert (usage.input_tokens, usage.output_tokens, usage.provider_response_id) == (10, CHUNKS, "msg_bench_7")


def test_stream_tap_openai_chat_filtering(benchmark: Any) -> None:
    """Chat with the usage-only chunk the bridge asked for, dropped from the client's bytes."""

    def relay() -> tuple[bytes, list[Any]]:
        tap = StreamTap(openai_chat.StreamHandler(), filtering=True, is_terminator=openai_chat.is_done)
        out = bytearray()
        events: list[Any] = []
        for chunk in _network_chunks(CHAT_FRAMES):
            data, audit = tap.receive_data(chunk)
            out += data
            events += audit
        data, audit = tap.close()
        return bytes(out + data), events + audit

    client_bytes, events = benchmark(relay)
    usage_frame = CHAT_FRAMES[-2]
    assert client_bytes == b"".join(CHAT_FRAMES).replace(usage_frame, b"")
    [usage] = [e.usage for e in events if isinstance(e, UsageReported)]
    assert (usage.input_tokens, usage.output_tokens) == (10, CHUNKS)


def test_usage_fold_anthropic_snapshots(benchmark: Any) -> None:
    start = {"input_tokens": 812, "cache_creation_input_tokens": 2048, "cache_read_input_tokens": 30111,
             "output_tokens": 1, "cache_creation": {"ephemeral_5m_input_tokens": 2048, "ephemeral_1h_input_tokens": 0},
             "server_tool_use": None}
    deltas = [{"output_tokens": n} for n in range(2, 60)] + [
        {"output_tokens": 377, "server_tool_use": {"web_search_requests": 2}}
    ]

    def fold() -> Any:
        usage = merge_snapshot(None, start)
        for delta in deltas:
            usage = merge_snapshot(usage, delta)
        return anthropic_usage(usage, "msg_fold_3")

    usage = benchmark(fold)
    assert (usage.input_tokens, usage.cache_write_input_tokens, usage.cache_read_input_tokens,
            usage.output_tokens) == (812, 2048, 30111, 377)
    assert usage.metadata["server_tool_use.web_search_requests"] == 2


def test_usage_openai_chat(benchmark: Any) -> None:
    raw = {"prompt_tokens": 5400, "completion_tokens": 912, "total_tokens": 6312,
           "prompt_tokens_details": {"cached_tokens": 4096, "audio_tokens": 0},
           "completion_tokens_details": {"reasoning_tokens": 640, "audio_tokens": 0}}
    usage = benchmark(openai_chat_usage, raw, "chatcmpl-fold-9")
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens,
            usage.reasoning_tokens) == (1304, 4096, 912, 640)


def _conversation(turns: int) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for i in range(turns):
        messages.append({"role": "user", "content": [{"type": "text", "text": f"step {i}: refactor module {i}"}]})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": "done " * 40}]})
    messages.append({"role": "user", "content": "now run the tests"})
    return {"model": "claude-sonnet-4-5", "max_tokens": 8192, "stream": True, "messages": messages,
            "system": [{"type": "text", "text": "You are careful.", "cache_control": {"type": "ephemeral"}}]}


@pytest.mark.parametrize("turns", [1, 100])
def test_translate_anthropic_request(benchmark: Any, turns: int) -> None:
    raw = orjson.dumps(_conversation(turns))

    def translate() -> Any:
        return anthropic.translate_request(raw, orjson.loads(raw))

    translation = benchmark(translate)
    assert translation.body is raw
    assert (translation.model, translation.streaming, translation.prompt) == ("claude-sonnet-4-5", True,
                                                                              "now run the tests")


def test_translate_openai_chat_stream_rewrite(benchmark: Any) -> None:
    body = {"model": "gpt-4.1", "stream": True, "temperature": 0,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "list the files"}]}
    raw = orjson.dumps(body)

    def translate() -> Any:
        return openai_chat.translate_request(raw, orjson.loads(raw))

    translation = benchmark(translate)
    assert orjson.loads(translation.body) == {**body, "stream_options": {"include_usage": True}}
    assert list(orjson.loads(translation.body)) == ["model", "stream", "temperature", "messages", "stream_options"]
    assert translation.drop_usage_only_chunks is True
