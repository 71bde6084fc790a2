"""The package's layout: modules import only downward (no cycles, no import inside a function
to dodge one), functions fit on a screen, and the old flat module names still import."""
from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import check_imports  # noqa: E402

MAX_LINES = 60


def test_modules_import_only_downward():
    assert check_imports.check(ROOT / "src") == []


def test_the_checker_finds_a_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "interpretgan"
    (pkg / "data").mkdir(parents=True)
    (pkg / "robust").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("from ..robust.attacks import pgd\n")
    (pkg / "robust" / "__init__.py").write_text("")
    (pkg / "robust" / "attacks.py").write_text("def f():\n    from ..data import x\n")
    problems = check_imports.check(tmp_path)
    assert any("a part above it" in p and "interpretgan.data " in p for p in problems)
    assert any("inside a function" in p for p in problems)
    assert any(p.startswith("import cycle:") for p in problems)


def _long_functions(src: Path) -> list[str]:
    out = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    out.append(f"{path.relative_to(src)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_function_is_longer_than_a_screen():
    assert _long_functions(ROOT / "src") == []


@pytest.mark.parametrize("name", sorted(check_imports.SHIMS | {"data", "models", "report"}))
def test_the_old_module_names_still_import(name):
    importlib.import_module(f"interpretgan.{name}")
