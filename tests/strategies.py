"""Hypothesis strategies shared by the whole test suite.

One place for the shapes the bridge sees on the wire: SSE events and the ways
a byte stream can be cut and line-ended, JSON values and request bodies, and
provider usage objects (with the optional and ``null`` fields real providers
send). Add to this module rather than growing private copies in test files.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from aibridge.core.sse import SSEEvent, encode_event

# -- text -------------------------------------------------------------------------

#: any character UTF-8 can encode (no lone surrogates)
CHARS = st.characters(blacklist_categories=("Cs",))
#: any character except the SSE line ends CR and LF
LINE_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")


def line_text(*, max_size: int = 20, exclude: str = "") -> st.SearchStrategy[str]:
    """Text that fits on one SSE line (no CR, no LF, nothing from ``exclude``)."""
    chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n" + exclude)
    return st.text(chars, max_size=max_size)


# -- SSE -----------------------------------------------------------------------------

#: the three legal SSE line ends
LINE_ENDINGS = (b"\n", b"\r\n", b"\r")
line_endings = st.sampled_from(LINE_ENDINGS)


@st.composite
def sse_events(draw: st.DrawFn) -> SSEEvent:
    """An event an SSE stream can carry: data lines joined by LF; event/id without line ends."""
    lines = draw(st.lists(line_text(), min_size=1, max_size=4))
    return SSEEvent(
        data="\n".join(lines),
        event=draw(st.none() | line_text(max_size=12)),
        id=draw(st.none() | line_text(max_size=12, exclude="\x00")),
        retry=draw(st.none() | st.integers(min_value=0, max_value=10**9)),
    )


def encode_events(events: list[SSEEvent]) -> bytes:
    return b"".join(encode_event(e.data, event=e.event, id=e.id, retry=e.retry) for e in events)


def with_line_ending(stream: bytes, ending: bytes) -> bytes:
    """An LF-ended stream re-ended with ``ending`` (the data holds no CR or LF of its own)."""
    return stream.replace(b"\n", ending)


@st.composite
def chunkings(draw: st.DrawFn, data: bytes, *, max_pieces: int | None = None) -> list[bytes]:
    """``data`` cut at arbitrary points (down to one byte per piece); joins back to ``data``."""
    if len(data) < 2:
        return [data] if data else []
    cap = len(data) - 1 if max_pieces is None else min(max_pieces - 1, len(data) - 1)
    cuts = sorted(
        draw(st.sets(st.integers(min_value=1, max_value=len(data) - 1), max_size=cap))
    )
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


#: single lines in every legal (and some odd) SSE form, for raw-stream fuzzing
sse_lines = st.one_of(
    st.builds(lambda v: b"data:" + v.encode(), line_text()),
    st.builds(lambda v: b"data: " + v.encode(), line_text()),
    st.builds(lambda v: b"event: " + v.encode(), line_text(max_size=8)),
    st.builds(lambda v: b"id: " + v.encode(), line_text(max_size=8)),
    st.builds(lambda v: b"retry: " + v.encode(), st.from_regex(r"\A[0-9]{0,6}x?\Z")),
    st.builds(lambda v: b":" + v.encode(), line_text()),
    st.builds(lambda v: v.encode(), line_text(max_size=8)),  # field without a colon
    st.just(b""),  # a blank line: dispatch
)


@st.composite
def sse_streams(draw: st.DrawFn) -> bytes:
    """Raw SSE text made of the lines above, each with any of the three line ends."""
    lines = draw(st.lists(st.tuples(sse_lines, line_endings), max_size=12))
    body = b"".join(line + end for line, end in lines)
    if draw(st.booleans()):
        body += draw(sse_lines)  # an unterminated last line
    if draw(st.booleans()):
        body = b"\xef\xbb\xbf" + body
    return body


# -- JSON ------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(CHARS, max_size=10),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(CHARS, max_size=8), inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(CHARS, max_size=8), json_values, max_size=6)


# -- provider usage objects --------------------------------------------------------------

counts = st.integers(min_value=0, max_value=2_000_000)


def _optional(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field value that may be ``null``; see :func:`_drop_missing` for absent fields."""
    return st.none() | value


_MISSING = object()


