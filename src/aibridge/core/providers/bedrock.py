"""Amazon Bedrock: Anthropic Messages over ``InvokeModel``, as pure translations.

Request side (DESIGN §7): the client speaks the Anthropic Messages API; Bedrock
takes the same body at ``POST /model/{model}/invoke`` (blocking) or
``/model/{model}/invoke-with-response-stream`` with these differences
(https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages-request-response.html):
the model is in the path, not the body; there is no ``stream`` flag;
``anthropic_version`` must be ``bedrock-2023-05-31``; beta flags travel in the
body as ``anthropic_beta`` and Bedrock rejects flags it does not know (400
"invalid beta flag"); and the body schema is closed, so Anthropic-only fields
(``metadata``, ``service_tier``, ...) give 400 "Extra inputs are not permitted".
Every such rule is a row of a table below, so a new model, beta or field is a
one-line change.

Response side: a streaming reply is an AWS event stream
(:mod:`aibridge.core.eventstream`); each ``chunk`` event carries one
Anthropic stream event, base64-encoded in its JSON payload's ``bytes``.
:class:`StreamTranslator` turns the frames into the standard Anthropic SSE
the client expects, and exception frames into an Anthropic ``error`` event.
Blocking replies are Anthropic JSON already. Error replies (``{"message":..}``
plus an ``x-amzn-errortype`` header) become Anthropic error bodies.

Nothing here signs, sends or reads anything: the shell does (``shell/bedrock.py``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import attrs

from aibridge.core import jsonutil
from aibridge.core.errors import error_body
from aibridge.core.eventstream import EventStreamDecoder, EventStreamError, Message
from aibridge.core.prompts import anthropic_prompt
from aibridge.core.providers.base import Translation, as_dict, as_str, require_fields
from aibridge.core.sse import encode_event

ANTHROPIC_VERSION = "bedrock-2023-05-31"
EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"

#: Model mapping, first match wins: (substring of the client's model, which
#: configured Bedrock model serves it). Anything else gets the main model.
MODEL_RULES: tuple[tuple[str, str], ...] = (("haiku", "small_fast"),)

#: Body fields Bedrock's schema does not have; always dropped.
UNSUPPORTED_FIELDS: tuple[str, ...] = (
    "model",  # in the path instead
    "stream",  # the path says whether to stream
    "metadata",
    "service_tier",  # Bedrock's tier is the X-Amzn-Bedrock-Service-Tier header
    "container",
    "inference_geo",  # Bedrock's geography is the inference profile (global./us./eu. ids)
    "mcp_servers",  # the MCP connector beta exists on the Claude API only
)

#: Body fields Bedrock accepts only together with a beta flag: dropped unless
#: the flag survived :func:`filter_betas` for this model.
BETA_GATED_FIELDS: tuple[tuple[str, str], ...] = (
    ("output_config", "effort-2025-11-24"),
    ("context_management", "context-management-2025-06-27"),
)


@attrs.frozen
class BetaRule:
    """A beta flag Bedrock accepts; ``models`` (substrings of the Bedrock id) limits where."""

    flag: str
    models: tuple[str, ...] = ()

    def allows(self, bedrock_model: str) -> bool:
        return not self.models or any(m in bedrock_model for m in self.models)


#: The beta flags Bedrock documents for Claude; any other flag is filtered out.
SUPPORTED_BETAS: tuple[BetaRule, ...] = (
    BetaRule("computer-use-2025-01-24"),
    BetaRule("computer-use-2024-10-22"),
    BetaRule("token-efficient-tools-2025-02-19"),
    BetaRule("interleaved-thinking-2025-05-14"),
    BetaRule("output-128k-2025-02-19"),
    BetaRule("dev-full-thinking-2025-05-14"),
    BetaRule("context-1m-2025-08-07", ("claude-sonnet-4",)),
    BetaRule("context-management-2025-06-27", ("claude-sonnet-4-5", "claude-haiku-4-5")),
    BetaRule("effort-2025-11-24", ("claude-opus-4-5",)),
    BetaRule("tool-search-tool-2025-10-19", ("claude-opus-4-5",)),
    BetaRule("tool-examples-2025-10-29", ("claude-opus-4-5",)),
)
_BETAS = {rule.flag: rule for rule in SUPPORTED_BETAS}

#: Bedrock models that take ``thinking: {"type": "adaptive"}`` natively
#: (https://docs.aws.amazon.com/bedrock/latest/userguide/claude-messages-adaptive-thinking.html).
#: Older models get ``enabled`` with a budget derived from the effort level.
ADAPTIVE_THINKING_MODELS: tuple[str, ...] = ("claude-opus-4-6", "claude-sonnet-4-6")
#: share of max_tokens given to thinking, per ``output_config.effort`` (default high)
EFFORT_BUDGET_RATIO: dict[str, float] = {"low": 0.2, "medium": 0.5, "high": 0.8, "max": 0.95}
MIN_THINKING_BUDGET = 1024  # Anthropic's documented minimum for budget_tokens

#: Bedrock exception names (stream frames use lowerCamelCase, HTTP errors
#: UpperCamelCase; keys here are lower-cased) -> Anthropic ``error.type``.
EXCEPTION_ERROR_TYPES: dict[str, str] = {
    "throttlingexception": "rate_limit_error",
    "servicequotaexceededexception": "rate_limit_error",
    "modelnotreadyexception": "overloaded_error",
    "serviceunavailableexception": "overloaded_error",
    "internalserverexception": "api_error",
    "modelstreamerrorexception": "api_error",
    "modelerrorexception": "api_error",
    "validationexception": "invalid_request_error",
    "modeltimeoutexception": "timeout_error",
    "accessdeniedexception": "permission_error",
    "resourcenotfoundexception": "not_found_error",
    "unrecognizedclientexception": "authentication_error",
    "invalidsignatureexception": "authentication_error",
    "expiredtokenexception": "authentication_error",
}
#: fallback by HTTP status when the exception name is unknown
STATUS_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


# -- request -----------------------------------------------------------------------


def select_model(client_model: str, *, model: str, small_fast_model: str) -> str:
    """The Bedrock model for a client's model name (see :data:`MODEL_RULES`)."""
    choices = {"main": model, "small_fast": small_fast_model}
    lowered = client_model.lower()
    for needle, which in MODEL_RULES:
        if needle in lowered:
            return choices[which]
    return model


