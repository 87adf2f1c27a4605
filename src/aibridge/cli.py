"""The ``aibridge`` command line.

Every command that reads or writes the store takes the same ``--db`` and
``--config`` options as ``serve``; ``serve`` takes one flag per configuration
option (generated from :data:`aibridge.config.OPTIONS`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator
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


def _single_leaf(exc: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups of one, else ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@contextlib.contextmanager
def _startup_errors(listen: str) -> Iterator[None]:
    """A port in use or a store that cannot be opened: one line, not a traceback."""
    from aibridge.shell.store import StoreError

    try:
        yield
    except BaseException as exc:
        leaf = _single_leaf(exc)
        if isinstance(leaf, StoreError):
            _fail(str(leaf))
        if isinstance(leaf, OSError) and leaf.errno in _BIND_ERRORS:
            _fail(f"cannot listen on {listen}: {leaf.strerror} (errno {leaf.errno})")
        raise


#: what binding the listening socket can fail with (anything else keeps its traceback)
_BIND_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


def _load(flags: dict[str, Any], config_path: str | None) -> Any:
    try:
        return load_config(flags, os.environ, config_path,
                           warn=lambda m: click.echo(f"aibridge: warning: {m}", err=True))
    except ConfigError as exc:
        _fail(str(exc))


def store_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--config", "config_path", default=None, help="YAML config file (keys under 'aibridge:')")(func)
    func = click.option("--db", default=None, help="SQLite audit database path [default: ./aibridge.db]")(func)
    return func


def config_flags(func: Callable[..., Any]) -> Callable[..., Any]:
    """One flag per option of the configuration table."""
    for option in reversed(OPTIONS):
        if option.yaml_only or option.name == "db":
            continue
        flag = "--" + option.name.replace("_", "-")
        # default=None so that the environment and the YAML file can still win
        text = f"{option.help} [default: {config_mod.shown_default(option)}]"
        if option.parse is config_mod._bool:
            func = click.option(f"{flag}/--no-{flag[2:]}", option.name, default=None, help=text)(func)
        else:
            func = click.option(flag, option.name, default=None, help=text)(func)
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
    with _startup_errors(config.listen):
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
    user = user.strip()
    if not user:
        _fail("invalid --user: a user name must not be empty")
    if len(user) > 200 or not user.isprintable():
        _fail("invalid --user: at most 200 printable characters (no newlines or control characters)")
    expires_at = None
    if expires is not None:
        try:
            lifetime = parse_duration(expires)
        except DurationError as exc:
            _fail(f"invalid --expires: {exc}")
        if lifetime <= 0:
            _fail("invalid --expires: a key's lifetime must be longer than 0 (leave it out for no expiry)")
        expires_at = now + lifetime
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
    now = time.time()
    expired_flags = [row["expires_at"] is not None and row["expires_at"] <= now for row in rows]
    for row in rows:
        for field in ("created_at", "expires_at", "revoked_at"):
            row[field] = rfc3339(row[field])
    if fmt == "json":
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"{'ID':36}  {'PREFIX':10}  {'USER':16}  {'ADMIN':5}  STATE")
    for row, expired in zip(rows, expired_flags, strict=True):
        if row["revoked_at"]:
            state = "revoked " + row["revoked_at"]
        elif expired:
            state = "expired " + row["expires_at"]
        elif row["expires_at"]:
            state = "active, expires " + row["expires_at"]
        else:
            state = "active"
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


def filter_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The audit API's filters as flags (same names, same validation)."""
    for name, help_text in reversed((
        ("user", "user name or id"),
        ("provider", "openai, anthropic or bedrock"),
        ("model", "model as sent upstream"),
        ("client", "detected client, e.g. 'Claude Code'"),
        ("status", "completed, failed or client_disconnected"),
        ("started-after", "RFC 3339 time (inclusive)"),
        ("started-before", "RFC 3339 time (exclusive)"),
    )):
        func = click.option(f"--{name}", name.replace("-", "_"), default=None, help=help_text)(func)
    return func


def _audit_query(filters: dict[str, Any]) -> Any:
    from aibridge.core.audit_query import build_query
    from aibridge.core.errors import ClientError

    try:
        return build_query(**filters)
    except ClientError as exc:
        _fail(exc.message)


def _open_reader(db: str | None, config_path: str | None) -> Any:
    """The store's read side on an existing database (migrated, so indexes are current)."""
    config = _load({"db": db}, config_path)
    if not os.path.exists(config.db):
        _fail(f"no audit database at {config.db}")
    return _open_store(config.db, config_path).db


