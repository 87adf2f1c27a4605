"""The sans-IO SSE parser: every legal form, any chunking, no byte lost.

Examples first, one per form real providers (or the WHATWG spec) use; then
properties in the style of h11's tests: whole input, one byte at a time and
arbitrary chunkings give the same events; the three line endings are
equivalent; ``encode_event`` round-trips; a slow, obviously correct reference
parser agrees; arbitrary bytes raise nothing but :class:`SSEError`; and every
byte lands in exactly one event's ``raw`` or in ``take_pending()``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aibridge.core import sse
from aibridge.core.sse import SSEError, SSEEvent, SSEParser, encode_event
from tests import strategies as S


def parse(*chunks: bytes, **kwargs: Any) -> list[SSEEvent]:
    parser = SSEParser(**kwargs)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.receive_data(chunk)
    return events + parser.close()


def ev(data: str, **kwargs: Any) -> SSEEvent:
    return SSEEvent(data=data, **kwargs)


# -- examples --------------------------------------------------------------------------


def test_anthropic_event_with_space_after_colon() -> None:
    body = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    assert parse(body) == [ev('{"type":"message_stop"}', event="message_stop")]


def test_data_without_space_after_colon() -> None:
    assert parse(b"data:[DONE]\n\n") == [ev("[DONE]")]


def test_only_one_leading_space_is_removed() -> None:
    assert parse(b"data:  two\n\n") == [ev(" two")]


def test_trailing_spaces_are_data() -> None:
    # Real Anthropic output: JSON followed by spaces on the data line.
    assert parse(b'data: {"type":"ping"}     \n\n') == [ev('{"type":"ping"}     ')]


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_each_line_ending(end: bytes) -> None:
    body = b"event: e" + end + b"data: a" + end + end + b"data: b" + end + end
    assert parse(body) == [ev("a", event="e"), ev("b")]


def test_cr_at_end_of_one_chunk_and_lf_at_start_of_next_is_one_line_end() -> None:
    assert parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [ev("a\nb")]


def test_two_crs_are_two_line_ends() -> None:
    assert parse(b"data: a\r", b"\r") == [ev("a")]


def test_empty_chunk_keeps_pending_cr_state() -> None:
    assert parse(b"data: a\r", b"", b"\n", b"\r\n") == [ev("a")]


def test_comment_lines_are_ignored() -> None:
    body = b": keepalive\n\n: OPENROUTER PROCESSING\ndata: x\n: between\n\n"
    assert parse(body) == [ev("x")]


def test_multi_line_data_is_joined_with_lf() -> None:
    body = b'data: {"a":\ndata: 1}\n\n'
    assert parse(body) == [ev('{"a":\n1}')]


def test_empty_data_line_dispatches_an_empty_event() -> None:
    assert parse(b"data\n\n", b"data:\n\n") == [ev(""), ev("")]


def test_id_and_retry_fields() -> None:
    body = b"id: 42\nretry: 3000\ndata: x\n\n"
    assert parse(body) == [ev("x", id="42", retry=3000)]


def test_id_is_per_event_block() -> None:
    # The documented departure from EventSource's persistent last-event-ID.
    assert parse(b"id: 1\ndata: a\n\ndata: b\n\n") == [ev("a", id="1"), ev("b")]


def test_invalid_retry_and_id_with_nul_are_ignored() -> None:
    body = b"retry: 12x\nretry: \xd9\xa3\nid: a\x00b\ndata: x\n\n"
    assert parse(body) == [ev("x")]


def test_retry_with_more_digits_than_int_accepts_is_ignored() -> None:
    # Python refuses int() of 4300+ digit strings; that must not escape as ValueError.
    assert parse(b"retry: " + b"9" * 5000 + b"\ndata: x\n\n") == [ev("x")]


def test_unknown_fields_and_fields_without_colon_are_ignored() -> None:
    assert parse(b"foo: bar\nevent\ndata: x\n\n") == [ev("x", event="")]


def test_leading_bom_is_stripped_once() -> None:
    body = b"\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n"
    # only the stream's first BOM is a BOM; the second makes an unknown field
    assert parse(body) == [ev("a")]
    assert parse(b"\xef\xbb", b"\xbfdata: a\n\n") == [ev("a")]


def test_multibyte_utf8_split_at_every_position() -> None:
    text = 'data: {"text":"naïve — 日本語 🎉"}\n\n'
    body = text.encode()
    expected = [ev('{"text":"naïve — 日本語 🎉"}')]
    for i in range(1, len(body)):
        assert parse(body[:i], body[i:]) == expected, i


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert parse(b"data: a\xffb\n\n") == [ev("a\ufffdb")]


def test_event_without_data_is_not_dispatched() -> None:
    assert parse(b"event: ping\n\n", b"id: 7\n\n") == []


def test_close_dispatches_a_final_event_without_its_blank_line() -> None:
    # A truncated upstream stream is still audited.
    assert parse(b"data: [DONE]") == [ev("[DONE]")]
    assert parse(b"event: x\ndata: last\n") == [ev("last", event="x")]


def test_close_keeps_trailing_bytes_that_formed_no_event() -> None:
    parser = SSEParser()
    assert parser.receive_data(b"data: a\n\n: bye\nevent: orphan\n") == [ev("a")]
    assert parser.close() == []
    assert parser.take_pending() == b": bye\nevent: orphan\n"


def test_raw_holds_the_exact_bytes_including_leading_comments() -> None:
    parser = SSEParser()
    events = parser.receive_data(b": hi\r\n\r\ndata: a\r\n\r\ndata: b")
    assert [e.raw for e in events] == [b": hi\r\n\r\ndata: a\r\n\r\n"]
    [last] = parser.close()
    assert last.raw == b"data: b"


def test_receive_after_close_is_an_sse_error() -> None:
    parser = SSEParser()
    parser.close()
    with pytest.raises(SSEError):
        parser.receive_data(b"data: x\n\n")
    assert parser.close() == []


def test_line_longer_than_the_limit_is_an_sse_error() -> None:
    with pytest.raises(SSEError):
        parse(b"data: " + b"x" * 100, max_event_size=50)


def test_endless_comments_or_blank_lines_are_bounded_too() -> None:
    # Held bytes belong to the next event; a flood of them must not grow memory forever.
    with pytest.raises(SSEError):
        parse(b": keepalive\n" * 10, max_event_size=50)
    with pytest.raises(SSEError):
        parse(*[b"\n"] * 60, max_event_size=50)


def test_event_larger_than_the_limit_over_many_lines_is_an_sse_error() -> None:
    with pytest.raises(SSEError):
        parse(b"data: 0123456789\n" * 10, max_event_size=50)
    # the count restarts with each event
    assert len(parse(b"data: 0123456789\n\n" * 10, max_event_size=50)) == 10


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": "a", "event": "x\ny"},
        {"data": "a", "id": "1\r"},
        {"data": "a", "id": "a\x00"},
        {"data": "a\rb"},
        {"data": "a", "retry": -1},
    ],
)
def test_encode_event_refuses_what_sse_cannot_carry(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        encode_event(**kwargs)


def test_encode_event_writes_one_data_line_per_line() -> None:
    assert encode_event("a\nb", event="e", id="1", retry=5) == b"event: e\nid: 1\nretry: 5\ndata: a\ndata: b\n\n"


# -- a slow, obviously correct reference --------------------------------------------------


def reference_parse(data: bytes) -> list[SSEEvent]:
    """Whole input at once, line by line, straight from the WHATWG algorithm
    (plus the three documented departures). ``bytes.splitlines`` splits on
    exactly CR, LF and CRLF, the SSE line ends."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    events = []
    lines: list[str] = []
    event = id = None
    retry = None
    for raw in data.splitlines():
        line = raw.decode("utf-8", "replace")
        if line == "":
            if lines:
                events.append(SSEEvent(data="\n".join(lines), event=event, id=id, retry=retry))
            lines, event, id, retry = [], None, None, None
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            name, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line, ""
        if name == "data":
            lines.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\x00" not in value:
            id = value
        elif name == "retry" and re.fullmatch("[0-9]{1,18}", value):
            retry = int(value)
    if lines:
        events.append(SSEEvent(data="\n".join(lines), event=event, id=id, retry=retry))
    return events


