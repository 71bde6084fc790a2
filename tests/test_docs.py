"""The tables in docs/ are generated from the committed JSON (scripts/make_docs.py)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _make_docs():
    """scripts/make_docs.py as a module."""
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "scripts" / "make_docs.py")
    md = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(md)
    return md


def test_docs_tables_match_the_committed_json():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_docs.py"), "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_stale_table_is_found(tmp_path):
    (tmp_path / "fidelity_study.json").write_text(
        '{"layer_labels": ["Conv1"], "paper_acc": [52.6], "points": {}}')
    doc = tmp_path / "page.md"
    doc.write_text("text\n<!-- table:fidelity-schedule-acc -->\n| typed by hand |\n<!-- /table -->\nmore\n")
    md = _make_docs()  # in this process: the script's main, without a fresh interpreter each time
    assert md.main(["--docs", str(tmp_path), "--check"]) == 1
    assert md.main(["--docs", str(tmp_path)]) == 0
    assert "| paper, Table 1 | 52.6 |" in doc.read_text() and "typed by hand" not in doc.read_text()
    assert md.main(["--docs", str(tmp_path), "--check"]) == 0


def _fake_results():
    layers = ["feature_extractor.relu1", "classifier.fc3"]
    per = {n: {"acc": a, "acc_ci": [a - 0.01, a + 0.01], "vul": v, "vul_ci": [v - 0.01, v + 0.01],
               "large_vul": i == 0, "acc_seeds": [a, a + 0.002], "acc_judge": 0.2, "keeps_adversarial_label": 0.7,
               "true_label_when_departing": 0.6, "acc_at_natural_fidelity": 0.04, "acc_natural": 0.95,
               "agreement_natural": 0.96}
           for i, (n, a, v) in enumerate(zip(layers, [0.216, 0.007], [0.784, 0.209]))}
    gens = {"layers": {"feature_extractor.relu1": {"agreement": 0.966, "kid": 3.2},
                       "classifier.fc3": {"agreement": 0.993, "kid": 3.7},
                       "feature_extractor.relu1#seed1": {"agreement": 0.95, "kid": 3.2},
                       "classifier.fc3#seed1": {"agreement": 0.987, "kid": 2.1}}, "kid_real_vs_real": -0.2}
    return {"layers": layers, "layer_labels": ["Conv1", "FC3"], "paper": {"natural": {"acc": [52.6, 3.5], "vul": [47.4, -0.5]},
                                                                           "maxpool_index_change": [40.9, 18.1]},
            "natural": {"per_layer": per, "generators": gens, "generator_seeds": 2, "clean_accuracy": 0.99,
                        "adversarial_accuracy": 0.005, "attack": "pgd-40",
                        "maxpool_index_change": {"feature_extractor.pool1": 0.498, "feature_extractor.pool2": 0.232}},
            "timings_s": {"train:natural": 328.0}, "wall_time_s": 330.0, "budget": {"natural_epoch_s": 30.4, "stages_s": 328.0,
                                                               "epoch_units": 10.8, "per_stage_units": {"train:natural": 10.8}}}


def test_main_tables_from_results_json():
    md = _make_docs()
    doc = _fake_results()
    table = md.TABLES["main-natural"][1](doc)
    assert "| Acc_i [95 %] | 21.6 [20.6, 22.6] | 0.7 [-0.3, 1.7] |" in table
    assert "| Acc_i, seed 0 / seed 1 | 21.6 / 21.8 | 0.7 / 0.9 |" in table
    assert "| Vul_i [95 %] | **78.4 [77.4, 79.4]** | 20.9 [19.9, 21.9] |" in table  # bold: marked
    assert "| paper Acc_i | 52.6 | 3.5 |" in table
    assert "| generator agreement, held-out images outside D* (seed 0) | 96.6 | 99.3 |" in table
    gens = md.TABLES["main-generators"][1](doc)
    assert "| KID, natural model, seed 1 | 3.20 | 2.10 |" in gens  # KID as computed, unscaled
    assert "another 1,000: -0.20." in gens
    assert "| ours, natural model | 49.8 % | 23.2 % |" in md.TABLES["main-maxpool"][1](doc)
    assert "**10.8**" in md.TABLES["main-budget"][1](doc)
    reading = md.TABLES["main-reading"][1]({**doc, "adversarially_trained": doc["natural"],
                                             "paper": {**doc["paper"], "adversarially_trained": doc["paper"]["natural"]}})
    # Conv1's interval [20.6, 22.6] lies below the paper's 52.6, FC3's [-0.3, 1.7] below 3.5
    assert "inside our 95 % interval at none; our interval lies above it at none and below it at Conv1, FC3" in reading
    # the paper's Vul (47.4, -0.5) marks Conv1 by the 0.4 × mean rule; here Conv1 is marked
    assert "Marked as largely vulnerable here: Conv1; by the same rule on the paper's Table 1: Conv1." in reading


# ----------------------------------------------------------------------------- benchmark records
# tests/bench_records/*.json: written by the benchmarks themselves, run at a tiny size (their
# numbers mean nothing); the generators must read what the benchmarks write.
RECORDS = ROOT / "tests" / "bench_records"


def _record(name: str) -> dict:
    return json.loads((RECORDS / f"{name}.json").read_text())


def _rows(table: str) -> list[list[str]]:
    """The data rows of the first Markdown table in ``table``, as cells."""
    lines = [ln for ln in table.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def test_every_docs_json_is_written_by_a_benchmark():
    """Each docs/*.json a new table reads records the command that wrote it."""
    md = _make_docs()
    for name in ("token-layers", "celeba-steps", "distributed-split"):
        doc = json.loads((ROOT / "docs" / md.TABLES[name][0]).read_text())
        assert doc["command"].startswith("python benchmarks/") and "load_at_end" in doc["machine"]


def test_token_layers_from_the_counts():
    md = _make_docs()
    doc = json.loads((ROOT / "docs" / "token_layers.json").read_text())
    rows = _rows(md.TABLES["token-layers"][1](doc))
    assert len(rows) == len(doc["rows"])
    for cells, r in zip(rows, doc["rows"]):
        assert cells[-1] == f"{r['c_weights'] / 1e6:.2f} M" and cells[0].startswith(r["preset"])


def test_celeba_tables_from_the_counts():
    md = _make_docs()
    doc = json.loads((ROOT / "docs" / "celeba_cost_counts.json").read_text())
    steps = md.TABLES["celeba-steps"][1](doc)
    for p in doc["presets"].values():
        assert f"**{p['settings']['fit_steps']:,}**" in steps
    flops = _rows(md.TABLES["celeba-flops"][1](doc))
    assert len(flops) == len(doc["presets"]["celeba"]["flops"]["fit_per_scale"])
    est = md.TABLES["celeba-gpu-estimate"][1](doc)
    e = doc["presets"]["celeba"]["gpu_estimate_s"]
    assert md._dur(e["train_s"] + e["dstar_s"] + e["fit_s"]) in est
    assert "GB" in md.TABLES["celeba-memory"][1](doc)


def test_timed_tables_from_tiny_benchmark_runs():
    """Every generator of a timed table, on what its benchmark wrote at a tiny size."""
    md = _make_docs()
    cases = {"token-layers-speed": "token_layers_speed", "celeba-cpu": "celeba_cost_cpu",
             "bf16-vs-fp32": "bf16_vs_fp32", "channels-last": "channels_last", "fit-speed-quick": "fit_speed",
             "distributed-speed": "distributed_speed", "gan-losses": "gan_losses",
             "quick-sizing-ema": "gan_variants", "quick-sizing-ema-end": "gan_variants"}
    for table, record in cases.items():
        doc = _record(record)
        out = md.TABLES[table][1](doc)
        assert doc["command"] in out and _rows(out), table


def test_timed_rows_carry_median_and_range():
    md = _make_docs()
    doc = _record("fit_speed")
    rows = _rows(md.fit_speed(doc))
    assert len(rows) == len(doc["rows"])
    for cells, r in zip(rows, doc["rows"]):
        assert cells[3] == f"{r['ms']['median']:.1f} [{r['ms']['min']:.1f}, {r['ms']['max']:.1f}]"
        assert "G/D" in cells[0] if r["gd_widths"] else "G/D" not in cells[0]
    doc = _record("channels_last")
    r, cells = doc["rows"][0], _rows(md.channels_last(doc))[0]
    assert cells[2] == md._spread(r["nchw_ms"]) and cells[4].startswith("**")
    doc = _record("celeba_cost_cpu")
    cells = _rows(md.celeba_cpu(doc))
    assert len(cells) == 2 + len(doc["fit"]) and cells[0][2] == md._median_range(doc["train"]["s_all"], "{:.1f}")


def test_gan_variants_curve_has_every_logged_step():
    md = _make_docs()
    doc = _record("gan_variants")
    rows = _rows(md.fit_curves(doc))
    assert [r[0] for r in rows] == list(doc["variants"])
    first = next(iter(doc["variants"].values()))["curve"]
    assert len(rows[0]) == 1 + len(first)
    assert rows[0][1] == "/".join(f"{first[0][n]:.2f}" for n in doc["layers"])
