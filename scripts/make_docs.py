"""Regenerate the tables in docs/ from the committed JSON, so that no number in them is typed
by hand.

    python scripts/make_docs.py           # rewrite every marked table in docs/*.md and README.md
    python scripts/make_docs.py --check   # exit 1 (naming the tables) if any is out of date
    python scripts/make_docs.py --check --strict   # … or if any is still waiting for its data

A table lives between two marker lines in a Markdown file:

    <!-- table:main-natural -->
    | … the generated table … |
    <!-- /table -->

and is built by the function registered under its name in ``TABLES`` from one JSON file under
docs/ (``docs/main_results.json``: ``runs/main/results.json`` of the main job;
``docs/fidelity_study.json``: ``study.json`` of ``benchmarks/fidelity.py``;
``docs/study_pooling_mnist*.json``: ``study.json`` of ``interpretgan study pooling``;
``docs/main_natural_metrics.json``: the natural model's ``metrics.jsonl`` of the same run;
``docs/fault_drill.json``: the log of ``benchmarks/fault_drill.py``;
``docs/pgd_speed.json``, ``docs/atta_vs_trades.json``: ``--json`` of those benchmarks). A marker
whose name or JSON file is missing is an error.

A table whose JSON exists but does not hold its data yet (the fidelity study's tables whose
points have not been run into ``docs/fidelity_study.json``) is *waiting*: its generator raises
:class:`Pending`, the page keeps the table's text as it is, and the script names it on stderr;
``--strict`` makes that an error. Once the data are in the JSON, the table is generated like
any other and ``--check`` holds it to them.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "src"))  # this checkout's package, installed or not
from interpretgan.diagnosis.diagnose import wilson_interval  # noqa: E402
from interpretgan.report import study_markdown  # noqa: E402
MARK = re.compile(r"(<!-- table:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def pct(v: float | None, ci=None) -> str:
    """``21.6 [19.8, 23.4]`` (percent, one decimal; the interval when given), ``–`` for None."""
    if v is None:
        return "–"
    return f"{100 * v:.1f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main job
def _layers(doc: dict, key: str) -> list[dict]:
    return [doc[key]["per_layer"][n] for n in doc["layers"]]


def _main_table(doc: dict, key: str) -> str:
    """Table 1 for one model of the main job: Acc_i / Vul_i with intervals (bold: marked as
    largely vulnerable), per seed, the paper's, and the controls."""
    per = _layers(doc, key)
    paper = (doc.get("paper") or {}).get(key) or {}
    rows = [["Acc_i [95 %]", *(pct(r["acc"], r["acc_ci"]) for r in per)]]
    if all("acc_seeds" in r for r in per):
        rows.append([f"Acc_i, {' / '.join(f'seed {g}' for g in range(len(per[0]['acc_seeds'])))}",
                     *(" / ".join(f"{100 * a:.1f}" for a in r["acc_seeds"]) for r in per)])
    rows.append(["Vul_i [95 %]", *((f"**{pct(r['vul'], r['vul_ci'])}**" if r["large_vul"] else pct(r["vul"], r["vul_ci"]))
                                   for r in per)])
    for metric in ("acc", "vul"):
        if paper.get(metric):
            rows.append([f"paper {metric.capitalize()}_i", *(f"{v:.1f}" for v in paper[metric])])
    for field, title in (("acc_judge", "judge's Acc_i (the other model of the pair)"),
                         ("keeps_adversarial_label", "keeps f(x*)"),
                         ("true_label_when_departing", "true label when departing"),
                         ("acc_at_natural_fidelity", "Acc_i at natural-image fidelity"),
                         ("acc_natural", "Acc_i on natural images"),
                         ("agreement_natural", "agreement on natural images")):
        if any(r.get(field) is not None for r in per):
            rows.append([title, *(pct(r.get(field)) for r in per)])
    gens = (doc[key].get("generators") or {}).get("layers") or {}
    if all(n in gens for n in doc["layers"]):
        rows.append(["generator agreement, held-out images outside D* (seed 0)",
                     *(pct(gens[n]["agreement"]) for n in doc["layers"])])
    return md_table(["%", *doc["layer_labels"]], rows)


def _member_rows(doc: dict, key: str, model: str) -> list[list[str]]:
    gens = doc[key]["generators"]["layers"]
    seeds = doc[key].get("generator_seeds", 1)
    rows = []
    for g in range(seeds):
        names = [n if g == 0 else f"{n}#seed{g}" for n in doc["layers"]]
        rows.append([f"agreement, {model}, seed {g} (%)", *(f"{100 * gens[n]['agreement']:.1f}" for n in names)])
        rows.append([f"KID, {model}, seed {g}", *(f"{gens[n]['kid']:.2f}" for n in names)])
    return rows


