"""Which headers cross the bridge, in each direction.

Request: everything the client sent, except hop-by-hop headers, ``Host``,
``Content-Length``, ``Accept-Encoding`` (upstream is asked for ``identity``)
and the client's credentials; then the upstream credential. ``anthropic-*``,
``openai-*``, ``User-Agent`` and vendor headers pass through.

Response: everything upstream sent except hop-by-hop headers and the framing
headers the server recomputes (``Content-Length``; ``Content-Encoding`` when
the bridge had to decode a body upstream compressed anyway). That keeps
``retry-after``, ``x-should-retry``, ``*-ratelimit-*`` and request ids.
"""

from __future__ import annotations

from collections.abc import Iterable

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_REQUEST_DROP = HOP_BY_HOP | {"host", "content-length", "accept-encoding"}
_CREDENTIALS = frozenset({"authorization", "x-api-key", "x-aibridge-token"})
_RESPONSE_DROP = HOP_BY_HOP | {"content-length"}


def upstream_request_headers(
    client_headers: Iterable[tuple[str, str]],
    *,
    provider: str,
    credential: str | None,
    byok: bool,
) -> list[tuple[str, str]]:
    """Headers for the upstream request. ``client_headers`` names are lower case.

    Centralised mode drops every client credential and sends ``credential``
    (``x-api-key`` for Anthropic, ``Authorization: Bearer`` for OpenAI).
    BYOK mode drops only ``X-AIBridge-Token``; the user's own key goes upstream.
    """
    connection_tokens: set[str] = set()
    for name, value in client_headers:
        if name == "connection":
            connection_tokens.update(t.strip().lower() for t in value.split(","))
    drop = _REQUEST_DROP | connection_tokens | ({"x-aibridge-token"} if byok else _CREDENTIALS)
    out = [(name, value) for name, value in client_headers if name not in drop]
    out.append(("accept-encoding", "identity"))
    if not byok and credential:
        if provider == "anthropic":
            out.append(("x-api-key", credential))
        else:
            out.append(("authorization", f"Bearer {credential}"))
    return out


def client_response_headers(
    upstream_headers: Iterable[tuple[str, str]], *, decoded: bool
) -> list[tuple[str, str]]:
    """Headers for the client from the upstream response (names lower case)."""
    drop = _RESPONSE_DROP | {"content-encoding"} if decoded else _RESPONSE_DROP
    return [(name, value) for name, value in upstream_headers if name not in drop]
