"""Write the seed corpus (``python -m fuzz.make_corpus``): small valid and broken inputs.

Seeds are built from the fake upstream's wire formats and the project's own
request bodies, so they are stable and reviewable; the first byte of each
file chooses the chunk size (see :func:`fuzz.harnesses.split`).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import orjson

from aibridge.core.eventstream import Header, HeaderType, Message, encode_message
from aibridge.fake.upstream import (
    anthropic_message,
    anthropic_stream,
    chat_completion,
    chat_stream,
    responses_object,
    responses_stream,
)

CORPUS = Path(__file__).resolve().parent / "corpus"


def _frame(event_type: str, payload: bytes) -> bytes:
    return encode_message(Message(headers=[
        Header(name=":event-type", type=HeaderType.STRING, value=event_type),
        Header(name=":content-type", type=HeaderType.STRING, value="application/json"),
        Header(name=":message-type", type=HeaderType.STRING, value="event"),
    ], payload=payload))


def seeds() -> dict[str, list[bytes]]:
    anth = b"".join(anthropic_stream("msg_seed", "claude-seed", 2, "seed "))
    chat = b"".join(chat_stream("chatcmpl-seed", "gpt-seed", 2, "seed ", True))
    resp = b"".join(responses_stream("resp_seed", "gpt-seed", 2, "seed "))
    chunk = {"bytes": base64.b64encode(b'{"type":"message_stop"}').decode()}
    bedrock = _frame("chunk", orjson.dumps(chunk))
    requests = [
        {"model": "claude-seed", "max_tokens": 8, "messages": [{"role": "user", "content": "seed prompt"}]},
        {"model": "gpt-seed", "stream": True, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
        {"model": "gpt-seed", "input": [{"role": "user", "content": [{"type": "input_text", "text": "y"}]}]},
        {"model": "gpt-seed", "stream": True, "stream_options": {"include_usage": False}, "messages": []},
    ]
    usages = [
        {"input_tokens": 5, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3, "output_tokens": 7,
         "cache_creation": {"ephemeral_1h_input_tokens": 2}},
        {"prompt_tokens": 9, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 6},
         "completion_tokens_details": {"reasoning_tokens": 1}},
        {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 12}, "output_tokens": 0,
         "output_tokens_details": {"reasoning_tokens": None}},
    ]
    return {
        "sse": [b"\x00" + anth, b"\x01" + chat, b"\x05" + resp.replace(b"\n", b"\r\n"), b"\x03data: x\r\rdata: y\r",
                b"\x02:comment\n\nevent: a\nid: 1\nretry: 10\ndata: z\n\n", b"\x04\xef\xbb\xbfdata: bom\n\n"],
        "eventstream": [b"\x00" + bedrock, b"\x03" + bedrock + bedrock[:20], b"\x07" + bedrock[:-1] + b"\x00"],
        "bedrock_stream": [b"\x00" + bedrock, b"\x05" + bedrock + bedrock, b"\x02" + bedrock[:-3]],
        "request": [orjson.dumps(r) for r in requests] + [b'{"model": "m", "messages": [', b"[]", b'{"model": 1}'],
        "stream": [b"\x00" + anth, b"\x02" + chat, b"\x09" + resp, b"\x01data: {\"choices\": 1}\n\ndata: [DONE]\n\n",
                   b"\x00event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\"}}\n\n"],
        "blocking": [orjson.dumps(anthropic_message("msg_b", "claude-seed", 2, "b ")),
                     orjson.dumps(chat_completion("chatcmpl-b", "gpt-seed", 2, "b ")),
                     orjson.dumps(responses_object("resp_b", "gpt-seed", 2, "b ")), b"[1, {}]", b'{"usage": 3}'],
        "usage": [orjson.dumps(u) for u in usages] + [b'{"input_tokens": -3, "output_tokens": 1.5}'],
    }


def main() -> None:
    for name, items in seeds().items():
        folder = CORPUS / name
        folder.mkdir(parents=True, exist_ok=True)
        for item in items:
            (folder / hashlib.sha1(item).hexdigest()[:16]).write_bytes(item)


if __name__ == "__main__":
    main()
