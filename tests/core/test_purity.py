"""The core stays pure: no I/O, runtime, clock, randomness or logging imports."""

from __future__ import annotations

import ast
from pathlib import Path

import aibridge.core

CORE = Path(aibridge.core.__file__).parent
FORBIDDEN = {
    "trio", "anyio", "asyncio", "httpx", "httpcore", "hypercorn", "sqlite3", "sqlite_utils",
    "socket", "threading", "multiprocessing", "subprocess", "logging", "random", "secrets",
    "time", "os", "uuid", "aibridge.shell", "aibridge.fake", "aibridge.config", "prometheus_client",
    "botocore", "mcp",
}


def _imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_core_modules_import_nothing_forbidden() -> None:
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for name in _imports(tree):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN):
                offenders.append(f"{path.relative_to(CORE.parent)}: imports {name}")
        for node in ast.walk(tree):
            if isinstance(node, (ast.AsyncFunctionDef, ast.Await, ast.AsyncFor, ast.AsyncWith)):
                offenders.append(f"{path.relative_to(CORE.parent)}:{node.lineno}: async code in the core")
    assert offenders == []


def test_purity_check_sees_a_forbidden_import() -> None:
    tree = ast.parse("import trio\nfrom httpx import AsyncClient\n")
    assert _imports(tree) == ["trio", "httpx"]
