"""The HTML report in headless Chromium: it loads with no errors and every image renders."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import in_ci
from interpretgan.report import write_main_report

CHECK = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const pre = document.createElement('pre');
  pre.id = 'check';
  pre.textContent = 'IMAGES=' + imgs.length + ' BAD=' + JSON.stringify(bad) + ' ERRORS=' + JSON.stringify(window.__errors);
  document.body.appendChild(pre);
});
</script>"""


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if in_ci():
            pytest.fail("chromium is not installed (the test command installs Debian's chromium)")
        pytest.skip("chromium not installed; install Debian's chromium to run this test")
    return exe


def fake_results():
    layers = ["feature_extractor.relu1", "classifier.fc3"]
    per = {n: {"acc": 0.5, "vul": 0.5 if i == 0 else 0.0, "large_vul": i == 0, "acc_natural": 0.9,
               "vul_natural": 0.1, "agreement_natural": 0.95} for i, n in enumerate(layers)}
    model = {"clean_accuracy": 0.99, "adversarial_accuracy": 0.1, "n": 10, "attack": "pgd-40",
             "per_layer": per, "maxpool_index_change": {"feature_extractor.pool1": 0.4},
             "misclassification": [[1 if i == j else 0 for j in range(10)] for i in range(10)],
             "top_targets": [{"true": t, "top_target": (t + 1) % 10, "count": 0, "share": 0.0,
                              "misclassified_share": 0.0} for t in range(10)],
             "figures": {"explanations": "natural/explain/explanations.png",
                         "baselines": "natural/explain/baselines.png"}}
    return {"layers": layers, "layer_labels": ["Conv1", "FC3"], "config": {"dataset": "mnist"},
            "timings_s": {"train:natural": 1.0}, "wall_time_s": 2.0, "paper": None,
            "natural": model, "adversarially_trained": model}


def render(page, profile) -> tuple[int, str, str]:
    """Load the report ``page`` in headless Chromium (a fresh ``profile`` folder): the number
    of images on the page, the list of images that failed to decode and the script errors."""
    exe = _chromium()
    probe = page.parent / "probe.html"
    probe.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    out = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
         probe.as_uri()], capture_output=True, text=True, timeout=120)
    m = re.search(r"IMAGES=(\d+) BAD=(\[.*?\]) ERRORS=(\[.*?\])", out.stdout)
    assert m, out.stderr[-2000:]
    return int(m.group(1)), m.group(2), m.group(3)


def test_report_page_loads_and_every_image_renders(tmp_path):
    page = write_main_report(fake_results(), tmp_path)
    html = page.read_text()
    assert html.count("<img") >= 5 and 'src="http' not in html and "src='http" not in html
    images, bad, errors = render(page, tmp_path / "profile")
    assert images == html.count("<img")
    assert bad == "[]" and errors == "[]"
