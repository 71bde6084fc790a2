"""examples/quickstart.ipynb runs from top to bottom (at its tiny size), so it cannot rot."""
from __future__ import annotations

from pathlib import Path

from conftest import need

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_runs_and_shows_its_diagnosis(mnist_small, shared_cache, tmp_path, monkeypatch):
    nbformat = need("nbformat")
    nbclient = need("nbclient")
    need("ipykernel")
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))  # MNIST as the tests fetched it
    monkeypatch.setenv("INTERPRETGAN_NOTEBOOK_TINY", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # committed clean
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "clean accuracy on 40 test images" in text and "agreement f(x̂) = f(x)" in text
    for layer in ("relu1", "relu2", "relu3"):  # one diagnosis row per layer
        assert f"{layer}  Acc_i" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the explanation grid and the diagnosis plot