def split_betas(values: Iterable[str]) -> list[str]:
    """Beta flags from ``anthropic-beta`` header values (comma-separated, possibly repeated)."""
    flags: list[str] = []
    for value in values:
        for part in value.split(","):
            flag = part.strip()
            if flag and flag not in flags:
                flags.append(flag)
    return flags


def filter_betas(flags: Iterable[str], bedrock_model: str) -> tuple[list[str], list[str]]:
    """``(kept, dropped)``: flags Bedrock accepts for this model, and the rest."""
    kept: list[str] = []
    dropped: list[str] = []
    for flag in flags:
        rule = _BETAS.get(flag)
        (kept if rule is not None and rule.allows(bedrock_model) else dropped).append(flag)
    return kept, dropped


def _supports_adaptive(bedrock_model: str) -> bool:
    return any(m in bedrock_model for m in ADAPTIVE_THINKING_MODELS)


def bedrock_thinking(body: dict[str, Any], bedrock_model: str) -> dict[str, Any] | None:
    """The ``thinking`` value to send, or ``None`` to keep the client's.

    ``adaptive`` is rewritten for models without it: ``enabled`` with
    ``budget_tokens = max_tokens * ratio(effort)``, or ``disabled`` when that
    is below the 1024-token minimum (a forced larger budget would starve the
    answer).
    """
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "adaptive":
        return None
    if _supports_adaptive(bedrock_model):
        return None
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens <= 0:
        return {"type": "disabled"}
    effort = as_str(as_dict(body.get("output_config")).get("effort")) or "high"
    budget = int(max_tokens * EFFORT_BUDGET_RATIO.get(effort, EFFORT_BUDGET_RATIO["high"]))
    if budget < MIN_THINKING_BUDGET:
        return {"type": "disabled"}
    return {"type": "enabled", "budget_tokens": budget}


@attrs.frozen(kw_only=True)
class BedrockBody:
    """A request body rewritten for Bedrock, and what the rewrite did."""

    body: dict[str, Any]
    betas: tuple[str, ...]
    dropped_betas: tuple[str, ...]
    dropped_fields: tuple[str, ...]
    rewritten: tuple[str, ...]


def rewrite_body(
    body: dict[str, Any], *, beta_headers: Iterable[str], bedrock_model: str
) -> BedrockBody:
    """Apply the Bedrock rules to a parsed Anthropic body; key order is kept.

    ``anthropic_version`` (and ``anthropic_beta`` when a flag survives) come
    first; every other key stays where the client put it.
    """
    requested = split_betas(beta_headers)
    in_body = body.get("anthropic_beta")
    if isinstance(in_body, list):
        requested += [f for f in split_betas(x for x in in_body if isinstance(x, str)) if f not in requested]
    kept, dropped_betas = filter_betas(requested, bedrock_model)
    drop = set(UNSUPPORTED_FIELDS) | {"anthropic_version", "anthropic_beta"}
    drop |= {field for field, flag in BETA_GATED_FIELDS if flag not in kept}
    thinking = bedrock_thinking(body, bedrock_model)
    out: dict[str, Any] = {"anthropic_version": ANTHROPIC_VERSION}
    if kept:
        out["anthropic_beta"] = kept
    dropped_fields: list[str] = []
    for key, value in body.items():
        if key in drop:
            if key not in ("anthropic_version", "anthropic_beta"):
                dropped_fields.append(key)
            continue
        out[key] = thinking if key == "thinking" and thinking is not None else value
    rewritten = ["anthropic_version", *dropped_fields]
    if kept or "anthropic_beta" in body:
        rewritten.append("anthropic_beta")
    if thinking is not None:
        rewritten.append("thinking")
    return BedrockBody(
        body=out,
        betas=tuple(kept),
        dropped_betas=tuple(dropped_betas),
        dropped_fields=tuple(dropped_fields),
        rewritten=tuple(rewritten),
    )


