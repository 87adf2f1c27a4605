"""The benchmark harness: ``python -m benchmarks.run [--quick]``.

Three kinds of process, so that no one's CPU is charged to another: the fake
upstream (``aibridge fake-upstream``), the servers under test (``aibridge
serve`` on its embedded SQLite store, with 1 and 2 ``workers``; LiteLLM's proxy
when ``litellm`` is installed), and the load generator (wrk when installed,
with ``benchmarks/post.lua``; ``benchmarks/loadgen.py`` for what wrk cannot
measure: time to first byte, idle streams). Every scenario runs each target
back to back against the same upstream process, in one run:

========================  ===================================================
scenario                  what
========================  ===================================================
chat-blocking-c1          OpenAI chat completion, 1 connection (latency)
chat-blocking-c32         the same at 32 connections (throughput)
anthropic-stream-c32      Anthropic message, 200 text deltas paced by the
                          upstream, 32 connections: TTFB, total, CPU/chunk
anthropic-stream-c1       the same, one stream at a time
idle-streams-1000         1,000 streams held open at once: memory
writer                    AuditWriter + SQLiteStore alone: rows/s
========================  ===================================================

Results: a table on stdout and ``benchmarks/results/<timestamp>.json`` (and
``latest.json``), with the targets of issue 7 checked against the measures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import orjson

if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.procs import Server, free_port, peak_rss_mb, rss_mb
from benchmarks.writer_bench import run_writer_benchmark

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PY = sys.executable
AIBRIDGE = [PY, "-m", "aibridge"]
UPSTREAM_OPENAI_KEY = "sk-bench-openai-0123456789"
UPSTREAM_ANTHROPIC_KEY = "sk-ant-bench-0123456789"
LITELLM_MASTER_KEY = "sk-litellm-bench-master"
STREAM_CHUNKS = 200
#: frames of a synthetic Anthropic stream besides the text deltas
STREAM_EXTRA_FRAMES = 5

CHAT_BODY = {"model": "gpt-4.1", "max_tokens": 64,
             "messages": [{"role": "user", "content": "Write one line about relays."}]}
STREAM_BODY = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": True,
               "messages": [{"role": "user", "content": "Tell a long story, slowly."}]}


@attrs.frozen(kw_only=True)
class Settings:
    duration: float
    latency_duration: float
    stream_duration: float
    stream_latency: float
    chunk_delay: float
    idle_streams: int
    writer_interceptions: int


FULL = Settings(duration=10, latency_duration=8, stream_duration=10, stream_latency=0.05,
                chunk_delay=0.01, idle_streams=1000, writer_interceptions=10000)
QUICK = Settings(duration=3, latency_duration=3, stream_duration=4, stream_latency=0.05,
                 chunk_delay=0.01, idle_streams=1000, writer_interceptions=3000)


@attrs.define
class Target:
    """Something to send load to: the upstream itself, an aibridge, or LiteLLM."""

    name: str
    base: str
    #: api -> (path, headers)
    routes: dict[str, tuple[str, list[str]]]
    server: Server | None = None
    db: Path | None = None


# -- the processes ---------------------------------------------------------------


def start_upstream(log_dir: Path, name: str, *, chunks: int, latency: float = 0.0,
                   chunk_delay: float = 0.0, hold: float = 0.0) -> tuple[Server, str]:
    port = free_port()
    server = Server(name, [*AIBRIDGE, "fake-upstream", "--listen", f"127.0.0.1:{port}", "--chunks", str(chunks),
                           "--latency", str(latency), "--chunk-delay", str(chunk_delay), "--hold", str(hold)],
                    log_dir=log_dir)
    base = f"http://127.0.0.1:{port}"
    server.wait_ready(base + "/v1/models")
    return server, base


def direct_target(upstream: str) -> Target:
    return Target(name="direct", base=upstream, routes={
        "chat": ("/v1/chat/completions", ["content-type: application/json",
                                          f"authorization: Bearer {UPSTREAM_OPENAI_KEY}"]),
        "messages": ("/v1/messages", ["content-type: application/json", "anthropic-version: 2023-06-01",
                                      f"x-api-key: {UPSTREAM_ANTHROPIC_KEY}"]),
    })


def start_aibridge(log_dir: Path, upstream: str, *, workers: int = 1) -> Target:
    name = "aibridge" if workers == 1 else f"aibridge-{workers}w"
    db = log_dir / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    created = subprocess.run([*AIBRIDGE, "keys", "create", "--user", "bench", "--format", "json", "--db", str(db)],
                             check=True, capture_output=True)
    key = json.loads(created.stdout)["key"]
    port = free_port()
    server = Server(name, [*AIBRIDGE, "serve", "--listen", f"127.0.0.1:{port}", "--db", str(db),
                           "--openai-base-url", upstream + "/v1/", "--anthropic-base-url", upstream + "/",
                           "--retention", "0", "--log-level", "warning", "--workers", str(workers)],
                    log_dir=log_dir,
                    env={"AIBRIDGE_OPENAI_KEY": UPSTREAM_OPENAI_KEY, "AIBRIDGE_ANTHROPIC_KEY": UPSTREAM_ANTHROPIC_KEY})
    base = f"http://127.0.0.1:{port}"
    server.wait_ready(base + "/healthz")
    return Target(name=name, base=base, server=server, db=db, routes={
        "chat": ("/openai/v1/chat/completions", ["content-type: application/json", f"authorization: Bearer {key}"]),
        "messages": ("/anthropic/v1/messages", ["content-type: application/json", "anthropic-version: 2023-06-01",
                                                f"x-api-key: {key}"]),
    })


def litellm_available() -> str | None:
    exe = Path(PY).with_name("litellm")
    if exe.exists():
        return str(exe)
    return shutil.which("litellm")


def start_litellm(log_dir: Path, upstream: str) -> Target | None:
    exe = litellm_available()
    if exe is None:
        return None
    config = log_dir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {CHAT_BODY['model']}\n"
        "    litellm_params:\n"
        f"      model: openai/{CHAT_BODY['model']}\n"
        f"      api_base: {upstream}/v1\n"
        f"      api_key: {UPSTREAM_OPENAI_KEY}\n"
        f"  - model_name: {STREAM_BODY['model']}\n"
        "    litellm_params:\n"
        f"      model: anthropic/{STREAM_BODY['model']}\n"
        f"      api_base: {upstream}\n"
        f"      api_key: {UPSTREAM_ANTHROPIC_KEY}\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_MASTER_KEY}\n"
    )
    port = free_port()
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR",
           "DISABLE_SCHEMA_UPDATE": "True", "NO_DOCS": "True"}
    server = Server("litellm", [exe, "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                                "--num_workers", "1"], log_dir=log_dir, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        server.wait_ready(base + "/health/liveliness", timeout=180)
    except RuntimeError as exc:
        print(f"  LiteLLM did not start, skipping it: {exc}", flush=True)
        server.stop()
        return None
    return Target(name="litellm", base=base, server=server, routes={
        "chat": ("/v1/chat/completions", ["content-type: application/json",
                                          f"authorization: Bearer {LITELLM_MASTER_KEY}"]),
        "messages": ("/v1/messages", ["content-type: application/json", "anthropic-version: 2023-06-01",
                                      f"authorization: Bearer {LITELLM_MASTER_KEY}"]),
    })


@contextmanager
def servers(*items: Server | Target | None) -> Iterator[None]:
    try:
        yield
    finally:
        for item in items:
            server = item.server if isinstance(item, Target) else item
            if server is not None:
                server.stop()


# -- audit rows -----------------------------------------------------------------------


def audit_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        q = lambda sql: int(conn.execute(sql).fetchone()[0])  # noqa: E731
        counts = {t: q(f"SELECT count(*) FROM {t}") for t in
                  ("interceptions", "token_usages", "user_prompts", "tool_usages", "model_thoughts")}
        counts["ended"] = q("SELECT count(*) FROM interceptions WHERE ended_at IS NOT NULL")
        counts["audited"] = q("SELECT count(*) FROM interceptions i WHERE ended_at IS NOT NULL"
                              " AND EXISTS (SELECT 1 FROM token_usages u WHERE u.interception_id = i.id)")
        return counts
    finally:
        conn.close()


def settled_counts(db: Path, timeout: float = 20.0) -> dict[str, int]:
    """Counts once every interception has ended and the numbers stop moving."""
    deadline = time.monotonic() + timeout
    last: dict[str, int] | None = None
    while True:
        counts = audit_counts(db)
        if counts == last and counts["ended"] == counts["interceptions"]:
            return counts
        if time.monotonic() > deadline:
            return counts
        last = counts
        time.sleep(0.3)


# -- load -------------------------------------------------------------------------------


def body_file(tmp: Path, name: str, body: dict[str, Any]) -> Path:
    path = tmp / f"{name}.json"
    path.write_bytes(orjson.dumps(body))
    return path


def run_wrk(url: str, body: Path, headers: list[str], connections: int, duration: float) -> dict[str, Any]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s", "--timeout", "10s",
            "-s", str(HERE / "post.lua"), url, "--", str(body), *headers]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    line = [x for x in out.splitlines() if x.startswith("{")][-1]
    r = json.loads(line)
    elapsed = r["duration_us"] / 1e6
    ok = r["requests"] - r["non_2xx"]
    return {"requests": ok, "errors": r["errors"] + r["non_2xx"], "elapsed_s": elapsed,
            "rps": ok / elapsed if elapsed else 0.0, "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "load": "wrk"}


def run_loadgen(url: str, body: Path, headers: list[str], connections: int, duration: float) -> dict[str, Any]:
    argv = [PY, "-m", "benchmarks.loadgen", "--url", url, "--body-file", str(body),
            "--connections", str(connections), "--duration", str(duration)]
    for h in headers:
        argv += ["--header", h]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=HERE.parent).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["load"] = "loadgen"
    return result


def measure(target: Target, upstream: Server, scenario: str, api: str, body: Path, connections: int,
            duration: float, *, wrk: bool, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    path, headers = target.routes[api]
    url = target.base + path
    before = settled_counts(target.db, 5) if target.db else None
    cpu0 = target.server.cpu() if target.server else 0.0
    up_cpu0 = upstream.cpu()
    if wrk:
        load = run_wrk(url, body, headers, connections, duration)
    else:
        load = run_loadgen(url, body, headers, connections, duration)
    cpu = (target.server.cpu() - cpu0) if target.server else 0.0
    up_cpu = upstream.cpu() - up_cpu0
    result: dict[str, Any] = {"scenario": scenario, "target": target.name, "connections": connections, **load}
    n = max(load["requests"], 1)
    result["proxy_cpu_ms_per_req"] = cpu * 1000 / n if target.server else None
    result["upstream_cpu_ms_per_req"] = up_cpu * 1000 / n
    result["proxy_peak_rss_mb"] = peak_rss_mb(target.server.pid) if target.server else None
    if target.db is not None and before is not None:
        after = settled_counts(target.db)
        result["rows_written"] = sum(after[t] - before[t] for t in
                                     ("interceptions", "token_usages", "user_prompts", "tool_usages", "model_thoughts"))
        result["records_lost"] = max(0, load["requests"] - (after["audited"] - before["audited"]))
    else:
        result["rows_written"] = None
        result["records_lost"] = None
    result.update(extra or {})
    if extra and "frames" in extra and target.server:
        result["proxy_cpu_us_per_chunk"] = cpu * 1e6 / (n * extra["frames"])
    print(f"  {scenario:22} {target.name:12} {result['rps']:9.1f} req/s  p50 {result['p50_ms']:8.2f} ms"
          f"  p99 {result['p99_ms']:8.2f} ms  errors {load['errors']}", flush=True)
    return result


def hold_streams(target: Target, upstream: Server, body: Path, count: int) -> dict[str, Any]:
    path, headers = target.routes["messages"]
    argv = [PY, "-m", "benchmarks.loadgen", "--url", target.base + path, "--body-file", str(body),
            "--connections", str(count), "--hold-open", "--ramp", "100"]
    for h in headers:
        argv += ["--header", h]
    before = settled_counts(target.db, 5) if target.db else None
    rss0 = rss_mb(target.server.pid) if target.server else 0.0
    cpu0 = target.server.cpu() if target.server else 0.0
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
    assert proc.stdout is not None and proc.stdin is not None
    opened = json.loads(proc.stdout.readline())
    time.sleep(1.0)  # let every relay settle into its idle wait
    rss_open = rss_mb(target.server.pid) if target.server else None
    up_rss = rss_mb(upstream.pid)
    proc.stdin.write("\n")
    proc.stdin.flush()
    out, _ = proc.communicate(timeout=120)
    load = json.loads(out.strip().splitlines()[-1])
    result: dict[str, Any] = {
        "scenario": "idle-streams-1000", "target": target.name, "connections": count, "load": "loadgen",
        "requests": load["requests"], "errors": load["errors"], "streams_open": opened["open"],
        "elapsed_s": load["elapsed_s"], "rps": load["rps"], "p50_ms": load["p50_ms"], "p99_ms": load["p99_ms"],
        "ttfb_p50_ms": load["ttfb_p50_ms"], "ttfb_p99_ms": load["ttfb_p99_ms"],
        "proxy_rss_idle_mb": rss0 if target.server else None,
        "proxy_rss_open_mb": rss_open, "proxy_peak_rss_mb": peak_rss_mb(target.server.pid) if target.server else None,
        "proxy_cpu_ms_per_req": ((target.server.cpu() - cpu0) * 1000 / max(load["requests"], 1)) if target.server else None,
        "upstream_rss_open_mb": up_rss,
    }
    if target.db is not None and before is not None:
        after = settled_counts(target.db, 30)
        result["rows_written"] = sum(after[t] - before[t] for t in
                                     ("interceptions", "token_usages", "user_prompts", "tool_usages", "model_thoughts"))
        result["records_lost"] = max(0, load["requests"] - (after["audited"] - before["audited"]))
    else:
        result["rows_written"] = result["records_lost"] = None
    rss_text = f"{rss_open:.0f} MB" if rss_open is not None else "n/a"
    print(f"  idle-streams-1000      {target.name:12} open {opened['open']}/{count}  RSS with all open {rss_text}"
          f"  failures {opened['failures']}", flush=True)
    return result


# -- report ------------------------------------------------------------------------------


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        width = spec.split(".")[0].rstrip("dfg")
        return "-".rjust(int(width) if width.isdigit() else 0)
    return format(value, spec)


def add_comparisons(results: list[dict[str, Any]]) -> None:
    by = {(r["scenario"], r["target"]): r for r in results}
    for r in results:
        direct = by.get((r["scenario"], "direct"))
        if direct is None or r["target"] == "direct":
            continue
        r["added_p50_ms"] = r["p50_ms"] - direct["p50_ms"]
        r["throughput_vs_direct"] = r["rps"] / direct["rps"] if direct["rps"] else None
        if "ttfb_p50_ms" in r and "ttfb_p50_ms" in direct:
            r["added_ttfb_p50_ms"] = r["ttfb_p50_ms"] - direct["ttfb_p50_ms"]


def table(results: list[dict[str, Any]]) -> str:
    head = (f"{'scenario':22} {'target':12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} "
            f"{'vs direct':>9} {'TTFB p50':>9} {'+TTFB':>7} {'CPU ms/req':>10} {'CPU us/chunk':>12} "
            f"{'RSS MB':>7} {'rows':>7} {'lost':>5}")
    lines = [head, "-" * len(head)]
    for r in results:
        if r["scenario"] == "writer":
            continue
        rss = r.get("proxy_rss_open_mb") or r.get("proxy_peak_rss_mb")
        lines.append(
            f"{r['scenario']:22} {r['target']:12} {_fmt(r['rps'], '8.1f')} {_fmt(r['p50_ms'], '8.2f')} "
            f"{_fmt(r['p99_ms'], '8.2f')} {_fmt(r.get('added_p50_ms'), '8.2f')} "
            f"{_fmt(r.get('throughput_vs_direct'), '9.2f')} {_fmt(r.get('ttfb_p50_ms'), '9.2f')} "
            f"{_fmt(r.get('added_ttfb_p50_ms'), '7.2f')} {_fmt(r.get('proxy_cpu_ms_per_req'), '10.3f')} "
            f"{_fmt(r.get('proxy_cpu_us_per_chunk'), '12.1f')} {_fmt(rss, '7.0f')} "
            f"{_fmt(r.get('rows_written'), '7d')} {_fmt(r.get('records_lost'), '5d')}"
        )
    for r in results:
        if r["scenario"] == "writer":
            lines.append(f"writer alone: {r['rows_per_s']:.0f} rows/s ({r['rows_written']} rows in "
                         f"{r['elapsed_s']:.2f} s, {r['lost']} lost)")
    return "\n".join(lines)


def check_targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["scenario"], r["target"]): r for r in results}
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float | None, limit: float, *, at_most: bool) -> None:
        ok = value is not None and (value <= limit if at_most else value >= limit)
        checks.append({"target": name, "measured": value, "limit": limit, "met": ok})

    c1 = by.get(("chat-blocking-c1", "aibridge"))
    check("added p50 latency, blocking, 1 connection (ms) <=", c1 and c1["added_p50_ms"], 1.5, at_most=True)
    c32 = by.get(("chat-blocking-c32", "aibridge"))
    check("throughput at 32 connections vs direct >=", c32 and c32["throughput_vs_direct"], 0.5, at_most=False)
    lite = by.get(("chat-blocking-c32", "litellm"))
    if lite is not None and c32 is not None and lite["rps"]:
        check("throughput at 32 connections vs LiteLLM >=", c32["rps"] / lite["rps"], 10.0, at_most=False)
    else:
        checks.append({"target": "throughput at 32 connections vs LiteLLM >=", "measured": None, "limit": 10.0,
                       "met": None, "note": "LiteLLM not installed"})
    st = by.get(("anthropic-stream-c32", "aibridge"))
    check("streaming added TTFB p50 (ms) <=", st and st.get("added_ttfb_p50_ms"), 2.0, at_most=True)
    check("streaming CPU per relayed chunk (us) <=", st and st.get("proxy_cpu_us_per_chunk"), 30.0, at_most=True)
    st1 = by.get(("anthropic-stream-c1", "aibridge"))
    if st1 is not None:
        checks.append({"target": "streaming added TTFB p50 at 1 connection, ms (report only)",
                       "measured": st1.get("added_ttfb_p50_ms"), "limit": 2.0, "met": None})
    idle = by.get(("idle-streams-1000", "aibridge"))
    check("RSS with 1,000 open streams (MB) <=", idle and idle.get("proxy_rss_open_mb"), 300.0, at_most=True)
    w = by.get(("writer", "writer"))
    check("writer rows/s >=", w and w["rows_per_s"], 5000.0, at_most=False)
    one, two = by.get(("chat-blocking-c32", "aibridge")), by.get(("chat-blocking-c32", "aibridge-2w"))
    if one is not None and two is not None and one["rps"]:
        checks.append({"target": "workers scaling, 2 workers vs 1 at 32 connections (report only)",
                       "measured": two["rps"] / one["rps"], "limit": 1.0, "met": None})
    lost = sum(r.get("records_lost") or 0 for r in results if r["target"].startswith("aibridge"))
    lost += sum(r.get("lost") or 0 for r in results if r["scenario"] == "writer")
    check("audit records lost, all scenarios <=", lost, 0, at_most=True)
    return checks


def machine_note() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem_gib, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "wrk": shutil.which("wrk") is not None,
            # other work on the machine skews every number: say how busy it was
            "load_average_1m": os.getloadavg()[0]}


# -- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="aibridge benchmarks: direct vs aibridge vs LiteLLM")
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute and a half)")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM even when installed")
    parser.add_argument("--no-wrk", action="store_true", help="use the built-in load generator only")
    parser.add_argument("--only", action="append", default=[],
                        help="run only these scenario groups: blocking, streaming, idle, writer")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk
    want_litellm = not args.no_litellm and litellm_available() is not None
    groups = args.only or ["blocking", "streaming", "idle", "writer"]
    started = datetime.datetime.now(datetime.UTC)
    load_at_start = os.getloadavg()[0]
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    # server logs (and the scratch databases, removed at the end) of this run
    work = RESULTS / f"run-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    log_dir = work
    print(f"aibridge benchmarks ({'quick' if args.quick else 'full'}); load: {'wrk' if use_wrk else 'loadgen'};"
          f" LiteLLM: {'yes' if want_litellm else 'not installed, skipped'}; logs in {work}", flush=True)
    results: list[dict[str, Any]] = []
    chat = body_file(work, "chat", CHAT_BODY)
    stream = body_file(work, "stream", STREAM_BODY)

    if "blocking" in groups:
        print("blocking chat completions", flush=True)
        upstream, up = start_upstream(log_dir, "upstream-blocking", chunks=20)
        bridge = start_aibridge(log_dir, up)
        bridge2 = start_aibridge(log_dir, up, workers=2)
        lite = start_litellm(log_dir, up) if want_litellm else None
        with servers(upstream, bridge, bridge2, lite):
            direct = direct_target(up)
            c1_targets = [t for t in (direct, bridge, lite) if t is not None]
            c32_targets = [t for t in (direct, bridge, bridge2, lite) if t is not None]
            for t in c1_targets:
                results.append(measure(t, upstream, "chat-blocking-c1", "chat", chat, 1,
                                       settings.latency_duration, wrk=use_wrk))
            for t in c32_targets:
                results.append(measure(t, upstream, "chat-blocking-c32", "chat", chat, 32,
                                       settings.duration, wrk=use_wrk))

    if "streaming" in groups:
        print(f"streaming Anthropic messages ({STREAM_CHUNKS} chunks, {settings.chunk_delay * 1000:g} ms apart,"
              f" {settings.stream_latency * 1000:g} ms to first byte)", flush=True)
        upstream, up = start_upstream(log_dir, "upstream-stream", chunks=STREAM_CHUNKS,
                                      latency=settings.stream_latency, chunk_delay=settings.chunk_delay)
        bridge = start_aibridge(log_dir, up)
        lite = start_litellm(log_dir, up) if want_litellm else None
        with servers(upstream, bridge, lite):
            targets = [x for x in (direct_target(up), bridge, lite) if x is not None]
            frames = {"frames": STREAM_CHUNKS + STREAM_EXTRA_FRAMES}
            for t in targets:
                results.append(measure(t, upstream, "anthropic-stream-c32", "messages", stream, 32,
                                       settings.stream_duration, wrk=False, extra=frames))
            # one stream at a time: what the relay adds when nothing queues in front of it
            for t in targets:
                results.append(measure(t, upstream, "anthropic-stream-c1", "messages", stream, 1,
                                       settings.stream_duration, wrk=False, extra=frames))

    if "idle" in groups:
        print(f"{settings.idle_streams} idle streams held open", flush=True)
        upstream, up = start_upstream(log_dir, "upstream-idle", chunks=1, hold=600)
        bridge = start_aibridge(log_dir, up)
        lite = start_litellm(log_dir, up) if want_litellm else None
        with servers(upstream, bridge, lite):
            for t in [x for x in (direct_target(up), bridge, lite) if x is not None]:
                results.append(hold_streams(t, upstream, stream, settings.idle_streams))

    if "writer" in groups:
        print("the writer alone", flush=True)
        w = run_writer_benchmark(work, settings.writer_interceptions)
        results.append({"scenario": "writer", "target": "writer", **w})
        print(f"  writer: {w['rows_per_s']:.0f} rows/s, {w['lost']} lost", flush=True)

    add_comparisons(results)
    checks = check_targets(results)
    report = {"date": started.isoformat(timespec="seconds"), "mode": "quick" if args.quick else "full",
              "machine": machine_note(), "load_average_at_start": load_at_start, "settings": attrs.asdict(settings), "load": "wrk" if use_wrk else "loadgen",
              "litellm": want_litellm, "results": results, "targets": checks}
    out = RESULTS / f"{stamp}.json"
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (RESULTS / "latest.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print()
    print(table(results))
    print()
    for c in checks:
        mark = {True: "met", False: "MISSED", None: "info"}[c["met"]]
        print(f"  [{mark:6}] {c['target']} {c['limit']:g}: measured {_fmt(c['measured'], '.3g')}")
    print(f"\nload average (1 min) at start {load_at_start:.2f}, at end {os.getloadavg()[0]:.2f}"
          f" on {os.cpu_count()} CPUs; JSON: {out}")
    for scratch in work.glob("*.db*"):
        scratch.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
