"""A fake Amazon Bedrock runtime for tests and demos: SigV4-checked, event-stream framed.

:class:`FakeBedrock` plugs into :class:`~aibridge.fake.upstream.FakeUpstream`
as the handler of ``/model/...`` (``FakeBedrock(...).install(fake)``). Every
request's SigV4 signature is recomputed with botocore from what actually
arrived (method, raw path, query, the signed headers, the body) and the
configured secret; a bad one gets Bedrock's 403 and is logged in
:attr:`FakeBedrock.checks`, so a test can assert that every call was signed
correctly. Like Bedrock, it refuses bodies with keys outside the Claude
request schema (400 ``ValidationException``).

Replies are scripted (:meth:`FakeBedrock.script` with :func:`stream_reply`,
:func:`json_reply`, :func:`error_reply`) or synthetic: the same text stream
the Anthropic fake sends, framed as Bedrock ``chunk`` events.
"""

from __future__ import annotations

import base64
import calendar
import collections
import hmac
import itertools
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import unquote

import attrs
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from aibridge.core.eventstream import Header, Message, encode_message
from aibridge.core.sse import SSEParser
from aibridge.fake.upstream import FakeUpstream, Reply, anthropic_message, anthropic_stream

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

EVENTSTREAM = "application/vnd.amazon.eventstream"
ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
#: top-level keys of the Claude Messages body on Bedrock; anything else is a 400
BODY_KEYS = frozenset({
    "anthropic_version", "anthropic_beta", "max_tokens", "messages", "system", "temperature",
    "top_p", "top_k", "stop_sequences", "tools", "tool_choice", "thinking", "output_config",
    "context_management",
})
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[^,]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
MAX_SKEW_SECONDS = 300


@attrs.frozen(kw_only=True)
class SignatureCheck:
    path: str
    valid: bool
    reason: str = ""


# -- reply builders ---------------------------------------------------------------------


def chunk_message(event: Any, *, padding: str = "abcdefghij") -> Message:
    """A Bedrock ``chunk`` event carrying one Anthropic stream event (``p`` is Bedrock's padding)."""
    data = base64.b64encode(orjson.dumps(event)).decode()
    return Message(
        headers=(Header.string(":event-type", "chunk"), Header.string(":content-type", "application/json"),
                 Header.string(":message-type", "event")),
        payload=orjson.dumps({"bytes": data, "p": padding}),
    )


def exception_message(name: str, message: str) -> Message:
    """A Bedrock exception frame, e.g. ``throttlingException``."""
    return Message(
        headers=(Header.string(":exception-type", name), Header.string(":content-type", "application/json"),
                 Header.string(":message-type", "exception")),
        payload=orjson.dumps({"message": message}),
    )


def stream_reply(
    events: Sequence[Any],
    *,
    exception: tuple[str, str] | None = None,
    write_size: int = 0,
    request_id: str = "4d1c0f7e-0000-4000-8000-00000000b001",
) -> Reply:
    """An ``InvokeModelWithResponseStream`` reply: one frame per event (or ``write_size``-byte writes)."""
    messages = [chunk_message(e) for e in events]
    if exception is not None:
        messages.append(exception_message(*exception))
    frames = [encode_message(m) for m in messages]
    if write_size:
        data = b"".join(frames)
        frames = [data[i : i + write_size] for i in range(0, len(data), write_size)]
    return Reply(
        headers=(("content-type", EVENTSTREAM), ("x-amzn-requestid", request_id),
                 ("x-amzn-bedrock-content-type", "application/json")),
        chunks=tuple(frames),
    )


def json_reply(payload: Any, *, request_id: str = "4d1c0f7e-0000-4000-8000-00000000b002") -> Reply:
    return Reply(headers=(("content-type", "application/json"), ("x-amzn-requestid", request_id)),
                 body=orjson.dumps(payload))


def error_reply(status: int, exception: str, message: str, *, headers: Sequence[tuple[str, str]] = ()) -> Reply:
    """A Bedrock error: ``{"message": ...}`` with the ``x-amzn-errortype`` header."""
    return Reply(
        status=status,
        headers=(("content-type", "application/json"),
                 ("x-amzn-errortype", f"{exception}:{ERROR_NAMESPACE}"),
                 ("x-amzn-requestid", "4d1c0f7e-0000-4000-8000-00000000e000"), *headers),
        body=orjson.dumps({"message": message}),
    )


def sse_events(frames: Sequence[bytes]) -> list[Any]:
    """The JSON payloads of Anthropic SSE frames (to re-frame them for Bedrock)."""
    parser = SSEParser()
    events = parser.receive_data(b"".join(frames)) + parser.close()
    return [orjson.loads(ev.data) for ev in events if ev.data.strip()]


# -- the fake --------------------------------------------------------------------------------


