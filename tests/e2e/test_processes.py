"""The real processes: ``aibridge serve`` drains on SIGTERM, ``aibridge demo`` shows a recorded request.

Each process listens on port 0 and says where it bound; the tests read that
line instead of guessing a free port.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import httpx
import orjson

from aibridge.shell import store as store_mod
from tests.harness import Stack

STARTUP = 30.0  # seconds a process may take to import and bind on a loaded CI machine


class Lines:
    """Lines of a process's output, pumped by a thread so reads can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, pattern: str, timeout: float = STARTUP) -> re.Match[str]:
        regex = re.compile(pattern)
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"process ended before {pattern!r}; saw:\n" + "\n".join(self.seen))
            self.seen.append(line)
            match = regex.search(line)
            if match:
                return match

    def rest(self, timeout: float = 10) -> list[str]:
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                return self.seen
            self.seen.append(line)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "AIBRIDGE_" not in k}


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "aibridge", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env())


def test_sigterm_drains_in_flight_streams_records_them_and_exits_0(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    keys = Stack(tmp_path)
    db = keys.db_path
    fake = spawn("fake-upstream", "--listen", "127.0.0.1:0", "--chunks", "16", "--chunk-delay", "0.05")
    processes.append(fake)
    assert fake.stdout is not None
    fake_url = Lines(fake.stdout).until(r"listening on (http://\S+)").group(1)
    key = keys.create_key("sam")  # schema and a key, as `aibridge keys create` would

    bridge = spawn("serve", "--listen", "127.0.0.1:0", "--db", db, "--anthropic-base-url", fake_url + "/",
                   "--openai-base-url", fake_url + "/v1/", "--anthropic-key", "sk-ant-central-sigterm",
                   "--openai-key", "sk-central-sigterm", "--shutdown-grace", "20")
    processes.append(bridge)
    assert bridge.stderr is not None
    log = Lines(bridge.stderr)
    url = log.until(r"aibridge listening on (http://\S+)").group(1)

    started = threading.Barrier(4)
    bodies: list[bytes] = [b""] * 3
    errors: list[BaseException] = []

    def stream(i: int) -> None:
        try:
            with httpx.stream("POST", f"{url}/anthropic/v1/messages", timeout=30, headers={"x-api-key": key},
                              json={"model": "claude-sonnet-4-5", "max_tokens": 50, "stream": True,
                                    "messages": [{"role": "user", "content": f"story {i}"}]}) as reply:
                assert reply.status_code == 200
                pieces = reply.iter_raw()
                bodies[i] = next(pieces)
                started.wait(30)
                for piece in pieces:
                    bodies[i] += piece
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            started.abort()

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    started.wait(30)  # every stream is under way
    bridge.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert errors == []
    assert bridge.wait(30) == 0
    assert "received SIGTERM" in "\n".join(log.rest())
    for body in bodies:
        assert body.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')

    reader = store_mod.open_reader(db)
    try:
        items = store_mod.list_interceptions(reader, limit=10, include_in_flight=True)
    finally:
        reader.conn.close()
    assert sorted(i["user_prompts"][0]["prompt"] for i in items) == ["story 0", "story 1", "story 2"]
    for item in items:
        assert (item["status"], item["ended_at"] is not None, item["user"]["name"]) == ("completed", True, "sam")
        [usage] = item["token_usages"]
        assert (usage["input_tokens"], usage["output_tokens"]) == (10, 16)


def test_demo_prints_the_recorded_interception_and_keeps_serving(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    db = str(tmp_path / "demo.db")
    demo = spawn("demo", "--db", db, "--listen", "127.0.0.1:0")
    processes.append(demo)
    assert demo.stdout is not None and demo.stderr is not None
    out = Lines(demo.stdout)
    url = out.until(r"aibridge on (http://\S+) ").group(1)
    out.until(r"^Recorded interception:$")
    start = len(out.seen)
    out.until(r"^The bridge keeps serving")
    record: Any = orjson.loads("\n".join(out.seen[start:-1]))
    assert (record["status"], record["provider"], record["api"], record["streaming"]) == (
        "completed", "anthropic", "messages", True)
    assert record["user"]["name"] == "demo"
    [usage] = record["token_usages"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (10, 8)
    assert [p["prompt"] for p in record["user_prompts"]] == ["Say hello through the bridge"]
    curl = out.until(r"curl -sN (\S+) -H 'x-api-key: (aib_[\w-]+)'")
    assert curl.group(1) == f"{url}/anthropic/v1/messages"
    # still serving: the printed key works
    reply = httpx.post(curl.group(1), headers={"x-api-key": curl.group(2)}, timeout=10,
                       json={"model": "claude-sonnet-4-5", "max_tokens": 5,
                             "messages": [{"role": "user", "content": "again"}]})
    assert reply.status_code == 200
    demo.send_signal(signal.SIGTERM)
    assert demo.wait(30) == 0
    # clean output: no Hypercorn "Running on" lines (nor anything else) on stderr
    stderr = demo.stderr.read()
    assert stderr == "", stderr


def test_startup_mistakes_are_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A port already in use, a database path that cannot be opened, a file that is no database."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "not.db").write_bytes(b"this is not sqlite\n" * 10)
        cases = [
            (["serve", "--listen", f"127.0.0.1:{port}", "--db", str(tmp_path / "a.db")],
             f"aibridge: cannot listen on 127.0.0.1:{port}: Address already in use (errno 98)\n"),
            (["demo", "--listen", f"127.0.0.1:{port}", "--db", str(tmp_path / "d.db")],
             f"aibridge: cannot listen on 127.0.0.1:{port}: Address already in use (errno 98)\n"),
            (["serve", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "missing" / "a.db")],
             f"aibridge: cannot open database {tmp_path / 'missing' / 'a.db'}: unable to open database file\n"),
            (["serve", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "not.db")],
             f"aibridge: cannot open database {tmp_path / 'not.db'}: file is not a database\n"),
        ]
        for args, message in cases:
            done = subprocess.run([sys.executable, "-m", "aibridge", *args], capture_output=True, text=True,
                                  env=clean_env(), timeout=60)
            assert (done.returncode, done.stderr.splitlines()[-1:], "Traceback" in done.stderr) == (
                2, [message.rstrip("\n")], False), done.stderr
