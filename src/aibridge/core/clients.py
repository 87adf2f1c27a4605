"""Which client sent a request, and its session id. Detection never alters a request.

A small ordered table of (client name, predicate on lower-cased headers);
the first match wins. Session ids come from headers or the body's metadata.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

Headers = Mapping[str, str]


def _ua_has(*needles: str) -> Callable[[Headers], bool]:
    return lambda h: any(n in h.get("user-agent", "").lower() for n in needles)


def _header(name: str) -> Callable[[Headers], bool]:
    return lambda h: name in h


#: Order matters: specific agents before the SDKs they are built on.
CLIENT_RULES: tuple[tuple[str, Callable[[Headers], bool]], ...] = (
    ("Claude Code", lambda h: _ua_has("claude-cli", "claude-code")(h) or "x-claude-code-session-id" in h),
    ("Codex", lambda h: _ua_has("codex")(h) or h.get("originator", "").lower().startswith("codex")),
    ("Zed", _ua_has("zed/", "zed ")),
    ("Cursor", lambda h: _ua_has("cursor")(h) or any(k.startswith("x-cursor-") for k in h)),
    ("GitHub Copilot", lambda h: _ua_has("copilot")(h) or "copilot-integration-id" in h),
    ("Roo Code", _ua_has("roo-code", "roocode", "roo code")),
    ("Kilo Code", _ua_has("kilo-code", "kilocode", "kilo code")),
    ("opencode", _ua_has("opencode")),
    ("Goose", _ua_has("goose")),
    ("Anthropic SDK", lambda h: _ua_has("anthropic/")(h) or "x-stainless-lang" in h and "anthropic-version" in h),
    ("OpenAI SDK", lambda h: _ua_has("openai/")(h) or "x-stainless-lang" in h),
)


def detect_client(headers: Headers) -> str:
    for name, rule in CLIENT_RULES:
        try:
            if rule(headers):
                return name
        except Exception:  # noqa: BLE001 - detection must never fail a request
            continue
    return "Unknown"


_LEGACY_SESSION = re.compile(r"_session_([0-9a-fA-F-]{36})")


def _metadata_session(body: Mapping[str, Any] | None) -> str | None:
    if not isinstance(body, Mapping):
        return None
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    user_id = metadata.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        return None
    if user_id.lstrip().startswith("{"):
        try:
            parsed = orjson.loads(user_id)
        except orjson.JSONDecodeError:
            return None
        value = parsed.get("session_id") if isinstance(parsed, dict) else None
        return value if isinstance(value, str) and value else None
    match = _LEGACY_SESSION.search(user_id)
    return match.group(1) if match else None


def detect_session_id(headers: Headers, body: Mapping[str, Any] | None) -> str | None:
    """The client's own session id, where its client sends one."""
    for name in ("x-claude-code-session-id", "session_id", "session-id", "x-session-id"):
        value = headers.get(name)
        if value:
            return value
    return _metadata_session(body)
