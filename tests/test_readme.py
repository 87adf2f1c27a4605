"""README.rst's configuration table is the configuration: every option, its real default."""

from __future__ import annotations

import re
from pathlib import Path

from aibridge.config import OPTIONS, shown_default

README = Path(__file__).resolve().parents[1] / "README.rst"


def test_configuration_table_lists_every_option_with_its_default() -> None:
    text = README.read_text()
    start = text.index("\nConfiguration\n-------------\n") + 28
    end = re.compile(r"\n[^\n]+\n-{3,}\n").search(text, start)
    section = text[start : end.start() if end else len(text)]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^``(\w+)``\s+(\S+(?: \S+)?)\s{2,}", section, re.M)}
    assert rows == {o.name: shown_default(o) for o in OPTIONS}
