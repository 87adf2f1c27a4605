"""Configuration: names, defaults, parsing and precedence.

Precedence: command-line flags > environment (``AIBRIDGE_<NAME>``, with the
``CODER_AIBRIDGE_<NAME>`` spellings from Coder's documentation as aliases) >
YAML file (keys under a top-level ``aibridge:`` mapping) > defaults.

Every option is one row of :data:`OPTIONS`; adding an option is adding a row.
Invalid values fail with a :class:`ConfigError` whose message is one line
naming the option.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from aibridge.core import mcp as mcp_core
from aibridge.core.retention import DurationError, format_duration, parse_duration


class ConfigError(Exception):
    pass


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        v = value.strip().lower()
        if v in {"1", "true", "yes", "on"}:
            return True
        if v in {"0", "false", "no", "off"}:
            return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError("expected true or false")


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        result = int(value)
    else:
        raise ValueError("expected an integer")
    if result < 0:
        raise ValueError("must not be negative")
    return result


def _duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m, 1h30m, 90d")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    # A bare number is seconds, fractions allowed (upstream_timeout=0.5 in tests and env).
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        return float(value)
    try:
        return float(parse_duration(str(value)))
    except DurationError as exc:
        raise ValueError(str(exc)) from None


_SIZE = re.compile(r"\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*", re.I)
_SIZE_UNITS = {None: 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2,
               "mib": 1024**2, "g": 1024**3, "gb": 1000**3, "gib": 1024**3}


def _size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    match = _SIZE.fullmatch(str(value))
    if not match:
        raise ValueError("expected a size such as 32MiB, 10MB or 1048576")
    unit = match.group(2).lower() if match.group(2) else None
    size = int(match.group(1)) * _SIZE_UNITS[unit]
    if size <= 0:
        raise ValueError("must be positive")
    return size


def _str(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("expected a string")
    return str(value)


def _url(value: Any) -> str:
    text = _str(value).strip()
    if not re.match(r"^https?://[^/\s]+", text):
        raise ValueError("expected an http:// or https:// URL")
    return text


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return parse


def _listen(value: Any) -> str:
    text = _str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8080")
    return text


def _positive(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``parse``, refusing 0 (for settings where 0 cannot mean "off")."""

    def positive(value: Any) -> Any:
        result = parse(value)
        if result <= 0:
            raise ValueError("must be greater than 0")
        return result

    return positive


@attrs.frozen(kw_only=True)
class Option:
    name: str
    parse: Callable[[Any], Any]
    default: Any
    secret: bool = False
    help: str = ""
    yaml_only: bool = False


