"""Retention: what the purge deletes, the timer under Trio's autojump clock, durations, config.

Everything runs against real SQLite files, seeded through the real writer.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from aibridge.cli import main
from aibridge.config import ConfigError, load_config
from aibridge.core.model import TokenUsage
from aibridge.core.retention import DurationError, format_duration, parse_duration
from aibridge.shell import store as store_mod
from aibridge.shell.retention import purge_once, run_retention_timer
from aibridge.shell.store import CHILD_TABLES, SQLiteStore
from aibridge.shell.writer import AuditWriter
from tests.audit_seed import Seed, records_for, seed

DAY = 86400.0
NOW = 1_805_000_000.0


def full(id: str, started_at: float, *, ended: bool = True) -> Seed:
    """An interception with one of each child row."""
    return Seed(
        id=id, started_at=started_at, ended_at=started_at + 3 if ended else None,
        usages=(TokenUsage(provider_response_id=f"msg_{id}", input_tokens=12, output_tokens=34),),
        prompt=f"prompt of {id}", tools=(("list_files", '{"dir":"src"}'),), thoughts=(f"thinking about {id}",),
    )


def config(tmp_path: Path, **flags: str) -> Any:
    return load_config({"db": str(tmp_path / "r.db"), **flags}, env={})


def make_writer(store: SQLiteStore, **kw: Any) -> AuditWriter:
    writer = AuditWriter(store, **kw)
    if hasattr(writer, "probe_interval"):
        # no idle store probes: their deadlines would move the mock clock under the timer
        writer.probe_interval = 0
    return writer


def ids(path: Path) -> set[str]:
    db = store_mod.open_reader(path)
    try:
        return {row[0] for row in db.execute("SELECT id FROM interceptions")}
    finally:
        db.conn.close()


def orphans(path: Path) -> dict[str, int]:
    db = store_mod.open_reader(path)
    try:
        return {
            t: db.execute(
                f"SELECT count(*) FROM {t} WHERE interception_id NOT IN (SELECT id FROM interceptions)"
            ).fetchone()[0]
            for t in CHILD_TABLES
        }
    finally:
        db.conn.close()


def child_counts(path: Path) -> dict[str, int]:
    db = store_mod.open_reader(path)
    try:
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in CHILD_TABLES}
    finally:
        db.conn.close()


async def run_with_writer(path: Path, body: Any, **writer_kw: Any) -> Any:
    store = SQLiteStore(path)
    store.ensure_user(Seed().user_id, Seed().user_name, 0.0)  # interceptions reference their user
    writer = make_writer(store, **writer_kw)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.serve)
            try:
                return await body(writer)
            finally:
                writer.close()
    finally:
        store.close()


# -- the retention case, with our own data ------------------------------------------------------


async def test_purge_deletes_old_ended_interceptions_with_children_and_zero_deletes_nothing(tmp_path: Path) -> None:
    # retention 14d: 13 days old stays, 15 days old goes, 20 days old but unfinished stays
    path = tmp_path / "r.db"
    young, old, unfinished = full("young-13d", NOW - 13 * DAY), full("old-15d", NOW - 15 * DAY), \
        full("open-20d", NOW - 20 * DAY, ended=False)

    async def body(writer: AuditWriter) -> tuple[int, int]:
        for s in (young, old, unfinished):
            await writer.record(*records_for(s))
        await writer.flush()
        assert child_counts(path) == dict.fromkeys(CHILD_TABLES, 3)
        first = await purge_once(writer, config(tmp_path, retention="14d"), NOW)
        assert ids(path) == {"young-13d", "open-20d"}
        assert child_counts(path) == dict.fromkeys(CHILD_TABLES, 2)
        again = await purge_once(writer, config(tmp_path, retention="0"), NOW + 365 * DAY)
        return first, again

    assert await run_with_writer(path, body) == (1, 0)
    assert ids(path) == {"young-13d", "open-20d"}
    assert orphans(path) == dict.fromkeys(CHILD_TABLES, 0)


async def test_purge_runs_in_bounded_batches_until_done(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    seed(path, [full(f"old-{n:04d}", NOW - 40 * DAY + n) for n in range(230)] + [full("keep", NOW - DAY)])

    async def body(writer: AuditWriter) -> int:
        # a record queued while the purge runs is still written
        purged = await writer.purge(NOW - 30 * DAY)
        await writer.record(*records_for(full("during", NOW)))
        await writer.flush()
        return purged

    assert await run_with_writer(path, body, purge_batch=50) == 230
    assert ids(path) == {"keep", "during"}
    assert orphans(path) == dict.fromkeys(CHILD_TABLES, 0)


async def test_records_queued_during_a_large_purge_are_written_between_its_batches(tmp_path: Path) -> None:
    """Writes keep flowing: requests recorded while a purge runs are committed before it ends."""
    path = tmp_path / "r.db"
    seed(path, [full(f"old-{n:04d}", NOW - 40 * DAY + n) for n in range(600)])
    old_left_when_written: list[int] = []

    def written(records: Any, seconds: float) -> None:
        db = store_mod.open_reader(path)
        try:
            old_left_when_written.append(
                db.execute("SELECT count(*) FROM interceptions WHERE id LIKE 'old-%'").fetchone()[0])
        finally:
            db.conn.close()

    async def body(writer: AuditWriter) -> int:
        purged: list[int] = []

        async def purge() -> None:
            purged.append(await writer.purge(NOW - 30 * DAY))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(purge)
            await trio.testing.wait_all_tasks_blocked()  # the writer is deleting the first batch
            for n in range(3):
                await writer.record(*records_for(full(f"during-{n}", NOW)))
        await writer.flush()
        return purged[0]

    assert await run_with_writer(path, body, purge_batch=50, on_batch=written) == 600
    assert ids(path) == {"during-0", "during-1", "during-2"}
    assert orphans(path) == dict.fromkeys(CHILD_TABLES, 0)
    # the three requests' records went in after the first batch, with most of the purge still to do
    assert old_left_when_written[0] == 550


async def test_prompt_retention_blanks_prompts_but_keeps_usage(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    seed(path, [full("week-old", NOW - 7 * DAY), full("hour-old", NOW - 3600)])

    async def body(writer: AuditWriter) -> int:
        return await purge_once(writer, config(tmp_path, retention="60d", prompt_retention="2d"), NOW)

    assert await run_with_writer(path, body) == 0
    db = store_mod.open_reader(path)
    old = store_mod.get_interception(db, "week-old")
    new = store_mod.get_interception(db, "hour-old")
    db.conn.close()
    assert old is not None and new is not None
    assert [p["prompt"] for p in old["user_prompts"]] == [""]
    assert [p["prompt"] for p in new["user_prompts"]] == ["prompt of hour-old"]
    assert old["token_usages"][0]["output_tokens"] == 34
    assert old["tool_usages"][0]["tool"] == "list_files"


# -- the timer under the autojump clock ---------------------------------------------------------


async def test_timer_purges_every_interval(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    path = tmp_path / "r.db"
    cfg = config(tmp_path, retention="30d", retention_interval="1h")
    seeds = [
        full("a-31d", NOW - 31 * DAY),
        full("b-30d-minus-30m", NOW - 30 * DAY + 1800),  # crosses the cutoff half an hour in
        full("c-29d", NOW - 29 * DAY),  # crosses after a day: not within these ticks
        full("d-40d-open", NOW - 40 * DAY, ended=False),
    ]
    ticks: list[float] = []
    tick_events = [trio.Event() for _ in range(3)]
    t0 = trio.current_time()

    def clock() -> float:
        ticks.append(trio.current_time() - t0)
        if len(ticks) <= len(tick_events):
            tick_events[len(ticks) - 1].set()
        return NOW + trio.current_time() - t0

    async def body(writer: AuditWriter) -> None:
        for s in seeds:
            await writer.record(*records_for(s))
        await writer.flush()
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(run_retention_timer, writer, cfg, clock=clock))
            # Tick n + 1 happens only after tick n's purge has completed.
            await tick_events[1].wait()
            assert ids(path) == {"b-30d-minus-30m", "c-29d", "d-40d-open"}
            await tick_events[2].wait()
            assert ids(path) == {"c-29d", "d-40d-open"}
            nursery.cancel_scope.cancel()

    await run_with_writer(path, body)
    assert ticks[:3] == [0.0, 3600.0, 7200.0]
    assert orphans(path) == dict.fromkeys(CHILD_TABLES, 0)


async def test_timer_with_retention_zero_never_purges(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    path = tmp_path / "r.db"
    seed(path, [full("ancient", 1_000_000.0)])
    store = SQLiteStore(path)
    writer = make_writer(store)
    cfg = config(tmp_path, retention="0", retention_interval="1m")
    start = trio.current_time()
    with trio.fail_after(3 * DAY):
        await run_retention_timer(writer, cfg, clock=lambda: NOW)
    assert trio.current_time() == start  # returned at once: nothing to do, ever
    store.close()
    assert ids(path) == {"ancient"}


# -- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("45s", 45), ("10m", 600), ("1h30m", 5400), ("90d", 90 * 86400), ("2w", 14 * 86400),
     ("1w2d3h4m5s", 788645), (" 12H ", 43200)],
)
def test_duration_examples(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "ten minutes", "1.5h", "-5m", "5x", "m", "5m5m", "1h 30m", "0s0"])
def test_duration_garbage_is_rejected_with_a_clear_message(text: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)
    assert "expected e.g. 30s, 10m, 1h30m, 90d or 2w" in str(info.value)


@given(st.integers(min_value=0, max_value=10**9))
def test_duration_round_trip(seconds: int) -> None:
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert format_duration(parse_duration(text)) == text


@given(st.dictionaries(st.sampled_from("smhdw"), st.integers(min_value=0, max_value=10**6), min_size=1))
def test_any_unit_combination_parses_to_its_sum(parts: dict[str, int]) -> None:
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = "".join(f"{n}{u}" for u, n in parts.items())
    assert parse_duration(text) == sum(n * unit[u] for u, n in parts.items())


def _grammar_accepts(text: str) -> bool:
    """Reference: ``0``, or number+unit pairs with each unit at most once."""
    value = text.strip().lower()
    if value == "0":
        return True
    if not re.fullmatch(r"(?:\d+[smhdw])+", value):
        return False
    units = re.findall(r"[smhdw]", value)
    return len(units) == len(set(units))


@given(st.text(alphabet=st.sampled_from("0123456789smhdwx .-"), max_size=10) | st.text(max_size=8))
def test_parser_agrees_with_the_grammar(text: str) -> None:
    try:
        parse_duration(text)
    except DurationError:
        assert not _grammar_accepts(text)
    else:
        assert _grammar_accepts(text)


# -- configuration ---------------------------------------------------------------------------------


def test_retention_from_yaml_and_coder_environment(tmp_path: Path) -> None:
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("aibridge:\n  retention: 90d\n  retention_interval: 15m\n  prompt_retention: 1w\n")
    cfg = load_config({}, env={}, config_path=yaml_file)
    assert (cfg.retention, cfg.retention_interval, cfg.prompt_retention) == (90 * DAY, 900.0, 7 * DAY)
    cfg = load_config({}, env={"CODER_AIBRIDGE_RETENTION": "2w"}, config_path=yaml_file)
    assert cfg.retention == 14 * DAY
    assert load_config({}, env={}).retention == 60 * DAY
    assert load_config({}, env={"AIBRIDGE_RETENTION": "0"}).retention == 0
    with pytest.raises(ConfigError, match=r"invalid retention \(--retention, from environment\).*'5 days'"):
        load_config({}, env={"CODER_AIBRIDGE_RETENTION": "5 days"})


# -- the purge command ------------------------------------------------------------------------------


def test_purge_command_dry_run_then_delete(tmp_path: Path) -> None:
    import time

    path = tmp_path / "cli.db"
    now = time.time()
    seed(path, [full("old", now - 100 * DAY), full("older", now - 200 * DAY), full("new", now - DAY),
                full("old-open", now - 300 * DAY, ended=False)])
    runner = CliRunner()
    dry = runner.invoke(main, ["purge", "--older-than", "90d", "--dry-run", "--db", str(path)])
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith("would delete 2 interceptions started before ")
    assert ids(path) == {"old", "older", "new", "old-open"}
    real = runner.invoke(main, ["purge", "--older-than", "90d", "--db", str(path)])
    assert real.exit_code == 0, real.output
    assert real.output.startswith("deleted 2 interceptions started before ")
    assert ids(path) == {"new", "old-open"}
    assert orphans(path) == dict.fromkeys(CHILD_TABLES, 0)
    for bad in ("0", "ninety days"):
        result = runner.invoke(main, ["purge", "--older-than", bad, "--db", str(path)])
        assert result.exit_code == 2
        assert "invalid --older-than" in result.output
