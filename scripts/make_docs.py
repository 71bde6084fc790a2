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
``docs/fault_drill.json``: the log of ``benchmarks/fault_drill.py``; the other files: what a
benchmark's ``--json`` wrote, with its command and machine). A marker whose name or JSON file
is missing is an error. Two readings compare their JSON with a second committed one under this
checkout's docs/ (the 10-epoch pooling study with the 4-epoch one, the fidelity study's schedule
point with the main job's results). Tables of timings are registered before their JSON exists: their
markers go into the docs with the file, from a run on an otherwise idle machine.

A table whose JSON exists but does not hold its data yet (the fidelity study's tables whose
points have not been run into ``docs/fidelity_study.json``) is *waiting*: its generator raises
:class:`Pending`, the page keeps the table's text as it is, and the script names it on stderr;
``--strict`` makes that an error. Once the data are in the JSON, the table is generated like
any other and ``--check`` holds it to them.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "src"))  # this checkout's package, installed or not
from interpretgan.diagnosis.diagnose import wilson_interval  # noqa: E402
from interpretgan.report import critical_t, study_markdown  # noqa: E402
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
    floor, n = doc["natural"]["generators"]["kid_real_vs_real"], doc["natural"]["generators"]["n_eval"]
    return (md_table(["layer", *doc["layer_labels"]], rows)
            + f"\nKID of {n:,} real held-out images against another {n:,}: {floor:.2f}.\n")


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
    return (f"One natural epoch in this run: {b['natural_epoch_s']:.1f} s (the middle of the natural "
            f"model's sorted epoch times; for an even count the upper of the two middle ones). Wall time of `interpretgan run`: {doc['wall_time_s'] / 60:.1f} min.\n\n"
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
        seeds = doc[key].get("generator_seeds", len(per[0]["acc_seeds"]))
        out.append(
            f"  - The {seeds} generator seeds differ by at most {spread:.1f} points of Acc_i "
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
    attack = doc["adversarially_trained"].get("attack") or doc["config"]["attack"]
    return (
        f"- `interpretgan run`: {b['epoch_units']:.1f} natural-epoch "
        f"units ({doc['wall_time_s'] / 60:.0f} min); the generators agree with f on "
        f"{min(agree):.1f}–{max(agree):.1f} % of held-out test images at every layer and seed.\n"
        f"- Natural model: Acc_i from {100 * nat[0]['acc']:.1f} % ({labels[0]}) to {100 * nat[-1]['acc']:.1f} % "
        f"({labels[-1]}); the paper's from {paper['acc'][0]:.1f} to {paper['acc'][-1]:.1f} %. Marked as largely "
        f"vulnerable: {_names(labels, [r['large_vul'] for r in nat])} (the paper: "
        f"{_names(labels, _paper_marks(paper['vul']))}).\n"
        f"- ATTA-1 TRADES model: {100 * doc['adversarially_trained']['adversarial_accuracy']:.1f} % under {attack.upper()}; "
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
    attacks = " / ".join(dict.fromkeys(ATTACK_TITLES.get(r["attack"], r["attack"]) for r in doc["rows"]))
    return md_table(["model", "clean (%)", f"{attacks} (%)", "agreement per layer, lower seed (%)",
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
              f"{doc['threads']} threads; median [range] over the rounds.\n"
            + (_load(doc["machine"]) if "machine" in doc else ""))


def _machine_line(doc: dict) -> str:
    """``Measured with `COMMAND` on CPU (N cores, …), torch …, commit …`` from a benchmark's
    ``command`` and ``machine``."""
    m = doc["machine"]
    bf16 = ", bf16 units" if m.get("avx512_bf16") else ""
    commit = f", commit `{m['commit']}`" if m.get("commit") else ""
    # (files written before the load was recorded as one number hold the three averages)
    load = m["load_at_start"] if "load_at_start" in m else m["load_average_at_start"][0]
    return (f"Measured with `{doc['command']}` on {m['cpu']} ({m['cores']} cores{bf16}), torch {m['torch']}, "
            f"{m['threads']} threads{commit}; load average {load:.1f} when it started.\n\n")


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
    # the run's own two generator seeds, per layer: how far a change of seed moves Acc_i
    seeds = {n: 100 * (max(v) - min(v)) for n, v in reps["run"]["acc_seeds"].items()}
    k = len(next(iter(reps["run"]["acc_seeds"].values())))
    rows.append([f"run: largest − smallest of its {k} generator seeds (points)", *(f"{seeds[n]:.1f}" for n in layers)])
    two = {n: 100 * abs(reps["a"]["acc"][n] - reps["ranks2"]["acc"][n]) for n in layers}
    shown = {n: (round(two[n], 1), round(seeds[n], 1)) for n in layers}  # compared as the table shows them
    further = [labels[layers.index(n)] for n in layers if shown[n][0] > shown[n][1]]
    less = [labels[layers.index(n)] for n in layers if shown[n][0] < shown[n][1]]
    at = labels.index(where)
    return (md_table(["Acc_i (%)", *labels], rows)
            + f"\nThe same command twice: Acc_i differs by at most {same:.1f} points. One process against "
              f"two ranks: by up to {ranks:.1f} points ({where}), where the run's {k} generator seeds differ by "
              f"{seeds[layers[at]]:.1f}. Two ranks move Acc_i further than the change of seed at "
              f"{', '.join(further) or 'no layer'}, less far at {', '.join(less) or 'no layer'}.\n")


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
    and as the mean over the layers, and the fit's wall time; every value a mean over the
    point's seeds (KID: its ``kid`` entries ``layer`` and ``layer#seedK``)."""
    rows = []
    for name, p in _points(doc, SCHEDULE_POINTS):
        per = p["per_layer"]
        kid = list(p["kid"].values())
        kid1 = [v for k, v in p["kid"].items() if k.split("#")[0] == p["layers"][0]]
        change = ", ".join(f"{k}={v}" for k, v in p["changes"].items()) or "–"
        rows.append([name, change, pct(per[0]["agreement_natural"]),
                     pct(sum(r["agreement_natural"] for r in per) / len(per)),
                     pct(per[0]["keeps_adversarial_label"]),
                     f"{sum(kid1) / len(kid1):.2f}", f"{sum(kid) / len(kid):.2f}", f"{p['fit_seconds_this_call']:.0f}"])
    c1 = doc["layer_labels"][0]
    return md_table(["point", "change to the study's base", f"{c1} agreement (natural)", "mean agreement",
                     f"{c1} keeps f(x*)", f"{c1} KID (mean of seeds)", "mean KID", "fit s"], rows)


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
SETTING_POINTS = ("lambda-0.3", "steps-x2", "steps-x4", "width-x2", "warmup-0", "lambda-3", "warmup-0.8")


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
    longer = " and ".join(f"{pct(doc['points'][name]['per_layer'][0]['acc'])} % ({times} the steps)"
                          for name, times in LONGER if name in doc["points"])
    return "\n".join([
        f"1. Sampling is ruled out: the Wilson interval of Conv1's Acc_i over {base['n']:,} images is "
        f"±{half:.1f} points.",
        f"2. The classifier matters: Conv1's Acc_i is {pct(c1['acc'])} % on the 10-epoch classifier and "
        f"{pct(ep3['per_layer'][0]['acc'])} % on the 3-epoch one. Ours follows the paper's schedule "
        f"(10 epochs, lr 0.01 then 0.001; {100 * base['clean_accuracy']:.2f} % clean on D*'s images). The "
        "paper gives no accuracy for its model, so a difference in the classifier itself cannot be ruled out.",
        f"3. The generator moves Acc_i, but not toward the paper's value: Conv1's "
        f"{len(base['seeds'])} seeds spread over {spreads[0]:.1f} points (Conv2–Conv4's over "
        f"{min(spreads[1:]):.1f}–{max(spreads[1:]):.1f}), and longer fits take Conv1 (seed 0) lower, "
        f"from {100 * c1['acc_seeds'][0]:.1f} % to " + longer + ".",
        f"4. Acc_i grows with the share of x* on which the generator departs from f. With our direction of "
        f"departure ({pct(toward_y)} % of Conv1's departures land on the true label), the paper's "
        f"{paper:.1f} % would need its Conv1 generator to depart from f on about "
        f"{min(100.0, paper / toward_y):.0f} % of x*, against our {pct(depart)} %.", ""])


# ----------------------------------------------------------------------------- readings of benchmark records
def folder_stream(doc: dict) -> str:
    """``benchmarks/folder_stream.py``: the folder, what its training split would take in memory,
    the measuring process's resident memory, the listing and header scan, and each pass's rate."""
    f, size = doc["folder"], doc["image_size"]
    gib = doc["in_memory_bytes_would_be"] / 2 ** 30  # uint8, 3 channels
    full, one = doc["full_pass"], doc["full_pass_one_thread"]
    fit, ds = doc["fit_like_pass"], doc["dstar_like_pass"]
    passes = {"full pass": full, "one-thread pass": one, "fit-like pass": fit, "D*-like pass": ds}
    top = max(passes, key=lambda k: max(passes[k]["rss_mib_during"]))
    batch_mib = ds["batch_size"] * 3 * size ** 2 * 4 / 2 ** 20
    return (f"- Folder: {f['jpegs']:,} JPEGs of {f['side']} px in {f['classes']} class folders "
            f"({doc['train_images']:,} training, {doc['test_images']:,} test), {f['bytes'] / 2 ** 20:.0f} MiB on disk. "
            f"Read at `--image-size {size}` (shorter side to {size}, centre crop), the training split would take "
            f"{gib:.1f} GiB as uint8 in memory, {4 * gib:.1f} GiB as float32; it was "
            f"{'streamed' if doc['streamed'] else 'loaded into memory'}.\n"
            f"- **Peak RSS of the whole measuring process: {doc['peak_rss_mib']:,.0f} MiB** "
            f"({doc['rss_mib_after_imports']:,.0f} MiB after its imports); during the full pass VmRSS stayed between "
            f"{min(full['rss_mib_during']):,.0f} and {max(full['rss_mib_during']):,.0f} MiB at each tenth of it. "
            f"The highest VmRSS sampled: {max(passes[top]['rss_mib_during']):,.0f} MiB, in the {top}; a batch of "
            f"{ds['batch_size']} float32 images at {size} px, as the D*-like pass reads them, is {batch_mib:,.0f} MiB.\n"
            f"- Listing (names, sizes, mtimes: what the stage keys' digest reads): {doc['listing_seconds']:.2f} s. "
            f"Header scan (every file opened once, the first time only; cached): {doc['header_scan_seconds']:.2f} s.\n"
            f"- Full pass of the training split, batches of 128, {doc['decode_threads']} decoding threads: "
            f"**{full['images_per_s']:,.0f} images/s** ({full['seconds']:.2f} s); with one decoding thread "
            f"{one['images_per_s']:,.0f} images/s ({one['seconds']:.2f} s).\n"
            f"- Fit-like pass (the fit's shuffled batches of {fit['batch_size']} across the whole split, "
            f"{fit['steps']} steps): {fit['images_per_s']:,.0f} images/s. D*-like pass ({ds['images']:,} test images "
            f"drawn as D* draws them, batches of {ds['batch_size']}): {ds['images_per_s']:,.0f} images/s.\n\n"
            f"`{doc['command']}`; {doc['machine']}.\n")


def distributed_drift(doc: dict) -> str:
    """``benchmarks/distributed.py --json``: per training job, each setup's largest weight
    difference from 1 process × 1 thread after the benchmark's epoch."""
    def setup(r: dict) -> str:
        return (f"{r['processes']} process{'es' if r['processes'] > 1 else ''} × "
                f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}")
    jobs: dict[str, list[str]] = {}
    for r in doc["rows"]:
        if r["max_abs_weight_diff"] is not None:
            jobs.setdefault(r["job"], []).append(f"{r['max_abs_weight_diff']:.1e} on {setup(r)}")
    unchecked = [j for j in dict.fromkeys(r["job"] for r in doc["rows"]) if j not in jobs]
    return (f"- After one epoch of {doc['train_images']:,} training images, the largest weight difference from "
            f"1 process × 1 thread: " + "; ".join(f"{job}: {', '.join(v)}" for job, v in jobs.items())
            + (f". Not compared by the benchmark: {', '.join(unchecked)}" if unchecked else "")
            + f". (`{doc['command']}`)\n")


EVERYDAY_TARGETS = {"agreement": 0.90, "epoch_units": 20}  # the targets results.md states


def everyday_targets(doc: dict) -> str:
    """``benchmarks/everyday_models.py``: per model, its cost and lower-seed agreement per layer
    against the targets, and the machine the file names."""
    t, out = EVERYDAY_TARGETS, []
    for r in doc["rows"]:
        low: dict[str, float] = {}
        for member, v in r["agreement"].items():
            n = member.split("#seed")[0]
            low[n] = min(low.get(n, 1.0), v)
        below = [f"{n} {100 * v:.1f} %" for n, v in low.items() if v < t["agreement"]]
        cheap = r["epoch_units"] <= t["epoch_units"]
        missed = [name for name, ok in (("agreement", not below), ("cost", cheap)) if not ok]
        verdict = ("meets both targets" if not missed else "misses both targets" if len(missed) == 2
                   else f"misses the {missed[0]} target")
        seeds = (f"layers whose lower seed agrees with f on less than {100 * t['agreement']:.0f} %: {', '.join(below)}"
                 if below else f"every layer's seeds agree with f on {100 * t['agreement']:.0f} % or more")
        out.append(f"- `{r['model']}` {verdict}: the run took {r['epoch_units']:.1f} units "
                   f"({'within' if cheap else 'over'} the {t['epoch_units']}); {seeds}.")
    return "\n".join(out) + f"\n\nMachine: {doc['machine']}; torch {doc['torch']}.\n"


def fit_speed_reading(doc: dict) -> str:
    """``benchmarks/fit_speed.py --json``: per phase, each variant's speed against the reference
    per round (median [range]), the fastest in the median and whether the ranges overlap."""
    out = []
    for cfg in dict.fromkeys((r["preset"], r["batch"]) for r in doc["rows"]):
        for phase in dict.fromkeys(r["phase"] for r in doc["rows"]):
            rows = [r for r in doc["rows"] if (r["preset"], r["batch"]) == cfg and r["phase"] == phase
                    and r["variant"] != "reference"]
            if not rows:
                continue
            best = max(rows, key=lambda r: statistics.median(r["vs_reference"]))
            overlap = max(min(r["vs_reference"]) for r in rows) <= min(max(r["vs_reference"]) for r in rows)
            out.append(f"- `{cfg[0]}`, batch {cfg[1]}, {phase}: "
                       + ", ".join(f"{r['variant']}{' (auto)' if r['auto'] else ''} {_median_range(r['vs_reference'])}×"
                                   for r in rows)
                       + f"; fastest in the median: {best['variant']}; the ranges "
                       + ("overlap" if overlap else "do not overlap") + f" ({doc['rounds']} rounds).")
    return "\n".join(out) + "\n"


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


# ----------------------------------------------------------------------------- benchmark records
def _load(m: dict) -> str:
    """The CPU and the load average around a benchmark's run."""
    return (f"{m['cpu']}, {m['cores']} cores; load average {m['load_at_start']:.1f} at the start, "
            f"{m['load_at_end']:.1f} at the end.\n")


def _machine(doc: dict) -> str:
    """The command and the machine of a benchmark's ``--json`` file (``benchmarks/_record.py``)."""
    m = doc["machine"]
    return (f"`{doc['command']}`; {m['cpu']}, {m['cores']} cores, {m['threads']} thread{'s' if m['threads'] != 1 else ''}, torch {m['torch']} "
            f"(CPU capability {m['cpu_capability']}); load average {m['load_at_start']:.1f} at the start, "
            f"{m['load_at_end']:.1f} at the end.\n")


def _spread(v: dict, fmt: str = "{:.1f}") -> str:
    """A ``_record.spread`` dict as ``median [min, max]``."""
    return f"{fmt.format(v['median'])} [{fmt.format(v['min'])}, {fmt.format(v['max'])}]"


def _m(n: float) -> str:
    return f"{n / 1e6:.2f} M"


def _token_label(r: dict) -> str:
    return "token grid 14×14 + CLS" if r["reading"] == "grid" else "flat (one FC)"


def token_layers(doc: dict) -> str:
    """``benchmarks/token_layers.py --counts``: C's weights for a ViT-B/16-shaped token layer per
    fit preset and reading, and how the grid compares with the flat FC."""
    rows = []
    for r in doc["rows"]:
        width = f" with `fit.c_width_mult={r['c_width_mult']}`" if r["c_width_mult_set"] else ""
        rows.append([f"{r['preset']} (code {r['code_dim']}){width}", _token_label(r),
                     str(r["c_plan"]) if r["c_plan"] else "—", _m(r["c_weights"])])
    own = [r for r in doc["rows"] if not r["c_width_mult_set"]]
    grid = [r for r in own if r["reading"] == "grid"]
    flat = {r["preset"]: r["c_weights"] for r in own if r["reading"] == "flat"}
    half = [r for r in doc["rows"] if r["c_width_mult_set"]]
    first = doc["shape"][1] * grid[0]["c_plan"][0] * 9
    ratios = [flat[r["preset"]] / r["c_weights"] for r in grid]
    return (md_table(["fit preset", "C reads the layer as", "conv stages", "C weights"], rows)
            + f"\nAt the presets' own widths the grid's C has {min(r['c_weights'] for r in grid) / 1e6:.1f}–"
              f"{max(r['c_weights'] for r in grid) / 1e6:.1f} M weights; its first 3×3 conv ({doc['shape'][1]} → "
              f"{grid[0]['c_plan'][0]}) alone has {first / 1e6:.1f} M. "
              + "".join(f"With `fit.c_width_mult={r['c_width_mult']}` ({r['preset']}): {_m(r['c_weights'])}. "
                        for r in half)
              + f"The flat FC has {min(ratios):.1f}–{max(ratios):.1f}× the grid's weights at the same preset.\n"
              + f"\n`{doc['command']}` (counted on the meta device).\n")


def token_layers_speed(doc: dict) -> str:
    """``benchmarks/token_layers.py --json``: one fit step's time and peak RSS growth per fit
    preset and reading, and the grid's step against the flat one's."""
    rows, step = [], {}
    for r in doc["rows"]:
        width = f", C × {r['c_width_mult']}" if r["c_width_mult_set"] else ""
        v = r["step_s_all"]
        rows.append([f"{r['preset']}{width}", _token_label(r), _m(r["c_weights"]),
                     _median_range(v, "{:.3f}"), f"{r['peak_rss_mb']:,.0f}"])
        step.setdefault(f"{r['preset']}{width}", {})[r["reading"]] = statistics.median(v)
    cmp = "; ".join(f"{k}: {s['grid'] / s['flat']:.2f}" for k, s in step.items() if len(s) == 2)
    return (md_table(["fit preset", "C reads the layer as", "C weights", "fit step (s), median [range]",
                      "peak RSS growth (MB)"], rows)
            + f"\nGrid step / flat step (medians): {cmp}. Batch {doc['batch']}, {doc['precision']}, "
              f"{doc['steps']} timed steps after {doc['warm_up_steps']} warm-up step, each variant in its own process.\n\n"
            + _machine(doc))


def _sig(v: float) -> str:
    """Three significant figures (trailing zeros kept), thousands separated."""
    if v >= 100 or v == 0:
        return f"{v:,.0f}"
    return f"{v:.{max(0, 2 - math.floor(math.log10(abs(v))))}f}"


def _celeba(doc: dict) -> list[tuple[str, dict]]:
    return list(doc["presets"].items())


def celeba_steps(doc: dict) -> str:
    """``benchmarks/celeba_cost.py --flops-only``: what each CelebA preset runs."""
    heads, cols = [], []
    for name, p in _celeba(doc):
        s = p["settings"]
        bf16 = ", bf16 where the device has it" if s["train_amp"] == "auto" else ""
        heads.append(f"`{name}`")
        cols.append([f"VGG16, {s['train_epochs']} epochs, batch {s['train_batch']} ({s['train_steps']:,} steps), "
                     f"lr {s['train_lr']:g}{bf16}",
                     f"{s['attack'].upper()} (ε = {s['attack_eps'] * 255:.0f}/255), {s['dstar_images']:,} test images",
                     f"{len(s['fit_g_channels'])} scales, widths {', '.join(map(str, s['fit_g_channels']))}",
                     " / ".join(f"{n:,}" for n in s["fit_steps_per_scale"]) + f" = **{s['fit_steps']:,}**",
                     "Table 5" + (", Block5's lone conv" if s["c_conv_small_maps"] else "")])
    first = _celeba(doc)[0][1]
    s, f = first["settings"], first["flops"]
    labels = ["classifier", "D*", "generators", f"fit steps (batch {s['fit_batch']})", "compression"]
    return (f"CelebA's aligned release has {s['train_images']:,} training images (partition 0) and "
            f"{s['test_images']:,} test images (partition 2); all images are {s['image_size']}×{s['image_size']} "
            f"centre crops; {f['fit_layers']} layers are interpreted, all fitted together in each step.\n\n"
            + md_table(["", *heads], [[lab, *(c[i] for c in cols)] for i, lab in enumerate(labels)]))


def _pflop(v: float) -> str:
    return f"{_sig(v / 1e15)} PFLOP"


def celeba_flops(doc: dict) -> str:
    """``benchmarks/celeba_cost.py --flops-only``: the VGG16's FLOPs, every fit step's per
    scale and phase, the whole runs', and the stacked bank's count against the per-layer one."""
    (name0, p0), *_ = _celeba(doc)
    f, s = p0["flops"], p0["settings"]
    n = f["fit_layers"] * s["fit_generator_seeds"] * f["fit_batch"]
    out = [f"- VGG16 at {s['image_size']} px: a forward pass is {f['classifier_forward_flops_per_image'] / 1e9:.1f} "
           f"GFLOP per image, a training step {f['classifier_train_flops_per_image'] / 1e9:.1f} GFLOP per image.",
           f"- One fit step sends all {f['fit_layers']} × {f['fit_batch']} = {n} explanations through VGG16 at "
           f"{s['image_size']} px, forward and back to the input: {n * f['classifier_input_grad_flops_per_image'] / 1e12:.2f} "
           f"TFLOP at every scale, the 4-px scale included (its explanations are upsampled for the classifier). "
           f"The rest is C, G and D.", ""]
    presets = _celeba(doc)
    rows = [[str(r["scale"]), str(r["px"]),
             *(f"{_sig(p['flops']['fit_per_scale'][i]['gan_flops'] / 1e12)} / "
               f"{_sig(p['flops']['fit_per_scale'][i]['warmup_flops'] / 1e12)}" for _, p in presets)]
            for i, r in enumerate(f["fit_per_scale"])]
    out.append(md_table(["scale", "px", *(f"`{k}`: TFLOP / step (GAN / warm-up)" for k, _ in presets)], rows))
    out.append("Whole runs:\n")
    for k, p in presets:
        fl = p["flops"]
        total = fl["train_flops"] + fl["dstar_flops_approx"] + fl["fit_flops"]
        gan = [r["gan_flops"] for r in fl["fit_per_scale"]]
        out.append(f"- `{k}`: training {_pflop(fl['train_flops'])}, D* {_pflop(fl['dstar_flops_approx'])}, "
                   f"fit {_pflop(fl['fit_flops'])}; **{_pflop(total)}** in all. A GAN step at the last scale "
                   f"is {gan[-1] / gan[0]:.1f}× one at 4 px.")
    over = [r["stacked_gan_flops"] / r["gan_flops"] for _, p in presets for r in p["flops"]["fit_per_scale"]]
    out.append(f"\nThe counter counts each layer's C, G and D as its own network. Counted on the stacked network "
               f"that the GPU runs (grouped convolutions), the same GAN steps come out {min(over):.2f}–{max(over):.2f}× "
               f"as high; where that difference comes from was not examined, and the figures here use the "
               f"per-network count.\n")
    return "\n".join(out) + f"\n`{doc['command']}` (counted on the meta device).\n"


def _dur(sec: float) -> str:
    """Seconds as s, min or h."""
    return f"{sec:.0f} s" if sec < 120 else f"{sec / 60:.1f} min" if sec < 7200 else f"{sec / 3600:.1f} h"


def _estimate_column(p: dict) -> list[str]:
    e, s, f = p["gpu_estimate_s"], p["settings"], p["flops"]
    sc = e["fit_per_scale"]
    return [f"{s['train_epochs']} epochs of {s['train_images']:,} images and the test set after each: loader "
            f"{_dur(e['train_loader_s'])}, compute {_dur(e['train_compute_s'])} → **{_dur(e['train_s'])}**",
            f"{_pflop(f['dstar_flops_approx'])} → **{_dur(e['dstar_s'])}**",
            f"{s['fit_steps']:,} steps, a GAN step {1000 * sc[0]['gan_s']:,.0f} ms at {sc[0]['px']} px … "
            f"{1000 * sc[-1]['gan_s']:,.0f} ms at {sc[-1]['px']} px → **{_dur(e['fit_s'])}**",
            f"**{_dur(e['train_s'] + e['dstar_s'] + e['fit_s'])}**"]


def celeba_gpu_estimate(doc: dict) -> str:
    """``benchmarks/celeba_cost.py --flops-only``: each preset's time on one GPU from its FLOP
    counts and the benchmark's stated rates (assumptions, not measurements)."""
    g = doc["gpu_assumptions"]
    presets = _celeba(doc)
    cols = [_estimate_column(p) for _, p in presets]
    labels = ["training (loader or compute, the slower)", "D*", "fit: VGG16's L_I pass at the VGG16 rate, the rest "
              "at the G/D rate", "all counted"]
    return (f"- bf16 VGG16 convolutions sustain {g['vgg16_tflops']} TFLOP/s "
            f"({100 * g['vgg16_tflops'] / g['dense_bf16_peak_tflops']:.0f} % of the {g['gpu']}'s "
            f"{g['dense_bf16_peak_tflops']} TFLOP/s dense bf16 peak).\n"
            f"- The stacked, grouped G/D convolutions sustain {g['gan_tflops']} TFLOP/s.\n"
            f"- Training is bound by JPEG decoding at {g['loader_images_per_s']:,} images/s with "
            f"{g['loader_workers']} workers, unless its FLOPs take longer.\n\n"
            + md_table(["stage", *(f"`{k}`" for k, _ in presets)],
                       [[lab, *(c[i] for c in cols)] for i, lab in enumerate(labels)])
            + "\nNot counted: the lazy R1 penalty, the running agreement, logging and checkpoints of the fit, "
              "KID, the diagnosis, the explanations and the Captum baselines.\n")


def celeba_memory(doc: dict) -> str:
    """``benchmarks/celeba_cost.py --flops-only``: what the VGG16 saves for its backward, per
    image and at the fit's and D*'s batch sizes."""
    (name, p), *_ = _celeba(doc)
    e, s, g = p["gpu_estimate_s"], p["settings"], doc["gpu_assumptions"]
    mib = p["flops"]["classifier_saved_for_backward_mib_per_image_fp32"]
    most = max(e["fit_saved_for_backward_gb_fp32"], e["dstar_saved_for_backward_gb_fp32"])
    return (f"The tensors VGG16 saves for its backward pass at {s['image_size']} px come to {mib:.0f} MiB per image "
            f"in fp32 (`classifier_saved_for_backward_mib_per_image_fp32`); a tensor that several operations save "
            f"is counted once per operation, so it is an upper bound.\n\n"
            f"- The fit step's L_I pass over {e['fit_explanations_per_step']} explanations holds at most "
            f"{e['fit_saved_for_backward_gb_fp32']:.0f} GB in fp32 (not counted under bf16 autocast).\n"
            f"- D* ({s['attack'].upper()} at its batch of {s['dstar_batch']}) holds at most "
            f"{e['dstar_saved_for_backward_gb_fp32']:.0f} GB in fp32 for the attack's backward.\n"
            f"- The larger of the two, {most:.0f} GB, is {'within' if most < g['gpu_memory_gb'] else 'above'} the "
            f"{g['gpu_memory_gb']} GB of the {g['gpu']}; C, G and D at batch {s['fit_batch']} come on top.\n")


def _celeba_cpu_rows(doc: dict) -> list[list[str]]:
    t, pgd = doc["train"], doc["pgd20"]

    def rate(flops: float, sec: float) -> str:
        return f"{flops / sec / 1e9:.0f}"
    rows = [[f"VGG16 training, {t['preset']}", str(t["batch"]), _median_range(t["s_all"], "{:.1f}"),
             f"{t['images_per_s']:.2f}", f"{t['flops_per_step'] / 1e12:.2f}", rate(t["flops_per_step"], t["s_per_step"])],
            ["PGD-20 (D*)", str(pgd["batch"]), _median_range(pgd["s_all"], "{:.1f}"), f"{pgd['images_per_s']:.2f}",
             f"{pgd['flops_per_batch_approx'] / 1e12:.2f} (approx.)", rate(pgd["flops_per_batch_approx"], pgd["s_per_batch"])]]
    for r in doc["fit"]:
        rows.append([f"fit, scale {r['scale']} ({r['px']} px), {r['phase']}", str(r["batch"]),
                     _median_range(r["s_all"], "{:.1f}"), f"{r['images_per_s']:.2f}",
                     f"{r['flops_per_step_without_r1'] / 1e12:.2f}", rate(r["flops_per_step_without_r1"], r["s_per_step"])])
    return rows


def celeba_cpu(doc: dict) -> str:
    """``benchmarks/celeba_cost.py --device cpu --json``: seconds per step (median [range]),
    images/s, the FLOPs counted in the run and the effective rate, the JPEG loader's rate and
    the process's resident high-water mark."""
    rss = max([doc["train"], doc["pgd20"], *doc["fit"]], key=lambda r: r.get("cpu_process_rss_high_water_gib", 0))
    banks = sorted({r["banks"] for r in doc["fit"]})
    return (md_table(["step", "batch", "s / step, median [range]", "images/s", "TFLOP / step (counted in the run)",
                      "effective GFLOP/s"], _celeba_cpu_rows(doc))
            + f"\nVGG16 width {doc['vgg16_width']}; bf16 autocast: {doc['train']['bf16']} (training), "
              f"{doc['fit'][0]['bf16']} (fit); the fit's layers in {', '.join(map(str, banks))} bank(s). "
              f"The CelebA loader's decode, crop and tensor conversion of a synthetic {doc['jpeg']['jpeg_kib']:.0f}-KiB "
              f"JPEG of CelebA's 178×218 size: {doc['jpeg']['images_per_s_per_process']:.0f} images/s in one process (one thread). "
              f"The process's resident high-water mark: {rss.get('cpu_process_rss_high_water_gib', 0):.1f} GiB.\n\n"
            + _machine(doc))


def fit_speed(doc: dict) -> str:
    """``benchmarks/fit_speed.py --json``: ms per joint fit step per config, phase and variant
    (median [range] over rounds), images/s per layer and the per-round speed against the reference."""
    compared = len({r["variant"] for r in doc["rows"]}) > 1  # one variant: no speed column
    rows = [[f"{r['preset']}, batch {r['batch']}" + (f", G/D {'-'.join(map(str, r['gd_widths']))}" if r.get("gd_widths") else ""),
             r["phase"], r["variant"] + (" (auto)" if r["auto"] else ""),
             _spread(r["ms"]), f"{r['batch'] / r['ms']['median'] * 1000:.0f}",
             *([_median_range(r["vs_reference"]) + "×"] if compared else [])]
            for r in doc["rows"]]
    return (md_table(["config", "phase", "variant", "ms / step, median [range]", "images/s per layer",
                      *(["vs reference per round"] if compared else [])], rows)
            + f"\nDevice {doc['device']}, bf16 autocast: {doc['bf16']}; {doc['rounds']} alternating rounds of "
              f"{doc['steps']} steps.\n\n" + _machine(doc))


def channels_last(doc: dict) -> str:
    """``benchmarks/channels_last.py --json``: ms per call in NCHW and NHWC (median [range]) and
    the per-round ratio."""
    rows = [[r["case"], r["step"], _spread(r["nchw_ms"]), _spread(r["nhwc_ms"]), f"**{_median_range(r['ratios'])}×**"]
            for r in doc["rows"]]
    return (md_table(["case", "step", "NCHW ms", "NHWC ms", "NCHW / NHWC per round"], rows)
            + f"\n{doc['precision']}; {doc['rounds']} rounds, the layouts alternated; median [range].\n\n" + _machine(doc))


def distributed_speed(doc: dict) -> str:
    """``benchmarks/distributed.py --json``: work and wall seconds per job and setup (median
    [range] over rounds), speeds against 1 process and 1 × 1 thread, weight differences."""
    rows = []
    for r in doc["rows"]:
        d = r["max_abs_weight_diff"]
        rows.append([r["job"], f"{r['processes']} × {r['threads']}", _spread(r["work_s"]), _spread(r["wall_s"]),
                     f"{r['speed_vs_1_process']:.2f}×", f"{r['speed_vs_1x1']:.2f}×", "" if d is None else f"{d:.1e}"])
    return (md_table(["job", "processes × threads", "work s", "wall s", "speed vs 1 process",
                      "speed vs 1 × 1 thread", "max \\|Δw\\| vs 1 × 1 thread"], rows)
            + f"\n{doc['rounds']} rounds, the setups alternated; fit schedule × {doc['fit_scale']}, training on "
              f"{doc['train_images']:,} images; median [range].\n\n" + _machine(doc))


def distributed_split(doc: dict) -> str:
    """``benchmarks/distributed.py --split-only``: which members each rank fits, by FLOPs."""
    total = sum(doc["share_flops_per_sample"])
    shares = "; ".join(f"rank {i}: {', '.join(f'`{n}`' for n in share)} ({flops / 1e6:.1f} MFLOP, "
                       f"{100 * flops / total:.0f} %)"
                       for i, (share, flops) in enumerate(zip(doc["shares"], doc["share_flops_per_sample"])))
    return (f"- The fit's split by FLOPs (per sample, C + G + D forward) of the {len(doc['member_flops_per_sample'])} "
            f"members on {doc['ranks']} ranks: {shares} (`{doc['command']}`).\n")


def _fit_settings(doc: dict) -> str:
    """The base fit settings of a ``benchmarks/gan_losses.py`` record, in one sentence."""
    f = doc["fit"]
    where = "of each scale" if f["warmup_each_scale"] else "of all steps"
    return (f"Base fit: {' / '.join(map(str, f['steps_per_scale']))} steps of batch {f['batch_size']}, G/D widths "
            f"{tuple(f['g_channels'])}, L_I-only warm-up over the first {100 * f['warmup_fraction']:.0f} % {where}, "
            f"EMA β {f['ema_beta']}, GAN loss {f['gan_loss']}, amp {f['amp']}, seed {f['seed']}.")


def fit_curves(doc: dict) -> str:
    """``benchmarks/gan_losses.py --variant … --json``: each variant's running agreement on 200
    held-out images at every logged step (one value per layer, in ``layers`` order)."""
    steps = [c["step"] for c in next(iter(doc["variants"].values()))["curve"]]
    rows = []
    for name, v in doc["variants"].items():
        at = {c["step"]: c for c in v["curve"]}
        rows.append([name, *("/".join(f"{at[t][n]:.2f}" for n in doc["layers"]) if t in at else "–" for t in steps)])
    ends = {c["step"] for c in next(iter(doc["variants"].values()))["curve"] if not c["warmup"]}
    return (md_table(["step", *(f"{t}" + ("" if t in ends else " (warm-up)") for t in steps)], rows)
            + f"\nLayers: {', '.join(f'`{n}`' for n in doc['layers'])}. Variants: "
              + "; ".join(f"{k}: {', '.join(f'{a}={b}' for a, b in v['changes'].items())}" for k, v in doc["variants"].items())
            + f". {_fit_settings(doc)}\n\n" + _machine(doc))


def fit_curves_reading(doc: dict) -> str:
    """``benchmarks/gan_losses.py --variant … --json``: per variant, how far the running
    agreement moves between consecutive checks in the last scale's GAN phase (after the last
    warm-up check), and its lowest value there, from the values as the curve table prints them."""
    lines = []
    for name, v in doc["variants"].items():
        curve = v["curve"]
        last_warm = max((i for i, c in enumerate(curve) if c["warmup"]), default=-1)
        gan = curve[last_warm + 1:]
        if len(gan) < 2:
            raise Pending(f"{name}: fewer than two checks after the warm-up")
        shown = [{n: round(c[n], 2) for n in doc["layers"]} for c in gan]  # as the table prints them
        jumps = [abs(b[n] - a[n]) for a, b in zip(shown, shown[1:]) for n in doc["layers"]]
        low = min(c[n] for c in shown for n in doc["layers"])
        lines.append(f"- {name}: from step {gan[0]['step']} to {gan[-1]['step']} (last scale, GAN phase), "
                     f"the agreement of a layer moved by up to {max(jumps):.2f} from one check to the next; "
                     f"its lowest was {low:.2f}.\n")
    return "".join(lines)


def variant_pair_reading(doc: dict) -> str:
    """``benchmarks/gan_losses.py --variant A --variant B --json``: B against A — the mean
    agreement, the layers whose agreement moved by more than two binomial standard errors of
    the difference (``fit.eval_images`` images each), the layers where KID fell, the wall times."""
    (a_name, a), (b_name, b) = list(doc["variants"].items())[:2]
    n, layers = doc["fit"]["eval_images"], doc["layers"]
    mean = {k: 100 * statistics.mean(v["layers"][m]["agreement"] for m in layers) for k, v in ((a_name, a), (b_name, b))}
    moved = []
    for m in layers:
        pa, pb = a["layers"][m]["agreement"], b["layers"][m]["agreement"]
        se = math.sqrt(pa * (1 - pa) / n + pb * (1 - pb) / n)
        if abs(pb - pa) > 2 * se:
            moved.append(f"`{m}` {100 * pa:.1f} → {100 * pb:.1f} % (two s.e.: {200 * se:.1f} pt)")
    kid_lower = sum(b["layers"][m]["kid"] < a["layers"][m]["kid"] for m in layers)
    return (f"- Mean agreement over the {len(layers)} layers: {a_name} {mean[a_name]:.1f} %, {b_name} {mean[b_name]:.1f} %.\n"
            f"- Agreement moved by more than two binomial standard errors of the difference ({n:,} images each) on "
            + ("; ".join(moved) if moved else "no layer") + ".\n"
            f"- KID was lower under {b_name} on {kid_lower} of {len(layers)} layers.\n"
            f"- Fit wall time: {a['fit_seconds']:.0f} s ({a_name}), {b['fit_seconds']:.0f} s ({b_name}), one fit each.\n")


def test_suite(doc: dict) -> str:
    """``benchmarks/test_suite.py --json``: passed / failed / skipped (with reasons), the wall
    time and the slowest tests."""
    skips = "".join(f"\n  - `{t['test']}`: {t['reason']}" for t in doc["skips"])
    slow = ", ".join(f"`{t['test']}` {t['seconds']:.0f} s" for t in doc["slowest"])
    return (f"- **{doc['passed']} passed, {doc['failed']} failed, {doc['errors']} errors, {doc['skipped']} skipped** "
            f"in {doc['wall_s']:.0f} s.\n"
            + (f"- Skipped:{skips}\n" if doc["skips"] else "")
            + f"- The slowest (setup + call + teardown): {slow}.\n\n" + _machine(doc))


def atta_preset(doc: dict) -> str:
    """``benchmarks/atta_preset.py --json``: per variant of the ``mnist-atta-trades`` preset,
    PGD-40 accuracy on the 500-image subset after every epoch (lr in brackets), then clean and
    PGD-40 accuracy on the whole test set, and whether the target is met. (The epochs' times are
    in the JSON but not shown: the variants ran one after the other, so they are no speed
    comparison.)"""
    target = doc["settings"]["target_pgd40"]
    rows = []
    for name, v in doc["variants"].items():
        epochs = " / ".join(f"{100 * e['pgd-40_acc']:.1f} ({e['lr']:g})" for e in v["epochs"])
        met = "**met**" if v["pgd40_accuracy"] >= target else "missed"
        rows.append([name, epochs, f"{100 * v['clean_accuracy']:.2f}", f"**{100 * v['pgd40_accuracy']:.2f}**", met])
    n = next(iter(doc["variants"].values()))["test_images"]
    pair = doc["variants"].get("4 epochs fp32"), doc["variants"].get("4 epochs bf16")
    bf16 = ""
    if all(pair):
        p32, p16 = pair[0]["pgd40_accuracy"], pair[1]["pgd40_accuracy"]
        se = math.sqrt(p32 * (1 - p32) / n + p16 * (1 - p16) / n)
        bf16 = (f"\nbf16 − fp32 after 4 epochs: clean {100 * (pair[1]['clean_accuracy'] - pair[0]['clean_accuracy']):+.2f} pt, "
                f"PGD-40 {100 * (p16 - p32):+.2f} pt (two binomial standard errors of that difference: "
                f"{200 * se:.2f} pt).\n")
    return (md_table(["variant", f"PGD-40 % on {doc['settings']['eval_attack_subset']} test images after each epoch (lr)",
                      f"clean % ({n:,} test images)", f"PGD-40 % ({n:,} test images)",
                      f"target ≥ {100 * target:.0f} %"], rows) + bf16
            + f"\nSeed {doc['settings']['seed']}, all 60,000 training images; evaluation in fp32 with the attack's "
              f"fixed random starts.\n\n" + _machine(doc))


def atta_preset_seeds(doc: dict) -> str:
    """``interpretgan study pooling`` (``docs/study_pooling_mnist.json``): the max-pool
    SmallCNN's PGD-40 accuracy per seed on the study's test subset."""
    runs = [r for r in doc["runs"] if r["pool"] == "max"]
    target = 0.88
    met = sum(r["accuracy"]["pgd-40"] >= target for r in runs)
    seeds = " / ".join(str(r["seed"]) for r in runs)
    accs = " / ".join(f"{100 * r['accuracy']['pgd-40']:.2f}" for r in runs)
    return (f"- The pooling study's max-pool SmallCNNs (this preset, fp32, seeds {seeds}) reach "
            f"{accs} % under PGD-40 on its "
            f"{doc['config']['test_subset']:,} test images: the target of {100 * target:.0f} % is met on {met} of {len(runs)} seeds.\n")

# ----------------------------------------------------------------------------- pooling study and fidelity readings
ATTACK_TITLES = {"pgd-40": "PGD-40", "pgd-100": "PGD-100", "mpgd-40": "M-PGD-40", "fgsm": "FGSM",
                 "pgd-20": "PGD-20", "mpgd-20": "M-PGD-20", "autoattack": "APGD-CE + APGD-T"}
MODEL_TITLES = {"smallcnn": "SmallCNN", "vgg16": "VGG16"}
POOL_TITLES = {"max": "max-pool", "avg": "avg-pool"}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
                9: "nine", 10: "ten", 12: "twelve"}


def _f(v: float, digits: int = 1, sign: bool = False) -> str:
    """``v`` with ``digits`` decimals (``sign``: always signed), with a typographic minus."""
    return (f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}").replace("-", "−")


def _word(n: int) -> str:
    return NUMBER_WORDS.get(n, str(n))


def _and(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _seed_list(seeds: list[int]) -> str:
    return (f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1))
            else ", ".join(map(str, seeds)))


def _pooling(doc: dict) -> tuple[dict, str, dict, dict, dict, list[str]]:
    """A pooling study's config, its (first) model, that model's summary, paired avg − max
    differences and paper rows, and the attacks it ran (without clean and APGD)."""
    cfg = doc["config"]
    model = cfg["models"][0]
    summ = doc["summary"][model]
    diffs = summ.get("avg_minus_max") or {}
    paper = (doc.get("paper") or {}).get(model) or {}
    attacks = [c for c in summ["max"] if c not in ("clean", "autoattack")]
    return cfg, model, summ, diffs, paper, attacks


def _minutes(runs: list[dict], pool: str) -> str:
    return " / ".join(_f(r["train_time_s"] / 60) for r in sorted(runs, key=lambda r: r["seed"]) if r["pool"] == pool)


def pooling_setup(doc: dict) -> str:
    """The pooling study's setup as bullets: models, test images and each model's training time
    (``runs[].train_time_s``)."""
    cfg, model, _, _, _, attacks = _pooling(doc)
    n = len(cfg["models"]) * len(cfg["pools"]) * len(cfg["seeds"])
    times = ", ".join(f"{POOL_TITLES.get(p, p)} {_minutes(doc['runs'], p)} min" for p in cfg["pools"])
    # attacks.py: pgd and mpgd draw a random start in the ε-ball from a seeded generator, fgsm
    # steps from the clean image (random_start=False); torchattacks' APGD/APGD-T draw theirs
    # after seeding torch with their seed (study.autoattack_accuracy: 0 for every model)
    starts = [ATTACK_TITLES.get(a, a) for a in attacks if a != "fgsm"]
    start = ([f"{_and(starts)} start from a seeded random start"] if starts else []) + (
        ["FGSM from the clean image"] if "fgsm" in attacks else []) + (
        ["APGD-CE and APGD-T from torchattacks' seeded random start"] if cfg.get("autoattack") else [])
    start = "; ".join(start) if start else "no attack"
    return "\n".join([
        f"- {_word(n).capitalize()} models: {MODEL_TITLES.get(model, model)} × {{{', '.join(cfg['pools'])}}} × "
        f"seeds {_seed_list(cfg['seeds'])}.",
        f"- Every model is evaluated on the same fixed {cfg['test_subset']:,}-image test subset. All attacks run in",
        f"  fp32. {start[0].upper() + start[1:]}.",
        f"- Training time per model (seeds {' / '.join(map(str, sorted(cfg['seeds'])))}): {times}.",
        "- Raw numbers per model: `docs/study_pooling_mnist.json`.", ""])


def _verdict_sets(diffs: dict, attacks: list[str], crit: float) -> tuple[list[str], list[str]]:
    better = [a for a in attacks if diffs[a]["t"] > crit]
    worse = [a for a in attacks if diffs[a]["t"] < -crit]
    return better, worse


def pooling_4ep_reading(doc: dict) -> str:
    """The 4-epoch pooling study read out: the paired avg − max differences and their t, the
    paper's differences, both pools against the paper's rows, the APGD column and PGD-100."""
    cfg, model, summ, diffs, paper, attacks = _pooling(doc)
    n = max(d["n"] for d in diffs.values())
    crit = critical_t(n - 1)
    better, worse = _verdict_sets(diffs, attacks, crit)
    if worse and not better:
        head = "Not here: it is less robust, beyond seed noise."
    elif better and not worse:
        head = "Yes here, beyond seed noise."
    else:
        head = "Not beyond seed noise here."
    means = [diffs[a]["mean"] for a in attacks]
    names = [ATTACK_TITLES.get(a, a) for a in attacks]
    if all(m < 0 for m in means) or all(m > 0 for m in means):
        verb = "loses" if means[0] < 0 else "gains"
        parts = [f"{_f(abs(m))}{' pt' if i == 0 else ''} under {t}" for i, (m, t) in enumerate(zip(means, names))]
    else:
        verb = "changes robust accuracy by"
        parts = [f"{_f(m, sign=True)}{' pt' if i == 0 else ''} under {t}" for i, (m, t) in enumerate(zip(means, names))]
    ts = sorted((diffs[a]["t"] for a in attacks), key=abs)
    clean = diffs["clean"]
    lines = [f"**Is average pooling more robust? {head}**", "",
             f"- Over {_word(n)} seeds, paired by seed, average pooling {verb} {_and(parts)}. The paired t is "
             f"between {_f(ts[0])} and {_f(ts[-1])}, with {n - 1} degrees of freedom (two-sided 5 % threshold: "
             f"{crit:.2f}). Its clean accuracy is {_f(abs(clean['mean']))} pt "
             f"{'lower' if clean['mean'] < 0 else 'higher'} (t = {_f(clean['t'])}"
             + (", within seed noise)." if abs(clean["t"]) < crit else ").")]
    if paper:
        pd = [paper["avg"][a] - paper["max"][a] for a in attacks]
        same = sum((p > 0) == (m > 0) for p, m in zip(pd, means))
        sign = ("the opposite sign" if same == 0 else "the same sign" if same == len(pd) else "mixed signs")
        lines.append(f"- The paper's Table 2 has {sign} ({', '.join(_f(p, sign=True) for p in pd)}).")
        for pool in cfg["pools"]:
            gaps = [summ[pool][a]["mean"] - paper[pool][a] for a in attacks]
            items = [f"{t} {_f(summ[pool][a]['mean'])} ± {_f(summ[pool][a]['std'])} vs {paper[pool][a]:.2f} "
                     f"({_f(g, sign=True)}{' pt' if i == 0 else ''})"
                     for i, (a, t, g) in enumerate(zip(attacks, names, gaps))]
            tail = ""
            if all(g < 0 for g in gaps) or all(g > 0 for g in gaps):
                tail = (f"; that is {_f(min(map(abs, gaps)))}–{_f(max(map(abs, gaps)))} pt "
                        f"{'below' if gaps[0] < 0 else 'above'} the paper's {pool} row under all {_word(len(gaps))} attacks")
            lines.append(f"- Our {POOL_TITLES.get(pool, pool)} models against the paper's {pool} row: "
                         f"{_and(items)}{tail}.")
    lines += ["- The visible difference is the schedule: 4 ATTA epochs with a 0.1 step, against ATTA's 60",
              "  epochs.",
              "- The paper's schedule (60 epochs, step 0.01, `mnist-atta-trades-paper`) has not been run. A",
              "  10-epoch schedule has (below).", ""]
    if "autoattack" in diffs:
        aa = {p: summ[p]["autoattack"] for p in cfg["pools"]}
        below = {p: summ[p][attacks[0]]["mean"] - aa[p]["mean"] for p in cfg["pools"]}
        d = diffs["autoattack"]
        lines += ["**The APGD-CE + APGD-T column** (`--autoattack`): torchattacks' APGD-CE, then APGD-T on the",
                  "survivors, 100 steps and one restart each — AutoAttack's two gradient attacks, not the",
                  "standard AutoAttack suite, which adds FAB-T and Square. It runs on the first "
                  f"{cfg['autoattack_subset']:,} images of the same subset.", "",
                  "- Results: " + ", ".join(f"{p} {_f(aa[p]['mean'])} ± {_f(aa[p]['std'])} %" for p in cfg["pools"])
                  + f". Per seed ({' / '.join(map(str, sorted(cfg['seeds'])))}): "
                  + ", ".join(f"{p} {' / '.join(_f(v) for v in aa[p]['values'])}" for p in cfg["pools"]) + ".",
                  f"- It is {_and([f'{_f(below[p])} pt ({p})' for p in cfg['pools']])} "
                  f"{'below' if all(b > 0 for b in below.values()) else 'away from'} "
                  f"{ATTACK_TITLES.get(attacks[0], attacks[0])}, but {ATTACK_TITLES.get(attacks[0], attacks[0])} ran "
                  f"on all {cfg['test_subset']:,} images and this attack on the first {cfg['autoattack_subset']:,} of "
                  f"them; on the same {cfg['autoattack_subset']:,} images the gap was not measured.",
                  f"- avg − max is {_f(d['mean'], sign=True)} ± {_f(d['std'])} pt (t = {_f(d['t'])}), "
                  + (f"within seed noise on {cfg['autoattack_subset']:,} images." if abs(d["t"]) < crit
                     else "beyond seed noise."), ""]
    if paper and "pgd-100" in attacks:
        mx, pp = summ["max"], paper["max"]
        gap = mx["pgd-100"]["mean"] - pp["pgd-100"]
        others = [a for a in attacks if a in ("pgd-40", "mpgd-40")]
        within = max(abs(mx[a]["mean"] - pp[a]) for a in others)
        lines += [f"**PGD-100 vs the paper.** Our max-pool models score {_f(mx['pgd-100']['mean'])} ± "
                  f"{_f(mx['pgd-100']['std'])} under PGD-100, {_f(abs(gap))} pt {'above' if gap > 0 else 'below'} the "
                  f"paper's {pp['pgd-100']:.2f}; under {_and([ATTACK_TITLES[a] for a in others])} they are within "
                  f"{_f(within)} pt of the paper's values. Our PGD-100 uses the same α = 0.01 and ε = 0.3 as PGD-40, "
                  "with 60 more steps from the same kind of start, and stops early on each image once it is "
                  "misclassified (the paper reports final iterates; docs/fidelity.md, \"Paper vs here\"). The cause of "
                  "the gap is not known; the paper's PGD-100 may use a different step size, and its text gives none.", ""]
    return "\n".join(lines)


def pooling_10ep_setup(doc: dict) -> str:
    """The longer pooling run's setup: epochs, lr drop, each model's training time and the run's
    wall time (``elapsed_s``)."""
    cfg, model, *_ = _pooling(doc)
    ov = cfg["train_overrides"]
    epochs, drops = ov["epochs"], ov.get("lr_milestones") or []
    last = epochs - drops[0] if len(drops) == 1 else None
    lr = (f" and lr ×0.1 for the last {'epoch' if last == 1 else f'{last} epochs'}" if last else "")
    times = _and([f"{_f(r['train_time_s'] / 60)} min ({r['pool']})" for r in doc["runs"]])
    return (f"Setup: a 2-core CPU, fp32, channels-last, the same {cfg['test_subset']:,} test images. The models "
            f"trained for {epochs} ATTA-1 epochs with step 0.1{lr}. Training took {times}; the whole run, evaluation "
            f"included, {doc['elapsed_s'] / 60:.0f} min. Raw numbers: `docs/study_pooling_mnist_10epochs.json`. Paper "
            "numbers are in brackets.\n")


def _sibling(name: str) -> dict | None:
    """Another committed JSON under docs/ (``name``), for a reading that compares two runs; None
    when it is not there."""
    path = DOCS / name
    return json.loads(path.read_text()) if path.exists() else None


def _against_4ep(doc: dict, attacks: list[str]) -> list[str]:
    """The longer run's avg − max against the 4-epoch study's (``study_pooling_mnist.json``),
    attack by attack: smaller in size, and less than half of it?"""
    four = _sibling("study_pooling_mnist.json")
    if four is None:
        return []
    d4 = _pooling(four)[3]
    d10 = _pooling(doc)[3]
    both = [a for a in attacks if a in d4]
    if not both:
        return []
    n4 = max(d4[a]["n"] for a in both)
    pairs = _and([f"{ATTACK_TITLES.get(a, a)} {_f(d4[a]['mean'], 2, sign=True)} → {_f(d10[a]['mean'], 2, sign=True)}"
                  for a in both])
    what = "deficit" if all(d4[a]["mean"] < 0 for a in both) else "difference"
    smaller = [a for a in both if abs(d10[a]["mean"]) < abs(d4[a]["mean"])]
    half = [a for a in both if abs(d10[a]["mean"]) < abs(d4[a]["mean"]) / 2]
    epochs = doc["config"]["train_overrides"].get("epochs")
    run = f"at {epochs} epochs" if epochs else "in the longer run"
    head = f"- Against the 4-epoch differences above (the mean of {_word(n4)} seeds), avg − max {run} is "
    if len(half) == len(both):
        body = (f"less than half as large under every attack ({pairs} pt): most of average pooling's 4-epoch "
                f"{what} is gone {run}")
    elif len(smaller) == len(both):
        body = f"smaller under every attack, but not by half under all of them ({pairs} pt)"
    else:
        body = (f"smaller under {_and([ATTACK_TITLES.get(a, a) for a in smaller]) or 'no attack'} and not under "
                f"{_and([ATTACK_TITLES.get(a, a) for a in both if a not in smaller])} ({pairs} pt)")
    one = max(d10[a]["n"] for a in both) == 1
    return [head + body + (f"; with one seed, how much of the {what} remains is not settled." if one else ".")]


def pooling_10ep_reading(doc: dict) -> str:
    """The longer pooling run read out: avg − max per attack, against the sampling error of one
    model's accuracy and the paper's differences, and both pools against the paper's rows."""
    cfg, model, summ, diffs, paper, attacks = _pooling(doc)
    names = [ATTACK_TITLES.get(a, a) for a in attacks]
    first, n_img = attacks[0], cfg["test_subset"]
    acc = summ["max"][first]["mean"] / 100
    se = 100 * math.sqrt(acc * (1 - acc) / n_img)
    d0 = diffs[first]["mean"]
    lines = [f"- At {cfg['train_overrides']['epochs']} epochs avg − max is **{_f(d0, 2, sign=True)} pt** under "
             f"{names[0]} (" + ", ".join(f"{_f(diffs[a]['mean'], 2, sign=True)} {t}" for a, t in zip(attacks[1:], names[1:]))
             + "); the 4-epoch differences are above.",
             f"- The {names[0]} difference is {'smaller' if abs(d0) < se else 'larger'} than the standard error of one "
             f"model's accuracy on {n_img:,} images (≈ {_f(se)} pt at {100 * acc:.0f} %). With one seed it cannot be "
             "tested against seed noise.",
             *_against_4ep(doc, attacks)]
    if paper:
        pd = {a: paper["avg"][a] - paper["max"][a] for a in attacks}
        gains = [a for a in attacks if pd[a] > 0]
        if gains and all(diffs[a]["mean"] <= 0 for a in gains):
            shown = [a for a in gains if a in ("pgd-40", "pgd-100")] or gains
            cited = [f"{_f(pd[a], sign=True)}{' pt' if i == 0 else ''} under {ATTACK_TITLES.get(a, a)}"
                     for i, a in enumerate(shown)]
            lines.append(f"- Even at {cfg['train_overrides']['epochs']} epochs average pooling shows **no** robustness "
                         "gain: neither the paper's " + " nor its ".join(cited) + ".")
        multi = [a for a in attacks if a != "fgsm"]
        gaps = {p: {a: summ[p][a]["mean"] - paper[p][a] for a in attacks} for p in cfg["pools"]}
        if all(g > 0 for p in gaps for g in gaps[p].values()):
            rng = _and([f"{_f(min(gaps[p][a] for a in multi))}–{_f(max(gaps[p][a] for a in multi))} pt ({p})"
                        for p in cfg["pools"]])
            fg = _and([f"{_f(gaps[p]['fgsm'])} ({p})" for p in cfg["pools"]])
            lines.append(f"- Both {cfg['train_overrides']['epochs']}-epoch models are more robust than the paper's "
                         f"Table 2 rows under every attack: by {rng} under {_and([ATTACK_TITLES.get(a, a) for a in multi])}, "
                         f"and by {fg} pt under FGSM.")
    return "\n".join(lines) + "\n"



def _seeds_of(r: dict) -> list[float]:
    """A layer's Acc_i per generator seed (a one-seed point: its Acc_i)."""
    return r.get("acc_seeds") or [r["acc"]]


def _inside(v: float, lo_hi) -> bool:
    return min(lo_hi) <= v <= max(lo_hi)


def _two(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` with two decimals, or as many more (up to four) as show that they differ."""
    for d in (2, 3, 4):
        x, y = f"{a:.{d}f}", f"{b:.{d}f}"
        if x != y:
            break
    return x, y


def _arrow(a: float, b: float) -> str:
    """``a → b``, or ``a (unchanged)`` when the two agree to four decimals."""
    x, y = _two(a, b)
    return f"{x} → {y}" if x != y else f"{x} (unchanged)"


def _seed_mean(*points: dict) -> str:
    """``the mean of two seeds`` (every point the same number), else each point's count."""
    k = [len(p["seeds"]) for p in points]
    return (f"the mean of {_word(k[0])} seeds" if len(set(k)) == 1
            else "the means of " + _and([_word(i) for i in k]) + " seeds")


def _same_as_main(name: str, p: dict) -> str:
    """The last bullet of Section 4: the point's Acc_i per layer and seed against the main job's
    natural model (``docs/main_results.json``), image for image, and the agreement floor's extra
    steps there."""
    main = _sibling("main_results.json")
    if main is None:
        return ""
    nat, n = main["natural"], p["n"]
    per = nat["per_layer"]

    def counts(r: dict) -> list[int]:  # hitting explanations per seed
        return [round(a * n) for a in _seeds_of(r)]

    same_f = (nat["n"] == n and nat["clean_accuracy"] == p["clean_accuracy"]
              and nat["adversarial_accuracy"] == p["adversarial_accuracy"])
    differ = [lab for layer, lab, r in zip(p["layers"], p["layer_labels"], p["per_layer"])
              if layer not in per or counts(per[layer]) != counts(r)]
    if not same_f:
        return (f"- The main job's natural model (`docs/main_results.json`) is not {name}'s classifier and D* "
                "(its clean or adversarial accuracy differs).")
    extra = [g.get("extra_steps") for g in nat["generators"]["layers"].values()]
    floor = (" (the main job's agreement floor added no steps there: every generator's `extra_steps` is 0)"
             if extra and all(e == 0 for e in extra) else "")
    head = (f"- The last point ({name}) is the quick preset as it stands, on the main job's classifier and D* (the "
            "same clean and adversarial accuracy): its Acc_i ")
    if not differ:
        return (head + "equal the main job's natural model's (`docs/main_results.json`) at every layer and seed, to "
                f"the last image{floor}.")
    return head + f"differ from the main job's natural model's (`docs/main_results.json`) at {_and(differ)}{floor}."


def fidelity_schedule_reading(doc: dict) -> str:
    """Section 4 read out: how far the progressive schedule moves Acc_i against the former
    schedule's intervals and seeds, agreement, KID and fit time; what Table 4's widths move."""
    (n0, n1, n2), (base, prog, wide) = SCHEDULE_POINTS, _need(doc, SCHEDULE_POINTS)
    labels = doc["layer_labels"]
    layers = list(zip(labels, base["per_layer"], prog["per_layer"], wide["per_layer"]))
    lab, rb, rp, _ = max(layers, key=lambda t: abs(t[2]["acc"] - t[1]["acc"]))
    ci_all = all(max(b["acc_ci"][0], p["acc_ci"][0]) <= min(b["acc_ci"][1], p["acc_ci"][1]) for _, b, p, _ in layers)
    in_seeds = [l for l, b, p, _ in layers if _inside(p["acc"], _seeds_of(b))]
    out_seeds = [l for l in labels if l not in in_seeds]

    def agreement(p: dict) -> tuple[float, float]:
        per = p["per_layer"]
        return per[0]["agreement_natural"], sum(r["agreement_natural"] for r in per) / len(per)

    def kid(p: dict, layer: str) -> list[float]:
        return [v for k, v in p["kid"].items() if k.split("#")[0] == layer]

    first = base["layers"][0]
    kb, kp = kid(base, first), kid(prog, first)
    mean_kid = [sum(p["kid"].values()) / len(p["kid"]) for p in (base, prog)]
    (ab0, abm), (ap0, apm) = agreement(base), agreement(prog)
    realism = ("*less* realistic" if mean_kid[1] > mean_kid[0] else "*more* realistic")
    kid0, kid1 = _two(*mean_kid)
    bullet1 = (f"- **The progressive schedule** (D trains at every scale) moves Acc_i by at most "
               f"{_f(100 * abs(rp['acc'] - rb['acc']))} points at any layer ({lab}: {pct(rb['acc'])} → {pct(rp['acc'])} %, "
               f"{_seed_mean(base, prog)}). "
               + ("The two points' 95 % intervals overlap at every layer; " if ci_all else "")
               + f"the mean of {n1} lies within the seed range of {n0} at {_and(in_seeds) if in_seeds else 'no layer'}"
               + (f" and outside it at {_and(out_seeds)}" if out_seeds else "") + ". "
               f"Agreement on natural images is {pct(ab0)} % ({n0}) against {pct(ap0)} % ({n1}) at {labels[0]}, and "
               f"{pct(abm)} against {pct(apm)} % as the mean over the layers. By KID the explanations are {realism} on average over the layers and "
               f"seeds ({kid0} → {kid1}); at {labels[0]} the KID is "
               + _and([f"{_arrow(a, b)} for seed {seed}" for seed, a, b in zip(base["seeds"], kb, kp)])
               + ". By the two schedules' settings (above; not a measurement), fewer steps play the GAN game at the "
               "largest scale with the warm-up inside each scale than with the warm-up over the first 40 % of all "
               "steps. Its fit also took "
               f"{'less' if prog['fit_seconds_this_call'] < base['fit_seconds_this_call'] else 'more'} time in this one, "
               f"non-alternated run ({base['fit_seconds_this_call']:.0f} → {prog['fit_seconds_this_call']:.0f} s).")
    moved = [(l, p, w) for l, _, p, w in layers if not _inside(w["acc"], p["acc_ci"])]
    kept = [l for l in labels if l not in {m[0] for m in moved}]
    parts = [f"{l} {'down' if w['acc'] < p['acc'] else 'up'} from {pct(p['acc'])} to {pct(w['acc'])} %, out of the "
             f"{n1} point's interval [{100 * p['acc_ci'][0]:.1f}, {100 * p['acc_ci'][1]:.1f}]"
             + (f" and its seeds' range ({100 * min(p['acc_seeds']):.1f}–{100 * max(p['acc_seeds']):.1f})"
                if not _inside(w["acc"], _seeds_of(p)) else "")
             for l, p, w in moved]
    bullet2 = (f"- **Table 4's widths** ({n2}) move " + (_and(parts) if parts else "no layer out of the "
                                                          f"{n1} point's interval")
               + (f", and leave {_and(kept)} within it" if parts and kept else "") + ". Its fit took "
               f"{'more' if wide['fit_seconds_this_call'] > prog['fit_seconds_this_call'] else 'less'} time than "
               f"{n1}'s in this one, non-alternated run ({prog['fit_seconds_this_call']:.0f} → "
               f"{wide['fit_seconds_this_call']:.0f} s).")
    last = _same_as_main(n2, wide)
    return "\n".join([bullet1, bullet2, *([last] if last else []), ""])


def fidelity_conclusion_lead(doc: dict) -> str:
    """The conclusion's opening: Conv1's Acc_i at every point (means and single generators)
    against the paper's, where Conv2's interval holds the paper's value, and the largest Conv2
    drop (Vul_2) of any point against the paper's."""
    main, base, _ = _need(doc, ("progressive-paper-width", "base", "steps-x2"))
    pts = doc["points"]
    labels, paper = doc["layer_labels"], doc["paper_acc"]
    c1 = [p["per_layer"][0] for p in pts.values()]
    means = [r["acc"] for r in c1]
    single = max(a for r in c1 for a in _seeds_of(r))
    share = ("about half of it or less" if 100 * single <= 0.55 * paper[0]
             else f"at most {100 * single / paper[0]:.0%} of it".replace("%", " %"))
    holds = {name: _inside(paper[1] / 100, p["per_layer"][1]["acc_ci"]) for name, p in (("base", base), ("main", main))}
    vul_name, vul_row = max(((n, p["per_layer"][1]) for n, p in pts.items()), key=lambda t: t[1]["vul"])
    paper_vul = paper[0] - paper[1]
    table1 = "results.md#table-1-acc_i--vul_i--on-d-pgd-40-ε--03-2000-test-images"
    return "\n".join([
        f"We could not reproduce {labels[0]}'s {paper[0]:.1f} %: the main job's fit (this study's point "
        f"progressive-paper-width, Section 4) gives {pct(main['per_layer'][0]['acc'])} % ([results.md]({table1})); "
        f"the points of this study give {pct(min(means))}–{pct(max(means))} % as the mean of their seeds, and no single "
        f"generator more than {pct(single)} %: {share} ({paper[0] / 2:.1f} % is half).",
        f"{labels[1]} and {labels[2]} land near Table 1 in some fits and not in others: in this study's base fit "
        f"{labels[1]}'s interval {'holds' if holds['base'] else 'misses'} the paper's value, in the main job's it "
        f"{'holds it too' if holds['main'] else 'does not'}, and {_longer(doc, base)}. How far the same fit "
        "moves on two ranks instead of one is measured in "
        "[results.md](results.md#reproducibility-the-same-fit-run-again).",
        f"{labels[1]}'s drop (Vul_2) is at most {_f(100 * vul_row['vul'], sign=True)} points at every point of this study "
        f"({vul_name}: {_f(100 * vul_row['vul'], sign=True)} [{_f(100 * vul_row['vul_ci'][0])}, "
        f"{_f(100 * vul_row['vul_ci'][1])}]), against the paper's {_f(paper_vul, sign=True)}. What we measured points to "
        f"the generator on {labels[0]}, or to the classifier (item 2), rather than to the layer or to sampling:", ""])


LONGER = (("steps-x2", "twice"), ("steps-x4", "four times"))


def _longer(doc: dict, base: dict) -> str:
    """What the longer fits (steps-x2, and steps-x4 when the study has it; one seed each) do to
    Conv2 and Conv3, against the base point's same seed and its seeds' range."""
    pts = [(word, doc["points"][name]) for name, word in LONGER if name in doc["points"]]
    ks, labels = (1, 2), doc["layer_labels"][1:3]
    cmp, parts = [], []
    for word, p in pts:
        seed = p["seeds"][0]
        i = base["seeds"].index(seed)
        cmp += [(p["per_layer"][k]["acc"], base["per_layer"][k]["acc_seeds"][i], min(base["per_layer"][k]["acc_seeds"]))
                for k in ks]
        parts.append(("" if len(pts) == 1 else f"{word}: ")
                     + ", ".join(f"{lab} {pct(base['per_layer'][k]['acc_seeds'][i])} → {pct(p['per_layer'][k]['acc'])} %"
                                 for k, lab in zip(ks, labels)) + f", seed {seed}")
    nums = "; ".join(parts) + "; Section 2"
    steps = _and([w for w, _ in pts]) + " the steps"
    if all(a < lo for a, _, lo in cmp):
        return f"{steps} take both below the base seeds' range ({nums})"
    if all(a < same for a, same, _ in cmp):
        return f"{steps} move both lower than the base's same seed ({nums})"
    return f"{steps} do not move both lower than the base's same seed ({nums})"


def gan_losses(doc: dict) -> str:
    """``benchmarks/gan_losses.py --json``: per layer and GAN loss, agreement and KID; the fit's
    wall time per loss."""
    variants = doc["variants"]
    rows = [[f"`{n}`", *(f"{100 * v['layers'][n]['agreement']:.1f} % / {v['layers'][n]['kid']:.2f}"
                         for v in variants.values())] for n in doc["layers"]]
    rows.append(["fit wall time", *(f"{v['fit_seconds']:.0f} s" for v in variants.values())])
    return (md_table(["layer", *(f"{k}: agreement / KID" for k in variants)], rows)
            + f"\nKID of real held-out images against other real ones: {doc['kid_real_vs_real']:.2f}. "
              f"{_fit_settings(doc)}\n\n" + _machine(doc))


TABLES: dict[str, tuple[str, Callable[[dict], str]]] = {
    "fault-drill": ("fault_drill.json", fault_drill),
    "folder-stream": ("folder_stream.json", folder_stream),
    "distributed-drift": ("distributed_speed.json", distributed_drift),
    "everyday-targets": ("everyday_models.json", everyday_targets),
    "fit-speed-reading-quick": ("fit_speed_quick.json", fit_speed_reading),
    "fit-speed-reading-paper": ("fit_speed_paper.json", fit_speed_reading),
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
    "token-layers": ("token_layers.json", token_layers),
    "celeba-steps": ("celeba_cost_counts.json", celeba_steps),
    "celeba-flops": ("celeba_cost_counts.json", celeba_flops),
    "celeba-gpu-estimate": ("celeba_cost_counts.json", celeba_gpu_estimate),
    "celeba-memory": ("celeba_cost_counts.json", celeba_memory),
    "distributed-split": ("distributed_split.json", distributed_split),
    # timed: their JSON is written by a run on a machine with nothing else running
    "token-layers-speed": ("token_layers_speed.json", token_layers_speed),
    "celeba-cpu": ("celeba_cost_cpu.json", celeba_cpu),
    "bf16-vs-fp32-no-bf16-units": ("bf16_vs_fp32_no_bf16_units.json", bf16_vs_fp32),
    "channels-last": ("channels_last.json", channels_last),
    "channels-last-bf16": ("channels_last_bf16.json", channels_last),
    "fit-speed-quick": ("fit_speed_quick.json", fit_speed),
    "fit-speed-paper": ("fit_speed_paper.json", fit_speed),
    "distributed-speed": ("distributed_speed.json", distributed_speed),
    "gan-losses": ("gan_losses.json", gan_losses),
    "quick-sizing-steps": ("quick_sizing_steps.json", fit_speed),
    "quick-sizing-ema": ("quick_sizing_ema.json", fit_curves),
    "quick-sizing-ema-end": ("quick_sizing_ema.json", gan_losses),
    "quick-sizing-ema-reading": ("quick_sizing_ema.json", fit_curves_reading),
    "bf16-quality": ("bf16_quality.json", gan_losses),
    "bf16-quality-reading": ("bf16_quality.json", variant_pair_reading),
    "test-suite": ("test_suite.json", test_suite),
    "atta-preset": ("atta_preset.json", atta_preset),
    "atta-preset-seeds": ("study_pooling_mnist.json", atta_preset_seeds),
    "pooling-4ep": ("study_pooling_mnist.json", lambda d: study_markdown(d) + "\n"),
    "pooling-10ep": ("study_pooling_mnist_10epochs.json", lambda d: study_markdown(d) + "\n"),
    "pooling-4ep-setup": ("study_pooling_mnist.json", pooling_setup),
    "pooling-4ep-reading": ("study_pooling_mnist.json", pooling_4ep_reading),
    "pooling-10ep-setup": ("study_pooling_mnist_10epochs.json", pooling_10ep_setup),
    "pooling-10ep-reading": ("study_pooling_mnist_10epochs.json", pooling_10ep_reading),
    "fidelity-schedule-reading": ("fidelity_study.json", fidelity_schedule_reading),
    "fidelity-conclusion-lead": ("fidelity_study.json", fidelity_conclusion_lead),
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
