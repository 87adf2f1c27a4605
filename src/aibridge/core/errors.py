"""The error tree of the bridge, and the provider-shaped bodies they map to.

Modelled on h11's errors: "the peer sent something wrong" (:class:`ClientError`)
is a different class from "the upstream misbehaved" (:class:`UpstreamError`),
and every error carries the HTTP status it maps to. The shell turns any of them
into a response with :func:`error_response_body` in one place.
"""

from __future__ import annotations

from typing import Literal

import orjson

ProviderShape = Literal["anthropic", "openai"]


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""

    status: int = 500
    #: Anthropic ``error.type``
    anthropic_type: str = "api_error"
    #: OpenAI ``error.type`` and ``error.code``
    openai_type: str = "server_error"
    openai_code: str | None = None

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})


class ClientError(BridgeError):
    """The client sent something we refuse (bad JSON, wrong types, ...)."""

    status = 400
    anthropic_type = "invalid_request_error"
    openai_type = "invalid_request_error"


class PayloadTooLarge(ClientError):
    status = 413
    anthropic_type = "request_too_large"
    openai_code = "request_too_large"


class AuthenticationFailed(ClientError):
    status = 401
    anthropic_type = "authentication_error"
    openai_type = "invalid_request_error"
    openai_code = "invalid_api_key"


class PermissionDenied(ClientError):
    status = 403
    anthropic_type = "permission_error"
    openai_type = "invalid_request_error"
    openai_code = "permission_denied"


class RouteNotSupported(ClientError):
    status = 404
    anthropic_type = "not_found_error"
    openai_type = "invalid_request_error"
    openai_code = "not_found"


class MethodNotAllowed(ClientError):
    status = 405
    anthropic_type = "invalid_request_error"
    openai_code = "method_not_allowed"


class RateLimited(ClientError):
    status = 429
    anthropic_type = "rate_limit_error"
    openai_type = "rate_limit_error"
    openai_code = "rate_limit_exceeded"


class ServiceUnavailable(BridgeError):
    """The bridge will not serve this request now (disabled, audit store down, breaker open)."""

    status = 503
    anthropic_type = "overloaded_error"
    openai_type = "server_error"
    openai_code = "service_unavailable"


class UpstreamError(BridgeError):
    """The upstream misbehaved or could not be reached."""

    status = 502
    anthropic_type = "api_error"
    openai_type = "server_error"
    openai_code = "bad_gateway"


class UpstreamUnreachable(UpstreamError):
    status = 502


class UpstreamTimeout(UpstreamError):
    status = 504
    anthropic_type = "timeout_error"
    openai_code = "gateway_timeout"


class ProtocolError(Exception):
    """Malformed input to one of the core's sans-IO parsers (SSE, event stream)."""


def error_response_body(shape: ProviderShape, error: BridgeError) -> bytes:
    """The body a client of ``shape`` expects for ``error``.

    Anthropic: ``{"type":"error","error":{"type":...,"message":...}}``.
    OpenAI: ``{"error":{"message":...,"type":...,"param":null,"code":...}}``.
    """
    return error_body(
        shape,
        error.message,
        anthropic_type=error.anthropic_type,
        openai_type=error.openai_type,
        openai_code=error.openai_code,
    )


def error_body(
    shape: ProviderShape,
    message: str,
    *,
    anthropic_type: str = "api_error",
    openai_type: str = "server_error",
    openai_code: str | None = None,
) -> bytes:
    if shape == "anthropic":
        return orjson.dumps(
            {"type": "error", "error": {"type": anthropic_type, "message": message}}
        )
    return orjson.dumps(
        {"error": {"message": message, "type": openai_type, "param": None, "code": openai_code}}
    )
