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
    # the two-sided threshold follows the number of seeds: t = 3.5 is significant with 4 seeds
    # (3.18), not with 3 (4.30); t = 2.5 is not with 4 (a one-sided test would call it so)
    assert "more robust" in verdict("smallcnn", {"pgd-40": {"mean": 1.0, "std": 0.8, "n": 4, "t": 3.5}})
    assert "within seed noise" in verdict("smallcnn", {"pgd-40": {"mean": 1.0, "std": 0.7, "n": 3, "t": 3.5}})
    assert "within seed noise" in verdict("smallcnn", {"pgd-40": {"mean": 1.0, "std": 0.8, "n": 4, "t": 2.5}})
    assert "one seed" in verdict("smallcnn", {"pgd-40": {"mean": 1.0, "std": float("nan"), "n": 1,
                                                          "t": float("nan")}})
    mixed = {"pgd-40": {"mean": 2.0, "std": 0.1, "n": 3, "t": 30.0},
             "fgsm": {"mean": -2.0, "std": 0.1, "n": 3, "t": -30.0}}
    assert "mixed" in verdict("smallcnn", mixed)
    # exact two-sided 5 % values of Student's t, also past 20 degrees of freedom
    assert [critical_t(k) for k in (1, 2, 9, 30, 1000)] == pytest.approx([12.706, 4.303, 2.262, 2.042, 1.962],
                                                                         abs=1e-3)


def test_pooling_study_tiny_end_to_end(mnist_small, shared_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
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
        # the attacks run on the clean evaluation's images: an attack never adds a correct answer
        assert acc["pgd-2"] <= acc["clean"] and acc["fgsm"] <= acc["clean"]
    # and they do attack: some run loses accuracy under each of them
    assert any(r["accuracy"]["pgd-2"] < r["accuracy"]["clean"] for r in doc["runs"])
    assert any(r["accuracy"]["fgsm"] < r["accuracy"]["clean"] for r in doc["runs"])
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
    # one seed: the paired difference has no spread and no t (NaN in study.json): neither is printed
    nan = float("nan")
    doc["summary"]["smallcnn"]["avg_minus_max"] = {"pgd-40": {"mean": 1.0, "std": nan, "n": 1, "t": nan,
                                                              "values": [1.0]}}
    md = study_markdown(doc)
    assert "pgd-40 +1.00" in md and "one seed only" in md
    assert "nan" not in md.lower() and "±" not in md.split("avg − max")[1] and "t =" not in md


def test_cifar_study_command_end_to_end(tiny_cifar, tmp_path, capsys, caplog):
    """Table 3's path: `study pooling --dataset cifar10` on tiny CIFAR-format files, both zoo
    models (shrunk through model_kwargs), max and avg pooling, the paper's four CIFAR attacks."""
    from interpretgan.cli import main
    from interpretgan.models import load_classifier

    run = tmp_path / "study"
    kwargs = '{"vgg16": {"hidden": 16}, "wrn-34-10": {"depth": 10, "widen": 1}}'
    base = ["-q", "study", "pooling", "--dataset", "cifar10", "--data-dir", str(tiny_cifar),
            "--seeds", "1", "--epochs", "1", "--run-dir", str(run),
            "--set", "train.batch_size=10", "--set", f"model_kwargs={kwargs}"]
    # the tiny files are not the real CIFAR-10: without --no-verify the checksum stops the run
    assert main(base) == 2 and "MD5 mismatch" in caplog.text
    assert main([*base, "--no-verify"]) == 0
    out = capsys.readouterr().out
    doc = read_json(run / "study.json")
    assert {(r["model"], r["pool"]) for r in doc["runs"]} == {
        ("vgg16", "max"), ("vgg16", "avg"), ("wrn-34-10", "max"), ("wrn-34-10", "avg")}
    for r in doc["runs"]:
        assert set(r["accuracy"]) == {"clean", "pgd-20", "pgd-100", "mpgd-20", "fgsm"}
        assert 0 <= r["accuracy"]["pgd-100"] <= r["accuracy"]["clean"] + 1e-9
        tcfg = read_json(run / r["run"] / "config.json")
        assert tcfg["method"] == "atta-trades" and tcfg["data"]["augment"]
        assert tcfg["eps"] == pytest.approx(8 / 255) and tcfg["atta_reset_every"] == 10
    wrn = load_classifier(run / "wrn-34-10-max-s0" / "checkpoints" / "final.pt")
    assert type(wrn.pool).__name__ == "AdaptiveMaxPool2d" and wrn.fc.in_features == 64
    assert type(load_classifier(run / "wrn-34-10-avg-s0" / "checkpoints" / "final.pt").pool
                ).__name__ == "AdaptiveAvgPool2d"
    # the Markdown table puts Table 3's single-run numbers beside ours
    assert "| vgg16 | max |" in out and "(46.97)" in out and "| wrn-34-10 | avg |" in out
    assert "(59.92)" in out
    assert (run / "study.png").read_bytes()[:4] == b"\x89PNG"


def test_study_rejects_bad_overrides(tmp_path, caplog):
    from interpretgan.cli import main

    assert main(["study", "pooling", "--dry-run", "--set", "train.epoch=3"]) == 2
    assert "no field 'epoch'" in caplog.text
    assert main(["study", "pooling", "--run-dir", str(tmp_path / "s"),
                 "--set", 'model_kwargs={"vgg16": {}}']) == 2
    assert "does not train" in caplog.text


def test_verify_false_only_where_the_loader_takes_it():
    from interpretgan.config import DataConfig
    from interpretgan.data import load_split

    with pytest.raises(ValueError, match="always verified"):
        load_split(DataConfig(dataset="mnist", verify=False), "test")