def main_generators(doc: dict) -> str:
    """Agreement and KID (the realism network's MMD², unscaled) of every generator seed of both
    models, and KID of real images against real images (the floor to read KID against)."""
    rows = []
    for key, model in (("natural", "natural model"), ("adversarially_trained", "ATTA model")):
        if key in doc and doc[key].get("generators"):
            rows += _member_rows(doc, key, model)
    floor = doc["natural"]["generators"]["kid_real_vs_real"]
    return (md_table(["layer", *doc["layer_labels"]], rows)
            + f"\nKID of 1,000 real held-out images against another 1,000: {floor:.2f}.\n")


def main_maxpool(doc: dict) -> str:
    """Max-pool index change per pooling layer: the paper's and both models'."""
    pools = list(doc["natural"]["maxpool_index_change"])
    paper = (doc.get("paper") or {}).get("maxpool_index_change") or []
    rows = [["paper (natural model, PGD-40)", *(f"{v:.1f} %" for v in paper)]] if paper else []
    for key, model in (("natural", "ours, natural model"), ("adversarially_trained", "ours, ATTA-1 TRADES model")):
        if key in doc:
            rows.append([model, *(f"{100 * doc[key]['maxpool_index_change'][p]:.1f} %" for p in pools)])
    return md_table(["", *pools], rows)


def main_budget(doc: dict) -> str:
    """Stage times in seconds and natural-epoch units, and the run's wall time."""
    b = doc["budget"]
    units = b["per_stage_units"]
    rows = [[stage, f"{secs:.0f}", f"{units[stage]:.1f}"] for stage, secs in doc["timings_s"].items()]
    rows.append(["**all stages**", f"**{b['stages_s']:.0f}**", f"**{b['epoch_units']:.1f}**"])
    return (f"One natural epoch in this run: {b['natural_epoch_s']:.1f} s (median of the natural model's "
            f"epochs). Wall time of `interpretgan run`: {doc['wall_time_s'] / 60:.1f} min.\n\n"
            + md_table(["stage", "seconds", "natural epochs"], rows))


def _paper_marks(vul: list[float], factor: float = 0.4) -> list[bool]:
    """The paper's own Table 1 read by the diagnosis's rule without intervals: Vul_i above
    ``factor`` × the mean Vul_i (the factor chosen so that this marks the paper's four layers)."""
    mean = sum(vul) / len(vul)
    return [v > factor * mean for v in vul]


def _names(labels: list[str], picks) -> str:
    chosen = [lab for lab, p in zip(labels, picks) if p]
    return ", ".join(chosen) if chosen else "none"


def main_reading(doc: dict) -> str:
    """The reading of Table 1 as bullet points, every number taken from results.json: where
    Acc_i falls, which of the paper's values lie inside the intervals, which layers are marked
    here and in the paper, the seed spread, the judge and where explanations of x* depart."""
    labels, out = doc["layer_labels"], []
    for key, model in (("natural", "natural model"), ("adversarially_trained", "ATTA model")):
        per, paper = _layers(doc, key), doc["paper"][key]
        acc = [100 * r["acc"] for r in per]
        inside = [r["acc_ci"][0] * 100 <= p <= r["acc_ci"][1] * 100 for r, p in zip(per, paper["acc"])]
        above = [r["acc_ci"][0] * 100 > p for r, p in zip(per, paper["acc"])]
        spread = max(100 * (max(r["acc_seeds"]) - min(r["acc_seeds"])) for r in per)
        worst = max(range(len(per)), key=lambda i: max(per[i]["acc_seeds"]) - min(per[i]["acc_seeds"]))
        out.append(
            f"- **{model}** ({100 * doc[key]['clean_accuracy']:.2f} % clean, "
            f"{100 * doc[key]['adversarial_accuracy']:.2f} % under {doc[key]['attack']} on D*): Acc_i runs "
            f"from {acc[0]:.1f} % ({labels[0]}) to {acc[-1]:.1f} % ({labels[-1]}), between "
            f"{min(acc):.1f} and {max(acc):.1f} %; the paper's runs from {paper['acc'][0]:.1f} to "
            f"{paper['acc'][-1]:.1f} %.")
        out.append(
            f"  - The paper's Acc_i lies inside our 95 % interval at {_names(labels, inside)}; "
            f"our interval lies above it at {_names(labels, above)} and below it at "
            f"{_names(labels, [not i and not a for i, a in zip(inside, above)])}.")
        out.append(
            f"  - Marked as largely vulnerable here: {_names(labels, [r['large_vul'] for r in per])}; "
            f"by the same rule on the paper's Table 1: {_names(labels, _paper_marks(paper['vul']))}. "
            f"Largest Vul_i here: {labels[max(range(len(per)), key=lambda i: per[i]['vul'])]} "
            f"({100 * max(r['vul'] for r in per):.1f} %).")
        out.append(
            f"  - The two generator seeds differ by at most {spread:.1f} points of Acc_i "
            f"({labels[worst]}).")
        judge = [r.get("acc_judge") for r in per]
        if all(j is not None for j in judge):
            gap = max(abs(100 * (j - r["acc"])) for j, r in zip(judge, per))
            out.append(f"  - The other model of the pair, as judge, labels the explanations of x* "
                       f"within {gap:.1f} points of f's Acc_i at every layer.")
        dep = [100 * r["true_label_when_departing"] for r in per]
        keep = [100 * r["keeps_adversarial_label"] for r in per]
        out.append(f"  - Explanations of x* keep f(x*) in {min(keep):.1f}–{max(keep):.1f} % of images; "
                   f"those that depart from it land on the true label in {min(dep):.1f}–{max(dep):.1f} %.")
    return "\n".join(out) + "\n"


