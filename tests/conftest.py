from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Stack

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# Traffic stays on loopback: botocore's default credential chain would ask the
# instance metadata service (169.254.169.254) when a test configures Bedrock
# without keys; subprocesses inherit this.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[object]:
    """Build a stack with configuration overrides: ``make_stack(allow_byok=False)``."""
    stacks: list[Stack] = []

    def make(**overrides: object) -> Stack:
        s = Stack(tmp_path / f"s{len(stacks)}", **overrides)
        (tmp_path / f"s{len(stacks)}").mkdir()
        stacks.append(s)
        return s.start()

    yield make
    for s in stacks:
        s.stop()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at the end are killed and their pipes closed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
