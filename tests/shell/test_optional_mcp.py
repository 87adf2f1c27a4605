"""The official MCP SDK is an optional extra: without it the gateway imports and runs,
and configuring an MCP server says what to install."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r'''
import pkgutil, sys
sys.modules["mcp"] = None      # as if `pip install aibridge` without the [mcp] extra
sys.modules["httpx2"] = None
import importlib, aibridge
for info in pkgutil.walk_packages(aibridge.__path__, "aibridge."):
    if info.name not in ("aibridge.shell.mcp_client", "aibridge.__main__"):
        importlib.import_module(info.name)
import trio
from aibridge.config import ConfigError, load_config
from aibridge.shell.mcp_loop import install_mcp
config = load_config({"db": ":memory:", "mcp_server_url": "http://127.0.0.1:9/mcp"}, env={})
trio.run(install_mcp, object(), load_config({"db": ":memory:"}, env={}))  # none configured: fine
try:
    trio.run(install_mcp, object(), config)
except ConfigError as exc:
    print(exc)
'''


def test_gateway_imports_without_the_mcp_sdk_and_names_the_extra_when_needed() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("MCP servers are configured but the MCP client is not installed (")
    assert result.stdout.rstrip().endswith("install it with: pip install 'aibridge[mcp]'")