def main_targets(doc: dict) -> str:
    """Per true digit, the most frequent adversarial label of the natural model's D* and its
    share of that digit's images, beside the paper's where it gives one."""
    paper = (doc.get("paper") or {}).get("top_targets") or {}
    rows = []
    for t in doc["natural"]["top_targets"]:
        ref = paper.get(str(t["true"]))
        rows.append([str(t["true"]), str(t["top_target"]), f"{100 * t['share']:.1f}",
                     f"{ref[0]} ({ref[1]:.1f} %)" if ref else "–"])
    return md_table(["true digit", "most frequent adversarial label", "share of the digit's images (%)",
                     "paper"], rows)


def readme_summary(doc: dict) -> str:
    """The README's results in brief, from the main job's results.json."""
    b, labels = doc["budget"], doc["layer_labels"]
    agree = [100 * r["agreement"] for k in ("natural", "adversarially_trained")
             for r in doc[k]["generators"]["layers"].values()]
    nat, adv = _layers(doc, "natural"), _layers(doc, "adversarially_trained")
    paper = doc["paper"]["natural"]
    return (
        f"- `interpretgan run` (2-core AVX-512-BF16 CPU, fresh clone): {b['epoch_units']:.1f} natural-epoch "
        f"units ({doc['wall_time_s'] / 60:.0f} min); the generators agree with f on "
        f"{min(agree):.1f}–{max(agree):.1f} % of held-out test images at every layer and seed.\n"
        f"- Natural model: Acc_i from {100 * nat[0]['acc']:.1f} % ({labels[0]}) to {100 * nat[-1]['acc']:.1f} % "
        f"({labels[-1]}); the paper's from {paper['acc'][0]:.1f} to {paper['acc'][-1]:.1f} %. Marked as largely "
        f"vulnerable: {_names(labels, [r['large_vul'] for r in nat])} (the paper: "
        f"{_names(labels, _paper_marks(paper['vul']))}).\n"
        f"- ATTA-1 TRADES model: {100 * doc['adversarially_trained']['adversarial_accuracy']:.1f} % under PGD-40; "
        f"Acc_i {min(100 * r['acc'] for r in adv):.1f}–{max(100 * r['acc'] for r in adv):.1f} % at every layer.\n")


def main_epochs(doc: dict) -> str:
    """The natural model's epochs in the main run: seconds and test accuracy per epoch."""
    recs = [r for r in doc["records"] if "train_s" in r]
    return md_table(["epoch", *(str(r["epoch"]) for r in recs)],
                    [["training s", *(f"{r['train_s']:.1f}" for r in recs)],
                     ["test accuracy (%)", *(f"{100 * r['test_acc']:.2f}" for r in recs)]])


# ----------------------------------------------------------------------------- everyday models
def everyday_models(doc: dict) -> str:
    """Per model of ``benchmarks/everyday_models.py``: accuracy, each layer's agreement (the
    lower of its generator seeds; † below the agreement floor), and the run's cost."""
    rows = []
    for r in doc["rows"]:
        layers: dict[str, list[float]] = {}
        for member, v in r["agreement"].items():
            layers.setdefault(member.split("#seed")[0], []).append(v)
        reliable = r.get("reliable") or {}
        cells = ", ".join(f"{n} {100 * min(v):.1f}{'' if reliable.get(n, True) else ' †'}"
                          for n, v in layers.items())
        rows.append([r["model"], f"{100 * r['clean_accuracy']:.1f}",
                     f"{100 * r['adversarial_accuracy']:.1f}", cells,
                     f"{r['epoch_units']:.1f} × {r['train']['natural_epoch_s']:.1f} s"])
    return md_table(["model", "clean (%)", "PGD-40 (%)", "agreement per layer, lower seed (%)",
                     "cost (natural epochs × s)"], rows)