OPTIONS: tuple[Option, ...] = (
    Option(name="enabled", parse=_bool, default=True, help="serve provider routes (false: 503)"),
    Option(name="listen", parse=_listen, default="127.0.0.1:8080", help="HOST:PORT to listen on"),
    Option(name="db", parse=_str, default="./aibridge.db", help="SQLite audit database path"),
    Option(name="openai_key", parse=_str, default=None, secret=True, help="central OpenAI API key"),
    Option(name="openai_base_url", parse=_url, default="https://api.openai.com/v1/", help="OpenAI base URL (includes /v1)"),
    Option(name="anthropic_key", parse=_str, default=None, secret=True, help="central Anthropic API key"),
    Option(name="anthropic_base_url", parse=_url, default="https://api.anthropic.com/", help="Anthropic base URL (no /v1)"),
    Option(name="bedrock_region", parse=_str, default=None, help="AWS region for Bedrock"),
    Option(name="bedrock_base_url", parse=_url, default=None, help="Bedrock runtime URL (wins over region)"),
    Option(name="bedrock_access_key", parse=_str, default=None, secret=True, help="AWS access key id"),
    Option(name="bedrock_access_key_secret", parse=_str, default=None, secret=True, help="AWS secret access key"),
    Option(name="bedrock_model", parse=_str, default="global.anthropic.claude-sonnet-4-5-20250929-v1:0", help="Bedrock model id"),
    Option(name="bedrock_small_fast_model", parse=_str, default="global.anthropic.claude-haiku-4-5-20251001-v1:0", help="Bedrock model for haiku requests"),
    Option(name="retention", parse=_duration, default=60 * 86400.0, help="keep records this long (0: forever)"),
    Option(name="retention_interval", parse=_duration, default=600.0, help="how often the purge runs"),
    Option(name="prompt_retention", parse=_duration, default=0.0, help="blank prompt text after this long (0: off)"),
    Option(name="allow_byok", parse=_bool, default=True, help="allow X-AIBridge-Token with the user's own provider key"),
    Option(name="max_body_size", parse=_size, default=32 * 1024 * 1024, help="largest request body"),
    Option(name="max_concurrency", parse=_int, default=0, help="in-flight interceptions, global (0: no limit)"),
    Option(name="max_concurrency_per_user", parse=_int, default=0, help="in-flight interceptions per user (0: no limit)"),
    Option(name="rate_limit", parse=_int, default=0, help="requests per minute, global (0: no limit)"),
    Option(name="rate_limit_per_user", parse=_int, default=0, help="requests per minute per user (0: no limit)"),
    Option(name="circuit_breaker_enabled", parse=_bool, default=False, help="enable the upstream circuit breaker"),
    Option(name="circuit_breaker_failure_threshold", parse=_positive(_int), default=5, help="consecutive failures that open it"),
    Option(name="circuit_breaker_interval", parse=_duration, default=10.0, help="window that resets failure counts"),
    Option(name="circuit_breaker_timeout", parse=_duration, default=30.0, help="open time before half-open"),
    Option(name="circuit_breaker_max_requests", parse=_positive(_int), default=3, help="half-open probe requests"),
    Option(name="send_actor_headers", parse=_bool, default=False, help="send X-AIBridge-Actor-* headers upstream"),
    Option(name="stream_keepalive", parse=_duration, default=15.0, help="SSE keep-alive comment after this silence"),
    Option(name="upstream_timeout", parse=_positive(_duration), default=600.0, help="upstream connect/read timeout"),
    Option(name="shutdown_grace", parse=_duration, default=30.0, help="time in-flight requests get on shutdown"),
    Option(name="log_json", parse=_bool, default=False, help="logs as JSON lines"),
    Option(name="log_level", parse=_choice("debug", "info", "warning", "error"), default="info", help="log level"),
    Option(name="structured_logging", parse=_bool, default=False, help="one JSON log record per audit record"),
    Option(name="audit_failure_policy", parse=_choice("closed", "open"), default="closed", help="closed: 503 when the store fails"),
    Option(name="audit_busy_timeout", parse=_duration, default=5.0, help="wait this long for a locked store before a write fails"),
    Option(name="audit_queue_size", parse=_positive(_int), default=10000, help="audit channel capacity"),
    Option(name="workers", parse=_positive(_int), default=1, help="server processes sharing the port and store"),
    Option(name="metrics_per_user", parse=_bool, default=False, help="per-user metric series"),
    Option(name="mcp_servers", parse=mcp_core.parse_servers, default=(), yaml_only=True, help="MCP servers (YAML)"),
    Option(name="mcp_max_iterations", parse=_positive(_int), default=10, help="inner agent loop limit: upstream calls per request"),
    Option(name="mcp_server_url", parse=_url, default=None, help="one MCP server (Streamable HTTP URL)"),
    Option(name="mcp_server_name", parse=_str, default="mcp", help="its name (tools become bmcp_<name>_<tool>)"),
    Option(name="mcp_server_headers", parse=lambda v: mcp_core.parse_headers(v, "headers"), default=(), secret=True,
           help="its headers: 'Name: value, Name2: value2' or a JSON object"),
    Option(name="mcp_server_allow", parse=lambda v: mcp_core.parse_regex(v, "allow"), default=None, help="regex of its tools to inject"),
    Option(name="mcp_server_deny", parse=lambda v: mcp_core.parse_regex(v, "deny"), default=None, help="regex of its tools never to inject (wins)"),
)
OPTION_NAMES = frozenset(o.name for o in OPTIONS)

