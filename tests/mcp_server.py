"""A real MCP server for tests: the ``mcp`` SDK's ``MCPServer`` over Streamable HTTP.

Run as a subprocess (``python tests/mcp_server.py [TOKEN]``): it binds
127.0.0.1 on a free port, prints the port on its first stdout line, and serves
``/mcp`` until killed. With TOKEN, every request must carry
``Authorization: Bearer TOKEN`` (403 otherwise), so tests can check the bridge
sends a server's configured headers.

Tools (the project's own test data):

* ``list_projects(owner)``: the projects of an owner, as JSON text;
* ``add(a, b)``: the sum, as text;
* ``archive_project(project_id)``: always fails (the error path);
* ``drop_everything()``: exists to be filtered out by deny rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PROJECTS = {
    "marta": [{"id": "prj-4471", "name": "lighthouse", "stack": "rust"}],
    "ines": [{"id": "prj-0932", "name": "orchard", "stack": "go"}, {"id": "prj-0933", "name": "quay", "stack": "zig"}],
}


def build_app(token: str | None) -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("aibridge-test-tools")

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

    token = sys.argv[1] if len(sys.argv) > 1 else None
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(build_app(token), log_level="warning", lifespan="on")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


@contextlib.contextmanager
def running_mcp_server(token: str | None = None) -> Iterator[str]:
    """Start the server in a subprocess; yields its ``/mcp`` URL."""
    args = [sys.executable, str(Path(__file__).resolve())] + ([token] if token else [])
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
