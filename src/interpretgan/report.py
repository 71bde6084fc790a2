"""Reports: pure functions of saved artifacts (JSON in, Markdown / PNG out). Never retrain."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .runs import atomic_write_bytes  # noqa: E402


def _fmt(cell: dict | None) -> str:
    if not cell:
        return "–"
    if cell["n"] > 1:
        return f"{cell['mean']:.2f} ± {cell['std']:.2f}"
    return f"{cell['mean']:.2f}"


def study_markdown(doc: dict) -> str:
    """Markdown table of a pooling study (``study.json``): ours (mean ± std over seeds) beside
    the paper's single runs, then the paired avg − max differences with a verdict."""
    cfg = doc["config"]
    attacks = list(cfg["attacks"]) or _paper_cols(doc)
    cols = ["clean", *attacks, *(["autoattack"] if cfg.get("autoattack") else [])]
    n_test = cfg.get("test_subset") or "all"
    lines = [f"Robust accuracy (%) on {n_test} {cfg['dataset']} test images, {cfg['method']}, "
             f"seeds {', '.join(map(str, cfg['seeds']))}; paper's single run in brackets.", "",
             "| model | pool | " + " | ".join(cols) + " |",
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
        lines.append(f"**{model}, avg − max (paired by seed, points):** " + "; ".join(
            f"{c} {d['mean']:+.2f} ± {d['std']:.2f}" + (f" (t = {d['t']:.1f})" if not math.isnan(d["t"]) else "")
            for c, d in diffs.items()))
        lines.append("")
        lines.append(verdict(model, diffs))
        lines.append("")
    return "\n".join(lines)


def verdict(model: str, diffs: dict[str, dict[str, Any]]) -> str:
    """One honest sentence: is average pooling more robust than max, beyond seed noise?"""
    attack_cols = [c for c in diffs if c not in ("clean",)]
    better = [c for c in attack_cols if diffs[c]["mean"] > 0 and not math.isnan(diffs[c]["t"])
              and diffs[c]["t"] > 2.9]  # one-sided p < 0.05 with 2 degrees of freedom (3 seeds)
    worse = [c for c in attack_cols if diffs[c]["mean"] < 0 and not math.isnan(diffs[c]["t"])
             and diffs[c]["t"] < -2.9]
    n = max(d["n"] for d in diffs.values())
    if better and not worse:
        return (f"{model}: average pooling is more robust than max pooling beyond seed noise under "
                f"{', '.join(better)} (paired t > 2.9 over {n} seeds); under "
                f"{', '.join(c for c in attack_cols if c not in better) or 'no other attack'} the "
                "difference is within seed noise.")
    if worse and not better:
        return f"{model}: average pooling is *less* robust than max pooling under {', '.join(worse)}."
    return (f"{model}: the difference between average and max pooling is within seed noise over "
            f"{n} seeds (no attack has a paired |t| > 2.9); we cannot confirm the paper's gain.")


def _paper_cols(doc: dict) -> list[str]:
    from .attacks import paper_attacks

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
    path = Path(path)
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_study_report(doc: dict, folder: str | Path) -> dict[str, Path]:
    """``study.md`` and ``study.png`` beside ``study.json``."""
    folder = Path(folder)
    md = atomic_write_bytes(folder / "study.md", (study_markdown(doc) + "\n").encode())
    png = study_bar_chart(doc, folder / "study.png")
    return {"markdown": md, "chart": png}
