from __future__ import annotations

from aibridge.cli import main

main()
