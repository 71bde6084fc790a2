"""Regenerate the tables in docs/ from the committed JSON, so that no number in them is typed
by hand.

    python scripts/make_docs.py           # rewrite every marked table in docs/*.md
    python scripts/make_docs.py --check   # exit 1 (naming the tables) if any is out of date

A table lives between two marker lines in a Markdown file:

    <!-- table:main-natural -->
    | … the generated table … |
    <!-- /table -->

and is built by the function registered under its name in ``TABLES`` from one JSON file under
docs/ (``docs/main_results.json``: ``runs/main/results.json`` of the main job;
``docs/fidelity_study.json``: ``study.json`` of ``benchmarks/fidelity.py``;
``docs/study_pooling_mnist*.json``: ``study.json`` of ``interpretgan study pooling``;
``docs/fault_drill.json``: the log of ``benchmarks/fault_drill.py``). A marker
whose name or JSON file is missing is an error.
"""
from __future__ import annotations

import argparse
import json
import re
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
        rows.append([f"KID ×10³, {model}, seed {g}", *(f"{1000 * gens[n]['kid']:.1f}" for n in names)])
    return rows


def main_generators(doc: dict) -> str:
    """Agreement and KID (×10³) of every generator seed of both models."""
    rows = []
    for key, model in (("natural", "natural model"), ("adversarially_trained", "ATTA model")):
        if key in doc and doc[key].get("generators"):
            rows += _member_rows(doc, key, model)
    return md_table(["layer", *doc["layer_labels"]], rows)


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
    """Stage times in seconds and natural-epoch units."""
    b = doc["budget"]
    units = b["per_stage_units"]
    rows = [[stage, f"{secs:.0f}", f"{units[stage]:.1f}"] for stage, secs in doc["timings_s"].items()]
    rows.append(["**all stages**", f"**{b['stages_s']:.0f}**", f"**{b['epoch_units']:.1f}**"])
    return (f"One natural epoch in this run: {b['natural_epoch_s']:.1f} s (median of the natural model's "
            "epochs).\n\n" + md_table(["stage", "seconds", "natural epochs"], rows))


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
    """Per point: what changed, agreement on natural images, keeps f(x*) and KID ×10³ on Conv1
    and as the mean over the layers, and the fit's wall time."""
    rows = []
    for name, p in _points(doc, SCHEDULE_POINTS):
        per = p["per_layer"]
        kid = [1000 * v for v in p["kid"].values()]
        change = ", ".join(f"{k}={v}" for k, v in p["changes"].items()) or "–"
        rows.append([name, change, pct(per[0]["agreement_natural"]),
                     pct(sum(r["agreement_natural"] for r in per) / len(per)),
                     pct(per[0]["keeps_adversarial_label"]),
                     f"{kid[0]:.1f}", f"{sum(kid) / len(kid):.1f}", f"{p['fit_seconds_this_call']:.0f}"])
    return md_table(["point", "change to the study's base", "Conv1 agreement (natural)", "mean agreement",
                     "Conv1 keeps f(x*)", "Conv1 KID ×10³", "mean KID ×10³", "fit s (shared cores)"], rows)


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
    for md in sorted(Path(a.docs).glob("*.md")):
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
