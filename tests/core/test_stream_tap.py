"""The stream tap: relay bytes, parse a copy; the parser never breaks the relay."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aibridge.core.model import ResponseIdentified, StreamFailed, UsageReported
from aibridge.core.providers import anthropic, openai_chat, openai_responses
from aibridge.core.providers.base import StreamTap, stream_tap
from tests import strategies as S
from tests.core.tapping import run_tap, sse

FIRST = sse({"id": "chatcmpl-tap1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "a"}}]})
HUGE = b"data: " + b'"' + b"x" * 500 + b'"\n\n'
AFTER = sse({"id": "chatcmpl-tap1", "choices": [{"index": 0, "delta": {"content": "b"}}]}) + b"data: [DONE]\n\n"


def test_an_event_beyond_the_limit_is_relayed_and_the_rest_goes_unaudited() -> None:
    body = FIRST + HUGE + AFTER
    for filtering in (False, True):
        out, events = run_tap(openai_chat.StreamHandler(), [body[i : i + 64] for i in range(0, len(body), 64)],
                              filtering=filtering, is_terminator=openai_chat.is_done, max_event_size=200)
        assert out == body
        assert events[0] == ResponseIdentified(provider_response_id="chatcmpl-tap1")
        failures = [e for e in events if isinstance(e, StreamFailed)]
        assert failures == [StreamFailed(message="stream not audited past this point: SSE event larger than 200 bytes (comments before it included)")]


@given(st.binary(max_size=300) | S.sse_streams(), st.integers(min_value=1, max_value=60), st.booleans(), st.data())
def test_any_bytes_reach_the_client_whatever_the_parser_thinks(
    body: bytes, limit: int, filtering: bool, data: st.DataObject
) -> None:
    # None of these streams holds a usage-only chat chunk, so nothing may be dropped.
    chunks = data.draw(S.chunkings(body))
    out, _ = run_tap(openai_chat.StreamHandler(), chunks, filtering=filtering,
                     is_terminator=openai_chat.is_done, max_event_size=limit)
    assert out == body
    out, _ = run_tap(anthropic.StreamHandler(), chunks, max_event_size=limit)
    assert out == body


def test_no_event_boundary_between_a_cr_and_the_lf_that_may_follow() -> None:
    # A keep-alive comment must not land inside a CRLF split by the network.
    for filtering in (False, True):
        tap = StreamTap(openai_chat.StreamHandler(), filtering=filtering, is_terminator=openai_chat.is_done)
        assert tap.at_event_boundary
        tap.receive_data(FIRST.replace(b"\n", b"\r\n")[:-1])
        assert not tap.at_event_boundary
        tap.receive_data(b"\n")
        assert tap.at_event_boundary


def _messages_stream() -> list[bytes]:
    """The events of an Anthropic stream."""
    events = [
        sse({"type": "message_start", "message": {"id": "msg_cut", "model": "claude-x", "content": [],
                                                  "usage": {"input_tokens": 9, "output_tokens": 1}}},
            "message_start"),
        sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start"),
        *[sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"w{i} é"}},
              "content_block_delta") for i in range(5)],
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}},
            "message_delta"),
        sse({"type": "message_stop"}, "message_stop"),
    ]
    return events


@given(st.data())
def test_a_stream_cut_anywhere_and_abandoned_is_never_malformed(data: st.DataObject) -> None:
    events_sent = _messages_stream()
    stream = b"".join(events_sent)
    start_end, stop_start = len(events_sent[0]), len(stream) - len(events_sent[-1])
    cut = data.draw(st.integers(min_value=0, max_value=len(stream)), label="cut")
    tap = stream_tap(anthropic)
    events = []
    for chunk in data.draw(S.chunkings(stream[:cut]), label="chunks"):
        events += tap.receive_data(chunk)[1]
    events += tap.abandon()
    assert not [e for e in events if isinstance(e, StreamFailed)]
    # the last event is seen exactly when its blank line has arrived
    assert tap.ended is (cut == len(stream))
    # usage as far as whole events say: none before message_start, 7 output tokens after message_delta
    usages = [(e.usage.input_tokens, e.usage.output_tokens) for e in events if isinstance(e, UsageReported)]
    assert usages == ([] if cut < start_end else [(9, 1)] if cut < stop_start else [(9, 7)])


def test_ended_marks_each_providers_last_event() -> None:
    chat = stream_tap(openai_chat)
    chat.receive_data(b'data: {"id":"c","choices":[]}\n\n')
    assert not chat.ended
    chat.receive_data(b"data: [DONE]\n\n")
    assert chat.ended
    for kind, ended in (("response.output_text.delta", False), ("response.incomplete", True)):
        tap = stream_tap(openai_responses)
        tap.receive_data(sse({"type": kind, "response": {"id": "resp_1"}}, kind))
        assert tap.ended is ended