def token_reading(doc: dict) -> str:
    """``benchmarks/token_reading.py``: one token layer fitted alone, per reading and schedule,
    its running agreement at the end of its steps."""
    rows = []
    for name, v in doc["variants"].items():
        rows.append([name, v["tokens"], str(sum(v["steps_per_scale"])), f"{100 * v['final']:.1f}",
                     f"{v['seconds']:.0f}"])
    return md_table([f"{doc['layer']} of {doc['model']}", "fit.tokens", "steps", "agreement, 200 held-out images (%)",
                     "seconds"], rows)


def _median_range(v: list[float], fmt: str = "{:.2f}") -> str:
    """``median [min, max]`` of ``v``."""
    return f"{fmt.format(statistics.median(v))} [{fmt.format(min(v))}, {fmt.format(max(v))}]"


def bf16_vs_fp32(doc: dict) -> str:
    """``benchmarks/bf16_vs_fp32.py --json``: median ms per call of each variant and the
    per-round fp32/bf16 ratio, median [range], from alternated rounds."""
    rows = [[r["workload"], _median_range(r["fp32_ms"], "{:.1f}"), _median_range(r["bf16_ms"], "{:.1f}"),
             f"**{_median_range(r['ratios'])}**"] for r in doc["rows"]]
    return (md_table(["workload", "fp32 ms", "bf16 ms", "fp32/bf16 per round"], rows)
            + f"\n`{doc['command']}`; torch {doc['torch']}, CPU capability {doc['cpu_capability']}, "
              f"{doc['threads']} threads; median [range] over the rounds.\n")


def _machine_line(doc: dict) -> str:
    """``Measured with `COMMAND` on CPU (N cores, …), torch …, commit …`` from a benchmark's
    ``command`` and ``machine``."""
    m = doc["machine"]
    bf16 = ", bf16 units" if m.get("avx512_bf16") else ""
    commit = f", commit `{m['commit']}`" if m.get("commit") else ""
    return (f"Measured with `{doc['command']}` on {m['cpu']} ({m['cores']} cores{bf16}), torch {m['torch']}, "
            f"{m['threads']} threads{commit}; load average {m['load_average_at_start'][0]:.1f} when it started.\n\n")


PGD_VARIANTS = {"torchattacks": "torchattacks PGD", "ours": "ours, early stop",
                "ours bf16": "ours, early stop, under bf16 autocast"}


def pgd_speed(doc: dict) -> str:
    """``benchmarks/pgd_speed.py --json``: per model and variant, seconds of a pass over the
    images and images/s, the per-round ratio torchattacks time / this variant's, median [range]
    over alternated rounds, and the accuracy."""
    s = doc["settings"]
    rows = []
    for m in doc["models"]:
        for name, v in m["variants"].items():
            ratio = f"**{_median_range(m['ratios'][name])}**" if name in m["ratios"] else "–"
            accs = " / ".join(f"{100 * a:.2f}" for a in sorted(set(v["accuracy"])))
            rows.append([m["model"], PGD_VARIANTS.get(name, name), _median_range(v["seconds"], "{:.1f}"),
                         f"{s['images'] / statistics.median(v['seconds']):.1f}", ratio, accs])
    return (_machine_line(doc)
            + md_table(["model", "attack", "s per pass", "images/s", "torchattacks time / this, per round",
                        f"{s['attack'].upper()} accuracy (%)"], rows)
            + f"\n{s['attack'].upper()} (ε {s['eps']}, α {s['alpha']:.4g}, random start) on {s['images']} MNIST "
              f"test images, batch {s['batch_size']}; {s['rounds']} rounds, the variants' order rotated every "
              f"round; median [range] over the rounds.\n")


def _inner_attack(r: dict) -> str:
    if r["method"] == "atta-trades":
        return f"one KL step of {r['step_size']:g} per epoch, carried across epochs"
    return f"{r['attack_steps']} KL steps of {r['step_size']:g} from a fresh start"


