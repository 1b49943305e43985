"""Guards of the codebase's shape: exports, importability and the layering rules."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("flowbus", "gateway", "endpoints")


def _modules(package: str) -> list[str]:
    names = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _isort_key(name: str) -> tuple[int, str]:
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


ALL_MODULES = [name for package in PACKAGES for name in _modules(package)]


@pytest.mark.parametrize("module", ALL_MODULES)
def test_module_imports_alone(module: str) -> None:
    """Every module imports in a fresh interpreter, with warnings as errors (no import cycles)."""
    subprocess.run([sys.executable, "-W", "error", "-c", f"import {module}"], check=True, cwd=ROOT)


@pytest.mark.parametrize("module", [m for m in ALL_MODULES if not m.endswith("__main__")])
def test_all_is_sorted_and_defined(module: str) -> None:
    """``__all__`` is sorted (constants, classes, functions: ruff's RUF022 order) and names only what exists."""
    mod = importlib.import_module(module)
    exported = getattr(mod, "__all__", None)
    if exported is None:
        return
    assert list(exported) == sorted(exported, key=_isort_key)
    missing = [name for name in exported if not hasattr(mod, name)]
    assert missing == []


def test_flowbus_does_not_import_gateway_or_endpoints() -> None:
    """The core imports neither the gateway nor the built-ins, except in the composition root."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "flowbus").rglob("*.py")
        if path.name != "cli.py" and any(name.split(".")[0] in {"gateway", "endpoints"} for name in _imports(path))
    ]
    assert offenders == []


def test_gateway_does_not_import_endpoints() -> None:
    """The gateway knows endpoints only through the registry."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "gateway").rglob("*.py")
        if any(name.split(".")[0] == "endpoints" for name in _imports(path))
    ]
    assert offenders == []


def test_builtin_apps_use_only_the_public_model() -> None:
    """Built-in applications import ``flowbus`` itself, never its submodules."""
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "endpoints").rglob("*.py")
        for name in _imports(path)
        if name.startswith("flowbus.")
    ]
    assert offenders == []
