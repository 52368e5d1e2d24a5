"""core/ stays pure: no I/O, clocks, threads, randomness or adapters (docs/ARCHITECTURE.md)."""

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "core"
BANNED_MODULES = {
    "time",
    "random",
    "asyncio",
    "threading",
    "socket",
    "os",
    "uuid",
    "kazoo",
    "aiohttp",
    "reactivex",
    "pymesos",
    "adapters",
    "runtime",
    "mesoslite",
    "subprocess",
    "multiprocessing",
    "secrets",
    "pathlib",
    "io",
    "shutil",
    "tempfile",
    "signal",
    "select",
    "selectors",
    "http",
    "urllib",
    "logging",
    "structlog",
}
BANNED_CALLS = {"now", "today", "utcnow", "open", "print", "input"}


def core_files() -> list[Path]:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 8, "core/ should hold the domain modules"
    return files


def violations(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        elif isinstance(node, ast.Call):
            f = node.func
            name = (
                f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            )
            if name in BANNED_CALLS:
                found.append(f"line {node.lineno}: call of {name}()")
            continue
        else:
            continue
        found += [
            f"line {node.lineno}: import {n}" for n in names if n.split(".")[0] in BANNED_MODULES
        ]
    return found


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_is_pure(path: Path) -> None:
    assert violations(path.read_text()) == []


def test_checker_catches_impurity() -> None:
    bad = "import time\nfrom os import path\nimport datetime\nx = datetime.datetime.now()\n"
    assert violations(bad) == ["line 1: import time", "line 2: import os", "line 4: call of now()"]