def model_path(bedrock_model: str, action: str) -> str:
    """``/model/{id}/{action}`` with the id percent-encoded (ids carry ``:`` and ARNs ``/``)."""
    return f"/model/{quote(bedrock_model, safe='')}/{action}"


def translate_request(
    raw: bytes,
    body: dict[str, Any],
    *,
    beta_headers: Iterable[str],
    model: str,
    small_fast_model: str,
) -> Translation:
    """The Bedrock ``InvokeModel`` request for an Anthropic Messages request."""
    client_model, stream = require_fields(body, list_field="messages")
    bedrock_model = select_model(client_model, model=model, small_fast_model=small_fast_model)
    rewrite = rewrite_body(body, beta_headers=beta_headers, bedrock_model=bedrock_model)
    action = "invoke-with-response-stream" if stream else "invoke"
    return Translation(
        body=jsonutil.dumps(rewrite.body),
        model=bedrock_model,
        streaming=stream,
        prompt=anthropic_prompt(body),
        rewritten=rewrite.rewritten,
        path=model_path(bedrock_model, action),
        headers=(
            ("content-type", "application/json"),
            ("accept", EVENTSTREAM_CONTENT_TYPE if stream else "application/json"),
        ),
    )


#: count_tokens bodies carry no max_tokens, which InvokeModel bodies require;
#: the value does not change the count.
COUNT_TOKENS_MAX_TOKENS = 1


def translate_count_tokens(
    body: dict[str, Any], *, beta_headers: Iterable[str], model: str, small_fast_model: str
) -> Translation:
    """Bedrock ``CountTokens`` for an Anthropic ``/v1/messages/count_tokens`` body.

    Bedrock wraps an ``InvokeModel`` body: ``{"input": {"invokeModel": {"body": <base64>}}}``
    (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_CountTokens.html).
    """
    client_model, _ = require_fields(body, list_field="messages")
    bedrock_model = select_model(client_model, model=model, small_fast_model=small_fast_model)
    rewrite = rewrite_body(body, beta_headers=beta_headers, bedrock_model=bedrock_model)
    inner = dict(rewrite.body)
    inner.setdefault("max_tokens", COUNT_TOKENS_MAX_TOKENS)
    wrapped = {"input": {"invokeModel": {"body": base64.b64encode(jsonutil.dumps(inner)).decode()}}}
    return Translation(
        body=jsonutil.dumps(wrapped),
        model=bedrock_model,
        streaming=False,
        prompt=None,
        rewritten=rewrite.rewritten,
        path=model_path(bedrock_model, "count-tokens"),
        headers=(("content-type", "application/json"), ("accept", "application/json")),
    )


def count_tokens_reply(payload: Any) -> bytes:
    """Anthropic's ``{"input_tokens": N}`` from Bedrock's ``{"inputTokens": N}``."""
    tokens = as_dict(payload).get("inputTokens")
    if not isinstance(tokens, int) or isinstance(tokens, bool):
        raise ValueError("Bedrock CountTokens reply has no integer inputTokens")
    return jsonutil.dumps({"input_tokens": tokens})


# -- models --------------------------------------------------------------------------

#: ``created_at`` of the synthetic model objects: Bedrock has no such date to give.
MODEL_CREATED_AT = "1970-01-01T00:00:00Z"


def model_object(model_id: str) -> dict[str, Any]:
    return {"type": "model", "id": model_id, "display_name": f"{model_id} (Amazon Bedrock)",
            "created_at": MODEL_CREATED_AT}


def models_list(model_ids: Iterable[str]) -> bytes:
    """``GET /v1/models`` in Anthropic's shape, listing the configured Bedrock models."""
    unique = list(dict.fromkeys(model_ids))
    return jsonutil.dumps({
        "data": [model_object(m) for m in unique],
        "has_more": False,
        "first_id": unique[0] if unique else None,
        "last_id": unique[-1] if unique else None,
    })


