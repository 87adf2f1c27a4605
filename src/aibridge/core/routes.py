"""The route table: which client paths are intercepted, passed through, or refused.

Routing looks at the path alone; the query string is kept and forwarded on
every route (Claude Code sends ``POST /v1/messages?beta=true``). Every route is
also served under ``/api/v2/aibridge`` so configurations written for Coder's
AI Bridge work unchanged.

Path joining (DESIGN §2): the OpenAI base URL includes ``/v1``, so
``/openai/v1/X`` goes to ``{openai_base_url}/X``; the Anthropic base URL does
not, so ``/anthropic/v1/X`` goes to ``{anthropic_base_url}/v1/X``.
"""

from __future__ import annotations

import re
from typing import Literal

import attrs

from aibridge.core.errors import RouteNotSupported

CODER_PREFIX = "/api/v2/aibridge"
Kind = Literal["intercept", "passthrough"]


@attrs.frozen(kw_only=True)
class Route:
    kind: Kind
    provider: str  # "anthropic" | "openai": the client-facing provider (error shape)
    api: str | None  # "messages" | "chat" | "responses" for intercepted routes
    upstream_path: str  # relative to the provider base URL, without query
    name: str  # low-cardinality label for metrics


# (provider, methods, path regex relative to the provider prefix, kind, api, name)
_TABLE: tuple[tuple[str, frozenset[str], re.Pattern[str], Kind, str | None, str], ...] = (
    ("anthropic", frozenset({"POST"}), re.compile(r"/v1/messages"), "intercept", "messages", "messages"),
    ("anthropic", frozenset({"POST"}), re.compile(r"/v1/messages/count_tokens"), "passthrough", None, "count_tokens"),
    ("anthropic", frozenset({"GET"}), re.compile(r"/v1/models(/[^/]+)?"), "passthrough", None, "models"),
    ("openai", frozenset({"POST"}), re.compile(r"/v1/chat/completions"), "intercept", "chat", "chat"),
    ("openai", frozenset({"POST"}), re.compile(r"/v1/responses"), "intercept", "responses", "responses"),
    ("openai", frozenset({"GET"}), re.compile(r"/v1/models(/[^/]+)?"), "passthrough", None, "models"),
    ("openai", frozenset({"GET", "DELETE"}), re.compile(r"/v1/responses/[^/]+"), "passthrough", None, "responses_item"),
    ("openai", frozenset({"POST"}), re.compile(r"/v1/responses/[^/]+/cancel"), "passthrough", None, "responses_cancel"),
    ("openai", frozenset({"GET"}), re.compile(r"/v1/responses/[^/]+/input_items"), "passthrough", None, "responses_input_items"),
    ("openai", frozenset({"GET", "POST", "DELETE"}), re.compile(r"/v1/conversations(/.*)?"), "passthrough", None, "conversations"),
)


def split_provider(path: str) -> tuple[str | None, str]:
    """``(provider, rest)`` for a client path, after dropping the Coder prefix."""
    if path.startswith(CODER_PREFIX + "/"):
        path = path[len(CODER_PREFIX) :]
    for provider in ("anthropic", "openai"):
        prefix = f"/{provider}"
        if path.startswith(prefix + "/"):
            return provider, path[len(prefix) :]
    return None, path


def match_route(method: str, path: str) -> Route:
    """The route for a provider path, or :class:`RouteNotSupported` (404, provider-shaped)."""
    provider, rest = split_provider(path)
    if provider is None:
        raise RouteNotSupported(f"route not supported: {method} {path}")
    for prov, methods, pattern, kind, api, name in _TABLE:
        if prov == provider and method in methods and pattern.fullmatch(rest):
            upstream = rest[len("/v1") :] if provider == "openai" else rest
            return Route(kind=kind, provider=provider, api=api, upstream_path=upstream, name=name)
    error = RouteNotSupported(f"route not supported: {method} {path}")
    error.provider = provider  # type: ignore[attr-defined]
    raise error


def is_provider_path(path: str) -> bool:
    return split_provider(path)[0] is not None


def join_url(base_url: str, upstream_path: str, query: str = "") -> str:
    """Join a provider base URL (which may carry a path) and a route's upstream path."""
    url = base_url.rstrip("/") + "/" + upstream_path.lstrip("/")
    return f"{url}?{query}" if query else url
