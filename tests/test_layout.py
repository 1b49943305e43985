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


COMPOSITION_ROOT = Path("flowbus/node.py")


def test_flowbus_does_not_import_gateway_or_endpoints() -> None:
    """The core imports neither the gateway nor the built-ins, except in the composition root."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "flowbus").rglob("*.py")
        if path.relative_to(ROOT) != COMPOSITION_ROOT
        and any(name.split(".")[0] in {"gateway", "endpoints"} for name in _imports(path))
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


# -- one built-in application never reaches into another's modules -----------------------------

_ENDPOINT_MODULES = set(_modules("endpoints"))
_PACKAGES = {name for name in _ENDPOINT_MODULES if (ROOT / Path(*name.split("."))).is_dir()}


def _app_of(module: str) -> str | None:
    """The built-in application a module belongs to (``endpoints.flows.api``: ``flows``;
    ``endpoints.scheduler``: ``scheduler``); None outside one (``endpoints`` itself)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "endpoints" and len(parts) > 1 else None


def _imported_names(module: str, source: str) -> set[str]:
    """What ``source`` (the text of ``module``) imports, relative imports resolved; for
    ``from package import name`` both ``package`` and ``package.name`` (which may be a module)."""
    package = module.split(".") if module in _PACKAGES else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, *([node.module] if node.module else [])])
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def app_to_app_offenders(module: str, source: str) -> list[str]:
    """The imports by ``module`` of another built-in application's modules: an application
    imports another only through that one's public module (``endpoints.flows``, not
    ``endpoints.flows.model``)."""
    app = _app_of(module)
    if app is None:
        return []
    return [
        f"{module}: {name}"
        for name in sorted(_imported_names(module, source))
        if _app_of(name) not in (None, app) and name in _ENDPOINT_MODULES and name != f"endpoints.{_app_of(name)}"
    ]


def test_builtin_apps_import_each_other_only_through_their_public_module() -> None:
    """A module of one built-in application (``endpoints/<app>.py``, ``endpoints/<app>/...``)
    imports another application only through its public module."""
    offenders = [
        offender
        for module in sorted(_ENDPOINT_MODULES)
        for offender in app_to_app_offenders(module, _source(module).read_text())
    ]
    assert offenders == []


def _source(module: str) -> Path:
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if module in _PACKAGES else path.with_suffix(".py")


@pytest.mark.parametrize(
    ("module", "source", "offends"),
    [
        ("endpoints.scheduler", "from endpoints.flows import Clock, CronObjects", False),
        ("endpoints.scheduler", "import endpoints.flows", False),
        ("endpoints.scheduler", "from endpoints import flows", False),
        ("endpoints.scheduler", "from flowbus import Application", False),
        ("endpoints.scheduler", "from endpoints.flows.model import EXECUTIONS", True),
        ("endpoints.scheduler", "from endpoints.flows import model", True),
        ("endpoints.scheduler", "import endpoints.flows.cron", True),
        ("endpoints.scheduler", "from .flows import cron", True),
        ("endpoints.flows.api", "from endpoints.flows.model import FLOWS", False),
        ("endpoints.flows.api", "from .model import FLOWS", False),
        ("endpoints.flows.api", "from endpoints.scheduler import create_app", False),
        ("endpoints.flows.api", "from ..scheduler import create_app", False),
        ("endpoints", "from endpoints.flows.model import FLOWS", False),
    ],
)
def test_the_app_to_app_rule_reads_every_form_of_import(module: str, source: str, offends: bool) -> None:
    assert bool(app_to_app_offenders(module, source)) is offends
