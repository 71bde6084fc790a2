"""Reports: pure functions of saved artifacts (JSON and saved explanations in; Markdown, HTML
and PNG out), and the pooling study's paired t verdict. Never retrain."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from scipy.stats import t as student_t  # noqa: E402
import numpy as np  # noqa: E402
import base64  # noqa: E402
import html  # noqa: E402

from ..diagnosis.api import draw_acc_vul
from ..interpret.explain import draw_explanations
from ..interpret.gan import LayerReading
from ..robust.attacks import paper_attacks
from ..runtime.figures import save_figure
from ..runtime.runs import atomic_write_bytes, load_checkpoint


def _fmt(cell: dict | None) -> str:
    if not cell:
        return "–"
    if cell["n"] > 1:
        return f"{cell['mean']:.2f} ± {cell['std']:.2f}"
    return f"{cell['mean']:.2f}"


# Column titles where the study's key is not the attack's name: the "autoattack" column is
# AutoAttack's two gradient components only (torchattacks' APGD-CE, then APGD-T on the
# survivors, one restart each), not the standard AutoAttack suite.
COLUMN_TITLES = {"autoattack": "APGD-CE + APGD-T (1 restart)"}


def _title(col: str) -> str:
    return COLUMN_TITLES.get(col, col)


def _defined(d: dict, key: str) -> bool:
    """Whether a paired difference's ``std`` or ``t`` is defined: more than one seed, a number."""
    v = d.get(key)
    return d.get("n", 0) > 1 and v is not None and not math.isnan(v)


def study_markdown(doc: dict) -> str:
    """Markdown table of a pooling study (``study.json``): ours (mean ± std over seeds) beside
    the paper's single runs, then the paired avg − max differences with a verdict."""
    cfg = doc["config"]
    attacks = list(cfg["attacks"]) or _paper_cols(doc)
    cols = ["clean", *attacks, *(["autoattack"] if cfg.get("autoattack") else [])]
    n_test = cfg.get("test_subset") or "all"
    lines = [f"Robust accuracy (%) on {n_test} {cfg['dataset']} test images, {cfg['method']}, "
             f"seeds {', '.join(map(str, cfg['seeds']))}; paper's single run in brackets"
             + (f"; {_title('autoattack')} on the first {cfg.get('autoattack_subset')} of those images."
                if cfg.get("autoattack") else "."), "",
             "| model | pool | " + " | ".join(map(_title, cols)) + " |",
             "|---|---|" + "---|" * len(cols)]
    for model, per_pool in doc["summary"].items():
        paper = (doc.get("paper") or {}).get(model) or {}
        for pool in cfg["pools"]:
            cells = []
            for c in cols:
                s = _fmt(per_pool.get(pool, {}).get(c))
                p = paper.get(pool, {}).get(c)
                cells.append(f"{s} ({p:.2f})" if p is not None else s)
            lines.append(f"| {model} | {pool} | " + " | ".join(cells) + " |")
    lines.append("")
    for model, per_pool in doc["summary"].items():
        diffs = per_pool.get("avg_minus_max") or {}
        if not diffs:
            continue
        # one seed: no spread and no t (NaN in study.json), so neither is printed
        lines.append(f"**{model}, avg − max (paired by seed, points):** " + "; ".join(
            f"{_title(c)} {d['mean']:+.2f}" + (f" ± {d['std']:.2f}" if _defined(d, "std") else "")
            + (f" (t = {d['t']:.1f})" if _defined(d, "t") else "")
            for c, d in diffs.items()))
        lines.append("")
        lines.append(verdict(model, diffs))
        lines.append("")
    return "\n".join(lines)


def critical_t(dof: int) -> float:
    """The two-sided 5 % threshold for a paired t statistic with ``dof`` degrees of freedom
    (seeds − 1): |t| above it is p < 0.05 for "avg and max pooling differ" (Student's t, exact)."""
    if dof < 1:
        raise ValueError("a t test needs at least two paired seeds")
    return float(student_t.ppf(0.975, dof))


