"""What every provider module shares: request translation results, tool-call
assembly, and the stream tap that tees relayed bytes into a provider handler.

Where Anthropic, OpenAI Chat and Responses share logic (tool-call assembly,
JSON decoding of events, dropping an event from the client's stream), it lives
here once; provider modules only supply small tables and handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs

from aibridge.core import jsonutil
from aibridge.core.errors import ClientError
from aibridge.core.model import AuditEvent, StreamFailed, ToolCall, ToolCallMade
from aibridge.core.sse import DEFAULT_MAX_EVENT_SIZE, SSEError, SSEEvent, SSEParser


@attrs.frozen(kw_only=True)
class Translation:
    """The upstream request derived from a client request.

    ``body`` is the client's bytes unless a rewrite was required
    (``rewritten`` names the keys that changed).
    """

    body: bytes
    model: str
    streaming: bool
    prompt: str | None
    rewritten: tuple[str, ...] = ()
    #: the bridge asked for a usage-only chunk the client did not ask for
    drop_usage_only_chunks: bool = False
    #: path relative to the upstream base, with the query string; None keeps the client's
    path: str | None = None
    #: extra headers the translation needs upstream (e.g. Bedrock's content type)
    headers: tuple[tuple[str, str], ...] = ()
    #: facts about the request for the interception's metadata (e.g. Responses ``background``)
    metadata: dict[str, Any] = attrs.field(factory=dict)


def require_fields(
    body: dict[str, Any], *, list_field: str | None, list_optional: bool = False
) -> tuple[str, bool]:
    """Validate the fields the bridge itself relies on; returns (model, stream)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ClientError("'model' is required and must be a non-empty string")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ClientError("'stream' must be a boolean")
    if list_field is not None:
        value = body.get(list_field)
        if value is None and list_optional:
            pass
        elif not isinstance(value, list):
            raise ClientError(f"'{list_field}' is required and must be an array")
    return model, stream


class ToolCallAssembler:
    """Tool calls assembled from streamed fragments, keyed by a per-provider slot.

    Anthropic keys by content block index, OpenAI Chat by (choice, tool index),
    Responses by output item id. A final value (Responses ``*.done`` events,
    complete output items) replaces whatever the deltas assembled. A call with
    no argument fragments at all has arguments ``{}``. Arguments given when a
    call starts (Anthropic ``tool_use.input``, a Responses item's
    ``arguments``) count only if no fragment follows: the fragments spell the
    whole value again, and gluing the two together would make invalid JSON.

    A ``text`` call (Responses ``custom_tool_call``, whose input is free-form
    text rather than JSON arguments) is stored as a JSON string, so that a
    tool usage's ``input`` is always valid JSON text.
    """

    def __init__(self) -> None:
        self._calls: dict[Any, dict[str, Any]] = {}

    def __contains__(self, key: Any) -> bool:
        return key in self._calls

    def call_id(self, key: Any) -> str:
        """The provider call id assembled so far for ``key`` ("" if none yet)."""
        slot = self._calls.get(key)
        return "" if slot is None else str(slot["id"])

    def start(
        self, key: Any, *, call_id: str | None, name: str | None, args: str = "", text: bool = False
    ) -> None:
        self._calls[key] = {
            "id": call_id or "", "name": name or "", "parts": [], "initial": args, "final": None, "text": text,
        }

    def update(
        self, key: Any, *, call_id: str | None = None, name: str | None = None, text: bool | None = None
    ) -> None:
        slot = self._calls.setdefault(key, {"id": "", "name": "", "parts": [], "final": None})
        if call_id:
            slot["id"] = call_id
        if name:
            slot["name"] = name
        if text is not None:
            slot["text"] = text

    def append(self, key: Any, fragment: str) -> None:
        slot = self._calls.setdefault(key, {"id": "", "name": "", "parts": [], "final": None})
        if fragment:
            slot["parts"].append(fragment)

    def finalize(self, key: Any, args: str) -> None:
        slot = self._calls.setdefault(key, {"id": "", "name": "", "parts": [], "final": None})
        slot["final"] = args

    def pop(self, key: Any, response_id: str) -> ToolCall | None:
        slot = self._calls.pop(key, None)
        return None if slot is None else self._build(slot, response_id)

    def pop_all(self, response_id: str) -> list[ToolCall]:
        calls = [self._build(slot, response_id) for slot in self._calls.values()]
        self._calls.clear()
        return calls

    @staticmethod
    def _build(slot: dict[str, Any], response_id: str) -> ToolCall:
        if slot["final"] is not None:
            args = slot["final"]
        else:
            args = "".join(slot["parts"]) if slot["parts"] else slot.get("initial", "")
        if slot.get("text"):
            args = jsonutil.dumps(args).decode()
        return ToolCall(
            provider_response_id=response_id,
            tool_call_id=slot["id"],
            tool=slot["name"],
            input=args if args.strip() else "{}",
        )


