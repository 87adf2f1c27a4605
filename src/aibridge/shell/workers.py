"""``workers`` > 1: N gateway processes sharing one port and one SQLite store.

Each worker is a complete gateway (:func:`aibridge.shell.run.run`: its own
Trio loop, httpx pool, audit writer and nursery tree) on its own listening
socket bound with ``SO_REUSEPORT`` to the same address, so the kernel spreads
new connections over the workers (a single shared socket would let whichever
process wakes first take most of them). The workers share the audit database
file: SQLite in WAL mode with a busy timeout lets one writer per process
commit in turn.

This parent process only supervises: it migrates the schema once (so workers
never race on it), reserves the port (for ``:0`` it picks one, which every
worker then binds), starts the workers, forwards SIGTERM/SIGINT to them so each
drains its in-flight requests and audit queue, and exits non-zero if a worker
died on its own. Only worker 0 runs the retention timer.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
from typing import Any

import attrs

from aibridge.shell.store import SQLiteStore

log = logging.getLogger("aibridge.workers")


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket with SO_REUSEPORT, bound to (host, port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker_main(config: Any, index: int, host: str, port: int) -> None:
    from aibridge.shell.logs import setup_logging
    from aibridge.shell.run import run

    # Our own process group: a terminal's Ctrl-C reaches only the parent,
    # which forwards exactly one SIGTERM. (A second signal after the first
    # has started the drain would kill the worker with records still queued.)
    os.setpgid(0, 0)
    setup_logging(json_logs=config.log_json, level=config.log_level)
    sock = reuseport_socket(host, port)
    sock.listen(1024)
    sock.setblocking(False)
    # Hypercorn serves an already bound socket given as fd://N.
    overrides: dict[str, Any] = {"listen": f"fd://{sock.fileno()}", "workers": 1}
    if index > 0:
        overrides.update(retention=0.0, prompt_retention=0.0)
    log.info("worker %d (pid %d) serving %s:%d", index, multiprocessing.current_process().pid, host, port)
    run(attrs.evolve(config, **overrides))


def run_workers(config: Any) -> None:
    """Run ``config.workers`` gateway processes on one port; return when all have stopped."""
    # Create or migrate the schema once, before any worker opens the file.
    SQLiteStore(config.db).close()
    host, port = _split_listen(config.listen)
    # Holding a bound (not listening) SO_REUSEPORT socket reserves the port;
    # for port 0 it is how the workers learn which port to share.
    reservation = reuseport_socket(host, port)
    port = reservation.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    workers = [
        ctx.Process(target=_worker_main, args=(config, i, host, port), name=f"aibridge-worker-{i}")
        for i in range(config.workers)
    ]
    stopping = threading.Event()

    def forward(signum: int, _frame: Any) -> None:
        if stopping.is_set():
            return
        stopping.set()
        for w in workers:
            if w.pid is not None and w.is_alive():
                try:
                    os.kill(w.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for w in workers:
            w.start()
        log.info("aibridge listening on http://%s:%d with %d workers", host, port, len(workers))
        failed = False
        running = {w.sentinel: w for w in workers}
        while running:
            for sentinel in multiprocessing.connection.wait(list(running)):
                w = running.pop(sentinel)
                w.join()
                if w.exitcode != 0 and not stopping.is_set():
                    log.error("%s exited with %s: stopping the others", w.name, w.exitcode)
                    failed = True
                    forward(signal.SIGTERM, None)
        reservation.close()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if failed or any(w.exitcode not in (0, -signal.SIGTERM) for w in workers):
        sys.exit(1)
