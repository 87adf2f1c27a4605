"""Run one harness under atheris: ``python -m fuzz.run sse [-- libFuzzer flags]``.

The seed corpus is ``fuzz/corpus/<harness>/``; new interesting inputs go to
``fuzz/corpus/<harness>-new/`` (review before adding them to the seeds).
Without atheris, use the Hypothesis drivers in ``tests/fuzz/`` instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in _names():
        raise SystemExit(f"usage: python -m fuzz.run {{{','.join(_names())}}} [libFuzzer flags]")
    try:
        import atheris
    except ImportError:  # pragma: no cover - optional tool
        raise SystemExit("atheris is not installed: pip install atheris (or run tests/fuzz with hypothesis)") from None
    name = argv[1]
    from fuzz.harnesses import HARNESSES

    # the harnesses (and the core modules they import) are loaded already:
    # instrument every loaded function for coverage feedback
    atheris.instrument_all()
    new = CORPUS / f"{name}-new"
    new.mkdir(exist_ok=True)
    atheris.Setup([argv[0], str(new), str(CORPUS / name), *argv[2:]], HARNESSES[name])
    atheris.Fuzz()


def _names() -> list[str]:
    from fuzz.harnesses import HARNESSES

    return sorted(HARNESSES)


if __name__ == "__main__":
    main(sys.argv)
