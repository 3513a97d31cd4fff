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
    # programs are reached through their manifests and images, except the probe's timing rule
    # (probe.settings), from which the bounds the manifests promise follow.
    "localk8s": {"migrator", "scripts", "bench", "tests"},
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


# Inside the migrator (issue 20): settings <- engine <- verbs <- command line. The engine (runner,
# execution, grants, session, ...) reads the settings it is given and never the parser that made them.
MIGRATOR_COMMAND_LINE = {"migrator.cli", "migrator.parser", "migrator.verbs", "migrator.__main__"}
MIGRATOR_VERBS = {"migrator.commands", "migrator.context"}
# The leaves the engine imports for its settings: they import nothing of the migrator but its errors.
MIGRATOR_SETTINGS = {"migrator.settings": {"migrator.errors", "migrator.limits"}, "migrator.limits": set()}


def migrator_imports(path: Path) -> set[str]:
    """The migrator modules a module imports: `from migrator import x` counts as `migrator.x`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "migrator":
            found.update(f"migrator.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {name for name in found if name.startswith("migrator.")}


def migrator_modules() -> dict[str, set[str]]:
    return {
        f"migrator.{path.stem}": migrator_imports(path) for path in sorted((REPO / "migrator").glob("*.py"))
    }


def test_the_migrator_engine_imports_neither_its_verbs_nor_its_command_line() -> None:
    above = MIGRATOR_COMMAND_LINE | MIGRATOR_VERBS
    modules = migrator_modules()
    engine = {name: imports for name, imports in modules.items() if name not in above}
    assert {"migrator.runner", "migrator.execution", "migrator.grants", "migrator.session"} <= set(engine)
    wrong = {name: sorted(imports & above) for name, imports in engine.items() if imports & above}
    assert not wrong, f"the engine must not import the verbs or the command line: {wrong}"


def test_the_migrator_verbs_do_not_import_the_command_line() -> None:
    modules = migrator_modules()
    wrong = {name: sorted(modules[name] & MIGRATOR_COMMAND_LINE) for name in MIGRATOR_VERBS}
    assert not any(wrong.values()), f"the verbs must not import the command line: {wrong}"


def test_the_migrator_settings_import_nothing_of_the_engine() -> None:
    modules = migrator_modules()
    wrong = {name: sorted(modules[name] - allowed) for name, allowed in MIGRATOR_SETTINGS.items()}
    assert not any(wrong.values()), f"the settings modules are leaves: {wrong}"


def test_the_migrator_layering_check_counts_from_migrator_import_x(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from migrator import cli, parser\nimport migrator.verbs\nfrom migrator.settings import X\n"
    )
    assert migrator_imports(module) == {
        "migrator.cli",
        "migrator.parser",
        "migrator.verbs",
        "migrator.settings",
    }


def test_localk8s_reads_nothing_of_the_probe_but_its_settings() -> None:
    modules: set[str] = set()
    for path in (REPO / "localk8s").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module)
    assert {name for name in modules if name.split(".")[0] == "probe"} <= {"probe.settings"}


# Issue 20: one concept per module keeps each one short; a module past this holds two concepts.
MAX_MODULE_LINES = 300
SIZED_PACKAGES = ("pgconn", "schema", "migrator", "probe", "localpg", "localk8s")


def test_no_module_of_the_packages_is_over_300_lines() -> None:
    sizes = {
        str(path.relative_to(REPO)): len(path.read_text(encoding="utf-8").splitlines())
        for package in SIZED_PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }
    assert {module.split("/")[0] for module in sizes} == set(SIZED_PACKAGES)
    over = {module: lines for module, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not over, f"split these along their concepts (at most {MAX_MODULE_LINES} lines each): {over}"
