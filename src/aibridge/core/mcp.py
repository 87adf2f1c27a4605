"""MCP tool injection and the pure steps of the hidden inner agent loop (DESIGN §8).

This module owns, for Anthropic Messages, OpenAI Chat and OpenAI Responses:

* the catalogue of injected tools: names ``bmcp_<server>_<tool>``, allow/deny
  filtering (deny wins), a stable sorted order;
* injection into a request body (injected tools first, so Anthropic cache
  breakpoints on the client's tools stay valid) and eligibility (no injection
  for small/fast ``haiku`` models);
* reading one upstream response as a :class:`Turn`: what the assistant said
  (to append to the conversation) and which injected tools it called;
* the follow-up request body that carries the model's call and the tools'
  results (or error results);
* what the client sees: blocking bodies merged over iterations, and
  :class:`StreamRewriter` subclasses that rewrite streams so injected calls,
  their deltas and their results never reach the client while the stream stays
  well formed (content block / output indexes and sequence numbers renumbered,
  terminal events held until the loop is known to end).

It never performs I/O: the shell (``shell/mcp_loop.py``) calls MCP servers and
upstream; this module only transforms values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from aibridge.core import jsonutil
from aibridge.core.providers.base import as_dict, as_list, as_str
from aibridge.core.sse import SSEEvent, SSEParser

PREFIX = "bmcp_"
#: what both Anthropic and OpenAI accept as a tool/function name
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
APIS = ("messages", "chat", "responses")
#: substring of small/fast model names that get no injection
SMALL_FAST_MARKER = "haiku"

IsInjected = Callable[[str], bool]


# -- configuration ---------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ServerSpec:
    """One configured MCP server (validated)."""

    name: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    allow: str | None = None
    deny: str | None = None


def parse_regex(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a regular expression string")
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{where}: invalid regular expression: {exc}") from None
    return value


def parse_headers(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    """Headers as a mapping, or text ``Name: value, Name2: value2`` (or a JSON object)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = jsonutil.loads(text)
            except ValueError:
                raise ValueError(f"{where}: not a valid JSON object") from None
        else:
            pairs = []
            for part in text.split(","):
                name, sep, val = part.partition(":")
                if not sep or not name.strip():
                    raise ValueError(f"{where}: expected 'Name: value' pairs separated by commas")
                pairs.append((name.strip(), val.strip()))
            return tuple(pairs)
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a mapping of header names to values")
    out = []
    for name, val in value.items():
        if not isinstance(name, str) or not name or isinstance(val, (dict, list)) or val is None:
            raise ValueError(f"{where}: header {name!r} must have a string value")
        out.append((name, str(val)))
    return tuple(out)


def parse_server(entry: Any, where: str) -> ServerSpec:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a mapping with name and url")
    unknown = sorted(set(entry) - {"name", "url", "headers", "allow", "deny"})
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (expected name, url, headers, allow, deny)")
    name = entry.get("name")
    if not isinstance(name, str) or not SERVER_NAME.match(name):
        raise ValueError(f"{where}: name must be 1-32 letters, digits, '_' or '-', got {name!r}")
    url = entry.get("url")
    if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"{where} ({name}): url must be an http:// or https:// URL")
    return ServerSpec(
        name=name,
        url=url,
        headers=parse_headers(entry.get("headers"), f"{where} ({name}) headers"),
        allow=parse_regex(entry.get("allow"), f"{where} ({name}) allow"),
        deny=parse_regex(entry.get("deny"), f"{where} ({name}) deny"),
    )


