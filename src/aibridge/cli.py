"""The ``aibridge`` command line.

Every command that reads or writes the store takes the same ``--db`` and
``--config`` options as ``serve``; ``serve`` takes one flag per configuration
option (generated from :data:`aibridge.config.OPTIONS`).
"""

from __future__ import annotations

import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import click
import orjson

from aibridge import config as config_mod
from aibridge.config import OPTIONS, ConfigError, load_config
from aibridge.core.auth import display_prefix, hash_key, new_key
from aibridge.core.retention import DurationError, parse_duration
from aibridge.core.times import rfc3339


def _fail(message: str) -> None:
    click.echo(f"aibridge: {message}", err=True)
    sys.exit(2)


def _load(flags: dict[str, Any], config_path: str | None) -> Any:
    try:
        return load_config(flags, os.environ, config_path,
                           warn=lambda m: click.echo(f"aibridge: warning: {m}", err=True))
    except ConfigError as exc:
        _fail(str(exc))


def store_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--config", "config_path", default=None, help="YAML config file (keys under 'aibridge:')")(func)
    func = click.option("--db", default=None, help="SQLite audit database path")(func)
    return func


def config_flags(func: Callable[..., Any]) -> Callable[..., Any]:
    """One flag per option of the configuration table."""
    for option in reversed(OPTIONS):
        if option.yaml_only or option.name == "db":
            continue
        flag = "--" + option.name.replace("_", "-")
        if option.parse is config_mod._bool:
            func = click.option(f"{flag}/--no-{flag[2:]}", option.name, default=None, help=option.help)(func)
        else:
            func = click.option(flag, option.name, default=None, help=option.help)(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aibridge")
def main() -> None:
    """aibridge: an auditing gateway between AI coding agents and LLM providers."""


@main.command()
@store_options
@config_flags
def serve(config_path: str | None, **flags: Any) -> None:
    """Run the gateway (Hypercorn on Trio)."""
    from aibridge.shell.logs import setup_logging
    from aibridge.shell.server import run_server

    config = _load(flags, config_path)
    if config_mod.bedrock_enabled(config):
        # Region and AWS credentials are checked now, not on the first request.
        from aibridge.shell.bedrock import BedrockTarget

        try:
            BedrockTarget.from_config(config)
        except ConfigError as exc:
            _fail(str(exc))
    setup_logging(json_logs=config.log_json, level=config.log_level)
    run_server(config)


# -- keys ----------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Create, list and revoke aibridge keys."""


def _open_store(db: str | None, config_path: str | None) -> Any:
    from aibridge.shell.store import SQLiteStore, StoreError

    config = _load({"db": db}, config_path)
    try:
        return SQLiteStore(config.db)
    except StoreError as exc:
        _fail(str(exc))


@keys.command("create")
@click.option("--user", required=True, help="user name (created if new)")
@click.option("--admin", is_flag=True, help="the key may read every user's records")
@click.option("--expires", default=None, help="lifetime, e.g. 90d or 12h")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@store_options
def keys_create(user: str, admin: bool, expires: str | None, fmt: str, db: str | None, config_path: str | None) -> None:
    """Create a key for USER and print it (only this once)."""
    now = time.time()
    expires_at = None
    if expires:
        try:
            expires_at = now + parse_duration(expires)
        except DurationError as exc:
            _fail(f"invalid --expires: {exc}")
    store = _open_store(db, config_path)
    key = new_key(secrets.token_bytes(24))
    key_id = str(uuid.uuid4())
    user_id = store.ensure_user(str(uuid.uuid4()), user, now)
    store.create_key(key_id=key_id, user_id=user_id, key_hash=hash_key(key), prefix=display_prefix(key),
                     admin=admin, now=now, expires_at=expires_at)
    store.close()
    if fmt == "json":
        click.echo(orjson.dumps({"id": key_id, "key": key, "user": user, "admin": admin,
                                 "expires_at": rfc3339(expires_at)}).decode())
    else:
        click.echo(key)
        click.echo(f"key id {key_id} for user {user}{' (admin)' if admin else ''}; it is shown only once", err=True)


@keys.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@store_options
def keys_list(fmt: str, db: str | None, config_path: str | None) -> None:
    """List keys (prefixes only; keys themselves are never stored)."""
    store = _open_store(db, config_path)
    rows = store.list_keys()
    store.close()
    for row in rows:
        for field in ("created_at", "expires_at", "revoked_at"):
            row[field] = rfc3339(row[field])
    if fmt == "json":
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"{'ID':36}  {'PREFIX':10}  {'USER':16}  {'ADMIN':5}  STATE")
    for row in rows:
        state = "revoked" if row["revoked_at"] else ("expires " + row["expires_at"] if row["expires_at"] else "active")
        click.echo(f"{row['id']:36}  {row['prefix']:10}  {row['user']:16}  {str(row['admin']).lower():5}  {state}")


