"""Incremental, sans-IO codec for the AWS event stream binary framing.

Amazon Bedrock answers ``InvokeModelWithResponseStream`` with
``application/vnd.amazon.eventstream``: a sequence of binary messages
(https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html
describes the same framing), each laid out as::

    total length (u32) | headers length (u32) | prelude CRC32 (u32)
    headers (headers length bytes) | payload | message CRC32 (u32)

All integers are big-endian. The prelude CRC covers the first 8 bytes; the
message CRC covers everything before it, prelude included. A header is a
name (u8 length + UTF-8), a type byte, and a value whose encoding the type
fixes (see :class:`HeaderType`).

:class:`EventStreamDecoder` is an h11-style state machine: feed any split of
the bytes to :meth:`~EventStreamDecoder.receive_data`, get whole
:class:`Message` values back. Like h11's receive buffer it never rescans: the
prelude is read once when its 12 bytes are there, and a message is parsed
once when all of its bytes are. Corruption of any kind raises
:class:`EventStreamError` (a :class:`~aibridge.core.errors.ProtocolError`),
after which the decoder refuses further input. :func:`encode_message` is the
inverse, used by the fake Bedrock and the round-trip tests.

This module does no I/O and knows nothing about Bedrock's event names.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Iterable
from typing import Any

import attrs

from aibridge.core.errors import ProtocolError

PRELUDE_LENGTH = 12
CRC_LENGTH = 4
#: smallest possible message: prelude, no headers, no payload, message CRC
MIN_MESSAGE_LENGTH = PRELUDE_LENGTH + CRC_LENGTH
#: limits of the AWS SDKs (botocore's eventstream.py uses the same numbers)
MAX_HEADERS_LENGTH = 128 * 1024
MAX_PAYLOAD_LENGTH = 24 * 1024 * 1024

_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")


class EventStreamError(ProtocolError):
    """The bytes are not a valid AWS event stream (bad CRC, bad lengths, truncated, ...).

    ``messages`` holds the whole messages that the failing call decoded before
    the corruption, so a relay can still deliver them.
    """

    def __init__(self, message: str, messages: list[Message] | None = None) -> None:
        super().__init__(message)
        self.messages: list[Message] = list(messages or [])


class HeaderType(enum.IntEnum):
    """Header value types of the event stream framing (the type byte)."""

    TRUE = 0
    FALSE = 1
    BYTE = 2
    SHORT = 3
    INTEGER = 4
    LONG = 5
    BYTE_ARRAY = 6
    STRING = 7
    TIMESTAMP = 8  # milliseconds since the epoch, as a signed 64-bit integer
    UUID = 9


_INT_FORMATS: dict[HeaderType, struct.Struct] = {
    HeaderType.BYTE: struct.Struct(">b"),
    HeaderType.SHORT: struct.Struct(">h"),
    HeaderType.INTEGER: struct.Struct(">i"),
    HeaderType.LONG: struct.Struct(">q"),
    HeaderType.TIMESTAMP: struct.Struct(">q"),
}
_LENGTH_PREFIXED = frozenset({HeaderType.BYTE_ARRAY, HeaderType.STRING})
HeaderValue = bool | int | bytes | str


def _check_header(instance: Header, attribute: Any, value: Any) -> None:
    kind = instance.type
    encoded_name = instance.name.encode("utf-8")
    if not 1 <= len(encoded_name) <= 255:
        raise ValueError("header name must be 1..255 bytes of UTF-8")
    if kind in (HeaderType.TRUE, HeaderType.FALSE):
        if value is not (kind is HeaderType.TRUE):
            raise ValueError(f"a {kind.name} header carries {kind is HeaderType.TRUE}")
    elif kind in _INT_FORMATS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"a {kind.name} header carries an int")
        bits = _INT_FORMATS[kind].size * 8
        if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
            raise ValueError(f"{value} does not fit a {kind.name} header")
    elif kind is HeaderType.BYTE_ARRAY:
        if not isinstance(value, bytes) or len(value) > 0xFFFF:
            raise ValueError("a BYTE_ARRAY header carries at most 65535 bytes")
    elif kind is HeaderType.STRING:
        if not isinstance(value, str) or len(value.encode("utf-8")) > 0xFFFF:
            raise ValueError("a STRING header carries at most 65535 bytes of UTF-8")
    elif kind is HeaderType.UUID:
        if not isinstance(value, bytes) or len(value) != 16:
            raise ValueError("a UUID header carries exactly 16 bytes")


@attrs.frozen(kw_only=True)
class Header:
    """One typed header; the constructor refuses a value its type cannot encode."""

    name: str
    type: HeaderType = attrs.field(converter=HeaderType)
    value: HeaderValue = attrs.field(validator=_check_header)

    @classmethod
    def string(cls, name: str, value: str) -> Header:
        return cls(name=name, type=HeaderType.STRING, value=value)


def _header_tuple(headers: Iterable[Header]) -> tuple[Header, ...]:
    return tuple(headers)


@attrs.frozen(kw_only=True)
class Message:
    """One decoded event stream message: ordered headers and the raw payload."""

    headers: tuple[Header, ...] = attrs.field(converter=_header_tuple)
    payload: bytes = b""

    def __attrs_post_init__(self) -> None:
        names = [h.name for h in self.headers]
        if len(set(names)) != len(names):
            raise ValueError("header names must be unique")

    def header(self, name: str) -> HeaderValue | None:
        for h in self.headers:
            if h.name == name:
                return h.value
        return None

    def header_str(self, name: str) -> str:
        """A header's value when it is a string; ``""`` otherwise."""
        value = self.header(name)
        return value if isinstance(value, str) else ""

    def header_dict(self) -> dict[str, HeaderValue]:
        return {h.name: h.value for h in self.headers}


