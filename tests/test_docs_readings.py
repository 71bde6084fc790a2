"""The sentences scripts/make_docs.py writes from benchmark records say what the numbers say,
and benchmarks/test_suite.py counts a JUnit report correctly."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MACHINE = {"cpu": "test CPU", "cores": 2, "threads": 2, "torch": "2.x", "cpu_capability": "AVX512",
           "load_at_start": 0.1, "load_at_end": 0.2}


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _make_docs():
    return _load(ROOT / "scripts" / "make_docs.py", "make_docs")


def _variants(agreements: dict[str, list[float]], kids: dict[str, list[float]], layers: list[str]) -> dict:
    return {"command": "python benchmarks/gan_losses.py", "machine": MACHINE, "layers": layers,
            "fit": {"eval_images": 1000}, "kid_real_vs_real": 0.0,
            "variants": {name: {"fit_seconds": 10.0 + i, "layers": {n: {"agreement": a, "kid": k}
                                                                  for n, a, k in zip(layers, agreements[name], kids[name])}}
                         for i, name in enumerate(agreements)}}


def test_variant_pair_reading_names_only_the_layer_that_moved_beyond_two_standard_errors():
    md = _make_docs()
    layers = ["a", "b", "c"]
    # n = 1000: at p ≈ 0.95 two s.e. of a difference is ≈ 1.9 pt; "a" moves 3 pt, "b" 0.5 pt
    doc = _variants({"fp32": [0.96, 0.95, 0.99], "bf16": [0.93, 0.955, 0.99]},
                    {"fp32": [5.0, 3.0, 2.0], "bf16": [4.0, 3.5, 2.5]}, layers)
    text = md.variant_pair_reading(doc)
    assert "`a` 96.0 → 93.0 %" in text
    assert "`b`" not in text and "`c`" not in text
    assert "KID was lower under bf16 on 1 of 3 layers" in text
    assert "fp32 96.7 %, bf16 95.8 %" in text
    same = _variants({"x": [0.9, 0.9, 0.9], "y": [0.9, 0.9, 0.9]}, {"x": [1, 1, 1], "y": [1, 1, 1]}, layers)
    assert "on no layer" in md.variant_pair_reading(same)


def test_fit_curves_reading_measures_the_swing_after_the_last_warmup_check():
    md = _make_docs()
    curve = [{"step": 10, "warmup": True, "a": 0.1}, {"step": 20, "warmup": False, "a": 0.9},
             {"step": 30, "warmup": True, "a": 0.2},  # the last scale's warm-up: ignored
             {"step": 40, "warmup": False, "a": 0.90}, {"step": 50, "warmup": False, "a": 0.75},
             {"step": 60, "warmup": False, "a": 0.85}]
    doc = {"layers": ["a"], "variants": {"live": {"curve": curve}}}
    text = md.fit_curves_reading(doc)
    assert "from step 40 to 60" in text and "up to 0.15" in text and "lowest was 0.75" in text


def test_atta_preset_table_marks_the_target():
    md = _make_docs()
    epoch = {"epoch": 1, "lr": 0.01, "test_acc": 0.97, "pgd-40_acc": 0.8, "train_s": 30.0}
    doc = {"command": "python benchmarks/atta_preset.py", "machine": MACHINE,
           "settings": {"target_pgd40": 0.88, "eval_attack_subset": 500, "seed": 0},
           "variants": {"4 epochs fp32": {"epochs": [epoch], "test_images": 10000, "clean_accuracy": 0.98,
                                          "pgd40_accuracy": 0.905},
                        "3 epochs fp32": {"epochs": [epoch], "test_images": 10000, "clean_accuracy": 0.97,
                                          "pgd40_accuracy": 0.8}}}
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in md.atta_preset(doc).splitlines()
            if ln.startswith("|")][2:]
    assert rows[0][0] == "4 epochs fp32" and rows[0][-1] == "**met**" and rows[0][-2] == "**90.50**"
    assert rows[1][-1] == "missed" and rows[1][1] == "80.0 (0.01)"


def test_test_suite_counts_a_junit_report(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        ts = _load(ROOT / "benchmarks" / "test_suite.py", "bench_test_suite")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    xml = tmp_path / "junit.xml"
    xml.write_text("""<?xml version="1.0"?><testsuites><testsuite>
<testcase classname="tests.test_a" name="test_ok" time="1.5"/>
<testcase classname="tests.test_a" name="test_slow" time="9.0"/>
<testcase classname="tests.test_b" name="test_bad" time="0.5"><failure message="x"/></testcase>
<testcase classname="tests.test_b" name="test_gpu" time="0.0"><skipped message="no CUDA"/></testcase>
<testcase classname="tests.test_c" name="test_err" time="0.1"><error message="boom"/></testcase>
</testsuite></testsuites>""")
    r = ts.parse_junit(xml)
    assert (r["passed"], r["failed"], r["skipped"], r["errors"]) == (2, 1, 1, 1)
    assert r["skips"] == [{"test": "tests/test_b.py::test_gpu", "reason": "no CUDA"}]
    assert r["tests"][0] == {"test": "tests/test_a.py::test_slow", "seconds": 9.0}
    md = _make_docs()
    text = md.test_suite({"command": "python benchmarks/test_suite.py", "machine": MACHINE, "wall_s": 11.1,
                          **{k: v for k, v in r.items() if k != "tests"}, "slowest": r["tests"][:2]})
    assert "**2 passed, 1 failed, 1 errors, 1 skipped** in 11 s" in text and "no CUDA" in text