@keys.command("revoke")
@click.argument("key_id")
@store_options
def keys_revoke(key_id: str, db: str | None, config_path: str | None) -> None:
    """Revoke a key by id (or display prefix)."""
    store = _open_store(db, config_path)
    ok = store.revoke_key(key_id, time.time())
    store.close()
    if not ok:
        _fail(f"no active key {key_id}")
    click.echo(f"revoked {key_id}")


# -- audit reads ------------------------------------------------------------------------


@main.group()
def interceptions() -> None:
    """Read recorded interceptions."""


@interceptions.command("list")
@click.option("--user", default=None, help="user name or id")
@click.option("--limit", default=100, type=click.IntRange(1, 1000))
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="table")
@store_options
def interceptions_list(user: str | None, limit: int, fmt: str, db: str | None, config_path: str | None) -> None:
    """Recorded interceptions, newest first (JSON shape of the audit API)."""
    from aibridge.shell.store import list_interceptions, open_reader

    config = _load({"db": db}, config_path)
    reader = open_reader(config.db)
    items = list_interceptions(reader, user=user, limit=limit)
    reader.conn.close()
    if fmt == "json":
        click.echo(orjson.dumps(items, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(render_table(items))


def render_table(items: list[dict[str, Any]]) -> str:
    lines = [f"{'STARTED':27}  {'USER':12}  {'PROVIDER':9}  {'API':9}  {'MODEL':28}  {'STATUS':19}  {'IN':>7}  {'OUT':>7}  PROMPT"]
    for it in items:
        tin = sum(u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_write_input_tokens"] for u in it["token_usages"])
        tout = sum(u["output_tokens"] for u in it["token_usages"])
        prompt = (it["user_prompts"][0]["prompt"] if it["user_prompts"] else "").replace("\n", " ")
        lines.append(
            f"{it['started_at'] or '':27}  {it['user']['name'][:12]:12}  {it['provider']:9}  {it['api']:9}  "
            f"{it['model'][:28]:28}  {it['status'] or 'in flight':19}  {tin:>7}  {tout:>7}  {prompt[:40]}"
        )
    return "\n".join(lines)


# -- fake upstream and demo -------------------------------------------------------------


@main.command("fake-upstream")
@click.option("--listen", default="127.0.0.1:9090", help="HOST:PORT")
@click.option("--chunks", default=20, type=int, help="text deltas per synthetic stream")
@click.option("--latency", default=0.0, type=float, help="seconds before the first byte")
@click.option("--chunk-delay", default=0.0, type=float, help="seconds between chunks")
def fake_upstream(listen: str, chunks: int, latency: float, chunk_delay: float) -> None:
    """Serve provider-shaped traffic for offline clients and benchmarks."""
    from aibridge.shell.server import run_fake_upstream

    run_fake_upstream(listen, chunks=chunks, latency=latency, chunk_delay=chunk_delay)


@main.command()
@click.option("--listen", default="127.0.0.1:8080", help="where the bridge listens")
@click.option("--db", default="./aibridge-demo.db", help="SQLite audit database for the demo")
def demo(listen: str, db: str) -> None:
    """Run a fake upstream, a bridge and a demo key; show a request flowing end to end."""
    from aibridge.shell.demo import run_demo

    run_demo(listen=listen, db=db)


def entrypoint() -> None:  # pragma: no cover
    main()