#: defaults as people write them (``--help`` and README.rst's table show these)
_SHOWN_DEFAULTS = {"retention": "60d", "max_body_size": "32MiB"}


def shown_default(option: Option) -> str:
    """``option``'s default as an operator would write it."""
    if option.name in _SHOWN_DEFAULTS:
        return _SHOWN_DEFAULTS[option.name]
    value = option.default
    if value is None or value == ():
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_duration(int(value)) if value else "0"
    return str(value)


def _config_class() -> type:
    fields = {o.name: attrs.field(default=o.default) for o in OPTIONS}
    return attrs.make_class("Config", fields, frozen=True, kw_only=True)


Config: Any = _config_class()
Config.__doc__ = "The validated configuration; one attribute per row of OPTIONS."


def env_value(env: Mapping[str, str], name: str) -> str | None:
    upper = name.upper()
    for key in (f"AIBRIDGE_{upper}", f"CODER_AIBRIDGE_{upper}"):
        if key in env and env[key] != "":
            return env[key]
    return None


def read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {path}: expected a mapping with a top-level 'aibridge:' key")
    if "aibridge" not in doc:
        misplaced = sorted(set(doc) & OPTION_NAMES)
        hint = f" (found {', '.join(misplaced)} at the top level: indent them under 'aibridge:')" if misplaced else ""
        raise ConfigError(f"config file {path}: no top-level 'aibridge:' key{hint}")
    section = doc["aibridge"]
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: 'aibridge' must be a mapping")
    unknown = sorted(set(section) - OPTION_NAMES)
    if unknown:
        raise ConfigError(f"config file {path}: unknown option {unknown[0]!r}")
    return section


def load_config(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_path: str | Path | None = None,
    warn: Callable[[str], None] | None = None,
) -> Any:
    """Build a :data:`Config` from flags, environment and an optional YAML file."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = env or {}
    if config_path is None:
        config_path = env_value(env, "config")
    section = read_yaml(config_path) if config_path else {}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        origin = "default"
        raw: Any = option.default
        if option.name in section:
            raw, origin = section[option.name], "config file"
            if option.secret and warn is not None:
                warn(f"option {option.name} is set in the config file; prefer the environment for secrets")
        if not option.yaml_only:
            from_env = env_value(env, option.name)
            if from_env is not None:
                raw, origin = from_env, "environment"
        if option.name in flags:
            raw, origin = flags[option.name], "flag"
        if origin != "default" and raw is not None:
            try:
                raw = option.parse(raw)
            except ValueError as exc:
                flag = "--" + option.name.replace("_", "-")
                raise ConfigError(f"invalid {option.name} ({flag}, from {origin}): {exc}") from None
        values[option.name] = raw
    config = Config(**values)
    validate(config)
    return config


def validate(config: Any) -> None:
    """Cross-option checks."""
    if bool(config.bedrock_access_key) != bool(config.bedrock_access_key_secret):
        raise ConfigError(
            "invalid bedrock_access_key/bedrock_access_key_secret: set both or neither "
            "(neither uses the default AWS credential chain)"
        )
    if config.mcp_server_url:
        try:
            mcp_core.parse_server({"name": config.mcp_server_name, "url": config.mcp_server_url}, "mcp_server_url")
            mcp_core.check_unique([*config.mcp_servers, mcp_core.ServerSpec(name=config.mcp_server_name, url=config.mcp_server_url)])
        except ValueError as exc:
            raise ConfigError(f"invalid mcp_server_name (--mcp-server-name): {exc}") from None


def bedrock_enabled(config: Any) -> bool:
    return bool(config.bedrock_region or config.bedrock_base_url)