def atta_vs_trades(doc: dict) -> str:
    """``benchmarks/atta_vs_trades.py --json``: per method its epochs, inner attack, seconds
    per epoch and accuracy after the last epoch; then the per-epoch ratio TRADES / ATTA,
    median [range] over the alternated pairs of epochs."""
    s, rows = doc["settings"], []
    for name, r in doc["methods"].items():
        rows.append([name.replace("atta-1 trades", "ATTA-1 TRADES").replace("trades pgd", "TRADES PGD"),
                     str(r["epochs"]), _inner_attack(r), _median_range(r["train_s"], "{:.1f}"),
                     f"{100 * r['clean_accuracy']:.2f}", f"**{100 * r['pgd40_accuracy']:.2f}**"])
    ev = s["eval_attack"]
    return (_machine_line(doc)
            + md_table(["method", "epochs", "inner attack", "s per epoch", "clean (%)",
                        f"{ev['name'].upper()} (%)"], rows)
            + f"\nTRADES / ATTA-1 time per epoch, pair by pair of alternated epochs: "
              f"**{_median_range(doc['ratios'])}** (median [range] over {len(doc['ratios'])} pairs).\n\n"
              f"{s['train_subset']} MNIST training images; ε {s['eps']}, β {s['beta']:g}, batch {s['batch_size']}, "
              f"SGD lr {s['lr']:g} (momentum {s['momentum']:g}, ×{s['lr_gamma']:g} from epoch "
              f"{', '.join(str(e + 1) for e in s['lr_milestones'])}), seed {s['seed']}, amp {s['amp']}; seconds "
              f"count an epoch's training steps only. Accuracy after the last epoch on the same {s['test_subset']} "
              f"test images ({ev['name'].upper()}: ε {ev['eps']}, α {ev['alpha']:.4g}, fixed random starts).\n")


def reproducibility(doc: dict) -> str:
    """``benchmarks/reproducibility.py``: Acc_i of the main run's natural model from each
    repetition of the same fit, and per layer the largest difference between two of them."""
    reps = doc["repetitions"]
    layers = list(doc["max_difference_points"])
    labels = doc.get("layer_labels") or layers
    rows = [[f"{name}: {r['command']}", *(pct(r["acc"][n]) for n in layers)] for name, r in reps.items()]
    rows.append(["**largest difference (points)**", *(f"**{doc['max_difference_points'][n]:.1f}**" for n in layers)])

    def gap(a: str, b: str) -> tuple[float, str]:
        d = {n: 100 * abs(reps[a]["acc"][n] - reps[b]["acc"][n]) for n in layers}
        worst = max(d, key=d.get)
        return d[worst], labels[layers.index(worst)]
    same, _ = gap("a", "b")
    ranks, where = gap("a", "ranks2")
    return (md_table(["Acc_i (%)", *labels], rows)
            + f"\nThe same command twice: Acc_i differs by at most {same:.1f} points. One process against "
              f"two ranks: by up to {ranks:.1f} points ({where}).\n")


def own_fashion(doc: dict) -> str:
    """``benchmarks/own_fashion_cnn.py``: per member, agreement after the scheduled steps and at
    the end, the floor's extra steps and whether the layer counts as reliable; then the cost."""
    rows = [[n, f"{100 * m['agreement_scheduled']:.1f}", f"{100 * m['agreement']:.1f}", str(m["extra_steps"]),
             "yes" if m["reliable"] else "no †"] for n, m in doc["members"].items()]
    own = doc["own_training"]
    return (md_table(["member", "agreement after the schedule (%)", "agreement at the end (%)",
                      "extra steps", "reliable"], rows)
            + f"\nThe model: {100 * own['test_accuracy']:.1f} % on the Fashion-MNIST test set after "
              f"{own['epochs']} epochs; {100 * doc['clean_accuracy']:.1f} % clean and "
              f"{100 * doc['adversarial_accuracy']:.1f} % under the attack on D*. The run: "
              f"{doc['epoch_units']:.1f} natural epochs of {doc['natural_epoch_s']:.1f} s.\n")


# ----------------------------------------------------------------------------- fidelity study
SCHEDULE_POINTS = ("base-2seeds", "progressive", "progressive-paper-width")


def _points(doc: dict, names) -> list[tuple[str, dict]]:
    return [(n, doc["points"][n]) for n in names if n in doc["points"]]


def fidelity_schedule_acc(doc: dict) -> str:
    """Acc_i per layer (mean of the point's seeds, Wilson 95 %) and each seed's, for the schedule
    and width points, beside the paper's Table 1."""
    rows = []
    for name, p in _points(doc, SCHEDULE_POINTS):
        rows += _seed_rows(f"{name}, mean of {len(p['seeds'])} seeds", p)
    return md_table(["Acc_i (%)", *doc["layer_labels"]], rows + _paper_row(doc))


