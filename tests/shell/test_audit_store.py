"""The store's audit reads: filters, keyset paging, usage sums, export encodings.

Seeded through :meth:`SQLiteStore.write_batch` (the writer's path) into a
real SQLite file; compared with the reference shape built from the seeds.
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import attrs
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aibridge.core.audit_query import InterceptionQuery, build_query, restrict
from aibridge.core.errors import ClientError, PermissionDenied
from aibridge.core.export import CSV_COLUMNS, csv_record, encode_csv, encode_jsonl
from aibridge.core.model import TokenUsage
from aibridge.shell import store as store_mod
from tests.audit_seed import Seed, core_of, expected_item, newest_first, seed

T0 = 1_790_000_000.0


def _reader(path: Path) -> store_mod.sqlite_utils.Database:
    return store_mod.open_reader(path)


def walk(db: store_mod.sqlite_utils.Database, query: InterceptionQuery | None, page: int) -> list[str]:
    ids: list[str] = []
    after: str | None = None
    while True:
        items, after = store_mod.list_page(db, query, limit=page, after_id=after)
        assert len(items) <= page
        ids += [i["id"] for i in items]
        if after is None:
            return ids
        assert after == items[-1]["id"]


# -- examples ----------------------------------------------------------------------------


def test_list_is_newest_first_with_nested_children_and_excludes_in_flight(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    old = Seed(id="i-old", started_at=T0, prompt="rename the helper", thoughts=("look at callers",),
               usages=(TokenUsage(provider_response_id="msg_a", input_tokens=31, output_tokens=7,
                                  cache_read_input_tokens=1200, cache_write_input_tokens=45, reasoning_tokens=0,
                                  metadata={"server_tool_use": {"web_search_requests": 2}}),),
               tools=(("grep", '{"pattern":"helper"}'), ("edit", '{"path":"a.py"}')))
    new = Seed(id="i-new", started_at=T0 + 60, prompt=None)
    live = Seed(id="i-live", started_at=T0 + 120, ended_at=None)
    seed(db, [old, new, live])
    r = _reader(db)
    items = store_mod.list_interceptions(r)
    assert [core_of(i) for i in items] == [expected_item(new), expected_item(old)]
    # by id, an in-flight interception is visible (status null)
    assert core_of(store_mod.get_interception(r, "i-live")) == expected_item(live)
    assert store_mod.get_interception(r, "i-old", user_id="someone-else") is None
    assert store_mod.get_interception(r, "nope") is None


def test_every_filter_narrows_and_they_combine(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    a = Seed(id="a", user_id="u-1", user_name="noor", provider="openai", api="chat", model="gpt-x", client="Codex",
             started_at=T0)
    b = Seed(id="b", user_id="u-2", user_name="kai", started_at=T0 + 10, status="failed", upstream_status=429,
             error="slow down")
    c = Seed(id="c", user_id="u-2", user_name="kai", provider="openai", api="responses", model="gpt-x",
             client="Codex", started_at=T0 + 20, status="client_disconnected")
    seed(db, [a, b, c])
    r = _reader(db)

    def ids(**kw: str) -> list[str]:
        return [i["id"] for i in store_mod.list_interceptions(r, build_query(**kw))]

    assert ids() == ["c", "b", "a"]
    assert ids(user="kai") == ["c", "b"]
    assert ids(user="u-1") == ["a"]
    assert ids(user="nobody") == []
    assert ids(provider="openai") == ["c", "a"]
    assert ids(model="gpt-x", user="kai") == ["c"]
    assert ids(client="Claude Code") == ["b"]
    assert ids(status="failed") == ["b"]
    # started_after inclusive, started_before exclusive
    assert ids(started_after="2026-09-21T14:13:30Z") == ["c", "b"]  # T0 + 10
    assert ids(started_before="2026-09-21T14:13:30Z") == ["a"]
    assert ids(started_after="2026-09-21T14:13:20Z", started_before="2026-09-21T14:13:30Z") == ["a"]
    assert store_mod.count_interceptions(r, build_query(user="kai")) == 2


def test_usage_groups_sum_tokens_and_count_interceptions(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    u = TokenUsage(input_tokens=100, output_tokens=20, cache_read_input_tokens=3000, cache_write_input_tokens=7,
                   reasoning_tokens=5)
    day1, day2 = 1_790_035_200.0, 1_790_121_600.0  # 2026-09-22 and 2026-09-23 UTC midnights
    seed(db, [
        Seed(id="x1", user_id="u-1", user_name="noor", model="m-a", started_at=day1 + 5, usages=(u, u)),
        Seed(id="x2", user_id="u-1", user_name="noor", model="m-b", started_at=day2 + 5, usages=(u,)),
        Seed(id="x3", user_id="u-2", user_name="kai", model="m-a", started_at=day2 + 9),  # no usage rows
        Seed(id="x4", user_id="u-2", user_name="kai", model="m-a", started_at=day2 + 9, ended_at=None, usages=(u,)),
    ])
    r = _reader(db)
    by_user = store_mod.usage_report(r, group_by="user")
    assert by_user == [
        {"key": "kai", "user_id": "u-2", "interceptions": 1, "input_tokens": 0, "output_tokens": 0,
         "cache_read_input_tokens": 0, "cache_write_input_tokens": 0, "reasoning_tokens": 0},
        {"key": "noor", "user_id": "u-1", "interceptions": 2, "input_tokens": 300, "output_tokens": 60,
         "cache_read_input_tokens": 9000, "cache_write_input_tokens": 21, "reasoning_tokens": 15},
    ]
    by_day = store_mod.usage_report(r, group_by="day")
    assert [(g["key"], g["interceptions"], g["input_tokens"]) for g in by_day] == [
        ("2026-09-22", 1, 200), ("2026-09-23", 2, 100)
    ]
    by_model = store_mod.usage_report(r, build_query(started_after="2026-09-23T00:00:00Z"), group_by="model")
    assert [(g["key"], g["interceptions"], g["output_tokens"]) for g in by_model] == [("m-a", 1, 0), ("m-b", 1, 20)]
    with pytest.raises(ValueError, match="group_by"):
        store_mod.usage_report(r, group_by="colour")


def test_unknown_or_invisible_cursor_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    seed(db, [Seed(id="mine", user_id="u-1", user_name="noor"), Seed(id="theirs", user_id="u-2", user_name="kai")])
    r = _reader(db)
    with pytest.raises(store_mod.UnknownCursor):
        store_mod.list_page(r, limit=5, after_id="missing")
    with pytest.raises(store_mod.UnknownCursor):
        store_mod.list_page(r, InterceptionQuery(user_id="u-1"), limit=5, after_id="theirs")


def test_query_validation_and_visibility() -> None:
    with pytest.raises(ClientError, match="earlier than started_after"):
        build_query(started_after="2026-01-02T00:00:00Z", started_before="2026-01-01T00:00:00Z")
    with pytest.raises(ClientError, match="RFC 3339"):
        build_query(started_after="yesterday")
    with pytest.raises(ClientError, match="RFC 3339"):
        build_query(started_after="2026-01-02T00:00:00")  # no offset
    with pytest.raises(ClientError, match="status"):
        build_query(status="done")
    q = build_query(user="me")
    assert restrict(q, user_id="u-1", user_name="noor", admin=True).user == "u-1"
    assert restrict(q, user_id="u-1", user_name="noor", admin=False) == InterceptionQuery(user_id="u-1")
    assert restrict(build_query(user="noor"), user_id="u-1", user_name="noor", admin=False).user_id == "u-1"
    for other in ("kai", "u-2", "nobody"):
        with pytest.raises(PermissionDenied):
            restrict(build_query(user=other), user_id="u-1", user_name="noor", admin=False)
    assert restrict(build_query(user="kai"), user_id="u-1", user_name="noor", admin=True).user == "kai"


def test_csv_row_flattens_children() -> None:
    s = Seed(id="i-9", prompt="line one\nline, two", tools=(("read", '{"p":"x"}'), ("write", "{}")),
             thoughts=("a", "b"), usages=(TokenUsage(input_tokens=5, output_tokens=6), TokenUsage(input_tokens=1)))
    row = csv_record(expected_item(s))
    assert list(row) == list(CSV_COLUMNS) or set(row) == set(CSV_COLUMNS)
    assert (row["input_tokens"], row["output_tokens"], row["token_usages"]) == ("6", "6", "2")
    assert (row["tool_calls"], row["tools"], row["thoughts"]) == ("2", '["read","write"]', "2")
    assert (row["streaming"], row["client_session_id"], row["user_name"]) == ("true", "", "ana")
    [back] = list(csv.DictReader(io.StringIO(encode_csv([expected_item(s)], header=True))))
    assert back == row
    assert orjson.loads(encode_jsonl([expected_item(s)])) == expected_item(s)


# -- properties ----------------------------------------------------------------------------

#: few distinct times, so many records share a timestamp
_times = st.sampled_from([T0, T0 + 1, T0 + 1.5, T0 + 86400])


@st.composite
def seed_sets(draw: st.DrawFn) -> list[Seed]:
    n = draw(st.integers(min_value=0, max_value=30))
    return [
        Seed(
            id=f"{draw(st.integers(0, 99)):02d}-{k:03d}",  # ids not in insertion or time order
            user_id=draw(st.sampled_from(["u-1", "u-2"])),
            user_name="",  # filled below
            provider=draw(st.sampled_from(["anthropic", "openai"])),
            started_at=draw(_times),
            ended_at=draw(st.sampled_from([T0 + 90000, None, T0 + 90000])),
            status=draw(st.sampled_from(["completed", "failed"])),
        )
        for k in range(n)
    ]


_FILTERS = [None, build_query(provider="openai"), build_query(user="bo"), InterceptionQuery(user_id="u-1"),
            build_query(status="failed", started_after="2026-09-21T14:13:21Z")]


def _matches(s: Seed, q: InterceptionQuery | None) -> bool:
    if s.ended_at is None:
        return False
    if q is None:
        return True
    return (
        (q.provider is None or s.provider == q.provider)
        and (q.user is None or s.user_name == q.user)
        and (q.user_id is None or s.user_id == q.user_id)
        and (q.status is None or s.status == q.status)
        and (q.started_after is None or s.started_at >= q.started_after)
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seeds=seed_sets(), page=st.integers(min_value=1, max_value=7), query=st.sampled_from(_FILTERS))
def test_walking_pages_returns_each_match_once_in_order(seeds: list[Seed], page: int,
                                                        query: InterceptionQuery | None) -> None:
    names = {"u-1": "al", "u-2": "bo"}
    seeds = [attrs.evolve(s, user_name=names[s.user_id]) for s in seeds]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.db"
        seed(path, seeds)
        r = _reader(path)
        try:
            got = walk(r, query, page)
            assert got == [s.id for s in newest_first(seeds) if _matches(s, query)]
            assert [i["id"] for i in store_mod.iter_interceptions(r, query, page_size=page)] == got
        finally:
            r.conn.close()


def test_text_that_is_not_unicode_is_stored_with_replacement_characters_not_lost(tmp_path: Path) -> None:
    """A lone surrogate cannot be UTF-8; the batch (others' records with it) still goes in."""
    db = tmp_path / "a.db"
    bad = Seed(id="i-bad", started_at=T0, prompt="fix \udc00 this", thoughts=("hmm \ud800",),
               tools=(("edit", '{"path":"\udfff.py"}'),), error="upstream said \udc80", status="failed",
               usages=(TokenUsage(provider_response_id="msg_\udc00", input_tokens=3, output_tokens=4,
                                  metadata={"note": "\ud834"}),))
    good = Seed(id="i-good", started_at=T0 + 1, prompt="fine")
    seed(db, [bad, good])
    r = _reader(db)
    got = store_mod.get_interception(r, "i-bad")
    assert got is not None
    assert got["user_prompts"][0]["prompt"] == "fix \ufffd\ufffd\ufffd this"  # U+FFFD per byte of the surrogate
    assert got["model_thoughts"][0]["content"] == "hmm \ufffd\ufffd\ufffd"
    assert got["tool_usages"][0]["input"] == '{"path":"\ufffd\ufffd\ufffd.py"}'
    assert got["error"] == "upstream said \ufffd\ufffd\ufffd"
    assert got["token_usages"][0]["provider_response_id"] == "msg_\ufffd\ufffd\ufffd"
    assert got["token_usages"][0]["metadata"] == {"note": "\ufffd\ufffd\ufffd"}
    assert core_of(store_mod.get_interception(r, "i-good")) == expected_item(good)
