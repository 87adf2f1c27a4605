"""Replay the fuzz seed corpus (and any crash reproducers) through every harness, in CI."""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz.harnesses import HARNESSES

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus"
CASES = sorted((p.parent.name, p) for p in CORPUS.glob("*/*") if p.is_file() and p.parent.name in HARNESSES)


def test_every_harness_has_seeds() -> None:
    assert {name for name, _ in CASES} == set(HARNESSES)


@pytest.mark.parametrize(("harness", "path"), CASES, ids=[f"{n}/{p.name}" for n, p in CASES])
def test_corpus_input_keeps_the_invariant(harness: str, path: Path) -> None:
    HARNESSES[harness](path.read_bytes())
