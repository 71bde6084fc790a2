"""The package's layout: modules import only downward (no cycles, no import inside a function
to dodge one), functions fit on a screen, and the old flat module names still import."""
from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest
import torch

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


def test_the_names_of_0_1_are_the_renamed_functions():
    from interpretgan import distributed, fitting, loading, pipeline
    from interpretgan.interpret.fit import layer_bank
    from interpretgan.models.loading import load_model
    from interpretgan.run.pipeline import run_main
    from interpretgan.runtime.distributed import end_handover, serve_rank0

    assert loading.load_any is load_model and pipeline.load_any is load_model
    assert distributed.follow is serve_rank0 and distributed.release is end_handover
    assert fitting.LayerGAN is layer_bank and pipeline.run_main is run_main


def test_explain_and_label_always_returns_a_pair_and_the_old_name_keeps_its_shapes():
    import torch.nn as nn

    from interpretgan.diagnosis.diagnose import explanation_labels
    from interpretgan.interpret.explaining import explain_and_label

    class Member(nn.Module):  # "explains" a (B, 4) layer reading as a (B, 1, 2, 2) image
        def explain(self, feats, scale=None, alpha=1.0):
            return feats.view(-1, 1, 2, 2)

    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    judge = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    x, gans = torch.rand(5, 1, 2, 2), {"0": Member()}
    by_f, by_judge = explain_and_label(net, gans, x)
    assert set(by_f) == {"0"} and by_f["0"].shape == (5,) and by_judge is None
    by_f2, by_judge2 = explain_and_label(net, gans, x, judge=judge)
    assert torch.equal(by_f2["0"], by_f["0"]) and by_judge2["0"].shape == (5,)
    assert torch.equal(explanation_labels(net, gans, x)["0"], by_f["0"])
    assert torch.equal(explanation_labels(net, gans, x, judge=judge)[1]["0"], by_judge2["0"])


def test_a_model_and_its_example_come_from_one_place(monkeypatch):
    from interpretgan.models import loading

    net, x = loading.model_and_example(model="smallcnn", input_size=28)
    assert x.shape == (1, 1, 28, 28) and not net.training

    class Flat(torch.nn.Module):  # no Conv2d to tell its input channels
        def forward(self, x):
            return x.flatten(1)

    monkeypatch.setattr(loading, "create", lambda name, **kw: Flat())
    with pytest.raises(ValueError, match="--channels"):
        loading.model_and_example(model="flat")
    assert loading.model_and_example(model="flat", channels=3)[1].shape == (1, 3, 32, 32)