def test_reference_parser_agrees_on_the_examples() -> None:
    body = b"\xef\xbb\xbf: c\r\nevent: e\rdata: a\ndata:b\r\n\r\nid: 1\nretry: 9\ndata\n\ndata: tail"
    assert parse(body) == reference_parse(body) == [
        ev("a\nb", event="e"),
        ev("", id="1", retry=9),
        ev("tail"),
    ]


# -- properties --------------------------------------------------------------------------


@given(st.lists(S.sse_events(), max_size=6), st.data())
def test_encode_then_parse_round_trips_for_any_chunking(events: list[SSEEvent], data: st.DataObject) -> None:
    body = S.encode_events(events)
    assert parse(body) == events
    assert parse(*data.draw(S.chunkings(body))) == events


@given(st.lists(S.sse_events(), max_size=4))
def test_one_byte_at_a_time_gives_the_same_events(events: list[SSEEvent]) -> None:
    body = S.encode_events(events)
    assert parse(*S.one_byte_at_a_time(body)) == events


@given(st.lists(S.sse_events(), max_size=5), S.line_endings, st.data())
def test_all_three_line_endings_are_equal(events: list[SSEEvent], ending: bytes, data: st.DataObject) -> None:
    body = S.with_line_ending(S.encode_events(events), ending)
    assert parse(*data.draw(S.chunkings(body))) == events


