"""Regenerate the tables in docs/ from the committed JSON, so that no number in them is typed
by hand.

    python scripts/make_docs.py           # rewrite every marked table in docs/*.md and README.md
    python scripts/make_docs.py --check   # exit 1 (naming the tables) if any is out of date

A table lives between two marker lines in a Markdown file:

    <!-- table:main-natural -->
    | … the generated table … |
    <!-- /table -->

and is built by the function registered under its name in ``TABLES`` from one JSON file under
docs/ (``docs/main_results.json``: ``runs/main/results.json`` of the main job;
``docs/fidelity_study.json``: ``study.json`` of ``benchmarks/fidelity.py``;
``docs/study_pooling_mnist*.json``: ``study.json`` of ``interpretgan study pooling``;
``docs/main_natural_metrics.json``: the natural model's ``metrics.jsonl`` of the same run;
``docs/fault_drill.json``: the log of ``benchmarks/fault_drill.py``). A marker
whose name or JSON file is missing is an error.
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
        rows.append([f"{name}, mean of {len(p['seeds'])} seeds", *(pct(r["acc"], r["acc_ci"]) for r in p["per_layer"])])
        if all("acc_seeds" in r for r in p["per_layer"]):
            rows.append([f"… seeds {' / '.join(map(str, p['seeds']))}",
                         *(" / ".join(f"{100 * a:.1f}" for a in r["acc_seeds"]) for r in p["per_layer"])])
    paper = doc.get("paper_acc")
    if paper:
        rows.append(["paper, Table 1", *(f"{v:.1f}" for v in paper)])
    return md_table(["Acc_i (%)", *doc["layer_labels"]], rows)


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
}


def render(text: str, docs: Path) -> tuple[str, list[str]]:
    """``text`` with every marked table regenerated, and the names of the tables that changed."""
    changed: list[str] = []
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
        body = build(cache[source])
        if body != m["body"]:
            changed.append(name)
        return m.group(1) + body + m.group(4)

    return MARK.sub(one, text), changed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is out of date")
    ap.add_argument("--docs", default=str(DOCS))
    a = ap.parse_args(argv)
    stale = []
    pages = sorted(Path(a.docs).glob("*.md"))
    if Path(a.docs) == DOCS:
        pages.append(ROOT / "README.md")  # its results summary; tables read docs/'s JSON
    for md in pages:
        text = md.read_text()
        new, changed = render(text, Path(a.docs))
        stale += [f"{md.name}: {n}" for n in changed]
        if changed and not a.check:
            md.write_text(new)
    if stale:
        print(("out of date: " if a.check else "regenerated: ") + "; ".join(stale))
    return 1 if stale and a.check else 0


if __name__ == "__main__":
    sys.exit(main())
