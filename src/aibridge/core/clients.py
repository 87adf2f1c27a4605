"""Which client sent a request, and its own session id. Detection never alters a request.

Both answers come from small ordered tables; the first match wins. Headers
are given lower-cased (as the shell collects them). Nothing here raises on a
strange header or body, and nothing is written back: detection only reads.

Where the strings come from (each client's own source):

* Claude Code: ``User-Agent: claude-cli/2.0.14 (external, cli)`` and
  ``X-Claude-Code-Session-Id``; older versions only put the session into the
  Messages body as ``metadata.user_id`` (``user_<hash>_account_<uuid>_session_<uuid>``,
  newer ones a JSON string ``{"device_id":...,"session_id":...}``).
* Codex: ``User-Agent: codex_cli_rs/0.58.0 (...)`` (or ``codex_vscode/``,
  ``codex_exec/``), ``originator: codex_cli_rs`` and a ``session_id`` header.
* Zed: ``User-Agent: Zed/0.210.4 (macos; aarch64)``.
* GitHub Copilot Chat: ``User-Agent: GitHubCopilotChat/0.33.0``,
  ``Copilot-Integration-Id: vscode-chat``, ``VScode-SessionId``.
* Roo Code: ``User-Agent: RooCode/3.30.0``, ``X-Title: Roo Code``.
* Kilo Code: ``User-Agent: Kilo-Code/4.100.0``, ``X-Title: Kilo Code``,
  ``X-KiloCode-Version``, ``X-KiloCode-TaskId``.
* opencode: ``User-Agent: opencode/1.0.0``, ``x-opencode-session``.
* Goose: ``User-Agent: goose/1.13.0`` (or ``Goose``).
* Cursor: requests come from Cursor's servers; ``x-cursor-*`` headers or a
  ``Cursor`` user agent.
* The SDKs: ``User-Agent: OpenAI/Python 1.109.1`` / ``Anthropic/Python 0.69.0``
  (``/JS`` for TypeScript) and ``x-stainless-*`` headers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

Headers = Mapping[str, str]
UNKNOWN = "Unknown"


@attrs.frozen(kw_only=True)
class ClientRule:
    """One client's fingerprint; any one of the listed signs is enough.

    ``products`` are User-Agent product names (the text before the first
    ``/`` or space, compared case-insensitively); ``ua_contains`` are
    substrings of the lower-cased User-Agent; ``headers`` are header names
    whose presence suffices; ``header_values`` are (header, lower-cased
    value prefix) pairs.
    """

    name: str
    products: tuple[str, ...] = ()
    ua_contains: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    header_prefixes: tuple[str, ...] = ()
    header_values: tuple[tuple[str, str], ...] = ()

    def matches(self, product: str, ua: str, headers: Headers) -> bool:
        if product in self.products:
            return True
        if any(needle in ua for needle in self.ua_contains):
            return True
        if any(name in headers for name in self.headers):
            return True
        if self.header_prefixes and any(k.startswith(self.header_prefixes) for k in headers):
            return True
        return any(headers.get(name, "").lower().startswith(value) for name, value in self.header_values)


#: Order matters: agents before the SDKs they are built on, forks before the
#: project they forked (Kilo Code before Roo Code and opencode).
CLIENT_RULES: tuple[ClientRule, ...] = (
    ClientRule(
        name="Claude Code",
        products=("claude-cli", "claude-code"),
        headers=("x-claude-code-session-id",),
    ),
    ClientRule(
        name="Codex",
        products=("codex_cli_rs", "codex_vscode", "codex_exec", "codex_sdk_ts", "codex-cli", "codex"),
        header_values=(("originator", "codex"),),
    ),
    ClientRule(name="Zed", products=("zed",)),
    ClientRule(name="Cursor", products=("cursor",), ua_contains=("cursor/",), header_prefixes=("x-cursor-",)),
    ClientRule(
        name="GitHub Copilot",
        products=("githubcopilotchat", "githubcopilot", "copilot"),
        ua_contains=("copilot",),
        headers=("copilot-integration-id",),
    ),
    ClientRule(
        name="Kilo Code",
        products=("kilo-code", "kilocode"),
        headers=("x-kilocode-version", "x-kilocode-taskid"),
        header_values=(("x-title", "kilo code"),),
    ),
    ClientRule(
        name="Roo Code",
        products=("roocode", "roo-code"),
        header_values=(("x-title", "roo code"),),
    ),
    ClientRule(name="opencode", products=("opencode",), headers=("x-opencode-session", "x-opencode-client")),
    ClientRule(name="Goose", products=("goose",)),
    ClientRule(name="Anthropic SDK", products=("anthropic",)),
    ClientRule(name="OpenAI SDK", products=("openai",)),
)

_PRODUCT = re.compile(r"[^/\s;(]+")


def _product(ua: str) -> str:
    match = _PRODUCT.match(ua.strip())
    return match.group(0).lower() if match else ""


def detect_client(headers: Headers) -> str:
    """The client's name from its User-Agent and headers, or ``"Unknown"``."""
    try:
        ua = headers.get("user-agent", "") or ""
        product = _product(ua)
        lowered = ua.lower()
        for rule in CLIENT_RULES:
            if rule.matches(product, lowered, headers):
                return rule.name
        # A Stainless-generated SDK with a custom User-Agent: anthropic-version tells which.
        if "x-stainless-lang" in headers:
            return "Anthropic SDK" if "anthropic-version" in headers else "OpenAI SDK"
    except Exception:  # noqa: BLE001 - detection must never fail a request
        pass
    return UNKNOWN


#: Session headers, most specific first (the client that sends each one):
#: Claude Code, Codex, opencode, Kilo Code, then common conventions, and
#: last VS Code's editor session (sent by Copilot Chat).
SESSION_HEADERS: tuple[str, ...] = (
    "x-claude-code-session-id",
    "session_id",
    "x-opencode-session",
    "x-kilocode-taskid",
    "x-session-id",
    "session-id",
    "vscode-sessionid",
)
#: A session id longer than this is not recorded (a header is not a blob store).
MAX_SESSION_ID = 256

_LEGACY_SESSION = re.compile(r"_session_([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")


def _clean(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > MAX_SESSION_ID or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return None
    return text


def claude_code_metadata_session(body: Any) -> str | None:
    """Claude Code's session from the body's ``metadata.user_id``, either form."""
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
            parsed = json.loads(user_id)
        except (ValueError, RecursionError):
            return None
        return _clean(parsed.get("session_id")) if isinstance(parsed, dict) else None
    match = _LEGACY_SESSION.search(user_id.strip())
    return str(match.group(1)) if match else None


def detect_session_id(headers: Headers, body: Any) -> str | None:
    """The client's own session id, where its client sends one; ``None`` otherwise."""
    try:
        for name in SESSION_HEADERS:
            value = _clean(headers.get(name))
            if value is not None:
                return value
        return claude_code_metadata_session(body)
    except Exception:  # noqa: BLE001 - detection must never fail a request
        return None