# -- encoding ------------------------------------------------------------------


def _encode_header(header: Header) -> bytes:
    name = header.name.encode("utf-8")
    out = bytearray([len(name)])
    out += name
    out.append(int(header.type))
    kind = header.type
    value = header.value
    if kind in _INT_FORMATS:
        out += _INT_FORMATS[kind].pack(value)
    elif kind in _LENGTH_PREFIXED:
        data = value.encode("utf-8") if isinstance(value, str) else value
        assert isinstance(data, bytes)
        out += struct.pack(">H", len(data)) + data
    elif kind is HeaderType.UUID:
        assert isinstance(value, bytes)
        out += value
    return bytes(out)


def encode_headers(headers: tuple[Header, ...]) -> bytes:
    return b"".join(_encode_header(h) for h in headers)


def encode_message(message: Message) -> bytes:
    """The wire bytes of ``message`` (the inverse of the decoder)."""
    headers = encode_headers(message.headers)
    if len(headers) > MAX_HEADERS_LENGTH:
        raise ValueError(f"headers of {len(headers)} bytes exceed {MAX_HEADERS_LENGTH}")
    if len(message.payload) > MAX_PAYLOAD_LENGTH:
        raise ValueError(f"payload of {len(message.payload)} bytes exceeds {MAX_PAYLOAD_LENGTH}")
    total = PRELUDE_LENGTH + len(headers) + len(message.payload) + CRC_LENGTH
    head = struct.pack(">II", total, len(headers))
    prelude = head + _U32.pack(zlib.crc32(head))
    body = prelude + headers + message.payload
    return body + _U32.pack(zlib.crc32(body))


# -- decoding ------------------------------------------------------------------


def decode_headers(data: bytes) -> tuple[Header, ...]:
    """Parse a complete headers section; :class:`EventStreamError` if malformed."""
    headers: list[Header] = []
    seen: set[str] = set()
    pos = 0
    end = len(data)
    while pos < end:
        name_len = data[pos]
        pos += 1
        if name_len == 0 or pos + name_len + 1 > end:
            raise EventStreamError(f"malformed header name at offset {pos - 1} of the headers")
        try:
            name = data[pos : pos + name_len].decode("utf-8")
        except UnicodeDecodeError:
            raise EventStreamError("header name is not valid UTF-8") from None
        pos += name_len
        type_byte = data[pos]
        pos += 1
        try:
            kind = HeaderType(type_byte)
        except ValueError:
            raise EventStreamError(f"header {name!r} has unknown value type {type_byte}") from None
        value: HeaderValue
        if kind is HeaderType.TRUE:
            value = True
        elif kind is HeaderType.FALSE:
            value = False
        elif kind in _INT_FORMATS:
            fmt = _INT_FORMATS[kind]
            if pos + fmt.size > end:
                raise EventStreamError(f"header {name!r}: value runs past the headers section")
            value = fmt.unpack_from(data, pos)[0]
            pos += fmt.size
        elif kind in _LENGTH_PREFIXED:
            if pos + 2 > end:
                raise EventStreamError(f"header {name!r}: value runs past the headers section")
            size = struct.unpack_from(">H", data, pos)[0]
            pos += 2
            if pos + size > end:
                raise EventStreamError(f"header {name!r}: value runs past the headers section")
            raw = bytes(data[pos : pos + size])
            pos += size
            if kind is HeaderType.STRING:
                try:
                    value = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise EventStreamError(f"header {name!r}: string is not valid UTF-8") from None
            else:
                value = raw
        else:  # UUID
            if pos + 16 > end:
                raise EventStreamError(f"header {name!r}: value runs past the headers section")
            value = bytes(data[pos : pos + 16])
            pos += 16
        if name in seen:
            raise EventStreamError(f"duplicate header {name!r}")
        seen.add(name)
        headers.append(Header(name=name, type=kind, value=value))
    return tuple(headers)