def _seed_rows(title: str, p: dict, spread: bool = False) -> list[list[str]]:
    """A point's Acc_i per layer (mean of its seeds, Wilson 95 %), each seed's and, with
    ``spread``, the seeds' range in points."""
    per = p["per_layer"]
    rows = [[title, *(pct(r["acc"], r["acc_ci"]) for r in per)]]
    if all("acc_seeds" in r for r in per):
        rows.append([f"… seeds {' / '.join(map(str, p['seeds']))}",
                     *(" / ".join(f"{100 * a:.1f}" for a in r["acc_seeds"]) for r in per)])
        if spread:
            rows.append(["… largest − smallest seed (points)",
                         *(f"{100 * (max(r['acc_seeds']) - min(r['acc_seeds'])):.1f}" for r in per)])
    return rows


def _paper_row(doc: dict) -> list[list[str]]:
    paper = doc.get("paper_acc")
    return [["paper, Table 1", *(f"{v:.1f}" for v in paper)]] if paper else []


def fidelity_schedule_quality(doc: dict) -> str:
    """Per point: what changed, agreement on natural images, keeps f(x*) and KID on Conv1
    and as the mean over the layers, and the fit's wall time."""
    rows = []
    for name, p in _points(doc, SCHEDULE_POINTS):
        per = p["per_layer"]
        kid = list(p["kid"].values())
        change = ", ".join(f"{k}={v}" for k, v in p["changes"].items()) or "–"
        rows.append([name, change, pct(per[0]["agreement_natural"]),
                     pct(sum(r["agreement_natural"] for r in per) / len(per)),
                     pct(per[0]["keeps_adversarial_label"]),
                     f"{kid[0]:.2f}", f"{sum(kid) / len(kid):.2f}", f"{p['fit_seconds_this_call']:.0f}"])
    return md_table(["point", "change to the study's base", "Conv1 agreement (natural)", "mean agreement",
                     "Conv1 keeps f(x*)", "Conv1 KID", "mean KID", "fit s"], rows)


class Pending(Exception):
    """A table whose data are not in its JSON yet: the page keeps the table's text as it is
    and make_docs names it (``--strict``: an error)."""


def _need(doc: dict, names) -> list[dict]:
    """The study's points ``names``, in that order; :class:`Pending` naming those missing."""
    missing = [n for n in names if n not in doc["points"]]
    if missing:
        raise Pending(f"point(s) {', '.join(missing)} not in the study yet")
    return [doc["points"][n] for n in names]


CLASSIFIER_TITLES = {"natural-10ep": "10-epoch classifier", "natural-3ep": "3-epoch classifier"}
SETTING_POINTS = ("lambda-0.3", "steps-x2", "width-x2", "warmup-0", "lambda-3", "warmup-0.8")


def fidelity_seeds(doc: dict) -> str:
    """Section 1: Acc_i per layer of the base point and of the 3-epoch classifier (mean of the
    seeds with Wilson 95 %, each seed's, their range), with each classifier's clean accuracy and
    its accuracy on D*, beside the paper's Table 1."""
    rows = []
    for p in _need(doc, ("base", "classifier-3ep")):
        title = (f"{CLASSIFIER_TITLES.get(p['classifier'], p['classifier'])} (f: {100 * p['clean_accuracy']:.2f} % "
                 f"clean, {100 * p['adversarial_accuracy']:.2f} % on D*), mean of {len(p['seeds'])} seeds")
        rows += _seed_rows(title, p, spread=True)
    return md_table(["Acc_i (%)", *doc["layer_labels"]], rows + _paper_row(doc))


def _change(p: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in p["changes"].items()) or "– (the study's base)"


def fidelity_settings(doc: dict) -> str:
    """Section 2: Acc_i on the conv layers for the base point's seed 0 and mean, and for each
    one-seed setting point, with Conv1's agreement on natural images and how often Conv1's
    explanations of x* keep f(x*); then the base seeds' range per conv layer."""
    base, *points = _need(doc, ("base", *SETTING_POINTS))
    labels = [lab for lab in doc["layer_labels"] if lab.startswith("Conv")]
    k, n = len(labels), base["n"]
    seed0 = [r["acc_seeds"][0] for r in base["per_layer"][:k]]
    rows = [["base, seed 0", _change(base), *(pct(a, wilson_interval(a * n, n)) for a in seed0), "–", "–"]]
    for name, p in ((f"base, mean of {len(base['seeds'])} seeds", base), *zip(SETTING_POINTS, points)):
        per = p["per_layer"]
        rows.append([name, _change(p), *(pct(r["acc"], r["acc_ci"]) for r in per[:k]),
                     pct(per[0]["agreement_natural"]), pct(per[0]["keeps_adversarial_label"])])
    spread = ", ".join(f"{lab} {100 * min(r['acc_seeds']):.1f}–{100 * max(r['acc_seeds']):.1f}"
                       for lab, r in zip(labels, base["per_layer"]))
    return (md_table(["point", "change", *labels, f"{labels[0]} agreement (natural)", f"{labels[0]} keeps f(x*)"], rows)
            + f"\nThe base point's {len(base['seeds'])} seeds range over: {spread} %.\n")


