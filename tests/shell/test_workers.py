"""``workers = 2``: two gateway processes on one port, one SQLite file, a clean SIGTERM.

Real processes (``aibridge serve --workers 2`` and ``aibridge fake-upstream``)
on 127.0.0.1; the records are read back from the shared database file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aibridge.shell import store as store_mod
from aibridge.shell.workers import reuseport_socket

AIBRIDGE = [sys.executable, "-m", "aibridge"]


def _free_port() -> int:
    sock = reuseport_socket("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"process exited with {proc.returncode}"
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"{url} not up after {timeout} s")


@pytest.fixture
def fake_upstream(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([*AIBRIDGE, "fake-upstream", "--listen", f"127.0.0.1:{port}", "--chunks", "3"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_http(f"http://127.0.0.1:{port}/v1/models", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rfind(b")") + 2 :].split()[1]) == pid:
                out.append(int(entry))
    return out


def test_two_workers_share_port_and_store_and_drain_on_sigterm(tmp_path: Path, fake_upstream: str) -> None:
    db = tmp_path / "shared.db"
    created = subprocess.run([*AIBRIDGE, "keys", "create", "--user", "wanda", "--format", "json", "--db", str(db)],
                             check=True, capture_output=True)
    key = json.loads(created.stdout)["key"]
    port = _free_port()
    env = {**os.environ, "AIBRIDGE_OPENAI_KEY": "sk-workers-central-4321"}
    proc = subprocess.Popen(
        [*AIBRIDGE, "serve", "--workers", "2", "--listen", f"127.0.0.1:{port}", "--db", str(db),
         "--openai-base-url", fake_upstream + "/v1/", "--retention", "0", "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/healthz", proc)
        # both workers up (each one answers on the shared port once started)
        deadline = time.monotonic() + 30
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_children(proc.pid)) >= 2
        # fresh connections are spread by the kernel (SO_REUSEPORT) over both workers
        for i in range(12):
            with httpx.Client(base_url=base, timeout=10) as client:
                reply = client.post("/openai/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                                    json={"model": "gpt-4.1", "messages": [{"role": "user", "content": f"task {i}"}]})
            assert reply.status_code == 200
            assert reply.json()["choices"][0]["message"]["content"] == "hello " * 3
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr.decode()
    reader = store_mod.open_reader(db)
    try:
        items = store_mod.list_interceptions(reader, limit=100)
    finally:
        reader.conn.close()
    assert sorted(item["user_prompts"][0]["prompt"] for item in items) == sorted(f"task {i}" for i in range(12))
    assert all(item["status"] == "completed" for item in items)
    assert [(u["input_tokens"], u["output_tokens"]) for item in items for u in item["token_usages"]] == [(10, 3)] * 12
