"""A real MCP server for tests: the ``mcp`` SDK's ``MCPServer`` over Streamable HTTP.

Run as a subprocess (``python tests/mcp_server.py [--token T] [--tools A,B]
[--failing C]``): it binds 127.0.0.1 on a free port, prints the port on its
first stdout line, and serves ``/mcp`` until killed. With a token, every
request must carry ``Authorization: Bearer T`` (403 otherwise), so tests can
check the bridge sends a server's configured headers. ``--tools`` adds
generic tools (any arguments; they answer ``<name>: done``) and ``--failing``
generic tools that always fail: the conformance test names them after the
tools called in the recorded traffic.

Tools (the project's own test data):

* ``list_projects(owner)``: the projects of an owner, as JSON text;
* ``add(a, b)``: the sum, as text;
* ``archive_project(project_id)``: always fails (the error path);
* ``drop_everything()``: exists to be filtered out by deny rules.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: the tools every instance has (tests may add generic ones)
BASE_TOOLS = ("add", "archive_project", "drop_everything", "list_projects", "slow_count")
PROJECTS = {
    "marta": [{"id": "prj-4471", "name": "lighthouse", "stack": "rust"}],
    "ines": [{"id": "prj-0932", "name": "orchard", "stack": "go"}, {"id": "prj-0933", "name": "quay", "stack": "zig"}],
}


def _generic(name: str, fail: bool) -> Any:
    def tool() -> str:
        if fail:
            raise RuntimeError(f"{name} failed on purpose")
        return f"{name}: done"

    return tool


def build_app(token: str | None, tools: tuple[str, ...] = (), failing: tuple[str, ...] = ()) -> Any:
    from mcp.server.mcpserver import MCPServer

    # failing tools are expected here: keep their tracebacks out of the test output
    server = MCPServer("aibridge-test-tools", log_level="CRITICAL")
    for name in tools:
        server.add_tool(_generic(name, False), name=name, description=f"generic test tool {name}")
    for name in failing:
        server.add_tool(_generic(name, True), name=name, description=f"generic failing test tool {name}")

    @server.tool()
    def list_projects(owner: str) -> str:
        """List the projects of a user."""
        return json.dumps(PROJECTS.get(owner, []))

    @server.tool()
    def add(a: int, b: int) -> str:
        """Add two integers."""
        return str(a + b)

    @server.tool()
    def archive_project(project_id: str) -> str:
        """Archive a project (always fails in this test server)."""
        raise RuntimeError(f"project {project_id} is locked")

    @server.tool()
    async def slow_count(seconds: float) -> str:
        """Answer after a while (keep-alive tests)."""
        import anyio

        await anyio.sleep(seconds)
        return "counted"

    @server.tool()
    def drop_everything() -> str:
        """Dangerous: must never be injected when denied."""
        return "dropped"

    app = server.streamable_http_app()
    if token is None:
        return app

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await send({"type": "http.response.start", "status": 403, "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"forbidden"})
                return
        await app(scope, receive, send)

    return guarded


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--token")
    parser.add_argument("--tools", default="")
    parser.add_argument("--failing", default="")
    args = parser.parse_args()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(sock.getsockname()[1], flush=True)
    app = build_app(args.token, tuple(filter(None, args.tools.split(","))), tuple(filter(None, args.failing.split(","))))
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


@contextlib.contextmanager
def running_mcp_server(
    token: str | None = None, *, tools: tuple[str, ...] = (), failing: tuple[str, ...] = ()
) -> Iterator[str]:
    """Start the server in a subprocess; yields its ``/mcp`` URL."""
    args = [sys.executable, str(Path(__file__).resolve()), "--tools", ",".join(tools), "--failing", ",".join(failing)]
    if token:
        args += ["--token", token]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"MCP test server did not start (got {line!r})")
        yield f"http://127.0.0.1:{int(line)}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