CARRY_ROWS = (("agreement_natural", "agreement on x"), ("agreement_noisy", "agreement on x + ε·noise"),
              ("keeps_adversarial_label", "agreement on x* (keeps f(x*))"),
              ("true_label_when_departing", "true label when departing"), ("acc", "Acc_i"),
              ("acc_at_natural_fidelity", "Acc_i at natural-image fidelity"))


def fidelity_carry(doc: dict, name: str) -> str:
    """Section 3, one point: per layer, the explanations' agreement with f on natural, noisy and
    adversarial inputs, where the departures from f(x*) land, Acc_i and Acc_i at natural-image
    fidelity (means over the point's seeds)."""
    (p,) = _need(doc, (name,))
    rows = [[title, *(pct(r[field]) for r in p["per_layer"])] for field, title in CARRY_ROWS]
    return (f"**{name}** (mean of {len(p['seeds'])} seeds; f's own accuracy on D*: "
            f"{100 * p['adversarial_accuracy']:.2f} %):\n\n" + md_table(["%", *doc["layer_labels"]], rows))


def fidelity_conclusion(doc: dict) -> str:
    """The conclusion's numbered findings on Conv1, each number read from the study: the
    interval's half-width, the two classifiers' Conv1, the seeds' and the fit length's reach,
    and the departure rate the paper's Acc_1 would need at our direction of departure."""
    base, ep3, x2 = _need(doc, ("base", "classifier-3ep", "steps-x2"))
    c1 = base["per_layer"][0]
    half = 100 * (c1["acc_ci"][1] - c1["acc_ci"][0]) / 2
    spreads = [100 * (max(r["acc_seeds"]) - min(r["acc_seeds"])) for r in base["per_layer"][:4]]
    toward_y, depart = c1["true_label_when_departing"], 1 - c1["keeps_adversarial_label"]
    paper = doc["paper_acc"][0]
    return "\n".join([
        f"1. Sampling is ruled out: the Wilson interval of Conv1's Acc_i over {base['n']:,} images is "
        f"±{half:.1f} points.",
        f"2. The classifier matters: Conv1's Acc_i is {pct(c1['acc'])} % on the 10-epoch classifier and "
        f"{pct(ep3['per_layer'][0]['acc'])} % on the 3-epoch one. Ours follows the paper's schedule "
        f"(10 epochs, lr 0.01 then 0.001; {100 * base['clean_accuracy']:.2f} % clean on D*'s images). The "
        "paper gives no accuracy for its model, so a difference in the classifier itself cannot be ruled out.",
        f"3. The generator moves Acc_i by a few points, not by the paper's distance: Conv1's "
        f"{len(base['seeds'])} seeds spread over {spreads[0]:.1f} points (Conv2–Conv4's over "
        f"{min(spreads[1:]):.1f}–{max(spreads[1:]):.1f}), and twice the steps take Conv1 (seed 0) "
        f"from {100 * c1['acc_seeds'][0]:.1f} to {pct(x2['per_layer'][0]['acc'])} %.",
        f"4. Acc_i grows with the share of x* on which the generator departs from f. With our direction of "
        f"departure ({pct(toward_y)} % of Conv1's departures land on the true label), the paper's "
        f"{paper:.1f} % would need its Conv1 generator to depart from f on about "
        f"{min(100.0, paper / toward_y):.0f} % of x*, against our {pct(depart)} %.", ""])


# ----------------------------------------------------------------------------- fault drill
def fault_drill(doc: dict) -> str:
    """The fault drill's summary (``benchmarks/fault_drill.py --log docs/fault_drill.json``):
    kills by kind and by stage, rounds identical to the reference, work lost per kill."""
    s = doc["summary"]
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(s["kills_by_kind"].items()))
    stages = ", ".join(f"{k} {n}" for k, n in sorted(s["stages_hit"].items()))
    rows = [["SIGKILLs", str(s["kills"])], ["rounds (run folders)", str(s["rounds"])],
            ["kills by moment", kinds], ["kills by stage running", stages],
            ["rounds whose results.json and classifier weights equal the reference's",
             f"{s['rounds_identical']} of {s['rounds']}"],
            ["files left behind (temp files, outputs kept aside, locks)", str(len(s["leftovers"]))],
            ["training steps redone per kill (of a run's steps)",
             f"{s['training_steps_redone_per_kill']:.2f} (of {s['training_steps_per_run']})"],
            ["extra wall time per kill (s, shared cores)", f"{s['extra_seconds_per_kill']:.1f}"],
            ["uninterrupted run (s, shared cores)", f"{s['reference_seconds']:.1f}"]]
    return md_table(["", "fault drill"], rows)


