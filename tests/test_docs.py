"""The tables in docs/ are generated from the committed JSON (scripts/make_docs.py)."""
from __future__ import annotations

import importlib.util
import re
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
                       "classifier.fc3#seed1": {"agreement": 0.987, "kid": 2.1}},
            "kid_real_vs_real": -0.2, "n_eval": 1000}
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


# --------------------------------------------------------------------------- links
_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""")


def _prose(text: str) -> list[str]:
    """The lines of a Markdown page outside fenced code blocks, inline code blanked."""
    out, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            out.append("")
            continue
        out.append("" if fenced else re.sub(r"`[^`]*`", lambda m: " " * len(m.group()), line))
    return out


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation dropped, spaces
    to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = _slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def _relative_links(page: Path):
    """(line number, target) of every relative link and image of a page (Markdown and HTML)."""
    for i, line in enumerate(_prose(page.read_text(encoding="utf-8")), 1):
        for m in list(_LINK.finditer(line)) + list(_HTML.finditer(line)):
            target = m.group(1)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, mailto: …
                yield i, target


def _doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_resolves():
    """Every relative link in README.md and docs/*.md names a file that exists and, after a
    #, a heading of that page."""
    broken = []
    for page in _doc_pages():
        for line, target in _relative_links(page):
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}:{line}: {target}"
            if not dest.exists():
                broken.append(where + " (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(where + " (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_link_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A page: `x` & y\n\n[ok](#a-page-x--y) [bad](#nope) [gone](missing.md)\n"
                    "```\n[code](not-checked.md)\n```\n<img src=\"absent.png\">\n")
    assert _anchors(page) == {"a-page-x--y"}
    assert [t for _, t in _relative_links(page)] == ["#a-page-x--y", "#nope", "missing.md", "absent.png"]


def test_readme_keeps_the_setup_commands_and_links_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install torch==2.13.0 && pip install -e . && interpretgan run" in readme
    assert "bash scripts/test.sh" in readme and "this is what CI runs" in readme
    assert len(readme.splitlines()) <= 170
    linked = {(ROOT / t.partition("#")[0]).resolve() for _, t in _relative_links(ROOT / "README.md")}
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"
LABELS = ["Conv1", "Conv2", "Conv3", "Conv4", "FC1", "FC2", "FC3"]


def _fake_point(classifier: str = "natural-10ep", changes: dict | None = None) -> dict:
    per = [{"acc": a, "acc_ci": [a - 0.01, a + 0.01], "acc_seeds": [a + 0.02, a - 0.03, a],
            "agreement_natural": 0.951, "agreement_noisy": 0.922, "keeps_adversarial_label": 0.681,
            "true_label_when_departing": 0.676, "acc_at_natural_fidelity": 0.04}
           for a in (0.22, 0.26, 0.24, 0.06, 0.007, 0.006, 0.005)]
    return {"classifier": classifier, "changes": changes or {}, "seeds": [0, 1, 2], "n": 2000, "attack": "pgd-40",
            "clean_accuracy": 0.9935, "adversarial_accuracy": 0.005, "per_layer": per}


def _fake_study(names) -> dict:
    points = {n: _fake_point("natural-3ep" if n == "classifier-3ep" else "natural-10ep",
                             {"lam": 0.3} if n == "lambda-0.3" else None) for n in names}
    return {"layer_labels": LABELS, "paper_acc": [52.6, 26.3, 21.6, 9.9, 4.3, 3.0, 3.5], "points": points}


def test_fidelity_tables_from_study_json():
    md = _make_docs()
    doc = _fake_study(["base", "classifier-3ep", *md.SETTING_POINTS])
    seeds = md.TABLES["fidelity-seeds"][1](doc)
    assert "| 10-epoch classifier (f: 99.35 % clean, 0.50 % on D*), mean of 3 seeds | 22.0 [21.0, 23.0] |" in seeds
    assert "| 3-epoch classifier (f: 99.35 % clean, 0.50 % on D*), mean of 3 seeds |" in seeds
    assert "| … seeds 0 / 1 / 2 | 24.0 / 19.0 / 22.0 |" in seeds
    assert "| … largest − smallest seed (points) | 5.0 | 5.0 |" in seeds
    settings = md.TABLES["fidelity-settings"][1](doc)
    assert ("| point | change | Conv1 | Conv2 | Conv3 | Conv4 | Conv1 agreement (natural) "
            "| Conv1 keeps f(x*) |") in settings
    assert "| base, seed 0 | – (the study's base) | 24.0 [22.2, 25.9] |" in settings  # Wilson over 2,000 images
    assert "| base, mean of 3 seeds | – (the study's base) | 22.0 [21.0, 23.0] |" in settings
    assert "| lambda-0.3 | lam=0.3 | 22.0 [21.0, 23.0] |" in settings and "| 95.1 | 68.1 |" in settings
    assert "seeds range over: Conv1 19.0–24.0, Conv2 23.0–28.0, Conv3 21.0–26.0, Conv4 3.0–8.0 %." in settings
    carry = md.TABLES["fidelity-carry-3ep"][1](doc)
    assert carry.startswith("**classifier-3ep** (mean of 3 seeds; f's own accuracy on D*: 0.50 %):")
    assert "| agreement on x + ε·noise | 92.2 |" in carry and "| Acc_i at natural-image fidelity | 4.0 |" in carry


def test_a_table_waiting_for_its_points_keeps_its_text(tmp_path):
    study = tmp_path / "fidelity_study.json"
    study.write_text(json.dumps(_fake_study(["classifier-3ep"])))  # "base" not run yet
    page = tmp_path / "page.md"
    typed = "<!-- table:fidelity-seeds -->\n| typed earlier |\n<!-- /table -->\n"
    page.write_text(typed)
    md = _make_docs()
    assert md.main(["--docs", str(tmp_path), "--check"]) == 0  # waiting, not stale
    assert md.main(["--docs", str(tmp_path), "--check", "--strict"]) == 1
    assert md.main(["--docs", str(tmp_path)]) == 0 and page.read_text() == typed
    study.write_text(json.dumps(_fake_study(["base", "classifier-3ep"])))
    assert md.main(["--docs", str(tmp_path), "--check"]) == 1  # the data are in: the typed text is stale
    assert md.main(["--docs", str(tmp_path)]) == 0 and "typed earlier" not in page.read_text()
    assert md.main(["--docs", str(tmp_path), "--check", "--strict"]) == 0


MACHINE = {"cpu": "Some CPU", "cores": 2, "avx512_bf16": True, "torch": "2.13.0+cpu", "cpu_capability": "AVX512",
           "threads": 2, "cuda": False, "load_average_at_start": [0.31, 0.2, 0.1], "commit": "abc1234"}


def test_pgd_speed_table():
    doc = {"command": "python benchmarks/pgd_speed.py --n 500", "machine": MACHINE,
           "settings": {"images": 500, "rounds": 3, "attack": "pgd-40", "eps": 0.3, "alpha": 0.01, "steps": 40,
                        "random_start": True, "batch_size": 500},
           "models": [{"model": "natural", "variants": {
               "torchattacks": {"seconds": [9.0, 10.0, 11.0], "accuracy": [0.0, 0.0, 0.0]},
               "ours": {"seconds": [3.0, 2.5, 4.0], "accuracy": [0.0, 0.0, 0.0]}},
               "ratios": {"ours": [3.0, 4.0, 2.75]}}]}
    table = _make_docs().TABLES["pgd-speed"][1](doc)
    assert table.startswith("Measured with `python benchmarks/pgd_speed.py --n 500` on Some CPU (2 cores, bf16 units), "
                            "torch 2.13.0+cpu, 2 threads, commit `abc1234`; load average 0.3 when it started.")
    assert "| natural | torchattacks PGD | 10.0 [9.0, 11.0] | 50.0 | – | 0.00 |" in table
    assert "| natural | ours, early stop | 3.0 [2.5, 4.0] | 166.7 | **3.00 [2.75, 4.00]** | 0.00 |" in table


def test_atta_vs_trades_table():
    ev = {"name": "pgd-40", "eps": 0.3, "alpha": 0.01, "steps": 40, "early_stop": True}
    doc = {"command": "python benchmarks/atta_vs_trades.py", "machine": MACHINE,
           "settings": {"train_subset": 10000, "test_subset": 1000, "epochs": 2, "batch_size": 128, "lr": 0.01,
                        "momentum": 0.9, "lr_milestones": [1], "lr_gamma": 0.1, "eps": 0.3, "beta": 6.0, "seed": 0,
                        "amp": "off", "trades_steps": 40, "eval_attack": ev},
           "methods": {"atta-1 trades": {"method": "atta-trades", "epochs": 2, "step_size": 0.1, "attack_steps": 1,
                                         "train_s": [15.0, 17.0], "clean_accuracy": 0.95, "pgd40_accuracy": 0.7},
                       "trades pgd-40": {"method": "trades", "epochs": 2, "step_size": 0.01, "attack_steps": 40,
                                         "train_s": [120.0, 119.0], "clean_accuracy": 0.9, "pgd40_accuracy": 0.5}},
           "ratios": [8.0, 7.0]}
    table = _make_docs().TABLES["atta-vs-trades"][1](doc)
    assert ("| ATTA-1 TRADES | 2 | one KL step of 0.1 per epoch, carried across epochs | 16.0 [15.0, 17.0] | 95.00 "
            "| **70.00** |") in table
    assert ("| TRADES PGD-40 | 2 | 40 KL steps of 0.01 from a fresh start | 119.5 [119.0, 120.0] | 90.00 "
            "| **50.00** |") in table
    assert "pair by pair of alternated epochs: **7.50 [7.00, 8.00]** (median [range] over 2 pairs)" in table
    assert "×0.1 from epoch 2" in table
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