class FakeBedrock:
    def __init__(
        self,
        *,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        clock: Callable[[], float] = time.time,
        api_keys: tuple[str, ...] = (),
        count_tokens: int = 42,
        chunks: int = 5,
        text: str = "bedrock ",
    ) -> None:
        self.secrets = {access_key: secret_key}
        #: Bedrock API keys (bearer tokens) accepted instead of a SigV4 signature
        self.api_keys = frozenset(api_keys)
        self.region = region
        self.clock = clock
        self.count_tokens = count_tokens
        self.chunks = chunks
        self.text = text
        self.checks: list[SignatureCheck] = []
        self._script: collections.deque[Reply] = collections.deque()
        self._ids = itertools.count(1)

    def install(self, fake: FakeUpstream) -> FakeBedrock:
        fake.routes["/model/"] = self.handle
        return self

    def script(self, *replies: Reply) -> None:
        self._script.extend(replies)

    @property
    def all_signatures_valid(self) -> bool:
        return bool(self.checks) and all(c.valid for c in self.checks)

    async def handle(self, fake: FakeUpstream, scope: MutableMapping[str, Any], body: bytes, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        raw_path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"").decode("latin-1")
        check = self.verify(scope["method"], raw_path.decode("latin-1"), query, headers, body)
        self.checks.append(check)
        if not check.valid:
            name = "UnrecognizedClientException" if "unknown access key" in check.reason else "InvalidSignatureException"
            text = "The security token included in the request is invalid." if name.startswith("Unrecognized") else SIGNATURE_MISMATCH
            reply = error_reply(403, name, text)
        elif self._script:
            reply = self._script.popleft()
        else:
            reply = self._synthesize(scope["path"], body)
        await fake._play(reply, send)

    # -- SigV4, recomputed with botocore ------------------------------------------------

    def verify(self, method: str, raw_path: str, query: str, headers: dict[str, str], body: bytes) -> SignatureCheck:
        path = unquote(raw_path)
        authorization = headers.get("authorization", "")
        if authorization.startswith("Bearer "):
            valid = authorization[len("Bearer "):] in self.api_keys
            return SignatureCheck(path=path, valid=valid, reason="Bedrock API key" if valid else "unknown access key (bearer)")
        match = _AUTH.match(authorization)
        if match is None:
            return SignatureCheck(path=path, valid=False, reason="missing or malformed SigV4 authorization header")
        secret = self.secrets.get(match["key"])
        if secret is None:
            return SignatureCheck(path=path, valid=False, reason=f"unknown access key {match['key']}")
        if (match["region"], match["service"]) != (self.region, "bedrock"):
            return SignatureCheck(path=path, valid=False,
                                  reason=f"credential scope {match['region']}/{match['service']}, want {self.region}/bedrock")
        amz_date = headers.get("x-amz-date", "")
        if not amz_date.startswith(match["date"]):
            return SignatureCheck(path=path, valid=False, reason="x-amz-date does not match the credential scope")
        try:
            signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            return SignatureCheck(path=path, valid=False, reason=f"bad x-amz-date {amz_date!r}")
        if abs(self.clock() - signed_at) > MAX_SKEW_SECONDS:
            return SignatureCheck(path=path, valid=False, reason="signature expired (clock skew)")
        signed = match["signed"].split(";")
        if "host" not in signed or any(name not in headers for name in signed):
            return SignatureCheck(path=path, valid=False, reason=f"signed headers {signed} not all present")
        url = f"http://{headers['host']}{raw_path}" + (f"?{query}" if query else "")
        request = AWSRequest(method=method, url=url, data=body, headers={n: headers[n] for n in signed})
        request.context["timestamp"] = amz_date
        auth = SigV4Auth(Credentials(match["key"], secret), "bedrock", self.region)
        expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        if not hmac.compare_digest(expected, match["signature"]):
            return SignatureCheck(path=path, valid=False, reason="signature mismatch")
        return SignatureCheck(path=path, valid=True)

    # -- synthetic replies ---------------------------------------------------------------

    def _synthesize(self, path: str, body: bytes) -> Reply:
        parts = path.split("/")
        if len(parts) != 4 or parts[1] != "model":
            return error_reply(404, "UnknownOperationException", f"no such operation: {path}")
        model, action = parts[2], parts[3]
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return error_reply(400, "ValidationException", "Malformed input request: body is not JSON")
        if action == "count-tokens":
            try:
                inner = orjson.loads(base64.b64decode(request["input"]["invokeModel"]["body"]))
            except (KeyError, TypeError, ValueError):
                return error_reply(400, "ValidationException", "input.invokeModel.body is required")
            problem = _body_problem(inner)
            if problem:
                return error_reply(400, "ValidationException", problem)
            return json_reply({"inputTokens": self.count_tokens})
        problem = _body_problem(request)
        if problem:
            return error_reply(400, "ValidationException", problem)
        n = next(self._ids)
        if action == "invoke-with-response-stream":
            frames = anthropic_stream(f"msg_bdrk_fake_{n}", model, self.chunks, self.text)
            return stream_reply(sse_events(frames))
        if action == "invoke":
            return json_reply(anthropic_message(f"msg_bdrk_fake_{n}", model, self.chunks, self.text))
        return error_reply(404, "UnknownOperationException", f"no such operation: {action}")


def _body_problem(body: Any) -> str:
    """Bedrock's complaint about a Claude request body, or ``""``."""
    if not isinstance(body, dict):
        return "Malformed input request: expected a JSON object"
    extra = sorted(set(body) - BODY_KEYS)
    if extra:
        return f"Malformed input request: #: extraneous key [{extra[0]}] is not permitted, please reformat your input and try again."
    if body.get("anthropic_version") != "bedrock-2023-05-31":
        return "Malformed input request: #: required key [anthropic_version] not found, please reformat your input and try again."
    return ""
