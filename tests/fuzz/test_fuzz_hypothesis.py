"""Hypothesis drivers for the fuzz harnesses (HypoFuzz can run these via ``fuzz_one_input``).

Each harness gets raw bytes and structured inputs from ``tests/strategies.py``
(valid SSE streams, event-stream messages, JSON request bodies, usage
objects), mutated by truncation and byte flips, so the parsers see both the
plausible and the hostile.
"""

from __future__ import annotations

from typing import Any

import orjson
from fuzz.harnesses import (
    fuzz_bedrock_stream,
    fuzz_blocking,
    fuzz_eventstream,
    fuzz_request,
    fuzz_sse,
    fuzz_stream,
    fuzz_usage,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aibridge.core.eventstream import encode_message
from tests import strategies as S

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A chunk-size byte, then ``base`` possibly truncated and with a few bytes flipped."""
    data = bytearray(draw(base))
    if data and draw(st.booleans()):
        del data[draw(st.integers(0, len(data) - 1)):]
    for _ in range(draw(st.integers(0, 3))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes([draw(st.integers(0, 255))]) + bytes(data)


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


requests = st.fixed_dictionaries(
    {"model": st.one_of(st.text(S.CHARS, min_size=1, max_size=8), S.json_scalars)},
    optional={
        "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                                                    "content": S.json_values}), max_size=3),
        "input": S.json_values,
        "stream": st.one_of(st.booleans(), S.json_scalars),
        "stream_options": S.json_objects,
    },
).map(_json)

usage_objects = st.one_of(S.anthropic_usages, S.openai_chat_usages(), S.responses_usages(), S.json_objects).map(_json)


@FUZZ
@given(mutated(S.sse_streams()) | st.binary(max_size=300))
def test_fuzz_sse(data: bytes) -> None:
    fuzz_sse(data)


@FUZZ
@given(mutated(st.lists(S.eventstream_messages(), max_size=3).map(
    lambda ms: b"".join(encode_message(m) for m in ms))) | st.binary(max_size=300))
def test_fuzz_eventstream(data: bytes) -> None:
    fuzz_eventstream(data)
    fuzz_bedrock_stream(data)


@FUZZ
@given(requests | mutated(requests) | st.binary(max_size=200))
def test_fuzz_request(data: bytes) -> None:
    fuzz_request(data)


@FUZZ
@given(mutated(S.sse_streams()) | st.binary(max_size=300))
def test_fuzz_stream(data: bytes) -> None:
    fuzz_stream(data)


@FUZZ
@given(st.one_of(S.json_values.map(_json), usage_objects, st.binary(max_size=100)))
def test_fuzz_blocking_and_usage(data: bytes) -> None:
    fuzz_blocking(data)
    fuzz_usage(data)
