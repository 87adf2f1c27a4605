"""The stream tap: relay bytes, parse a copy; the parser never breaks the relay."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aibridge.core.model import ResponseIdentified, StreamFailed
from aibridge.core.providers import anthropic, openai_chat
from aibridge.core.providers.base import StreamTap
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
