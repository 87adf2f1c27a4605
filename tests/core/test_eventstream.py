"""The AWS event stream codec: examples first, then properties, then botocore as the reference."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer, ParserError
from hypothesis import given, settings
from hypothesis import strategies as st

from aibridge.core import eventstream
from aibridge.core.errors import ProtocolError
from aibridge.core.eventstream import (
    EventStreamDecoder,
    EventStreamError,
    Header,
    HeaderType,
    Message,
    encode_message,
)
from tests.strategies import chunkings, eventstream_messages, one_byte_at_a_time

CHUNK = Message(
    headers=(Header.string(":event-type", "chunk"), Header.string(":content-type", "application/json"),
             Header.string(":message-type", "event")),
    payload=b'{"bytes":"eyJ0eXBlIjoicGluZyJ9","p":"abcd"}',
)


def frame(headers: bytes, payload: bytes = b"") -> bytes:
    """Wire bytes around raw header bytes, with correct CRCs (to test header parsing errors)."""
    total = 12 + len(headers) + len(payload) + 4
    head = struct.pack(">II", total, len(headers))
    body = head + struct.pack(">I", zlib.crc32(head)) + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def decode_all(pieces: list[bytes]) -> list[Message]:
    decoder = EventStreamDecoder()
    out: list[Message] = []
    for piece in pieces:
        out += decoder.receive_data(piece)
    out += decoder.close()
    return out


def botocore_decode(pieces: list[bytes]) -> list[tuple[dict[str, Any], bytes]]:
    buffer = EventStreamBuffer()
    out = []
    for piece in pieces:
        buffer.add_data(piece)
        out += [(m.headers, m.payload) for m in buffer]
    return out


# -- examples ---------------------------------------------------------------------------------


def test_a_bedrock_chunk_frame_has_the_documented_layout() -> None:
    data = encode_message(CHUNK)
    total, headers_len, prelude_crc = struct.unpack(">III", data[:12])
    assert total == len(data)
    assert prelude_crc == zlib.crc32(data[:8])
    assert data[12:12 + 14] == b"\x0b:event-type\x07\x00"  # name length, name, STRING type, ...
    assert data[12 + headers_len : -4] == CHUNK.payload
    assert struct.unpack(">I", data[-4:])[0] == zlib.crc32(data[:-4])


def test_whole_one_byte_at_a_time_and_several_messages() -> None:
    second = Message(headers=(Header.string(":message-type", "event"),), payload=b"")
    data = encode_message(CHUNK) + encode_message(second)
    assert decode_all([data]) == [CHUNK, second]
    assert decode_all(one_byte_at_a_time(data)) == [CHUNK, second]
    assert decode_all([]) == []


def test_every_header_type_round_trips() -> None:
    headers = (
        Header(name="t", type=HeaderType.TRUE, value=True),
        Header(name="f", type=HeaderType.FALSE, value=False),
        Header(name="byte", type=HeaderType.BYTE, value=-128),
        Header(name="short", type=HeaderType.SHORT, value=32767),
        Header(name="int", type=HeaderType.INTEGER, value=-(2**31)),
        Header(name="long", type=HeaderType.LONG, value=2**63 - 1),
        Header(name="bytes", type=HeaderType.BYTE_ARRAY, value=b"\x00\xff"),
        Header(name="str", type=HeaderType.STRING, value="naïve ✓"),
        Header(name="ts", type=HeaderType.TIMESTAMP, value=1_764_806_400_000),
        Header(name="uuid", type=HeaderType.UUID, value=bytes(range(16))),
    )
    message = Message(headers=headers, payload=b"p")
    assert decode_all([encode_message(message)]) == [message]
    assert message.header("long") == 2**63 - 1
    assert message.header_str("int") == ""


@pytest.mark.parametrize(
    ("kind", "value"),
    [(HeaderType.TRUE, False), (HeaderType.BYTE, 128), (HeaderType.SHORT, "1"), (HeaderType.INTEGER, True),
     (HeaderType.UUID, b"short"), (HeaderType.STRING, b"bytes"), (HeaderType.BYTE_ARRAY, b"x" * 65536)],
)
def test_header_constructor_refuses_values_its_type_cannot_encode(kind: HeaderType, value: Any) -> None:
    with pytest.raises(ValueError):
        Header(name="h", type=kind, value=value)


def test_message_constructor_refuses_duplicate_header_names() -> None:
    with pytest.raises(ValueError):
        Message(headers=(Header.string("a", "1"), Header.string("a", "2")))


def test_truncated_stream_is_an_error_at_close() -> None:
    decoder = EventStreamDecoder()
    assert decoder.receive_data(encode_message(CHUNK)[:-1]) == []
    with pytest.raises(EventStreamError, match="stream ended inside a message"):
        decoder.close()


def test_trailing_junk_is_an_error() -> None:
    with pytest.raises(EventStreamError, match="prelude CRC mismatch"):
        decode_all([encode_message(CHUNK) + b"junk-that-is-long-enough"])
    with pytest.raises(EventStreamError, match="stream ended inside a message"):
        decode_all([encode_message(CHUNK) + b"junk"])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (frame(b"\x01a\x0e"), "unknown value type 14"),
        (frame(b"\x01a\x07\x00\x05abc"), "runs past the headers section"),
        (frame(b"\x01a\x04\x00\x00"), "runs past the headers section"),
        (frame(b"\x00"), "malformed header name"),
        (frame(b"\x01a\x00\x01a\x01"), "duplicate header 'a'"),
        (frame(b"\x01a\x07\x00\x01\xff"), "not valid UTF-8"),
    ],
)
def test_malformed_headers_with_valid_crcs(data: bytes, reason: str) -> None:
    with pytest.raises(EventStreamError, match=reason):
        decode_all([data])


def test_impossible_lengths_are_refused_from_the_prelude_alone() -> None:
    head = struct.pack(">II", 15, 0)
    with pytest.raises(EventStreamError, match="too small"):
        EventStreamDecoder().receive_data(head + struct.pack(">I", zlib.crc32(head)))
    head = struct.pack(">II", 10**6, eventstream.MAX_HEADERS_LENGTH + 1)
    with pytest.raises(EventStreamError, match="headers length"):
        EventStreamDecoder().receive_data(head + struct.pack(">I", zlib.crc32(head)))


def test_after_an_error_the_decoder_refuses_input_and_keeps_good_messages() -> None:
    bad = bytearray(encode_message(CHUNK))
    bad[20] ^= 1
    decoder = EventStreamDecoder()
    with pytest.raises(EventStreamError, match="message CRC mismatch in message 2") as caught:
        decoder.receive_data(encode_message(CHUNK) + bytes(bad))
    assert caught.value.messages == [CHUNK]
    assert isinstance(caught.value, ProtocolError)
    with pytest.raises(EventStreamError, match="already failed"):
        decoder.receive_data(b"x")


def test_input_is_never_rescanned(monkeypatch: pytest.MonkeyPatch) -> None:
    """One byte at a time, the CRCs still cover each byte once (h11's linear-scan rule)."""
    hashed: list[int] = []

    class CountingZlib:
        @staticmethod
        def crc32(data: bytes, value: int = 0) -> int:
            hashed.append(len(data))
            return zlib.crc32(data, value)

    monkeypatch.setattr(eventstream, "zlib", CountingZlib)
    big = Message(headers=(Header.string(":message-type", "event"),), payload=b"x" * 50_000)
    data = encode_message(big)
    hashed.clear()
    assert decode_all(one_byte_at_a_time(data)) == [big]
    assert hashed == [8, len(data) - 4]


# -- properties -----------------------------------------------------------------------------------

messages_lists = st.lists(eventstream_messages(), max_size=4)


@given(messages_lists, st.data())
def test_any_chunking_gives_the_same_messages(messages: list[Message], data: st.DataObject) -> None:
    stream = b"".join(encode_message(m) for m in messages)
    assert decode_all(data.draw(chunkings(stream))) == messages


@given(eventstream_messages())
def test_encode_decode_round_trip(message: Message) -> None:
    assert decode_all([encode_message(message)]) == [message]


@given(messages_lists.filter(bool), st.data())
def test_a_flipped_bit_fails_a_crc_check(messages: list[Message], data: st.DataObject) -> None:
    stream = bytearray(b"".join(encode_message(m) for m in messages))
    bit = data.draw(st.integers(min_value=0, max_value=len(stream) * 8 - 1))
    stream[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(EventStreamError):
        decode_all(data.draw(chunkings(bytes(stream))))


@given(st.binary(max_size=300), st.data())
def test_arbitrary_bytes_decode_or_raise_the_decoders_own_error(blob: bytes, data: st.DataObject) -> None:
    try:
        decode_all(data.draw(chunkings(blob)))
    except EventStreamError:
        pass


# -- botocore as the reference --------------------------------------------------------------------


def _as_botocore(messages: list[Message]) -> list[tuple[dict[str, Any], bytes]]:
    return [(m.header_dict(), m.payload) for m in messages]


@given(messages_lists, st.data())
def test_agrees_with_botocore_on_valid_streams(messages: list[Message], data: st.DataObject) -> None:
    pieces = data.draw(chunkings(b"".join(encode_message(m) for m in messages)))
    assert botocore_decode(pieces) == _as_botocore(decode_all(pieces)) == _as_botocore(messages)


@given(messages_lists.filter(bool), st.data())
def test_agrees_with_botocore_that_a_flipped_bit_is_corruption(messages: list[Message], data: st.DataObject) -> None:
    stream = bytearray(b"".join(encode_message(m) for m in messages))
    bit = data.draw(st.integers(min_value=0, max_value=len(stream) * 8 - 1))
    stream[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(EventStreamError):
        decode_all([bytes(stream)])
    with pytest.raises(ParserError):
        botocore_decode([bytes(stream)])


@settings(max_examples=50)
@given(st.binary(max_size=120), messages_lists)
def test_whatever_we_accept_botocore_reads_the_same(junk: bytes, messages: list[Message]) -> None:
    stream = b"".join(encode_message(m) for m in messages) + junk
    try:
        ours = decode_all([stream])
    except EventStreamError:
        return
    assert botocore_decode([stream]) == _as_botocore(ours)
