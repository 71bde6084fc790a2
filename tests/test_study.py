"""Pooling study end to end on tiny settings; the report is a pure function of study.json."""
from __future__ import annotations

import math

import pytest

from interpretgan.report import critical_t, study_markdown, verdict, write_study_report
from interpretgan.runs import read_json
from interpretgan.study import StudyConfig, run_pooling_study, summarize


def test_summary_and_paired_difference_by_hand():
    cfg = StudyConfig(seeds=(0, 1, 2), attacks=("pgd-40",))
    runs = []
    for seed, (mx, av) in enumerate([(0.80, 0.83), (0.82, 0.86), (0.81, 0.83)]):
        runs.append({"model": "smallcnn", "pool": "max", "seed": seed, "accuracy": {"clean": 0.99, "pgd-40": mx}})
        runs.append({"model": "smallcnn", "pool": "avg", "seed": seed, "accuracy": {"clean": 0.99, "pgd-40": av}})
    s = summarize(runs, cfg)["smallcnn"]
    assert s["max"]["pgd-40"]["mean"] == pytest.approx(81.0)
    assert s["max"]["pgd-40"]["std"] == pytest.approx(1.0)
    d = s["avg_minus_max"]["pgd-40"]
    assert d["values"] == pytest.approx([3.0, 4.0, 2.0]) and d["mean"] == pytest.approx(3.0)
    assert d["t"] == pytest.approx(3.0 / (1.0 / math.sqrt(3)))
    assert "more robust" in verdict("smallcnn", {"pgd-40": d})
    noisy = {"pgd-40": {"mean": 1.0, "std": 3.0, "n": 3, "t": 0.58}}
    assert "within seed noise" in verdict("smallcnn", noisy)
    # the threshold follows the number of seeds: t = 2.5 is significant with 4 seeds, not with 3
    assert "more robust" in verdict("smallcnn", {"pgd-40": {"mean": 1.0, "std": 0.8, "n": 4, "t": 2.5}})
    assert "within seed noise" in verdict("smallcnn", {"pgd-40": {"mean": 1.0, "std": 0.7, "n": 3, "t": 2.5}})
    assert "one seed" in verdict("smallcnn", {"pgd-40": {"mean": 1.0, "std": float("nan"), "n": 1,
                                                          "t": float("nan")}})
    mixed = {"pgd-40": {"mean": 2.0, "std": 0.1, "n": 3, "t": 30.0},
             "fgsm": {"mean": -2.0, "std": 0.1, "n": 3, "t": -30.0}}
    assert "mixed" in verdict("smallcnn", mixed)
    assert critical_t(2) == pytest.approx(2.920)


def test_pooling_study_tiny_end_to_end(mnist_small, session_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(session_cache))
    cfg = StudyConfig(seeds=(0, 1), attacks=("pgd-2", "fgsm"), test_subset=64, autoattack=True,
                      autoattack_subset=4,
                      train_overrides={"epochs": 1, "data.train_subset": 256, "eval_attack": None,
                                       "batch_size": 64})
    doc = run_pooling_study(cfg, tmp_path / "study", progress=False)
    assert len(doc["runs"]) == 4
    assert {(r["pool"], r["seed"]) for r in doc["runs"]} == {("max", 0), ("avg", 0), ("max", 1), ("avg", 1)}
    for r in doc["runs"]:
        acc = r["accuracy"]
        assert set(acc) == {"clean", "pgd-2", "fgsm", "autoattack"}
        assert 0 <= acc["pgd-2"] <= acc["clean"] + 1e-9
    saved = read_json(tmp_path / "study" / "study.json")
    assert saved["summary"]["smallcnn"]["avg"]["fgsm"]["n"] == 2
    # cached: a rerun retrains and re-evaluates nothing
    before = (tmp_path / "study" / "smallcnn-max-s0" / "study_eval.json").stat().st_mtime_ns
    run_pooling_study(cfg, tmp_path / "study", progress=False)
    assert (tmp_path / "study" / "smallcnn-max-s0" / "study_eval.json").stat().st_mtime_ns == before
    paths = write_study_report(saved, tmp_path / "study")
    md = paths["markdown"].read_text()
    assert "| smallcnn | max |" in md and "avg − max" in md
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_shows_paper_numbers_beside_ours():
    doc = {"config": {"dataset": "mnist", "method": "atta-trades", "seeds": [0], "pools": ["max", "avg"],
                      "attacks": ["pgd-40"], "test_subset": 100, "autoattack": False},
           "summary": {"smallcnn": {"max": {"pgd-40": {"mean": 90.0, "std": 0.0, "n": 1}},
                                    "avg": {"pgd-40": {"mean": 91.0, "std": 0.0, "n": 1}}}},
           "paper": {"smallcnn": {"max": {"pgd-40": 89.33}, "avg": {"pgd-40": 91.56}}}}
    md = study_markdown(doc)
    assert "| smallcnn | max | – | 90.00 (89.33) |" in md
    assert "| smallcnn | avg | – | 91.00 (91.56) |" in md
