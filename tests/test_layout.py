"""The shape of the package: stage subpackages a reader finds by folder, small modules, imports at
module top (the import contract in pyproject.toml checks their direction), and a wheel that
ships every stage."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "jobs" / "flowfence"
MAX_LINES = 400
STAGES = {
    "cli", "serve", "run", "review", "replay", "ingest", "fixtures", "report", "render", "learn",
    "state", "config", "flows", "calico", "core",
}  # fmt: skip


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_source_root_holds_only_the_package() -> None:
    # An editable install leaves its build metadata (flowfence.egg-info) beside the package.
    found = (p.name for p in (REPO / "jobs").iterdir())
    assert sorted(n for n in found if n != "__pycache__" and not n.endswith(".egg-info")) == [
        "flowfence"
    ]


def test_every_stage_is_a_subpackage_with_a_docstring() -> None:
    found = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert found == STAGES
    for stage in sorted(STAGES):
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
        assert doc, f"{stage}/__init__.py says nothing about the stage"
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert loose == [], "modules belong in a stage"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)}: {lines} lines"


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _late_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """flowfence imports anywhere but at module level (or under `if TYPE_CHECKING:`)."""
    top: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            top.add(id(node))
        elif isinstance(node, ast.If) and _type_checking(node):
            top.update(id(n) for n in ast.walk(node))
    late = []
    for node in ast.walk(tree):
        if id(node) in top:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("flowfence"):
            late.append((node.lineno, f"from {node.module} import ..."))
        elif isinstance(node, ast.Import):
            late += [(node.lineno, a.name) for a in node.names if a.name.startswith("flowfence")]
    return late


def test_no_function_level_flowfence_imports() -> None:
    found = {
        str(path.relative_to(REPO)): late
        for path in _modules()
        if (late := _late_imports(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert found == {}, "import at module top; a cycle is a structure to fix, not to dodge"


def test_the_wheel_lists_every_stage() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = set(config["tool"]["setuptools"]["packages"])
    folders = {"flowfence", "flowfence.sql"} | {f"flowfence.{s}" for s in STAGES}
    nested = {
        "flowfence." + ".".join(p.parent.relative_to(PACKAGE).parts)
        for p in PACKAGE.glob("*/*/__init__.py")
    }
    assert packages == folders | nested


def test_the_import_contract_names_every_stage() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = {c["id"]: c for c in config["tool"]["importlinter"]["contracts"]}
    named = {
        part.strip().removeprefix("flowfence.")
        for layer in contracts["stages"]["layers"]
        for part in layer.replace(":", "|").split("|")
    }
    assert named == STAGES
    assert not contracts["stages"].get("ignore_imports"), "fix the structure instead"
