"""The house rules that keep the code readable: layers import downwards, modules stay small, public
functions say what they do, and each domain rule has one home."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("platform", "runtime", "workflows", "ui")
#: What each layer may not import (ui reaches only geoloom.workflows).
FORBIDDEN = {"platform": ("runtime", "workflows", "ui"), "runtime": ("workflows", "ui"), "workflows": ("ui",),
             "ui": ("platform", "runtime")}


def modules(layer: str) -> list[Path]:
    return sorted((REPO / layer).rglob("*.py"))


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_downwards(layer):
    bad = [f"{p.relative_to(REPO)}: {name}" for p in modules(layer) for name in imported(p)
           for other in FORBIDDEN[layer] if name == f"geoloom.{other}" or name.startswith(f"geoloom.{other}.")]
    assert not bad, bad


@pytest.mark.parametrize("layer", LAYERS)
def test_no_module_exceeds_600_lines(layer):
    big = [f"{p.relative_to(REPO)} ({n})" for p in modules(layer) if (n := len(p.read_text().splitlines())) > 600]
    assert not big, big


@pytest.mark.parametrize("layer", LAYERS)
def test_every_public_function_and_class_has_a_docstring(layer):
    missing = []
    for path in modules(layer):
        def visit(node: ast.AST, prefix: str = "") -> None:
            for n in ast.iter_child_nodes(node):
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and not n.name.startswith("_"):
                    if not ast.get_docstring(n):
                        missing.append(f"{path.relative_to(REPO)}:{n.lineno} {prefix}{n.name}")
                    if isinstance(n, ast.ClassDef):
                        visit(n, prefix + n.name + ".")
        visit(ast.parse(path.read_text()))
    assert not missing, missing


@pytest.mark.parametrize(("what", "pattern"), [
    ("the area limit", r"^\s*DEFAULT_MAX_AREA_KM2\s*(:[^=]+)?=\s*[\d_]+"),
    ("the offset rule's add-offset", r"^\s*S2_OFFSET_DN\s*=\s*-1000"),
    ("the SCL cloud codes", r"^\s*SCL_OPAQUE_CLOUD\s*(:[^=]+)?="),
    ("the region normaliser", r"^def as_region\("),
])
def test_each_rule_is_defined_once(what, pattern):
    found = [str(p.relative_to(REPO)) for layer in LAYERS for p in modules(layer)
             if re.search(pattern, p.read_text(), flags=re.M)]
    assert len(found) == 1, f"{what} is defined in {found}"


def test_no_literal_copies_of_the_rules():
    copies = []
    for layer in LAYERS:
        for p in modules(layer):
            text = p.read_text()
            if re.search(r"\b50_?000\b", text) and p.name != "region.py":
                copies.append(f"{p.relative_to(REPO)}: an area limit literal")
            if re.search(r"\(\s*8\s*,\s*9\s*,\s*10\s*\)|\{\s*8\s*,\s*9\s*,\s*10\s*\}", text) and p.name != "sensors.py":
                copies.append(f"{p.relative_to(REPO)}: SCL cloud codes")
    assert not copies, copies