TABLES: dict[str, tuple[str, Callable[[dict], str]]] = {
    "fault-drill": ("fault_drill.json", fault_drill),
    "main-natural": ("main_results.json", lambda d: _main_table(d, "natural")),
    "main-atta": ("main_results.json", lambda d: _main_table(d, "adversarially_trained")),
    "main-generators": ("main_results.json", main_generators),
    "main-maxpool": ("main_results.json", main_maxpool),
    "main-budget": ("main_results.json", main_budget),
    "main-reading": ("main_results.json", main_reading),
    "main-targets": ("main_results.json", main_targets),
    "main-epochs": ("main_natural_metrics.json", main_epochs),
    "readme-summary": ("main_results.json", readme_summary),
    "everyday-models": ("everyday_models.json", everyday_models),
    "own-fashion": ("own_fashion_cnn.json", own_fashion),
    "token-reading": ("token_reading.json", token_reading),
    "reproducibility": ("reproducibility.json", reproducibility),
    "bf16-vs-fp32": ("bf16_vs_fp32.json", bf16_vs_fp32),
    "pooling-4ep": ("study_pooling_mnist.json", lambda d: study_markdown(d) + "\n"),
    "pooling-10ep": ("study_pooling_mnist_10epochs.json", lambda d: study_markdown(d) + "\n"),
    "fidelity-schedule-acc": ("fidelity_study.json", fidelity_schedule_acc),
    "fidelity-schedule-quality": ("fidelity_study.json", fidelity_schedule_quality),
    "fidelity-seeds": ("fidelity_study.json", fidelity_seeds),
    "fidelity-settings": ("fidelity_study.json", fidelity_settings),
    "fidelity-carry-base": ("fidelity_study.json", lambda d: fidelity_carry(d, "base")),
    "fidelity-carry-3ep": ("fidelity_study.json", lambda d: fidelity_carry(d, "classifier-3ep")),
    "fidelity-conclusion": ("fidelity_study.json", fidelity_conclusion),
    "pgd-speed": ("pgd_speed.json", pgd_speed),
    "atta-vs-trades": ("atta_vs_trades.json", atta_vs_trades),
}


def render(text: str, docs: Path) -> tuple[str, list[str], list[str]]:
    """``text`` with every marked table regenerated; the names of the tables that changed, and
    of those whose data are not in their JSON yet (:class:`Pending`: their text is kept)."""
    changed: list[str] = []
    pending: list[str] = []
    cache: dict[str, dict] = {}

    def one(m: re.Match) -> str:
        name = m["name"]
        if name not in TABLES:
            raise SystemExit(f"unknown table {name!r}; known: {', '.join(TABLES)}")
        source, build = TABLES[name]
        if source not in cache:
            path = docs / source
            if not path.exists():
                raise SystemExit(f"table {name}: {path} is missing")
            cache[source] = json.loads(path.read_text())
        try:
            body = build(cache[source])
        except Pending as e:
            pending.append(f"{name} ({source}: {e})")
            return m.group(0)
        if body != m["body"]:
            changed.append(name)
        return m.group(1) + body + m.group(4)

    return MARK.sub(one, text), changed, pending


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is out of date")
    ap.add_argument("--strict", action="store_true",
                    help="also exit 1 if a table's data are not in its JSON yet (its text kept as it is)")
    ap.add_argument("--docs", default=str(DOCS))
    a = ap.parse_args(argv)
    stale, waiting = [], []
    pages = sorted(Path(a.docs).glob("*.md"))
    if Path(a.docs) == DOCS:
        pages.append(ROOT / "README.md")  # its results summary; tables read docs/'s JSON
    for md in pages:
        text = md.read_text()
        new, changed, pending = render(text, Path(a.docs))
        stale += [f"{md.name}: {n}" for n in changed]
        waiting += [f"{md.name}: {n}" for n in pending]
        if changed and not a.check:
            md.write_text(new)
    if stale:
        print(("out of date: " if a.check else "regenerated: ") + "; ".join(stale))
    if waiting:
        print("waiting for data (text left as it is): " + "; ".join(waiting), file=sys.stderr)
    return 1 if (stale and a.check) or (waiting and a.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