def _maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field that may be absent (``_MISSING``), ``null``, or a value."""
    return st.just(_MISSING) | _optional(value)


def _drop_missing(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not _MISSING}


anthropic_usages = st.builds(
    lambda i, o, cw, cr, cc, stu, tier: _drop_missing(
        {
            "input_tokens": i,
            "cache_creation_input_tokens": cw,
            "cache_read_input_tokens": cr,
            "output_tokens": o,
            "cache_creation": cc,
            "server_tool_use": stu,
            "service_tier": tier,
        }
    ),
    _maybe(counts),
    _maybe(counts),
    _maybe(counts),
    _maybe(counts),
    _maybe(
        st.fixed_dictionaries(
            {}, optional={"ephemeral_5m_input_tokens": counts, "ephemeral_1h_input_tokens": counts}
        )
    ),
    _maybe(st.fixed_dictionaries({"web_search_requests": counts})),
    _maybe(st.sampled_from(["standard", "priority", "batch"])),
)
"""An Anthropic ``usage`` object (a ``message_start`` or ``message_delta`` snapshot, or a reply's)."""


@st.composite
def openai_chat_usages(draw: st.DrawFn) -> dict[str, Any]:
    """An OpenAI chat ``usage`` object; ``cached_tokens`` never exceeds ``prompt_tokens``."""
    prompt = draw(counts)
    completion = draw(counts)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if draw(st.booleans()):
        usage["prompt_tokens_details"] = _drop_missing(
            {
                "cached_tokens": draw(_maybe(st.integers(0, prompt))),
                "audio_tokens": draw(_maybe(st.integers(0, prompt))),
            }
        )
    if draw(st.booleans()):
        usage["completion_tokens_details"] = _drop_missing(
            {
                "reasoning_tokens": draw(_maybe(st.integers(0, completion))),
                "audio_tokens": draw(_maybe(counts)),
                "accepted_prediction_tokens": draw(_maybe(counts)),
                "rejected_prediction_tokens": draw(_maybe(counts)),
            }
        )
    return usage


@st.composite
def responses_usages(draw: st.DrawFn) -> dict[str, Any]:
    """An OpenAI Responses ``usage`` object; ``cached_tokens`` never exceeds ``input_tokens``."""
    total_input = draw(counts)
    output = draw(counts)
    usage: dict[str, Any] = {
        "input_tokens": total_input,
        "output_tokens": output,
        "total_tokens": total_input + output,
    }
    if draw(st.booleans()):
        usage["input_tokens_details"] = _drop_missing(
            {"cached_tokens": draw(_maybe(st.integers(0, total_input)))}
        )
    if draw(st.booleans()):
        usage["output_tokens_details"] = _drop_missing(
            {"reasoning_tokens": draw(_maybe(st.integers(0, output)))}
        )
    return usage


# -- AWS event streams (Bedrock) ---------------------------------------------------------

from aibridge.core.eventstream import Header, HeaderType, Message  # noqa: E402 - grouped with its strategies

_INT_RANGES = {
    HeaderType.BYTE: 7, HeaderType.SHORT: 15, HeaderType.INTEGER: 31, HeaderType.LONG: 63, HeaderType.TIMESTAMP: 63,
}


@st.composite
def eventstream_headers(draw: st.DrawFn, name: str | None = None) -> Header:
    """A header of any of the ten value types, with a value that type can carry."""
    kind = draw(st.sampled_from(list(HeaderType)))
    if name is None:
        name = draw(st.text(CHARS, min_size=1, max_size=12).filter(lambda n: len(n.encode()) <= 255))
    value: Any
    if kind is HeaderType.TRUE:
        value = True
    elif kind is HeaderType.FALSE:
        value = False
    elif kind in _INT_RANGES:
        bits = _INT_RANGES[kind]
        value = draw(st.integers(min_value=-(1 << bits), max_value=(1 << bits) - 1))
    elif kind is HeaderType.BYTE_ARRAY:
        value = draw(st.binary(max_size=40))
    elif kind is HeaderType.STRING:
        value = draw(st.text(CHARS, max_size=20))
    else:
        value = draw(st.binary(min_size=16, max_size=16))
    return Header(name=name, type=kind, value=value)


@st.composite
def eventstream_messages(draw: st.DrawFn) -> Message:
    """A message with unique header names and any payload (empty included)."""
    names = draw(st.lists(st.text(CHARS, min_size=1, max_size=10).filter(lambda n: len(n.encode()) <= 255),
                          max_size=5, unique=True))
    headers = [draw(eventstream_headers(name=n)) for n in names]
    return Message(headers=headers, payload=draw(st.binary(max_size=200)))


#: Anthropic stream events as Bedrock carries them (for translation round trips)
anthropic_stream_events = st.one_of(
    st.builds(lambda t: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}},
              st.text(CHARS, max_size=30)),
    st.builds(lambda j: {"type": "content_block_delta", "index": 1,
                         "delta": {"type": "input_json_delta", "partial_json": j}}, st.text(CHARS, max_size=30)),
    st.builds(lambda u: {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": u}, anthropic_usages),
    st.just({"type": "ping"}),
    st.just({"type": "message_stop"}),
)
