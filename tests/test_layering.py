"""The dependency direction of the packages (docs/architecture.md): pgconn <- schema <-
{migrator, probe}, with the development tooling beside them (localpg <- localk8s), read from
the source with `ast` so a stray import anywhere in a package fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("pgconn", "schema", "migrator", "probe", "localpg", "localk8s", "scripts", "bench", "tests")
# package -> the project packages it must not import
FORBIDDEN = {
    "pgconn": {"schema", "migrator", "probe", "localpg", "localk8s", "scripts", "bench", "tests"},
    "schema": {"migrator", "probe", "localpg", "localk8s", "scripts", "bench", "tests"},
    "migrator": {"probe", "localpg", "localk8s", "scripts", "bench", "tests"},
    "probe": {"migrator", "localpg", "localk8s", "scripts", "bench", "tests"},
    "localpg": {"migrator", "probe", "localk8s", "scripts", "bench", "tests"},
    # The images run as deploy/k8s runs them, driven from outside as a cluster drives them: the
    # programs are reached through their manifests and images, never through their code.
    "localk8s": {"pgconn", "schema", "migrator", "probe", "scripts", "bench", "tests"},
    "scripts": {"migrator", "bench", "tests"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level project packages a module imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


def package_imports(package: str) -> dict[str, set[str]]:
    return {
        str(path.relative_to(REPO)): imported_packages(path) - {package}
        for path in sorted((REPO / package).rglob("*.py"))
    }


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = {
        module: sorted(imports & FORBIDDEN[package])
        for module, imports in package_imports(package).items()
        if imports & FORBIDDEN[package]
    }
    assert not wrong, f"{package} must not import {sorted(FORBIDDEN[package])}: {wrong}"


def test_the_layering_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from migrator.cli import run\n    import probe.app\n")
    assert imported_packages(module) == {"migrator", "probe"}
