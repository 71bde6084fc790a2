"""The tables in docs/ are generated from the committed JSON (scripts/make_docs.py)."""
from __future__ import annotations

import importlib.util
import re
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
