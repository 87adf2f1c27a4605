"""Configuration (DESIGN §9): flags > environment (with Coder aliases) > YAML > defaults,
one clear line for a bad value, a warning for secrets in a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aibridge.cli import main
from aibridge.config import ConfigError, load_config


def yaml_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aibridge.yaml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    config = load_config({}, {}, None)
    assert (config.enabled, config.listen, config.db) == (True, "127.0.0.1:8080", "./aibridge.db")
    assert (config.openai_base_url, config.anthropic_base_url) == (
        "https://api.openai.com/v1/", "https://api.anthropic.com/")
    assert (config.openai_key, config.anthropic_key) == (None, None)
    assert (config.allow_byok, config.max_body_size, config.upstream_timeout, config.log_json) == (
        True, 32 * 1024 * 1024, 600.0, False)


def test_flags_beat_environment_beat_yaml_beat_defaults(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, """
aibridge:
  listen: 0.0.0.0:7000
  db: /var/lib/from-yaml.db
  max_body_size: 1MiB
  upstream_timeout: 2m
  allow_byok: false
""")
    env = {"AIBRIDGE_DB": "/env.db", "AIBRIDGE_MAX_BODY_SIZE": "2MiB", "AIBRIDGE_UPSTREAM_TIMEOUT": "90s"}
    flags = {"max_body_size": "3MiB", "listen": None}  # None: flag not given
    config = load_config(flags, env, path)
    assert config.max_body_size == 3 * 1024 * 1024  # flag
    assert config.db == "/env.db"  # environment over YAML
    assert config.upstream_timeout == 90.0  # environment over YAML
    assert config.listen == "0.0.0.0:7000"  # YAML over default
    assert config.allow_byok is False  # YAML
    assert config.log_json is False  # default


def test_coder_environment_names_are_aliases_and_aibridge_names_win() -> None:
    config = load_config({}, {"CODER_AIBRIDGE_OPENAI_BASE_URL": "http://litellm:4000/v1/",
                              "CODER_AIBRIDGE_ENABLED": "false", "CODER_AIBRIDGE_ANTHROPIC_KEY": "sk-ant-coder"})
    assert (config.openai_base_url, config.enabled, config.anthropic_key) == (
        "http://litellm:4000/v1/", False, "sk-ant-coder")
    config = load_config({}, {"CODER_AIBRIDGE_ALLOW_BYOK": "false", "AIBRIDGE_ALLOW_BYOK": "true"})
    assert config.allow_byok is True


def test_the_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "aibridge:\n  enabled: false\n")
    assert load_config({}, {"AIBRIDGE_CONFIG": str(path)}).enabled is False


def test_secrets_in_yaml_are_accepted_with_a_warning(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, "aibridge:\n  openai_key: sk-in-a-file\n  listen: 127.0.0.1:9000\n")
    warnings: list[str] = []
    config = load_config({}, {}, path, warn=warnings.append)
    assert config.openai_key == "sk-in-a-file"
    assert warnings == ["option openai_key is set in the config file; prefer the environment for secrets"]
    assert all("sk-in-a-file" not in w for w in warnings)


@pytest.mark.parametrize(
    ("flags", "env", "yaml", "message"),
    [
        ({"max_body_size": "banana"}, {}, None,
         "invalid max_body_size (--max-body-size, from flag): expected a size such as 32MiB, 10MB or 1048576"),
        ({}, {"AIBRIDGE_ALLOW_BYOK": "maybe"}, None,
         "invalid allow_byok (--allow-byok, from environment): expected true or false"),
        ({}, {"CODER_AIBRIDGE_LISTEN": "8080"}, None,
         "invalid listen (--listen, from environment): expected HOST:PORT, e.g. 127.0.0.1:8080"),
        ({}, {}, "aibridge:\n  openai_base_url: api.openai.com\n",
         "invalid openai_base_url (--openai-base-url, from config file): expected an http:// or https:// URL"),
        ({}, {}, "aibridge:\n  upstream_timeout: forever\n",
         "invalid upstream_timeout (--upstream-timeout, from config file): invalid duration 'forever': "
         "expected e.g. 30s, 10m, 1h30m, 90d or 2w"),
        ({}, {"AIBRIDGE_UPSTREAM_TIMEOUT": "0"}, None,
         "invalid upstream_timeout (--upstream-timeout, from environment): must be greater than 0"),
        ({"workers": "0"}, {}, None, "invalid workers (--workers, from flag): must be greater than 0"),
        ({}, {}, "aibridge:\n  mcp_max_iterations: 0\n",
         "invalid mcp_max_iterations (--mcp-max-iterations, from config file): must be greater than 0"),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_option(
    tmp_path: Path, flags: dict[str, Any], env: dict[str, str], yaml: str | None, message: str
) -> None:
    path = yaml_file(tmp_path, yaml) if yaml is not None else None
    with pytest.raises(ConfigError) as info:
        load_config(flags, env, path)
    assert str(info.value) == message


def test_bad_files_fail_with_one_line(tmp_path: Path) -> None:
    for text, expected in [
        ("aibridge:\n  listen: [1\n", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping with a top-level 'aibridge:' key"),
        ("aibridge:\n  lisen: 127.0.0.1:1\n", "unknown option 'lisen'"),
        ("retention: 5d\nlisten: 127.0.0.1:1\ncoder: {}\n",
         "no top-level 'aibridge:' key (found listen, retention at the top level: indent them under 'aibridge:')"),
        ("coder:\n  telemetry: false\n", "no top-level 'aibridge:' key"),
    ]:
        path = yaml_file(tmp_path, text)
        with pytest.raises(ConfigError) as info:
            load_config({}, {}, path)
        assert expected in str(info.value)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="no-such.yaml"):
        load_config({}, {}, tmp_path / "no-such.yaml")


def test_serve_with_a_bad_flag_exits_with_one_line_on_stderr() -> None:
    result = CliRunner().invoke(main, ["serve", "--max-body-size", "banana"])
    assert result.exit_code != 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "aibridge: invalid max_body_size (--max-body-size, from flag): "
        "expected a size such as 32MiB, 10MB or 1048576"]


def test_serve_with_a_bad_environment_value_exits_with_one_line_on_stderr() -> None:
    result = CliRunner().invoke(main, ["serve"], env={"AIBRIDGE_UPSTREAM_TIMEOUT": "-3s"})
    assert result.exit_code != 0
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("aibridge: invalid upstream_timeout (--upstream-timeout, from environment)")


def test_cli_store_commands_warn_about_secrets_in_the_config_file(tmp_path: Path) -> None:
    path = yaml_file(tmp_path, f"aibridge:\n  db: {tmp_path / 'w.db'}\n  anthropic_key: sk-ant-file\n")
    result = CliRunner().invoke(main, ["keys", "list", "--config", str(path), "--format", "json"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "[]"
    assert result.stderr == (
        "aibridge: warning: option anthropic_key is set in the config file; prefer the environment for secrets\n")


def test_startup_names_each_provider_without_a_central_key() -> None:
    from aibridge.shell.run import missing_credentials

    assert missing_credentials(load_config({"db": "x.db"}, {})) == [
        "no central openai key (AIBRIDGE_OPENAI_KEY or --openai-key): users must bring their own provider key "
        "(X-AIBridge-Token)",
        "no central anthropic key (AIBRIDGE_ANTHROPIC_KEY or --anthropic-key): users must bring their own provider "
        "key (X-AIBridge-Token)",
    ]
    assert missing_credentials(load_config({"db": "x.db", "anthropic_key": "sk-ant", "allow_byok": "false"}, {})) == [
        "no central openai key (AIBRIDGE_OPENAI_KEY or --openai-key): requests reach the provider without a key "
        "and fail there",
    ]
    # Bedrock serves Anthropic with AWS credentials
    assert missing_credentials(load_config({"db": "x.db", "openai_key": "sk", "bedrock_region": "us-east-1"}, {})) == []