def verdict(model: str, diffs: dict[str, dict[str, Any]]) -> str:
    """One honest sentence: is average pooling more robust than max, beyond seed noise?"""
    attack_cols = [c for c in diffs if c not in ("clean",)]
    n = max(d["n"] for d in diffs.values())
    if n < 2:
        return f"{model}: one seed only — the difference cannot be tested against seed noise."
    crit = critical_t(n - 1)
    better = [c for c in attack_cols if diffs[c]["mean"] > 0 and not math.isnan(diffs[c]["t"])
              and diffs[c]["t"] > crit]
    worse = [c for c in attack_cols if diffs[c]["mean"] < 0 and not math.isnan(diffs[c]["t"])
             and diffs[c]["t"] < -crit]
    if better and not worse:
        return (f"{model}: average pooling is more robust than max pooling beyond seed noise under "
                f"{', '.join(map(_title, better))} (paired t > {crit:.2f}, two-sided p < 0.05, over {n} seeds); under "
                f"{', '.join(_title(c) for c in attack_cols if c not in better) or 'no other attack'} the "
                "difference is within seed noise.")
    if worse and not better:
        return (f"{model}: average pooling is *less* robust than max pooling under {', '.join(map(_title, worse))} "
                f"(paired t < −{crit:.2f}, two-sided p < 0.05, over {n} seeds).")
    if better and worse:
        return (f"{model}: mixed — average pooling is more robust under {', '.join(map(_title, better))} and less "
                f"robust under {', '.join(map(_title, worse))} (paired |t| > {crit:.2f}, two-sided p < 0.05, over {n} seeds).")
    return (f"{model}: the difference between average and max pooling is within seed noise over "
            f"{n} seeds (no attack has a paired |t| > {crit:.2f}, two-sided p < 0.05); we cannot confirm the paper's gain.")


def _paper_cols(doc: dict) -> list[str]:
    return paper_attacks(doc["config"]["dataset"])


def study_bar_chart(doc: dict, path: str | Path) -> Path:
    """Grouped bars: robust accuracy per attack, max vs avg (mean ± std), paper as markers."""
    cfg = doc["config"]
    attacks = list(cfg["attacks"]) or _paper_cols(doc)
    models = list(doc["summary"])
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    colours = {"max": "#d62728", "avg": "#1f77b4"}
    for ax, model in zip(axes[0], models):
        per_pool = doc["summary"][model]
        paper = (doc.get("paper") or {}).get(model) or {}
        width = 0.8 / len(cfg["pools"])
        for i, pool in enumerate(cfg["pools"]):
            xs = [j + (i - (len(cfg["pools"]) - 1) / 2) * width for j in range(len(attacks))]
            cells = [per_pool.get(pool, {}).get(a) for a in attacks]
            ax.bar(xs, [c["mean"] if c else 0 for c in cells], width,
                   yerr=[c["std"] if c else 0 for c in cells], capsize=3,
                   color=colours.get(pool), label=f"{pool} pooling (ours)")
            pv = [paper.get(pool, {}).get(a) for a in attacks]
            if any(v is not None for v in pv):
                ax.scatter([x for x, v in zip(xs, pv) if v is not None], [v for v in pv if v is not None],
                           marker="_", s=300, color="black", zorder=3,
                           label="paper" if i == 0 else None)
        ax.set_xticks(range(len(attacks)), attacks)
        ax.set_ylabel("robust accuracy (%)")
        lo = min((c["mean"] - c["std"] for p in cfg["pools"] for a in attacks
                  if (c := per_pool.get(p, {}).get(a))), default=0)
        ax.set_ylim(max(0, lo - 10), 100)
        ax.set_title(f"{model} ({cfg['dataset']}, {cfg['method']})")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def write_study_report(doc: dict, folder: str | Path) -> dict[str, Path]:
    """``study.md`` and ``study.png`` beside ``study.json``."""
    folder = Path(folder)
    md = atomic_write_bytes(folder / "study.md", (study_markdown(doc) + "\n").encode())
    png = study_bar_chart(doc, folder / "study.png")
    return {"markdown": md, "chart": png}


