"""The tables in docs/ are generated from the committed JSON (scripts/make_docs.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_docs_tables_match_the_committed_json():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_docs.py"), "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_stale_table_is_found(tmp_path):
    (tmp_path / "fidelity_study.json").write_text(
        '{"layer_labels": ["Conv1"], "paper_acc": [52.6], "points": {}}')
    doc = tmp_path / "page.md"
    doc.write_text("text\n<!-- table:fidelity-schedule-acc -->\n| typed by hand |\n<!-- /table -->\nmore\n")
    script = [sys.executable, str(ROOT / "scripts" / "make_docs.py"), "--docs", str(tmp_path)]
    assert subprocess.run([*script, "--check"], capture_output=True).returncode == 1
    assert subprocess.run(script, capture_output=True).returncode == 0
    assert "| paper, Table 1 | 52.6 |" in doc.read_text() and "typed by hand" not in doc.read_text()
    assert subprocess.run([*script, "--check"], capture_output=True).returncode == 0