@interceptions.command("list")
@filter_options
@click.option("--limit", default=100, type=click.IntRange(1, 1000))
@click.option("--after-id", default=None, help="cursor: the last id of the previous page")
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="table")
@store_options
def interceptions_list(limit: int, after_id: str | None, fmt: str, db: str | None, config_path: str | None,
                       **filters: Any) -> None:
    """Recorded interceptions, newest first (JSON shape of the audit API).

    When more records follow, the next page's cursor is printed on stderr.
    """
    from aibridge.shell.store import UnknownCursor, list_page

    query = _audit_query(filters)
    reader = _open_reader(db, config_path)
    try:
        items, next_id = list_page(reader, query, limit=limit, after_id=after_id)
    except UnknownCursor as exc:
        _fail(str(exc))
    finally:
        reader.conn.close()
    if fmt == "json":
        click.echo(orjson.dumps(items, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render_table(items))
    if next_id is not None:
        click.echo(f"more: --after-id {next_id}", err=True)


@main.command()
@click.option("--group-by", type=click.Choice(["user", "model", "provider", "client", "day"]), default="user")
@filter_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@store_options
def usage(group_by: str, fmt: str, db: str | None, config_path: str | None, **filters: Any) -> None:
    """Interception counts and token sums per user, model, provider, client or day."""
    from aibridge.shell.store import usage_report

    query = _audit_query(filters)
    reader = _open_reader(db, config_path)
    try:
        groups = usage_report(reader, query, group_by=group_by)
    finally:
        reader.conn.close()
    if fmt == "json":
        click.echo(orjson.dumps(groups, option=orjson.OPT_INDENT_2).decode())
        return
    columns = ("interceptions", "input_tokens", "output_tokens", "cache_read_input_tokens",
               "cache_write_input_tokens", "reasoning_tokens")
    titles = ("REQUESTS", "INPUT", "OUTPUT", "CACHE READ", "CACHE WRITE", "REASONING")
    width = max([len(group_by)] + [len(str(g["key"])) for g in groups]) + 2
    click.echo(f"{group_by.upper():{width}}" + "".join(f"{t:>14}" for t in titles))
    for g in groups:
        click.echo(f"{str(g['key']):{width}}" + "".join(f"{g[c]:>14,}" for c in columns))
    if groups:
        click.echo(f"{'TOTAL':{width}}" + "".join(f"{sum(g[c] for g in groups):>14,}" for c in columns))


@main.command()
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--output", "-o", default="-", type=click.Path(dir_okay=False, allow_dash=True),
              help="file to write ('-': stdout)")
@filter_options
@store_options
def export(fmt: str, output: str, db: str | None, config_path: str | None, **filters: Any) -> None:
    """Stream every matching interception as JSON lines or CSV (a page at a time)."""
    from aibridge.core.export import encode_csv, encode_jsonl
    from aibridge.shell.store import count_interceptions, iter_interceptions

    query = _audit_query(filters)
    reader = _open_reader(db, config_path)
    out = click.open_file(output, "wb")
    show_progress = output != "-" and sys.stderr.isatty()
    total = count_interceptions(reader, query) if show_progress else 0
    written = 0
    try:
        with click.progressbar(length=total, label="exporting", file=sys.stderr) if show_progress else _Quiet() as bar:
            if fmt == "csv":
                out.write(encode_csv([], header=True).encode())
            page: list[dict[str, Any]] = []
            for item in iter_interceptions(reader, query):
                page.append(item)
                if len(page) == 500:
                    out.write(encode_jsonl(page) if fmt == "jsonl" else encode_csv(page).encode())
                    bar.update(len(page))
                    written += len(page)
                    page = []
            out.write(encode_jsonl(page) if fmt == "jsonl" else encode_csv(page).encode())
            bar.update(len(page))
            written += len(page)
    finally:
        reader.conn.close()
        if output != "-":
            out.close()
    if output != "-":
        click.echo(f"exported {written} interceptions to {output}", err=True)


class _Quiet:
    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


@main.command()
@click.option("--older-than", required=True, help="delete ended interceptions started longer ago, e.g. 90d")
@click.option("--dry-run", is_flag=True, help="only count what would be deleted")
@store_options
def purge(older_than: str, dry_run: bool, db: str | None, config_path: str | None) -> None:
    """Delete ended interceptions (with all their child rows) older than a duration."""
    try:
        seconds = parse_duration(older_than)
    except DurationError as exc:
        _fail(f"invalid --older-than: {exc}")
    if seconds <= 0:
        _fail("invalid --older-than: must be a positive duration such as 30d (0 would delete everything)")
    config = _load({"db": db}, config_path)
    if not os.path.exists(config.db):
        _fail(f"no audit database at {config.db}")
    store = _open_store(config.db, config_path)
    cutoff = time.time() - seconds
    try:
        if dry_run:
            n = store.count_purgeable(cutoff)
            click.echo(f"would delete {n} interceptions started before {rfc3339(cutoff)}")
            return
        n = 0
        while True:
            # Bounded batches: a serving gateway keeps writing in between.
            deleted = store.purge(cutoff, batch_size=500)
            n += deleted
            if deleted < 500:
                break
    finally:
        store.close()
    click.echo(f"deleted {n} interceptions started before {rfc3339(cutoff)}")


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
@click.option("--hold", default=0.0, type=float, help="seconds to keep each stream open after its last chunk")
def fake_upstream(listen: str, chunks: int, latency: float, chunk_delay: float, hold: float) -> None:
    """Serve provider-shaped traffic for offline clients and benchmarks."""
    from aibridge.shell.server import run_fake_upstream

    with _startup_errors(listen):
        run_fake_upstream(listen, chunks=chunks, latency=latency, chunk_delay=chunk_delay, hold=hold)


@main.command()
@click.option("--listen", default="127.0.0.1:8080", help="where the bridge listens")
@click.option("--db", default="./aibridge-demo.db", help="SQLite audit database for the demo")
def demo(listen: str, db: str) -> None:
    """Run a fake upstream, a bridge and a demo key; show a request flowing end to end."""
    from aibridge.shell.demo import run_demo

    with _startup_errors(listen):
        run_demo(listen=listen, db=db)


def entrypoint() -> None:  # pragma: no cover
    main()
