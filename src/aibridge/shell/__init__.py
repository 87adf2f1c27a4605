"""The I/O shell: ASGI app, upstream client, store, writer, timers, wiring.

Every ``async def`` of the project lives here. The shell makes few decisions;
it asks :mod:`aibridge.core` and does what it says.
"""

from __future__ import annotations