# --------------------------------------------------------------------------- main report
def acc_vul_chart(results: dict, path: Path) -> Path:
    """Acc_i and Vul_i per layer for each model, the paper's Table 1 as markers."""
    models = [k for k in ("natural", "adversarially_trained", "user") if k in results]
    labels = results["layer_labels"]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 3.6), squeeze=False)
    for ax, key in zip(axes[0], models):
        per = results[key]["per_layer"]
        draw_acc_vul(ax, [per[n] for n in results["layers"]], labels,
                     f"{key.replace('_', ' ')}: explanations of D* ({results[key]['attack']})",
                     paper=(results.get("paper") or {}).get(key))
    fig.tight_layout()
    return save_figure(fig, path)


def misclassification_heatmap(counts, path: Path, title: str, classes=None) -> Path:
    """Row-normalised true → adversarial label shares (paper Figure 7); ``counts`` (N, N),
    ``classes``: the N class names for the ticks (default: 0 … N-1)."""

    c = np.asarray(counts, dtype=float)
    share = c / np.maximum(c.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    im = ax.imshow(100 * share, cmap="viridis", vmin=0, vmax=100)
    for i in range(c.shape[0]):
        for j in range(c.shape[1]):
            if share[i, j] >= 0.05:
                ax.text(j, i, f"{100 * share[i, j]:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if share[i, j] < 0.6 else "black")
    ax.set_xlabel("label under attack")
    ax.set_ylabel("true label")
    ax.set_xticks(range(c.shape[1]))
    ax.set_yticks(range(c.shape[0]))
    if classes:
        ax.set_xticklabels(classes, rotation=90, fontsize=6)
        ax.set_yticklabels(classes, fontsize=6)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="% of the class")
    return save_figure(fig, path)


def architecture_figure(results: dict, key: str, path: Path) -> Path:
    """Figure 6: the explained layers in order, those with a large Vul_i in red."""
    per = results[key]["per_layer"]
    names, labels = results["layers"], results["layer_labels"]
    fig, ax = plt.subplots(figsize=(1.5 * (len(names) + 1), 1.8))
    ax.set_xlim(-0.6, len(names) + 0.6)
    ax.set_ylim(-1, 1)
    ax.axis("off")
    boxes = ["input"] + labels
    for i, lab in enumerate(boxes):
        red = i > 0 and per[names[i - 1]]["large_vul"]
        ax.add_patch(plt.Rectangle((i - 0.4, -0.35), 0.8, 0.7, fill=True,
                                   color="#ffd6d6" if red else "#e8eef7", ec="black"))
        ax.text(i, 0.08, lab, ha="center", va="center", fontsize=8, weight="bold" if red else None)
        if i > 0:
            v = 100 * per[names[i - 1]]["vul"]
            ax.text(i, -0.2, f"Vul {v:.1f}%", ha="center", va="center", fontsize=6,
                    color="#d62728" if red else "black")
            ax.annotate("", (i - 0.4, 0), (i - 0.6, 0),
                        arrowprops={"arrowstyle": "->", "color": "#d62728" if red else "black",
                                    "lw": 2 if red else 1})
    ax.set_title(f"{key.replace('_', ' ')}: layers with a large accuracy drop in red", fontsize=9)
    return save_figure(fig, path)


def _rgb_explanations(root: Path, key: str, rep: Path) -> Path | None:
    """Figures 4–5 of model ``key`` redrawn from its saved explanations, if the run has them."""

    src = root / key / "explain" / "explanations.pt"
    if not src.exists():
        return None
    return draw_explanations(load_checkpoint(src), rep / f"explanations_{key}.png")


def _b64(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _pct(v: float | None, ci=None) -> str:
    """``10.5 [9.2, 11.9]`` (percent; the interval when there is one), or ``–`` for None."""
    if v is None:
        return "–"
    return f"{100 * v:.1f}" + (f" <small>[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]</small>" if ci else "")


def _table(results: dict) -> str:
    """Layers as columns; per model the rows Acc_i and Vul_i (with 95 % intervals), the
    judge's Acc_i, the share of explanations keeping f's adversarial label, and the
    agreement on natural images."""

    names, labels = results["layers"], results["layer_labels"]
    head = "".join(f"<th>{html.escape(x)}</th>" for x in labels)
    rows = []
    for key in ("natural", "adversarially_trained", "user"):
        if key not in results:
            continue
        per = results[key]["per_layer"]
        paper = (results.get("paper") or {}).get(key)
        for metric in ("acc", "vul"):
            cells = []
            for i, n in enumerate(names):
                p = f" <span class=paper>({paper[metric][i]:.1f})</span>" if paper and len(paper[metric]) == len(names) else ""
                cls = " class=red" if metric == "vul" and per[n]["large_vul"] else ""
                mark = UNRELIABLE_MARK if metric == "acc" and per[n].get("reliable") is False else ""
                cells.append(f"<td{cls}>{_pct(per[n][metric], per[n].get(metric + '_ci'))}{mark}{p}</td>")
            name = f"{key.replace('_', ' ')} {'Acc' if metric == 'acc' else 'Vul'}<sub>i</sub>"
            rows.append(f"<tr><th>{name}</th>{''.join(cells)}</tr>")
        if any("acc_seeds" in per[n] for n in names):
            cells = "".join("<td>" + " / ".join(f"{100 * a:.1f}" for a in per[n].get("acc_seeds", []))
                            + "</td>" for n in names)
            rows.append(f"<tr><th>{key.replace('_', ' ')} Acc<sub>i</sub> per generator seed</th>{cells}</tr>")
        for field, title in (("acc_judge", "judge's Acc<sub>i</sub>"),
                             ("keeps_adversarial_label", "keeps adversarial label"),
                             ("acc_at_natural_fidelity", "Acc<sub>i</sub> at natural-image fidelity"),
                             ("true_label_when_departing", "true label when departing")):
            if any(field in per[n] for n in names):
                cells = "".join(f"<td>{_pct(per[n].get(field), per[n].get(field + '_ci'))}</td>" for n in names)
                rows.append(f"<tr><th>{key.replace('_', ' ')} {title}</th>{cells}</tr>")
        cells = "".join(f"<td>{100 * per[n]['agreement_natural']:.1f}</td>" for n in names)
        rows.append(f"<tr><th>{key.replace('_', ' ')} agreement (natural)</th>{cells}</tr>")
    return f"<table><tr><th>%</th>{head}</tr>{''.join(rows)}</table>"


READING = ("<p>How to read the rows together: Acc<sub>i</sub> counts the explanations of x* that "
           "f labels with the true label, and the judge's Acc<sub>i</sub> asks the same of an "
           "independent classifier (for the two trained classifiers, the other one of the pair), so "
           "a layer whose explanations look like the true class only to f shows a judge accuracy "
           "well below its Acc<sub>i</sub>, and one whose explanations fool only f shows a judge "
           "accuracy well above it. The keeps-label row is the share of explanations that f still "
           "labels with its adversarial label f(x*): a high value means the adversarial signal "
           "survives up to that layer's explanation, so the drop Vul<sub>i</sub> happened before it. "
           "Brackets are 95 % intervals (Wilson; Vul<sub>i</sub>: paired over the same images); "
           "a layer is marked red only when its Vul<sub>i</sub> interval lies wholly above the "
           "large-vulnerability threshold (0.4 × the mean Vul<sub>i</sub>; the factor 0.4 was chosen so "
           "that this rule, applied to both rows of the paper's own Table 1, marks exactly the four layers "
           "the paper calls vulnerable, Conv1, Conv2, Conv4 and FC1). Acc<sub>i</sub> is about "
           "the share of explanations that depart from f's adversarial label times the share of those "
           "that land on the true label (the true-label-when-departing row; chance is about one in "
           "the number of other classes); the natural-fidelity row is the Acc<sub>i</sub> a generator "
           "would give that departs from f on x* only as often as it does on natural images: what "
           "Acc<sub>i</sub> shows above it comes from explanations of x* departing from f more often "
           "than those of natural images do. With several generator "
           "seeds per layer, every row is the mean over the seeds and the per-seed row shows how much "
           "Acc<sub>i</sub> moves with the generator alone.</p>")


UNRELIABLE_MARK = " <span class=unreliable title='generators below the agreement floor'>†</span>"


def _unreliable_note(results: dict) -> str:
    """Why a † marks an Acc_i: the layers whose generators missed the agreement floor, with
    their agreement; nothing when every layer reached it."""

    missed = []
    for key in ("natural", "adversarially_trained", "user"):
        r = results.get(key)
        if not r or not r.get("generators"):
            continue
        rows = r["generators"]["layers"]
        for n, p in r["per_layer"].items():
            if p.get("reliable") is False:
                seeds = [v for k, v in rows.items() if k == n or k.startswith(n + "#")]
                worst = min(v["agreement"] for v in seeds)
                missed.append(f"{html.escape(key.replace('_', ' '))} {html.escape(n)} "
                              f"({100 * worst:.1f} % after {max(v.get('extra_steps', 0) for v in seeds)} extra steps)")
                floor = r["agreement_floor"]
    if not missed:
        return ""
    return (f"<p class=unreliable>† Unreliable Acc<sub>i</sub>: the generators of {'; '.join(missed)} "
            f"agree with f on fewer than {100 * floor:.0f} % of held-out natural images (the agreement "
            "floor, <code>fit.min_agreement</code>), even after the extra fitting rounds. An "
            "explanation f labels differently from its input even on natural images counts the "
            "generator's own errors in Acc<sub>i</sub> and Vul<sub>i</sub>, so read these layers' "
            "values as unreliable (fit longer, or with wider generators).</p>")


# What a run on a data set with a paper setting of its own interprets, keyed by data set.
SETTING_NOTES = {
    "celeba": ("<p>The paper's CelebFaces setting: <b>gender</b> (CelebA's <i>Male</i> attribute: "
               "{classes}) of a VGG16, explained at the output of each of its five conv blocks and "
               "of its fully connected layers; D*: {attack}. Acc<sub>i</sub> below is the share of "
               "D* whose layer-i explanation f gives the true gender.</p>"),
}


def _setting_note(results: dict) -> str:
    """The paragraph that names a paper setting (CelebFaces gender), or nothing."""

    note = SETTING_NOTES.get((results.get("config") or {}).get("dataset"))
    if note is None:
        return ""
    attacks = sorted({results[k]["attack"] for k in ("natural", "adversarially_trained", "user")
                      if k in results})
    return note.format(classes=html.escape(" / ".join(map(str, results.get("classes") or []))),
                       attack=html.escape(", ".join(attacks)))


EXPLANATIONS_NOTE = (
    "<h3>Explanations per layer (the paper's Figures 4 and 5)</h3><p>Per test image a natural "
    "row and an adversarial row ({attack}); columns: the input, then the explanation "
    "G<sub>i</sub>(C<sub>i</sub>(f<sub>pre,i</sub>(x))) of each interpreted layer, at the "
    "input's resolution. Above each: the label f gives it and f's confidence (softmax "
    "probability) in that label; red where it is not the true label.</p>")


def _generator_table(results: dict, models: list[str]) -> str:
    """Per layer: agreement and KID of the explanations on held-out natural images."""

    rows = []
    for key in models:
        g = results[key].get("generators")
        if not g:
            continue
        cells = "".join(f"<td>{100 * g['layers'][n]['agreement']:.1f} / {g['layers'][n]['kid']:.2f}</td>"
                        for n in results["layers"] if n in g["layers"])
        rows.append(f"<tr><th>{key.replace('_', ' ')}</th>{cells}</tr>")
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(x)}</th>" for x in results["layer_labels"])
    floor = next(results[k]["generators"]["kid_real_vs_real"] for k in models if results[k].get("generators"))
    return ("<h2>Generators: agreement (%) / KID</h2><p>On held-out natural test images. KID: the "
            "unbiased MMD² (cubic kernel) between the 128-d features of explanations and of real "
            "images in an independently trained network; its scale is that network's (real vs "
            f"real: {floor:.2f}).</p><table><tr><th></th>{head}</tr>{''.join(rows)}</table>")


def _output_note(output: dict | None) -> str:
    """How a model's logits were read from its forward's output (nothing when the forward
    returns them itself)."""

    if not output or output.get("selector") is None:
        return ""
    how = "found, as none was given (--output picks another)" if output.get("auto") else "as --output gave"
    return f"; logits read from its output's <code>{html.escape(output['selector'])}</code>, {how}"


def _reading_note(results: dict, models: list[str]) -> str:
    """How the generators' compression networks read each layer's output (conv map, vector,
    token grid with its prefix tokens, flat), from ``per_layer``'s ``layer_reading``."""

    items = []
    for n, label in zip(results["layers"], results["layer_labels"]):
        r = next((results[k]["per_layer"].get(n, {}).get("layer_reading") for k in models), None)
        if r:
            grid = tuple(r["grid"]) if r.get("grid") else None
            text = LayerReading(r["read_as"], tuple(r["shape"]), r["prefix_tokens"], grid).describe()
            items.append(f"<li>{html.escape(label)}: {html.escape(text)}</li>")
    return "<p>Layer outputs as the compression networks read them:</p><ul>" + "".join(items) + "</ul>" if items else ""


HEAD = ("<!doctype html><html><head><meta charset=utf-8><title>interpretgan report</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
        ".red{color:#d62728;font-weight:bold}.unreliable{color:#b8860b}.paper{color:#888;font-size:11px}img{max-width:100%}"
        "</style></head><body><h1>interpretgan: per-layer vulnerability</h1>")


def write_main_report(results: dict, root: str | Path) -> Path:
    """``report/index.html`` (self-contained: images inline) and its PNGs, from ``results``
    and the figures the run saved. Never retrains."""
    root = Path(root)
    rep = root / "report"
    figs = {"acc_vul": acc_vul_chart(results, rep / "acc_vul.png")}
    models = [k for k in ("natural", "adversarially_trained", "user") if k in results]
    for key in models:
        figs[f"arch_{key}"] = architecture_figure(results, key, rep / f"architecture_{key}.png")
        figs[f"mis_{key}"] = misclassification_heatmap(
            results[key]["misclassification"], rep / f"misclassification_{key}.png",
            f"{key.replace('_', ' ')}: true → adversarial label", results.get("classes"))
    parts = [HEAD, "<h2>Accuracy</h2><ul>"]
    for key in models:
        r = results[key]
        parts.append(f"<li>{key.replace('_', ' ')}: clean {100 * r['clean_accuracy']:.2f}%, under "
                     f"{html.escape(r['attack'])} {100 * r['adversarial_accuracy']:.2f}% (n = {r['n']})"
                     f"{_output_note(r.get('output'))}</li>")
    parts.append("</ul>" + _setting_note(results))
    parts.append("<h2>Acc<sub>i</sub> and Vul<sub>i</sub> per layer (Eq. 5)</h2>")
    parts.append("<p>Acc<sub>i</sub>: share of D* whose layer-i explanation f labels correctly; "
                 "red: large Vul<sub>i</sub>"
                 + ("; grey: the paper's Table 1" if results.get("paper") else "") + ".</p>")
    parts += [_table(results), _unreliable_note(results), READING,
              f"<p><img alt='Acc and Vul per layer' src='{_b64(figs['acc_vul'])}'></p>"]
    for key in models:
        parts += _model_section(results, key, figs, root)
    parts += [_generator_table(results, models), _reading_note(results, models), *_time_section(results)]
    parts.append("<h2>Config</h2><pre>" + html.escape(json.dumps(results["config"], indent=2))
                 + "</pre></body></html>")
    return atomic_write_bytes(rep / "index.html", "".join(parts).encode())


def _paper_notes(paper: dict | None) -> tuple[str, str]:
    """The paper's max-pool index change and top misclassification targets, as notes."""
    if not paper:
        return "", ""
    a, b = paper["maxpool_index_change"]
    tops = ", ".join(f"{c} → {t} {share}%" for c, (t, share) in paper["top_targets"].items())
    return f" (paper: {a}% and {b}%)", f" (paper: {tops})"


def _model_section(results: dict, key: str, figs: dict, root: Path) -> list[str]:
    """One classifier's part of the report: architecture, max-pool index change,
    misclassification targets, explanation grids and baselines."""
    r, rep = results[key], root / "report"
    maxpool_note, targets_note = _paper_notes(results.get("paper"))
    parts = [f"<h2>{key.replace('_', ' ')}</h2>",
             f"<p><img alt='architecture' src='{_b64(figs[f'arch_{key}'])}'></p>"]
    mp = ", ".join(f"{html.escape(n)}: {100 * v:.1f}%" for n, v in r["maxpool_index_change"].items())
    parts.append(f"<p>Max-pooling index change (natural vs adversarial): {mp or 'no max pooling'}"
                 + maxpool_note + ".</p>")
    names = results.get("classes") or []
    cls = lambda i: html.escape(str(names[i])) if i < len(names) else str(i)  # noqa: E731
    tops = "; ".join(f"{cls(t['true'])} → {cls(t['top_target'])} ({100 * t['share']:.1f}%)"
                     for t in r["top_targets"])
    parts.append(f"<p>Most frequent adversarial label per class: {tops}" + targets_note + ".</p>")
    parts.append(f"<p><img alt='misclassification' src='{_b64(figs[f'mis_{key}'])}'></p>")
    grid = _rgb_explanations(root, key, rep)
    if grid is not None:
        parts.append(EXPLANATIONS_NOTE.format(attack=html.escape(r["attack"])))
        parts.append(f"<p><img alt='explanations' src='{_b64(grid)}'></p>")
    for fig in ("baselines",) if grid is not None else ("explanations", "baselines"):
        p = root / r["figures"][fig]
        if p.exists():
            parts.append(f"<h3>{fig}</h3><p><img alt='{fig}' src='{_b64(p)}'></p>")
    return parts


def _time_section(results: dict) -> list[str]:
    """Where the time went: seconds per stage, in natural-epoch units where measured."""
    b = results.get("budget")
    unit = b["natural_epoch_s"] if b else None
    parts = ["<h2>Where the time went</h2><table><tr><th>stage</th><th>seconds</th>"
             + ("<th>natural epochs</th>" if unit else "") + "</tr>"]
    for k, v in results["timings_s"].items():
        u = f"<td>{v / unit:.1f}</td>" if unit else ""
        parts.append(f"<tr><td>{html.escape(k)}</td><td>{v:.0f}</td>{u}</tr>")
    parts.append("</table>")
    if b:
        parts.append(f"<p>All stages: {b['stages_s']:.0f} s = <b>{b['epoch_units']:.1f}</b> natural "
                     f"training epochs of {unit:.0f} s measured in this run.</p>")
    parts.append(f"<p>Wall time of this call: {results['wall_time_s']:.0f} s.</p>")
    return parts
