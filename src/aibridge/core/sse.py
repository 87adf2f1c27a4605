"""Incremental, sans-IO parser for Server-Sent Events (text/event-stream).

Follows the WHATWG HTML "event stream interpretation" rules: ``data:`` with or
without the space, LF, CRLF and lone CR line ends (a CR at the end of one chunk
followed by an LF at the start of the next is one line end), comment lines,
multi-line ``data`` joined with ``\\n``, ``id`` and ``retry`` fields, a leading
BOM. Lines are decoded as UTF-8 only once complete, so a multi-byte character
split across chunks never turns into U+FFFD.

Like h11's receive buffer, the parser remembers how far it has scanned: bytes
are searched for a line end once, so a long event arriving one byte at a time
costs linear, not quadratic, time.

Three deliberate departures from the browser algorithm, all for auditing:
``event`` is ``None`` when the block had no ``event:`` field (providers use the
JSON ``type`` anyway); ``id`` and ``retry`` are reported on the event whose
block carried them (a browser keeps a "last event ID" across events, which an
auditor has no use for); and :meth:`SSEParser.close` dispatches a final event
whose blank line never came (a truncated upstream stream still gets audited).

Bytes are never lost: every received byte ends up in exactly one event's
``raw`` or in :meth:`SSEParser.take_pending`, so a relay that drops one event
can still forward everything else byte for byte.
"""

from __future__ import annotations

import re

import attrs

from aibridge.core.errors import ProtocolError

_LINE_END = re.compile(rb"[\r\n]")
_CR = 0x0D
_LF = 0x0A
DEFAULT_MAX_EVENT_SIZE = 64 * 1024 * 1024
_MAX_RETRY_DIGITS = 18


class SSEError(ProtocolError):
    """The byte stream cannot be parsed as SSE (event too large, used after close)."""


@attrs.frozen(kw_only=True)
class SSEEvent:
    """One dispatched event.

    ``raw`` holds the exact bytes this event consumed from the stream (including
    comment lines and blank lines that came before it since the previous event),
    so a relay can drop an event and forward everything else byte for byte.
    It takes no part in equality.
    """

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    raw: bytes = attrs.field(default=b"", eq=False, repr=False)


class SSEParser:
    """Feed bytes with :meth:`receive_data`; get :class:`SSEEvent` values back."""

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._buf = bytearray()
        self._line_start = 0  # start of the line being assembled, in _buf
        self._scan = 0  # bytes before this in _buf were searched for a line end
        self._skip_lf = False  # last chunk ended in CR: a leading LF belongs to it
        self._first_line = True
        self._closed = False
        self._max = max_event_size
        self._reset_fields()

    def _reset_fields(self) -> None:
        self._data: list[str] = []
        self._data_size = 0  # characters in _data, kept as a running sum (no rescans)
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None

    def receive_data(self, data: bytes) -> list[SSEEvent]:
        if self._closed:
            raise SSEError("receive_data() after close()")
        if not data:
            return []
        buf = self._buf
        buf += data
        if self._skip_lf:
            self._skip_lf = False
            if buf[self._scan] == _LF:
                self._scan += 1
                self._line_start = self._scan
        events: list[SSEEvent] = []
        search = _LINE_END.search
        while True:
            m = search(buf, self._scan)
            if m is None:
                self._scan = len(buf)
                break
            i = m.start()
            end = i + 1
            if buf[i] == _CR:
                if end < len(buf):
                    if buf[end] == _LF:
                        end += 1
                else:
                    self._skip_lf = True
            line = bytes(buf[self._line_start : i])
            self._line_start = self._scan = end
            ev = self._process_line(line)
            if ev is not None:
                events.append(ev)
        # Everything still held belongs to the event being received (with the
        # comments and blank lines before it): bound it, so that an upstream
        # sending an endless line, or endless comments, cannot exhaust memory.
        if len(buf) > self._max:
            raise SSEError(f"SSE event larger than {self._max} bytes (comments before it included)")
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream. Returns an event left without its blank line, if any."""
        if self._closed:
            return []
        self._closed = True
        events: list[SSEEvent] = []
        if self._line_start < len(self._buf):
            ev = self._process_line(bytes(self._buf[self._line_start :]))
            self._line_start = self._scan = len(self._buf)
            if ev is not None:
                events.append(ev)
        if self._data:
            events.append(self._dispatch(len(self._buf)))
        # Whatever formed no event (trailing comments, a block without data)
        # stays for take_pending(): a filtering relay still owes it the client.
        return events

    def _process_line(self, raw_line: bytes) -> SSEEvent | None:
        line = raw_line.decode("utf-8", "replace")
        if self._first_line:
            self._first_line = False
            if line.startswith("\ufeff"):
                line = line[1:]
        if not line:
            if not self._data:
                self._reset_fields()
                return None
            return self._dispatch(self._line_start)
        if line[0] == ":":
            return None
        field, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data.append(value)
            self._data_size += len(value) + 1
            if self._data_size > self._max:
                raise SSEError(f"SSE event larger than {self._max} bytes")
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\x00" not in value:
                self._id = value
        elif field == "retry":
            # Only ASCII digits count (WHATWG); more digits than int() accepts
            # (Python's 4300-digit limit) is no valid delay either: ignore it.
            if value.isascii() and value.isdigit() and len(value) <= _MAX_RETRY_DIGITS:
                self._retry = int(value)
        return None

    def _dispatch(self, end: int) -> SSEEvent:
        raw = bytes(self._buf[:end])
        del self._buf[:end]
        self._line_start -= end
        self._scan -= end
        ev = SSEEvent(
            data="\n".join(self._data),
            event=self._event,
            id=self._id,
            retry=self._retry,
            raw=raw,
        )
        self._reset_fields()
        return ev

    def take_pending(self) -> bytes:
        """Bytes received but not yet part of a dispatched event; clears them.

        Used by relays that hold events back (to drop one): at the end of the
        stream, whatever did not form an event is still the client's.
        """
        raw = bytes(self._buf)
        self._buf = bytearray()
        self._line_start = self._scan = 0
        return raw

    @property
    def at_boundary(self) -> bool:
        """No event is half-received: no partial line, no pending field, no CR awaiting its LF.

        A relay may insert its own comment line (a keep-alive) into the stream
        only here, or it would split an upstream event in two.
        """
        return (
            self._line_start == len(self._buf)
            and not self._skip_lf
            and not self._data
            and self._event is None
            and self._id is None
            and self._retry is None
        )


def encode_event(
    data: str,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """Serialise one event with LF line ends (the inverse of the parser).

    Raises :class:`ValueError` for values no SSE stream can carry: a line end
    in ``event``, ``id`` or ``data`` (``data`` may hold ``\\n``, which becomes
    several ``data:`` lines, but not ``\\r``), NUL in ``id``, a negative
    ``retry``.
    """
    for name, value in (("event", event), ("id", id)):
        if value is not None and ("\r" in value or "\n" in value):
            raise ValueError(f"SSE {name} cannot contain a line end: {value!r}")
    if id is not None and "\x00" in id:
        raise ValueError("SSE id cannot contain NUL")
    if "\r" in data:
        raise ValueError("SSE data cannot contain CR (use LF between lines)")
    if retry is not None and retry < 0:
        raise ValueError(f"SSE retry must be non-negative, not {retry}")
    parts: list[str] = []
    if event is not None:
        parts.append(f"event: {event}\n")
    if id is not None:
        parts.append(f"id: {id}\n")
    if retry is not None:
        parts.append(f"retry: {retry}\n")
    for line in data.split("\n"):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


KEEPALIVE_COMMENT = b": keepalive\n\n"