class EventStreamDecoder:
    """Feed bytes with :meth:`receive_data`; get complete :class:`Message` values back."""

    def __init__(self) -> None:
        self._buf = bytearray()
        #: (total length, headers length) of the message being received, once its prelude is in
        self._prelude: tuple[int, int] | None = None
        self._failed: EventStreamError | None = None
        self._closed = False
        self.messages_decoded = 0

    def _fail(self, message: str) -> EventStreamError:
        self._failed = EventStreamError(message)
        self._buf = bytearray()
        return self._failed

    def receive_data(self, data: bytes) -> list[Message]:
        if self._failed is not None:
            raise EventStreamError(f"decoder already failed: {self._failed}")
        if self._closed:
            raise EventStreamError("receive_data() after close()")
        if not data:
            return []
        self._buf += data
        messages: list[Message] = []
        try:
            self._decode_into(messages)
        except EventStreamError as exc:
            exc.messages = messages
            raise
        return messages

    def _decode_into(self, messages: list[Message]) -> None:
        buf = self._buf
        pos = 0
        while True:
            available = len(buf) - pos
            if self._prelude is None:
                if available < PRELUDE_LENGTH:
                    break
                total, headers_len, prelude_crc = _PRELUDE.unpack_from(buf, pos)
                if zlib.crc32(buf[pos : pos + 8]) != prelude_crc:
                    raise self._fail(
                        f"prelude CRC mismatch in message {self.messages_decoded + 1}: "
                        f"expected 0x{prelude_crc:08x}, computed 0x{zlib.crc32(buf[pos : pos + 8]):08x}"
                    )
                if headers_len > MAX_HEADERS_LENGTH:
                    raise self._fail(f"headers length {headers_len} exceeds {MAX_HEADERS_LENGTH}")
                if total < MIN_MESSAGE_LENGTH + headers_len:
                    raise self._fail(
                        f"total length {total} is too small for {headers_len} bytes of headers"
                    )
                if total - MIN_MESSAGE_LENGTH - headers_len > MAX_PAYLOAD_LENGTH:
                    raise self._fail(f"payload length exceeds {MAX_PAYLOAD_LENGTH}")
                self._prelude = (total, headers_len)
            total, headers_len = self._prelude
            if available < total:
                break
            end = pos + total
            (expected,) = _U32.unpack_from(buf, end - CRC_LENGTH)
            computed = zlib.crc32(buf[pos : end - CRC_LENGTH])
            if computed != expected:
                raise self._fail(
                    f"message CRC mismatch in message {self.messages_decoded + 1}: "
                    f"expected 0x{expected:08x}, computed 0x{computed:08x}"
                )
            headers_start = pos + PRELUDE_LENGTH
            payload_start = headers_start + headers_len
            try:
                headers = decode_headers(bytes(buf[headers_start:payload_start]))
            except EventStreamError as exc:
                raise self._fail(str(exc)) from None
            messages.append(Message(headers=headers, payload=bytes(buf[payload_start : end - CRC_LENGTH])))
            self.messages_decoded += 1
            self._prelude = None
            pos = end
        if pos:
            del buf[:pos]

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole message."""
        return len(self._buf)

    def close(self) -> list[Message]:
        """End of input. Raises :class:`EventStreamError` if a message was cut short."""
        if self._closed:
            return []
        self._closed = True
        if self._failed is None and self._buf:
            pending = len(self._buf)
            wanted = self._prelude[0] if self._prelude else PRELUDE_LENGTH
            raise self._fail(f"stream ended inside a message ({pending} of {wanted} bytes)")
        return []