@given(S.sse_streams(), st.data())
def test_agrees_with_the_reference_parser_for_any_chunking(body: bytes, data: st.DataObject) -> None:
    assert parse(*data.draw(S.chunkings(body))) == reference_parse(body)


@given(st.binary(max_size=300), st.data())
def test_arbitrary_bytes_parse_like_the_reference(body: bytes, data: st.DataObject) -> None:
    assert parse(*data.draw(S.chunkings(body))) == reference_parse(body)


@given(st.binary(max_size=200) | S.sse_streams(), st.integers(min_value=1, max_value=40), st.data())
def test_arbitrary_bytes_raise_nothing_but_sse_error(body: bytes, limit: int, data: st.DataObject) -> None:
    parser = SSEParser(max_event_size=limit)
    try:
        for chunk in data.draw(S.chunkings(body)):
            parser.receive_data(chunk)
        parser.close()
    except SSEError:
        pass


@given(st.binary(max_size=200) | S.sse_streams(), st.data())
def test_raw_bytes_and_pending_rebuild_the_input_exactly(body: bytes, data: st.DataObject) -> None:
    parser = SSEParser()
    raw = b""
    for chunk in data.draw(S.chunkings(body)):
        raw += b"".join(e.raw for e in parser.receive_data(chunk))
    raw += b"".join(e.raw for e in parser.close())
    assert raw + parser.take_pending() == body


@given(st.lists(S.sse_events(), min_size=1, max_size=5), st.data())
def test_pending_is_taken_mid_stream_without_losing_bytes(events: list[SSEEvent], data: st.DataObject) -> None:
    body = S.encode_events(events) + b"data: unfinished"
    cut = data.draw(st.integers(min_value=0, max_value=len(body)))
    parser = SSEParser()
    first = parser.receive_data(body[:cut])
    pending = parser.take_pending()
    assert b"".join(e.raw for e in first) + pending == body[:cut]


# -- linear time, counted rather than timed ---------------------------------------------------


class CountingPattern:
    """Wraps the parser's line-end regex and counts the bytes each search examines."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self.pattern = pattern
        self.scanned = 0

    def search(self, buf: bytes | bytearray, pos: int = 0) -> re.Match[bytes] | None:
        m = self.pattern.search(buf, pos)
        self.scanned += (m.end() if m else len(buf)) - pos
        return m


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_a_long_event_fed_one_byte_at_a_time_is_scanned_once(
    monkeypatch: pytest.MonkeyPatch, ending: bytes
) -> None:
    counter = CountingPattern(sse._LINE_END)
    monkeypatch.setattr(sse, "_LINE_END", counter)
    body = (b"data: " + b"x" * 20_000 + ending) * 3 + ending
    events = parse(*S.one_byte_at_a_time(body))
    assert events == [ev("\n".join(["x" * 20_000] * 3))]
    # each byte examined at most once (a rescanning parser would examine ~N²/2)
    assert counter.scanned <= len(body)


@settings(max_examples=50)
@given(st.lists(S.sse_events(), max_size=4), st.data())
def test_no_byte_is_scanned_twice_for_any_chunking(events: list[SSEEvent], data: st.DataObject) -> None:
    counter = CountingPattern(sse._LINE_END)
    original, sse._LINE_END = sse._LINE_END, counter  # type: ignore[assignment]
    try:
        body = S.encode_events(events)
        parse(*data.draw(S.chunkings(body)))
    finally:
        sse._LINE_END = original
    assert counter.scanned <= len(body)
