"""The user prompt of a request: what the human asked in this turn.

At most one per interception: the text of the *last* message, and only when it
is a user message with text. A turn whose last user message carries only tool
results records no prompt (the agent is continuing; the human said nothing new).
Earlier user messages were recorded by the turns that sent them.
"""

from __future__ import annotations

from typing import Any


def _last_text_part(content: Any, text_types: tuple[str, ...]) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        for part in reversed(content):
            if isinstance(part, dict) and part.get("type") in text_types:
                text = part.get("text")
                if isinstance(text, str):
                    return text
    return None


def _last_message(messages: Any) -> dict[str, Any] | None:
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return messages[-1]
    return None


def anthropic_prompt(body: dict[str, Any]) -> str | None:
    """Anthropic Messages: the last text block of the last message, if it is the user's."""
    last = _last_message(body.get("messages"))
    if last is None or last.get("role") != "user":
        return None
    return _last_text_part(last.get("content"), ("text",))


def openai_chat_prompt(body: dict[str, Any]) -> str | None:
    """OpenAI Chat: the last text part of the last message, if it is the user's."""
    last = _last_message(body.get("messages"))
    if last is None or last.get("role") != "user":
        return None
    return _last_text_part(last.get("content"), ("text",))


def responses_prompt(body: dict[str, Any]) -> str | None:
    """OpenAI Responses: a string ``input``, or the last input item when it is a user message.

    A user message's ``input_text`` parts are joined by newlines.
    """
    value = body.get("input")
    if isinstance(value, str):
        return value
    last = _last_message(value)
    if last is None or last.get("role") != "user":
        return None
    if last.get("type", "message") != "message":
        return None
    content = last.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "input_text"
            and isinstance(part.get("text"), str)
        ]
        if texts:
            return "\n".join(texts)
    return None