def tool_call_events(calls: list[ToolCall]) -> list[AuditEvent]:
    return [ToolCallMade(call=c) for c in calls]


class StreamHandler(Protocol):
    """Per-provider handler of decoded SSE events."""

    def handle(self, event: SSEEvent, payload: Any) -> list[AuditEvent]: ...

    def drop(self, event: SSEEvent, payload: Any) -> bool: ...

    def finish(self) -> list[AuditEvent]: ...


class StreamTap:
    """Tee of a streaming response: upstream bytes in, (client bytes, audit events) out.

    Without ``filtering`` the client bytes are the input, unchanged and at
    once. With it (OpenAI Chat when the bridge asked for a usage chunk the
    client did not), bytes are released per complete event so that the
    handler can drop one; everything else still reaches the client byte for
    byte, and :meth:`close` releases any trailing bytes.

    The tap never breaks the relay: if the parser gives up (an event beyond
    ``max_event_size``), one :class:`StreamFailed` says the rest of the
    stream is unaudited, and from then on every byte (held ones included)
    goes to the client untouched.
    """

    def __init__(
        self,
        handler: StreamHandler,
        *,
        filtering: bool = False,
        is_terminator: Callable[[str], bool] = lambda data: False,
        ends_stream: Callable[[Any], bool] = lambda payload: False,
        require_end: bool = False,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
    ) -> None:
        self._handler = handler
        self._ends_stream = ends_stream
        #: a stream that closes before its last event was cut short upstream
        self._require_end = require_end
        #: the provider's last event has been seen (chat ``[DONE]``, Anthropic
        #: ``message_stop``, a Responses terminal event): a client that hangs up
        #: after receiving it has had the whole reply
        self.ended = False
        self._parser = SSEParser(max_event_size=max_event_size)
        self._filtering = filtering
        self._is_terminator = is_terminator
        self.malformed = 0
        #: filtering: bytes received and not yet released or dropped (a copy of
        #: what the parser holds, so nothing is lost if the parser gives up)
        self._held = bytearray()
        #: the parser gave up; the rest of the stream is relayed unaudited
        self._given_up = False
        #: filtering: the last event ended on a CR that was the last byte
        #: received, so an LF starting the next chunk completes its CRLF
        #: (see _settle_lf); and whether that event was dropped
        self._after_cr = False
        self._last_dropped = False
        #: the LF completing a CRLF went (or was dropped) with its event; the
        #: parser still counts it as the first byte of what follows
        self._lf_settled = False

    @property
    def at_event_boundary(self) -> bool:
        """The client has been sent whole events only (a keep-alive comment may go in now)."""
        if self._given_up:
            return False
        if self._filtering:
            return not self._after_cr  # else an LF completing a CRLF may still come
        return self._parser.at_boundary

    def receive_data(self, data: bytes) -> tuple[bytes, list[AuditEvent]]:
        if self._given_up:
            return data, []
        if not self._filtering:
            try:
                events = self._parser.receive_data(data)
            except SSEError as exc:
                return data, self._give_up(exc)
            return data, self._consume(events)[1]
        lead = self._settle_lf(data)
        self._held += data
        try:
            events = self._parser.receive_data(data)
        except SSEError as exc:
            out = lead + self._unsettled(bytes(self._held))
            self._held = bytearray()
            return out, self._give_up(exc)
        out, audit = self._consume(events)
        if events:
            self._after_cr = not self._held and events[-1].raw.endswith(b"\r")
        return lead + out, audit

    def close(self) -> tuple[bytes, list[AuditEvent]]:
        if self._given_up:
            return b"", self._handler.finish()
        out, audit = self._consume(self._parser.close())
        if self._filtering:
            out += self._unsettled(self._parser.take_pending())
            self._held = bytearray()
        audit.extend(self._handler.finish())
        if self._require_end and not self.ended:
            audit.append(StreamFailed(message="upstream stream ended before its last event"))
        return (out if self._filtering else b""), audit

    def abandon(self) -> list[AuditEvent]:
        """The relay stopped before the upstream's end (the client hung up).

        Unlike :meth:`close`, a partial event the parser holds is not parsed:
        it was cut by the hang-up, not sent malformed. The handler reports
        what the events seen so far add up to (usage, tool calls, thoughts).
        """
        return self._handler.finish()

    def _give_up(self, exc: SSEError) -> list[AuditEvent]:
        self._given_up = True
        return [StreamFailed(message=f"stream not audited past this point: {exc}")]

    def _settle_lf(self, data: bytes) -> bytes:
        """The LF that completes the last event's CRLF, if ``data`` starts with it.

        The parser dispatches an event on a CR at the end of a chunk without
        knowing whether an LF follows; when one does, it arrives first in the
        next chunk. It belongs with that event: released now after a
        released event, dropped after a dropped one, so the client's bytes
        never depend on where the network cut the stream.
        """
        if not data:
            return b""
        owed = self._after_cr and data[:1] == b"\n"
        self._after_cr = False
        if not owed:
            return b""
        self._lf_settled = True
        return b"" if self._last_dropped else b"\n"

    def _unsettled(self, raw: bytes) -> bytes:
        """``raw`` (bytes that follow the last event) without an LF already settled."""
        if self._lf_settled and raw.startswith(b"\n"):
            self._lf_settled = False
            return raw[1:]
        return raw

    def _consume(self, events: list[SSEEvent]) -> tuple[bytes, list[AuditEvent]]:
        out = bytearray()
        audit: list[AuditEvent] = []
        for ev in events:
            payload: Any = None
            data = ev.data.strip()
            if data and self._is_terminator(data):
                self.ended = True
            elif data:
                try:
                    payload = jsonutil.loads(data)
                except (ValueError, RecursionError):
                    self.malformed += 1
                    audit.append(StreamFailed(message=f"malformed event data: {data[:200]}"))
                    payload = None
            if payload is not None:
                audit.extend(self._handler.handle(ev, payload))
                if self._ends_stream(payload):
                    self.ended = True
            if not self._filtering:
                continue
            del self._held[: len(ev.raw)]
            dropped = payload is not None and self._handler.drop(ev, payload)
            if dropped:
                self._lf_settled = False  # a settled LF leading its raw goes with it
            else:
                out += self._unsettled(ev.raw)
            self._last_dropped = dropped
        return bytes(out), audit


def stream_tap(module: Any, *, filtering: bool = False) -> StreamTap:
    """The tap for a provider module: its ``StreamHandler``, and its ``is_done``
    (a non-JSON terminator) and ``ends_stream`` (the last event) where it has
    them; a stream that closes before that last event is recorded ``failed``."""
    return StreamTap(
        module.StreamHandler(),
        filtering=filtering,
        is_terminator=getattr(module, "is_done", lambda data: False),
        ends_stream=getattr(module, "ends_stream", lambda payload: False),
        require_end=True,
    )


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_json_text(value: Any) -> str:
    """Tool arguments as JSON text: a string as is; an object or array (some
    OpenAI-compatible servers send ``arguments`` unencoded) serialised; else ""."""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return jsonutil.dumps(value).decode()
    return ""


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