# -- errors ---------------------------------------------------------------------------


def error_type_for(exception: str, status: int | None = None) -> str:
    """The Anthropic ``error.type`` for a Bedrock exception name (or, failing that, a status)."""
    name = exception.split(":", 1)[0].strip().lower()
    if name in EXCEPTION_ERROR_TYPES:
        return EXCEPTION_ERROR_TYPES[name]
    if status is not None:
        if status in STATUS_ERROR_TYPES:
            return STATUS_ERROR_TYPES[status]
        if 400 <= status < 500:
            return "invalid_request_error"
    return "api_error"


def _bedrock_message(payload: Any, fallback: str) -> str:
    data = as_dict(payload)
    for key in ("message", "Message"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return fallback


def translate_error(status: int, exception: str, body: bytes) -> bytes:
    """An Anthropic error body for a Bedrock HTTP error reply.

    ``exception`` is the ``x-amzn-errortype`` header (``Name:namespace-url``),
    or ``""``; the JSON body's ``__type`` serves when the header is missing.
    """
    try:
        payload = jsonutil.loads(body) if body else None
    except (ValueError, RecursionError):
        payload = None
    if not exception:
        exception = as_str(as_dict(payload).get("__type")).rsplit("#", 1)[-1]
    fallback = body[:500].decode("utf-8", "replace") if payload is None and body else f"Bedrock returned HTTP {status}"
    message = _bedrock_message(payload, fallback)
    name = exception.split(":", 1)[0].strip()
    if name:
        message = f"{name}: {message}"
    return error_body("anthropic", message, anthropic_type=error_type_for(exception, status))


# -- streaming ------------------------------------------------------------------------


def _error_event(error_type: str, message: str) -> bytes:
    data = jsonutil.dumps({"type": "error", "error": {"type": error_type, "message": message}}).decode()
    return encode_event(data, event="error")


def frame_to_sse(message: Message) -> bytes:
    """The Anthropic SSE bytes for one Bedrock event stream message (``b""`` to skip it).

    * ``event`` / ``chunk``: the base64 ``bytes`` of the JSON payload is an
      Anthropic stream event; it goes out as ``event: <type>`` + ``data:``.
    * ``exception``: ``:exception-type`` names it; ``{"message": ...}``
      becomes an Anthropic ``error`` event of the fitting type.
    * ``error`` (framing-level errors): ``:error-code`` / ``:error-message``.
    """
    kind = message.header_str(":message-type")
    if kind == "exception":
        name = message.header_str(":exception-type")
        try:
            payload = jsonutil.loads(message.payload) if message.payload else None
        except (ValueError, RecursionError):
            payload = None
        text = _bedrock_message(payload, message.payload[:500].decode("utf-8", "replace") or name)
        return _error_event(error_type_for(name), f"{name}: {text}" if name else text)
    if kind == "error":
        code = message.header_str(":error-code")
        text = message.header_str(":error-message") or code or "Bedrock stream error"
        return _error_event(error_type_for(code), f"{code}: {text}" if code else text)
    if kind != "event" or message.header_str(":event-type") != "chunk":
        return b""
    try:
        payload = jsonutil.loads(message.payload)
        encoded = as_dict(payload).get("bytes")
        if not isinstance(encoded, str):
            raise ValueError("chunk payload has no 'bytes' string")
        event_bytes = base64.b64decode(encoded, validate=True)
        event = jsonutil.loads(event_bytes)
    except (ValueError, RecursionError, binascii.Error) as exc:
        return _error_event("api_error", f"malformed Bedrock chunk: {exc}")
    event_type = as_str(as_dict(event).get("type")) or None
    return encode_event(event_bytes.decode("utf-8"), event=event_type)


class StreamTranslator:
    """Bedrock event stream bytes in, Anthropic SSE bytes out (sans-IO).

    A corrupt or truncated stream ends with one Anthropic ``error`` event;
    whatever follows the corruption is ignored.
    """

    def __init__(self) -> None:
        self._decoder = EventStreamDecoder()
        self._broken = False

    def receive_data(self, data: bytes) -> bytes:
        if self._broken:
            return b""
        try:
            messages = self._decoder.receive_data(data)
        except EventStreamError as exc:
            self._broken = True
            good = b"".join(frame_to_sse(m) for m in exc.messages)
            return good + _error_event("api_error", f"corrupt Bedrock event stream: {exc}")
        return b"".join(frame_to_sse(m) for m in messages)

    def close(self) -> bytes:
        if self._broken:
            return b""
        try:
            self._decoder.close()
        except EventStreamError as exc:
            self._broken = True
            return _error_event("api_error", f"truncated Bedrock event stream: {exc}")
        return b""