def parse_servers(value: Any) -> tuple[ServerSpec, ...]:
    """Validate the YAML ``mcp_servers`` list; ValueError with one line on the first problem."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ValueError("expected a list of servers (name, url, headers, allow, deny)")
    specs = tuple(parse_server(e, f"entry {i}") for i, e in enumerate(value))
    check_unique(specs)
    return specs


def check_unique(specs: Sequence[ServerSpec]) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"server name {spec.name!r} is used twice")
        seen.add(spec.name)


# -- the catalogue ---------------------------------------------------------------


@attrs.frozen(kw_only=True)
class InjectedTool:
    """An MCP tool offered to the model under its injected name."""

    server: str
    server_url: str
    tool: str
    description: str = ""
    input_schema: dict[str, Any] = attrs.field(factory=dict)

    @property
    def name(self) -> str:
        return injected_name(self.server, self.tool)


def injected_name(server: str, tool: str) -> str:
    return f"{PREFIX}{server}_{tool}"


def tool_allowed(tool: str, allow: str | None, deny: str | None) -> bool:
    """Regexes use search semantics (anchor with ``^...$`` for an exact name); deny wins."""
    if deny is not None and re.search(deny, tool):
        return False
    if allow is not None:
        return re.search(allow, tool) is not None
    return True


def catalog(tools: Iterable[InjectedTool], spec_of: Mapping[str, ServerSpec] | None = None) -> tuple[InjectedTool, ...]:
    """The injected tools in their stable order: filtered, valid names only, sorted, unique.

    ``spec_of`` maps server names to their specs for allow/deny filtering. A
    tool whose injected name is not a valid provider tool name (over 64
    characters, or characters other than letters, digits, ``_`` and ``-``) is
    left out; of two tools with the same injected name the first (in sorted
    order of the server URL) wins.
    """
    chosen: dict[str, InjectedTool] = {}
    for tool in sorted(tools, key=lambda t: (t.name, t.server_url)):
        spec = (spec_of or {}).get(tool.server)
        if spec is not None and not tool_allowed(tool.tool, spec.allow, spec.deny):
            continue
        if not TOOL_NAME.match(tool.name) or tool.name in chosen:
            continue
        chosen[tool.name] = tool
    return tuple(chosen.values())


def eligible(model: str) -> bool:
    """Small/fast models (Claude Code's background ``haiku`` requests) get no injection."""
    return SMALL_FAST_MARKER not in model.lower()


# -- injection ---------------------------------------------------------------------


def _schema(tool: InjectedTool) -> dict[str, Any]:
    schema = dict(tool.input_schema) if tool.input_schema else {}
    schema.setdefault("type", "object")
    if schema["type"] == "object":
        schema.setdefault("properties", {})
    return schema


def tool_definition(api: str, tool: InjectedTool) -> dict[str, Any]:
    if api == "messages":
        return {"name": tool.name, "description": tool.description, "input_schema": _schema(tool)}
    if api == "chat":
        return {"type": "function", "function": {"name": tool.name, "description": tool.description,
                                                 "parameters": _schema(tool)}}
    return {"type": "function", "name": tool.name, "description": tool.description,
            "parameters": _schema(tool), "strict": False}


def definition_name(api: str, definition: Any) -> str:
    d = as_dict(definition)
    if api == "chat":
        return as_str(as_dict(d.get("function")).get("name"))
    return as_str(d.get("name"))


def inject_tools(api: str, body: dict[str, Any], tools: Sequence[InjectedTool]) -> dict[str, Any]:
    """``body`` with the injected tools placed before the client's tools.

    Only ``tools`` changes; every other key keeps its value and position.
    Client tools keep their order (a client tool that already carries an
    injected name is replaced, which makes injection idempotent). A ``tools``
    value that is not a list is left for the upstream to reject.
    """
    existing = body.get("tools")
    if not tools or (existing is not None and not isinstance(existing, list)):
        return body
    definitions = [tool_definition(api, t) for t in tools]
    names = {t.name for t in tools}
    client = [t for t in (existing or []) if definition_name(api, t) not in names]
    new = dict(body)
    new["tools"] = definitions + client
    return new


def encode(body: Any) -> bytes:
    return jsonutil.dumps(body)


# -- one upstream response as a turn --------------------------------------------------


@attrs.frozen(kw_only=True)
class InjectedCall:
    call_id: str
    name: str
    arguments: str


@attrs.frozen(kw_only=True)
class ToolOutcome:
    """What an injected tool returned (``is_error``: the tool failed or could not be called)."""

    call_id: str
    text: str
    is_error: bool = False


@attrs.frozen(kw_only=True)
class Turn:
    """One upstream response, seen by the loop.

    ``assistant`` is what gets appended to the conversation (Anthropic: a
    content list; Chat: an assistant message; Responses: output items).
    """

    assistant: Any
    injected_calls: tuple[InjectedCall, ...] = ()
    client_calls: int = 0

    @property
    def wants_tools(self) -> bool:
        """The loop may continue: injected calls only (client calls hand the turn to the client)."""
        return bool(self.injected_calls) and self.client_calls == 0


def _args_text(value: Any) -> str:
    if value is None or value == {}:
        return "{}"
    return jsonutil.dumps(value).decode()


def blocking_turn(api: str, payload: Any, is_injected: IsInjected) -> Turn:
    """The turn of a blocking (JSON) upstream reply."""
    payload = as_dict(payload)
    calls: list[InjectedCall] = []
    client = 0
    if api == "messages":
        content = as_list(payload.get("content"))
        for block in content:
            block = as_dict(block)
            if block.get("type") == "tool_use":
                if is_injected(as_str(block.get("name"))):
                    calls.append(InjectedCall(call_id=as_str(block.get("id")), name=as_str(block.get("name")),
                                              arguments=_args_text(block.get("input"))))
                else:
                    client += 1
        return Turn(assistant=content, injected_calls=tuple(calls), client_calls=client)
    if api == "chat":
        choices = as_list(payload.get("choices"))
        message = as_dict(as_dict(choices[0]).get("message")) if choices else {}
        tool_calls = []
        for tc in as_list(message.get("tool_calls")):
            tc = as_dict(tc)
            fn = as_dict(tc.get("function"))
            name = as_str(fn.get("name"))
            tool_calls.append({"id": as_str(tc.get("id")), "type": "function",
                               "function": {"name": name, "arguments": as_str(fn.get("arguments"))}})
            if is_injected(name):
                calls.append(InjectedCall(call_id=as_str(tc.get("id")), name=name,
                                          arguments=as_str(fn.get("arguments")) or "{}"))
            else:
                client += 1
        return Turn(assistant=_chat_assistant(message.get("content"), tool_calls),
                    injected_calls=tuple(calls), client_calls=client)
    return _responses_turn(as_list(payload.get("output")), is_injected)


def _chat_assistant(content: Any, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content if isinstance(content, str) and content else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _responses_turn(output: list[Any], is_injected: IsInjected) -> Turn:
    calls: list[InjectedCall] = []
    client = 0
    for item in output:
        item = as_dict(item)
        if item.get("type") in ("function_call", "custom_tool_call"):
            name = as_str(item.get("name"))
            if item.get("type") == "function_call" and is_injected(name):
                calls.append(InjectedCall(call_id=as_str(item.get("call_id")), name=name,
                                          arguments=as_str(item.get("arguments")) or "{}"))
            else:
                client += 1
    return Turn(assistant=list(output), injected_calls=tuple(calls), client_calls=client)


# -- the follow-up request ------------------------------------------------------------


def relax_tool_choice(api: str, body: dict[str, Any], is_injected: IsInjected) -> dict[str, Any]:
    """A follow-up must not force another tool call, or the loop could only end at its limit.

    ``tool_choice`` that forces any tool (Anthropic ``any``, OpenAI
    ``required``) or names an injected tool becomes ``auto``; other settings
    (including ``disable_parallel_tool_use``) are kept.
    """
    choice = body.get("tool_choice")
    new_choice: Any = choice
    if api == "messages" and isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "any" or (kind == "tool" and is_injected(as_str(choice.get("name")))):
            new_choice = {**{k: v for k, v in choice.items() if k != "name"}, "type": "auto"}
    elif api in ("chat", "responses"):
        if choice == "required":
            new_choice = "auto"
        elif isinstance(choice, dict):
            name = as_str(as_dict(choice.get("function")).get("name")) or as_str(choice.get("name"))
            if is_injected(name):
                new_choice = "auto"
    if new_choice is choice:
        return body
    new = dict(body)
    new["tool_choice"] = new_choice
    return new


def follow_up(api: str, body: dict[str, Any], turn: Turn, outcomes: Sequence[ToolOutcome],
              is_injected: IsInjected) -> dict[str, Any]:
    """The next upstream request: the conversation plus the model's calls and the tools' results."""
    new = relax_tool_choice(api, body, is_injected)
    new = dict(new)
    if api == "messages":
        results: list[dict[str, Any]] = []
        for o in outcomes:
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": o.call_id, "content": o.text}
            if o.is_error:
                result["is_error"] = True
            results.append(result)
        new["messages"] = [*as_list(body.get("messages")), {"role": "assistant", "content": turn.assistant},
                           {"role": "user", "content": results}]
    elif api == "chat":
        new["messages"] = [*as_list(body.get("messages")), turn.assistant,
                           *({"role": "tool", "tool_call_id": o.call_id, "content": o.text} for o in outcomes)]
    else:
        previous = body.get("input")
        items = [{"role": "user", "content": previous}] if isinstance(previous, str) else as_list(previous)
        new["input"] = [*items, *turn.assistant,
                        *({"type": "function_call_output", "call_id": o.call_id, "output": o.text} for o in outcomes)]
    return new


# -- what a blocking client sees --------------------------------------------------------


def final_blocking(api: str, payloads: Sequence[Any], is_injected: IsInjected) -> dict[str, Any]:
    """One coherent reply from the iterations' replies: the last one, with injected calls
    removed and the visible output of earlier iterations before its own."""
    last = dict(as_dict(payloads[-1]))
    if api == "messages":
        content = [b for p in payloads for b in as_list(as_dict(p).get("content")) if not _injected_block(b, is_injected)]
        last["content"] = content
        if last.get("stop_reason") == "tool_use" and not any(as_dict(b).get("type") == "tool_use" for b in content):
            last["stop_reason"] = "end_turn"
        return last
    if api == "chat":
        texts = []
        for p in payloads:
            choices = as_list(as_dict(p).get("choices"))
            text = as_dict(as_dict(choices[0]).get("message")).get("content") if choices else None
            if isinstance(text, str):
                texts.append(text)
        choices = [dict(as_dict(c)) for c in as_list(last.get("choices"))]
        if choices:
            choice = choices[0]
            message = dict(as_dict(choice.get("message")))
            if texts:
                message["content"] = "".join(texts)
            visible = [tc for tc in as_list(message.get("tool_calls"))
                       if not is_injected(as_str(as_dict(as_dict(tc).get("function")).get("name")))]
            if "tool_calls" in message:
                if visible:
                    message["tool_calls"] = visible
                else:
                    del message["tool_calls"]
            if not visible and choice.get("finish_reason") == "tool_calls":
                choice["finish_reason"] = "stop"
            choice["message"] = message
            last["choices"] = choices
        return last
    last["output"] = [i for p in payloads for i in as_list(as_dict(p).get("output")) if not _injected_item(i, is_injected)]
    return scrub_response(last, is_injected)


def scrub_response(response: dict[str, Any], is_injected: IsInjected) -> dict[str, Any]:
    """A Responses ``response`` object echoes the request's ``tools``: drop the injected ones
    (every ``bmcp_`` name, whether or not it is in today's catalogue)."""
    tools = response.get("tools")

    def hidden(tool: Any) -> bool:
        name = definition_name("responses", tool)
        return name.startswith(PREFIX) or is_injected(name)

    if not isinstance(tools, list) or not any(hidden(t) for t in tools):
        return response
    return {**response, "tools": [t for t in tools if not hidden(t)]}


def _injected_block(block: Any, is_injected: IsInjected) -> bool:
    b = as_dict(block)
    return b.get("type") == "tool_use" and is_injected(as_str(b.get("name")))


def _injected_item(item: Any, is_injected: IsInjected) -> bool:
    i = as_dict(item)
    return i.get("type") == "function_call" and is_injected(as_str(i.get("name")))


# -- what a streaming client sees ---------------------------------------------------------


def _sse_bytes(event: str | None, payload: Any) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + jsonutil.dumps(payload) + b"\n\n"


class StreamRewriter:
    """Client bytes of a stream spread over several upstream responses (iterations).

    Per iteration: :meth:`start_iteration`, :meth:`receive_data` for each
    upstream chunk (returns the bytes to send the client now), then
    :meth:`end_iteration` (the :class:`Turn`). Terminal events (Anthropic
    ``message_delta``/``message_stop``, Chat finish chunk and ``[DONE]``,
    Responses ``response.completed``) are held: if the loop continues they are
    dropped, otherwise :meth:`release` returns them. Events that need no
    rewrite are forwarded byte for byte.
    """

    def __init__(self, is_injected: IsInjected) -> None:
        self.is_injected = is_injected
        self.iteration = 0
        self._parser = SSEParser()
        self._held: list[bytes] = []

    def start_iteration(self) -> None:
        self.iteration += 1
        self._parser = SSEParser()
        self._held = []
        self._reset()

    def receive_data(self, data: bytes) -> bytes:
        return self._feed(self._parser.receive_data(data))

    def end_iteration(self) -> tuple[bytes, Turn]:
        """Flush a trailing event; returns (bytes to send now, the turn)."""
        out = self._feed(self._parser.close())
        return out, self._turn()

    def release(self) -> bytes:
        """The held terminal events of the last iteration (rewritten to fit what the client saw)."""
        held = self._release()
        self._held = []
        return held

    def _feed(self, events: list[SSEEvent]) -> bytes:
        out = bytearray()
        for ev in events:
            data = ev.data.strip()
            payload: Any = None
            if data:
                try:
                    payload = jsonutil.loads(data)
                except (ValueError, RecursionError):
                    payload = None
            out += self._event(ev, data, payload)
        return bytes(out)

    @staticmethod
    def _emit(ev: SSEEvent, payload: Any, original: Any) -> bytes:
        return ev.raw if payload == original and ev.raw else _sse_bytes(ev.event, payload)

    # per API
    def _reset(self) -> None:
        raise NotImplementedError

    def _event(self, ev: SSEEvent, data: str, payload: Any) -> bytes:
        raise NotImplementedError

    def _turn(self) -> Turn:
        raise NotImplementedError

    def _release(self) -> bytes:
        raise NotImplementedError

    def error_event(self, message: str) -> bytes:
        raise NotImplementedError


class AnthropicRewriter(StreamRewriter):
    """Content blocks of injected calls are dropped; the others are renumbered
    across iterations; only the first iteration's ``message_start`` is sent."""

    def __init__(self, is_injected: IsInjected) -> None:
        super().__init__(is_injected)
        self._next_index = 0

    def _reset(self) -> None:
        self._blocks: dict[Any, dict[str, Any]] = {}
        self._order: list[Any] = []
        self._json: dict[Any, list[str]] = {}
        self._hidden: set[Any] = set()
        self._map: dict[Any, int] = {}
        self._client_calls = 0
        self._held_events: list[tuple[SSEEvent, dict[str, Any]]] = []

    def _event(self, ev: SSEEvent, data: str, payload: Any) -> bytes:
        if not isinstance(payload, dict):
            return ev.raw
        kind = payload.get("type")
        if kind == "message_start":
            return ev.raw if self.iteration == 1 else b""
        if kind in ("message_delta", "message_stop"):
            self._held_events.append((ev, payload))
            return b""
        if kind not in ("content_block_start", "content_block_delta", "content_block_stop"):
            return ev.raw
        index = payload.get("index")
        if kind == "content_block_start":
            block = dict(as_dict(payload.get("content_block")))
            self._blocks[index] = block
            self._order.append(index)
            if block.get("type") == "tool_use":
                self._json[index] = []
                if self.is_injected(as_str(block.get("name"))):
                    self._hidden.add(index)
                else:
                    self._client_calls += 1
            if index not in self._hidden:
                self._map[index] = self._next_index
                self._next_index += 1
        elif kind == "content_block_delta":
            self._apply_delta(index, as_dict(payload.get("delta")))
        elif kind == "content_block_stop" and index in self._json:
            text = "".join(self._json.pop(index))
            try:
                value = jsonutil.loads(text) if text.strip() else {}
            except (ValueError, RecursionError):
                value = {}
            self._blocks[index]["input"] = value
            self._blocks[index]["_args"] = text
        if index in self._hidden:
            return b""
        client_index = self._map.get(index, index)
        return self._emit(ev, {**payload, "index": client_index}, payload)

    def _apply_delta(self, index: Any, delta: dict[str, Any]) -> None:
        block = self._blocks.get(index)
        if block is None:
            return
        kind = delta.get("type")
        if kind == "input_json_delta" and index in self._json:
            self._json[index].append(as_str(delta.get("partial_json")))
        elif kind == "text_delta":
            block["text"] = as_str(block.get("text")) + as_str(delta.get("text"))
        elif kind == "thinking_delta":
            block["thinking"] = as_str(block.get("thinking")) + as_str(delta.get("thinking"))
        elif kind == "signature_delta":
            block["signature"] = as_str(delta.get("signature"))
        elif kind == "citations_delta":
            block["citations"] = [*as_list(block.get("citations")), delta.get("citation")]

    def _turn(self) -> Turn:
        content = []
        calls = []
        for index in self._order:
            block = dict(self._blocks[index])
            args = block.pop("_args", None)
            if block.get("type") == "tool_use" and index in self._json:  # never stopped
                text = "".join(self._json[index])
                args = text
            if index in self._hidden:
                calls.append(InjectedCall(call_id=as_str(block.get("id")), name=as_str(block.get("name")),
                                          arguments=args if args and args.strip() else "{}"))
            content.append(block)
        return Turn(assistant=content, injected_calls=tuple(calls), client_calls=self._client_calls)

    def _release(self) -> bytes:
        out = bytearray()
        for ev, payload in self._held_events:
            new = payload
            delta = as_dict(payload.get("delta"))
            if payload.get("type") == "message_delta" and delta.get("stop_reason") == "tool_use" and not self._client_calls:
                new = {**payload, "delta": {**delta, "stop_reason": "end_turn"}}
            out += self._emit(ev, new, payload)
        self._held_events = []
        return bytes(out)

    def error_event(self, message: str) -> bytes:
        return _sse_bytes("error", {"type": "error", "error": {"type": "api_error", "message": message}})


class ChatRewriter(StreamRewriter):
    """Tool-call deltas of injected calls are removed (chunks left empty are
    dropped); client tool calls are renumbered from 0; every chunk carries the
    first iteration's id; finish chunks, usage-only chunks and ``[DONE]`` are held."""

    def __init__(self, is_injected: IsInjected, *, drop_usage_only: bool = False) -> None:
        super().__init__(is_injected)
        self._drop_usage_only = drop_usage_only
        self._first_id: Any = None
        self._next_tool = 0

    def _reset(self) -> None:
        self._content: list[str] = []
        self._slots: dict[Any, dict[str, Any]] = {}
        self._client_calls = 0
        #: (event, upstream payload, rewritten payload); payload None for ``[DONE]``
        self._held_chunks: list[tuple[SSEEvent, dict[str, Any] | None, dict[str, Any] | None]] = []

    def _event(self, ev: SSEEvent, data: str, payload: Any) -> bytes:
        if data == "[DONE]":
            self._held_chunks.append((ev, None, None))
            return b""
        if not isinstance(payload, dict) or payload.get("error") is not None:
            return ev.raw
        new = self._rewrite(payload)
        if self._is_terminal(payload):
            self._held_chunks.append((ev, payload, new))
            return b""
        return b"" if new is None else self._emit(ev, new, payload)

    def _is_terminal(self, payload: dict[str, Any]) -> bool:
        choices = as_list(payload.get("choices"))
        if not choices and payload.get("usage") is not None:
            return True
        return any(as_dict(c).get("finish_reason") is not None for c in choices)

    def _rewrite(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        new = dict(payload)
        if self._first_id is None:
            self._first_id = payload.get("id")
        elif "id" in payload:
            new["id"] = self._first_id
        choices = []
        for choice in as_list(payload.get("choices")):
            choice = as_dict(choice)
            if choice.get("index", 0) != 0:
                choices.append(choice)
                continue
            delta = as_dict(choice.get("delta"))
            content = delta.get("content")
            if isinstance(content, str):
                self._content.append(content)
            if "tool_calls" not in delta:
                choices.append(choice)
                continue
            visible = []
            for tc in as_list(delta.get("tool_calls")):
                tc = as_dict(tc)
                fn = as_dict(tc.get("function"))
                key = tc.get("index", 0)
                slot = self._slots.get(key)
                if slot is None:
                    name = as_str(fn.get("name"))
                    slot = {"id": "", "name": name, "args": [], "hidden": self.is_injected(name), "client": None}
                    if not slot["hidden"]:
                        slot["client"] = self._next_tool
                        self._next_tool += 1
                        self._client_calls += 1
                    self._slots[key] = slot
                if tc.get("id"):
                    slot["id"] = as_str(tc.get("id"))
                if fn.get("name") and not slot["name"]:
                    slot["name"] = as_str(fn.get("name"))
                slot["args"].append(as_str(fn.get("arguments")))
                if not slot["hidden"]:
                    visible.append({**tc, "index": slot["client"]})
            rest = {k: v for k, v in delta.items() if k != "tool_calls"}
            if visible:
                rest["tool_calls"] = visible
            if (any(v is not None for v in rest.values()) or choice.get("logprobs") is not None
                    or choice.get("finish_reason") is not None):
                choices.append({**choice, "delta": rest})
        if payload.get("choices") and not choices and payload.get("usage") is None:
            return None
        if "choices" in payload:
            new["choices"] = choices
        return new

    def _turn(self) -> Turn:
        tool_calls = [{"id": s["id"], "type": "function", "function": {"name": s["name"], "arguments": "".join(s["args"])}}
                      for s in self._slots.values()]
        calls = tuple(InjectedCall(call_id=s["id"], name=s["name"], arguments="".join(s["args"]) or "{}")
                      for s in self._slots.values() if s["hidden"])
        return Turn(assistant=_chat_assistant("".join(self._content), tool_calls), injected_calls=calls,
                    client_calls=self._client_calls)

    def _release(self) -> bytes:
        out = bytearray()
        for ev, payload, new in self._held_chunks:
            if payload is None:
                out += ev.raw
                continue
            if self._drop_usage_only and not as_list(payload.get("choices")) and payload.get("usage") is not None:
                continue
            if new is None:
                continue
            if not self._client_calls:
                new["choices"] = [
                    {**c, "finish_reason": "stop"} if as_dict(c).get("finish_reason") == "tool_calls" else c
                    for c in as_list(new.get("choices"))
                ]
            out += self._emit(ev, new, payload)
        self._held_chunks = []
        return bytes(out)

    def error_event(self, message: str) -> bytes:
        return _sse_bytes(None, {"error": {"message": message, "type": "server_error", "code": None}})


class ResponsesRewriter(StreamRewriter):
    """Output items of injected calls (and every event about them) are dropped;
    output indexes and sequence numbers are renumbered; only the first
    iteration's ``response.created``/``in_progress`` are sent; the held terminal
    event carries the visible output of every iteration."""

    TERMINAL = ("response.completed", "response.incomplete", "response.failed")

    def __init__(self, is_injected: IsInjected) -> None:
        super().__init__(is_injected)
        self._seq = 0
        self._next_output = 0
        self._visible_output: list[Any] = []

    def _reset(self) -> None:
        self._hidden_items: set[Any] = set()
        self._hidden_outputs: set[Any] = set()
        self._map: dict[Any, int] = {}
        self._items: dict[Any, dict[str, Any]] = {}
        self._terminal: tuple[SSEEvent, dict[str, Any]] | None = None

    def _number(self, ev: SSEEvent, payload: dict[str, Any], new: dict[str, Any]) -> bytes:
        if "sequence_number" in payload:
            new["sequence_number"] = self._seq
            self._seq += 1
        return self._emit(ev, new, payload)

    def _event(self, ev: SSEEvent, data: str, payload: Any) -> bytes:
        if not isinstance(payload, dict):
            return ev.raw
        kind = as_str(payload.get("type"))
        if kind in ("response.created", "response.in_progress", "response.queued"):
            if self.iteration > 1:
                return b""
            response = scrub_response(as_dict(payload.get("response")), self.is_injected)
            return self._number(ev, payload, {**payload, "response": response} if "response" in payload else dict(payload))
        if kind in self.TERMINAL:
            self._terminal = (ev, payload)
            return b""
        output_index = payload.get("output_index")
        if kind == "response.output_item.added":
            item = as_dict(payload.get("item"))
            if _injected_item(item, self.is_injected):
                self._hidden_items.add(item.get("id"))
                self._hidden_outputs.add(output_index)
            else:
                self._map[output_index] = self._next_output
                self._next_output += 1
        if kind == "response.output_item.done":
            self._items[output_index] = as_dict(payload.get("item"))
        if payload.get("item_id") in self._hidden_items or output_index in self._hidden_outputs:
            return b""
        new = dict(payload)
        if output_index is not None and output_index in self._map:
            new["output_index"] = self._map[output_index]
        return self._number(ev, payload, new)

    def _output(self) -> list[Any]:
        if self._terminal is not None:
            output = as_dict(self._terminal[1].get("response")).get("output")
            if isinstance(output, list) and output:
                return output
        return [self._items[k] for k in sorted(self._items, key=lambda k: k if isinstance(k, int) else 0)]

    def _turn(self) -> Turn:
        output = self._output()
        self._visible_output.extend(i for i in output if not _injected_item(i, self.is_injected))
        return _responses_turn(output, self.is_injected)

    def _release(self) -> bytes:
        if self._terminal is None:
            return b""
        ev, payload = self._terminal
        self._terminal = None
        response = scrub_response(dict(as_dict(payload.get("response"))), self.is_injected)
        response["output"] = list(self._visible_output)
        return self._number(ev, payload, {**payload, "response": response})

    def error_event(self, message: str) -> bytes:
        payload = {"type": "error", "code": "server_error", "message": message, "param": None,
                   "sequence_number": self._seq}
        self._seq += 1
        return _sse_bytes("error", payload)


def stream_rewriter(api: str, is_injected: IsInjected, *, drop_usage_only: bool = False) -> StreamRewriter:
    if api == "messages":
        return AnthropicRewriter(is_injected)
    if api == "chat":
        return ChatRewriter(is_injected, drop_usage_only=drop_usage_only)
    return ResponsesRewriter(is_injected)
