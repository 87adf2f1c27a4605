"""Client and client-session detection: table tests with the strings real clients send."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aibridge.core.clients import detect_client, detect_session_id
from tests import strategies as S

SESSION = "5f0c9b1e-2d4a-4c8e-9a7b-3e6f1d2c0b9a"

CLIENTS: list[tuple[str, dict[str, str]]] = [
    ("Claude Code", {"user-agent": "claude-cli/2.0.14 (external, cli)", "x-stainless-lang": "js",
                     "anthropic-version": "2023-06-01"}),
    ("Claude Code", {"user-agent": "claude-cli/1.0.98 (external, sdk-ts)"}),
    ("Claude Code", {"user-agent": "node", "x-claude-code-session-id": SESSION}),
    ("Codex", {"user-agent": "codex_cli_rs/0.58.0 (Ubuntu 24.4.0; x86_64) xterm-256color",
               "originator": "codex_cli_rs", "session_id": SESSION}),
    ("Codex", {"user-agent": "codex_vscode/0.46.0 (Mac OS 15.6.1; arm64) vscode/1.104.2"}),
    ("Codex", {"user-agent": "reqwest", "originator": "codex_exec"}),
    ("Zed", {"user-agent": "Zed/0.210.4 (macos; aarch64)"}),
    ("Zed", {"user-agent": "Zed/0.205.1 (linux; x86_64)"}),
    ("Cursor", {"user-agent": "Cursor/1.7.0", "x-stainless-lang": "js"}),
    ("Cursor", {"user-agent": "undici", "x-cursor-client-version": "1.7.0"}),
    ("GitHub Copilot", {"user-agent": "GitHubCopilotChat/0.33.0", "copilot-integration-id": "vscode-chat",
                        "editor-version": "vscode/1.105.0", "x-stainless-lang": "js"}),
    ("GitHub Copilot", {"user-agent": "node-fetch", "copilot-integration-id": "vscode-chat"}),
    ("Roo Code", {"user-agent": "RooCode/3.30.1", "x-title": "Roo Code",
                  "http-referer": "https://github.com/RooVetGit/Roo-Cline", "x-stainless-lang": "js"}),
    ("Roo Code", {"user-agent": "OpenAI/JS 5.12.2", "x-title": "Roo Code"}),
    ("Kilo Code", {"user-agent": "Kilo-Code/4.104.0", "x-title": "Kilo Code", "x-kilocode-version": "4.104.0",
                   "http-referer": "https://kilocode.ai"}),
    ("Kilo Code", {"user-agent": "OpenAI/JS 5.12.2", "x-kilocode-taskid": "task-17"}),
    ("opencode", {"user-agent": "opencode/1.0.20 ai-sdk/provider-utils/3.0.9 runtime/bun/1.3.0"}),
    ("opencode", {"user-agent": "ai-sdk/openai/2.0.52", "x-opencode-session": "ses_4a1b"}),
    ("Goose", {"user-agent": "goose/1.13.2"}),
    ("Goose", {"user-agent": "Goose"}),
    ("Anthropic SDK", {"user-agent": "Anthropic/Python 0.69.0", "x-stainless-lang": "python"}),
    ("Anthropic SDK", {"user-agent": "Anthropic/JS 0.65.0"}),
    ("Anthropic SDK", {"user-agent": "my-bot/1.0", "x-stainless-lang": "python", "anthropic-version": "2023-06-01"}),
    ("OpenAI SDK", {"user-agent": "OpenAI/Python 1.109.1", "x-stainless-lang": "python"}),
    ("OpenAI SDK", {"user-agent": "OpenAI/JS 5.12.2"}),
    ("OpenAI SDK", {"user-agent": "my-bot/1.0", "x-stainless-lang": "js"}),
    ("Unknown", {"user-agent": "curl/8.5.0"}),
    ("Unknown", {"user-agent": "python-httpx/0.28.1"}),
    ("Unknown", {}),
    # a product name merely mentioned later in the agent string does not count
    ("Unknown", {"user-agent": "my-tool/2.0 (built like codex_cli_rs and Zed)"}),
]


@pytest.mark.parametrize(("name", "headers"), CLIENTS, ids=[f"{n}:{h.get('user-agent', '-')}" for n, h in CLIENTS])
def test_detect_client(name: str, headers: dict[str, str]) -> None:
    assert detect_client(headers) == name


LEGACY_USER_ID = f"user_9c1f2e3d4b5a69788776655443322110fedcba9876543210aabbccddeeff0011_account__session_{SESSION}"
JSON_USER_ID = json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": SESSION})

SESSIONS: list[tuple[str, dict[str, str], Any, str | None]] = [
    ("claude code header", {"x-claude-code-session-id": SESSION}, {}, SESSION),
    ("claude code header beats metadata", {"x-claude-code-session-id": "hdr-1"},
     {"metadata": {"user_id": LEGACY_USER_ID}}, "hdr-1"),
    ("claude code legacy user_id", {}, {"metadata": {"user_id": LEGACY_USER_ID}}, SESSION),
    ("claude code JSON user_id", {}, {"metadata": {"user_id": JSON_USER_ID}}, SESSION),
    ("user_id without a session", {}, {"metadata": {"user_id": "user_abc_account_def"}}, None),
    ("user_id JSON without session_id", {}, {"metadata": {"user_id": '{"device_id":"x"}'}}, None),
    ("user_id broken JSON", {}, {"metadata": {"user_id": '{"session_id": '}}, None),
    ("user_id not a string", {}, {"metadata": {"user_id": 7}}, None),
    ("metadata not an object", {}, {"metadata": "x"}, None),
    ("codex session_id", {"session_id": "0199a1b2-c3d4-7e8f-9a0b-1c2d3e4f5a6b"}, {},
     "0199a1b2-c3d4-7e8f-9a0b-1c2d3e4f5a6b"),
    ("opencode", {"x-opencode-session": "ses_7d2a9c"}, {}, "ses_7d2a9c"),
    ("kilo code task", {"x-kilocode-taskid": "task-0042"}, {}, "task-0042"),
    ("generic x-session-id", {"x-session-id": "s-1"}, {}, "s-1"),
    ("copilot editor session", {"vscode-sessionid": "vs-77"}, {}, "vs-77"),
    ("blank header ignored", {"session_id": "  "}, {"metadata": {"user_id": LEGACY_USER_ID}}, SESSION),
    ("oversized header ignored", {"session_id": "x" * 300}, {}, None),
    ("control characters ignored", {"session_id": "a\x00b"}, {}, None),
    ("nothing", {"user-agent": "curl/8"}, {"model": "m"}, None),
    ("body not an object", {}, ["x"], None),
]


@pytest.mark.parametrize(("headers", "body", "expected"), [c[1:] for c in SESSIONS], ids=[c[0] for c in SESSIONS])
def test_detect_session_id(headers: dict[str, str], body: Any, expected: str | None) -> None:
    assert detect_session_id(headers, body) == expected


header_names = st.sampled_from(
    ["user-agent", "originator", "x-title", "session_id", "x-claude-code-session-id", "x-stainless-lang",
     "anthropic-version", "copilot-integration-id", "x-cursor-client", "x-opencode-session", "x-kilocode-taskid"]
) | st.text(S.CHARS, min_size=1, max_size=12)
header_maps = st.dictionaries(header_names, st.text(S.CHARS, max_size=40), max_size=6)


@given(headers=header_maps, body=S.json_values)
def test_detection_never_fails_and_never_changes_its_inputs(headers: dict[str, str], body: Any) -> None:
    headers_before, body_before = dict(headers), copy.deepcopy(body)
    assert isinstance(detect_client(headers), str)
    session = detect_session_id(headers, body)
    assert session is None or (isinstance(session, str) and 0 < len(session) <= 256)
    assert headers == headers_before
    assert body == body_before
