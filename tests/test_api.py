"""The library's face: ``interpretgan.Explainer`` and ``interpretgan.diagnose`` on tiny models,
and the Python API end to end against ``interpretgan run`` on the same settings."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn
from matplotlib.figure import Figure

import interpretgan
from interpretgan import Diagnosis, Explainer

TINY = dict(code_dim=8, g_channels=(8, 8, 8), d_channels=(8, 8, 8), c_width_mult=0.25,
            steps_per_scale=(2, 2, 4), batch_size=16, eval_images=20, min_agreement=0.0)


def tiny_net() -> nn.Module:
    """16 px, 3 classes; torchvision's in-place ReLU after the conv."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 8 * 8, 3))


@pytest.fixture(scope="module")
def fitted():
    """A two-seed explainer of layers "1" (in-place ReLU) and "4" (the logits layer)."""
    net = tiny_net()
    x = torch.rand(120, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    ex = Explainer(net, ["1", "4"], device="cpu", seeds=(0, 1), **TINY).fit(x, progress=False)
    return net, x, ex


def test_explainer_explains_labels_and_agrees_per_layer_and_seed(fitted):
    net, x, ex = fitted
    assert list(ex.gans) == ["1", "1#seed1", "4", "4#seed1"]
    xb = x[:7]
    out = ex.explain(xb)
    assert set(out) == {"1", "4"} and all(v.shape == (7, 1, 16, 16) for v in out.values())
    # the labels are f's labels of those explanations, per seed
    with torch.no_grad():
        for seed in (0, 1):
            labels = ex.labels(xb, seed=seed)
            for layer, xh in ex.explain(xb, seed=seed).items():
                assert torch.equal(labels[layer], net(xh).argmax(1))
    assert not torch.equal(ex.explain(xb, seed=0)["1"], ex.explain(xb, seed=1)["1"])
    # agreement: the mean over the seeds of the share with f(x̂) = f(x)
    with torch.no_grad():
        fx = net(x[:50]).argmax(1)
    want = {n: sum((ex.labels(x[:50], seed=s)[n] == fx).double().mean().item() for s in (0, 1)) / 2
            for n in ("1", "4")}
    assert ex.agreement(x[:50]) == pytest.approx(want)
    with pytest.raises(KeyError, match="generator seed 5 was not fitted"):
        ex.labels(xb, seed=5)


def test_explainer_saves_and_loads_the_same_generators(fitted, tmp_path):
    net, x, ex = fitted
    ex.save(tmp_path / "ex")
    back = Explainer.load(tmp_path / "ex", net, device="cpu")
    assert back.layers == ex.layers and back.cfg == ex.cfg and list(back.gans) == list(ex.gans)
    for seed in (0, 1):
        a, b = ex.explain(x[:5], seed=seed), back.explain(x[:5], seed=seed)
        assert all(torch.equal(a[n], b[n]) for n in a)


def test_explainer_takes_a_dataset_or_loader_and_resumes_a_fit_in_its_folder(tmp_path):
    from interpretgan.data import ImageDataset

    net = tiny_net()
    x = (torch.rand(96, 1, 16, 16, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8)
    ds = ImageDataset(x, torch.zeros(96, dtype=torch.long))
    loader = torch.utils.data.DataLoader(ds, batch_size=8)
    a = Explainer(net, ["4"], device="cpu", **TINY).fit(loader, folder=tmp_path / "fit", progress=False)
    lines = (tmp_path / "fit" / "metrics.jsonl").read_text().splitlines()
    # called again on the same folder: the fit is complete, nothing is refitted
    b = Explainer(net, ["4"], device="cpu", **TINY).fit(ds, folder=tmp_path / "fit", progress=False)
    assert (tmp_path / "fit" / "metrics.jsonl").read_text().splitlines() == lines
    xs = x[:4].float() / 255
    assert torch.equal(a.explain(xs)["4"], b.explain(xs)["4"])
    # the fit folder is a saved explainer
    c = Explainer.load(tmp_path / "fit", net, device="cpu")
    assert torch.equal(c.explain(xs)["4"], a.explain(xs)["4"])


def test_explainer_one_line_errors():
    net = tiny_net()
    from interpretgan.interpret.layers import LayerNameError
    from interpretgan.settings import ConfigError

    with pytest.raises(LayerNameError, match="unknown layer 'nope'"):
        Explainer(net, ["nope"], device="cpu")
    ex = Explainer(net, ["4"], device="cpu", **TINY)
    with pytest.raises(RuntimeError, match="call fit"):
        ex.explain(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        ex.fit(torch.randn(64, 1, 16, 16))
    with pytest.raises(ConfigError, match="fit.lam"):
        Explainer(net, ["4"], device="cpu", lam=-1.0)

    class Pair(nn.Module):  # a forward returning (logits, features)
        def __init__(self):
            super().__init__()
            self.net = tiny_net()

        def forward(self, x):
            return self.net(x), x

    with pytest.raises(ValueError, match=r"select_output\(model, '\[0\]'\)"):
        Explainer(Pair(), ["net.4"], device="cpu", **TINY).fit(torch.rand(64, 1, 16, 16), progress=False)


def test_diagnose_reads_acc_and_vul_from_the_explanations_of_the_attacked_images(fitted, tmp_path):
    from interpretgan.diagnosis.diagnose import attack_set

    net, x, ex = fitted
    y = torch.arange(40) % 3
    d = interpretgan.diagnose(net, ex, x[:40], y, attack="pgd-2", progress=False)
    assert isinstance(d, Diagnosis) and d.layers == ["1", "4"]
    # Acc_i: the share of attacked images whose explanations (mean over the seeds) get y
    dstar = attack_set(net, x[:40], y, "pgd-2", progress=False)
    hits = [torch.stack([(ex.labels(dstar["x_adv"], seed=s)[n] == y).double() for s in (0, 1)]).mean(0)
            for n in ("1", "4")]
    assert [d.acc[n] for n in ("1", "4")] == pytest.approx([h.mean().item() for h in hits])
    assert d.vul["1"] == pytest.approx(1 - d.acc["1"]) and d.vul["4"] == pytest.approx(d.acc["1"] - d.acc["4"])
    rows = d.table()
    assert [r["label"] for r in rows] == ["1", "4"] and all(len(r["acc_seeds"]) == 2 for r in rows)
    assert all(r["acc_ci"][0] <= r["acc"] <= r["acc_ci"][1] for r in rows)
    assert list(d.doc["maxpool_index_change"]) == ["2"]  # the model's one max-pool
    d.to_json(tmp_path / "d.json")
    assert Diagnosis.load(tmp_path / "d.json").doc == d.doc
    fig = d.plot()
    assert isinstance(fig, Figure) and [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1", "4"]


def test_python_api_end_to_end_equals_interpretgan_run(mnist_small, shared_cache, tmp_path, monkeypatch):
    """fit → save → load → explain → diagnose in Python gives the run's generators and its
    diagnosis, number for number, on the same settings."""
    from test_pipeline import TINY_FIT, USER_MODEL, tiny

    from interpretgan.data import checkpoint_data_config, dataset_labels, images_at, load_split
    from interpretgan.diagnosis.diagnose import dstar_indices
    from interpretgan.interpret.fit import heldout_indices, load_generators
    from interpretgan.models.loading import load_model_file
    from interpretgan.run.config import RunConfig, resolve_run
    from interpretgan.run.pipeline import run_main
    from interpretgan.runtime.runs import read_json

    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    src = tmp_path / "my_model.py"
    src.write_text(USER_MODEL)
    torch.save(load_model_file(f"{src}:build").state_dict(), tmp_path / "my.pt")
    cfg = RunConfig(**{**tiny().__dict__, "layers": ("body.2.1", "head"),
                       "fit_overrides": {**TINY_FIT, "generator_seeds": (0, 1)}})
    run = tmp_path / "run"
    run_main(cfg, run, model_file=f"{src}:build", checkpoint=str(tmp_path / "my.pt"), progress=False,
             device="cpu")

    # The same model, data and settings in Python.
    model = load_model_file(f"{src}:build")
    model.load_state_dict(torch.load(tmp_path / "my.pt"))
    data = checkpoint_data_config(run / "user" / "checkpoints" / "final.pt", "mnist")
    train, test = load_split(data, "train"), load_split(data, "test")
    idx = dstar_indices(test, cfg.dstar_images)
    eval_idx, _, _ = heldout_indices(len(test), idx, TINY_FIT["eval_images"], dataset_labels(test))
    fit_cfg = resolve_run(cfg, own_model=True).fit
    ex = Explainer(model, list(cfg.layers), preset=fit_cfg, device="cpu")
    ex.fit(train, eval_images=images_at(test, eval_idx)[0], progress=False)
    ex.save(tmp_path / "ex")
    ex = Explainer.load(tmp_path / "ex", model, device="cpu")

    # The generators are the run's, weight for weight.
    theirs = load_generators(run / "user" / "fit", 1)
    assert list(theirs) == list(ex.gans)
    for k, g in theirs.items():
        mine = ex.gans[k].state_dict()
        assert all(torch.equal(v, mine[n]) for n, v in g.state_dict().items()), k
    x, y = images_at(test, idx)
    assert set(ex.explain(x[:3])) == {"body.2.1", "head"}

    # The diagnosis is the run's, number for number (the run's judge control aside).
    d = interpretgan.diagnose(model, ex, x, y, attack=cfg.attack, seed=cfg.seed, progress=False)
    ran = read_json(run / "user" / "diagnosis.json")
    for mine, theirs_row in zip(d.doc["per_layer"], ran["per_layer"]):
        for k in ("acc", "acc_ci", "vul", "vul_ci", "large_vul", "acc_seeds", "acc_natural",
                  "agreement_natural", "keeps_adversarial_label"):
            assert mine[k] == theirs_row[k], (mine["layer"], k)
    assert d.doc["maxpool_index_change"] == ran["maxpool_index_change"]
    assert d.doc["misclassification"] == ran["misclassification"]
    assert dataclasses.asdict(ex.cfg)["generator_seeds"] == (0, 1)


def test_explainer_log_dir_writes_the_fits_live_curves(tmp_path):
    from conftest import need

    need("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x = torch.rand(96, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    Explainer(tiny_net(), ["4"], device="cpu", log_dir=tmp_path / "tb", **{**TINY, "ckpt_every": 1}).fit(
        x, folder=tmp_path / "fit", progress=False)
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = acc.Tags()
    assert {"4/l_i", "4/agreement"} <= set(tags["scalars"])
    assert "4/explanations" in tags["images"] and len(acc.Images("4/explanations")) == 3  # one per scale


def test_inputs_a_user_gets_wrong_are_one_line_errors(fitted):
    """Images in 0..255, another channel count or size, a missing batch axis, float or short
    labels, and calls before fit(): each stops with one line before any work."""
    net, x, ex = fitted
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        ex.explain(x[:2] * 255)
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        ex.labels(x[:2] * 255)
    with pytest.raises(ValueError, match="3 channel"):
        ex.explain(x[:2].repeat(1, 3, 1, 1))
    with pytest.raises(ValueError, match="fitted on 16×16"):
        ex.agreement(torch.rand(2, 1, 20, 20))
    with pytest.raises(ValueError, match=r"tensor \(N, C, H, W\), got \(1, 16, 16\)"):
        ex.explain(x[0])
    with pytest.raises(ValueError, match="float in"):
        ex.explain((x[:2] * 255).to(torch.uint8))
    y = torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        interpretgan.diagnose(net, ex, x[:8] * 255, y, attack="fgsm", progress=False)
    with pytest.raises(ValueError, match=r"integer labels \(N,\) = \(8,\).*float32"):
        interpretgan.diagnose(net, ex, x[:8], y.float(), attack="fgsm", progress=False)
    with pytest.raises(ValueError, match=r"integer labels \(N,\) = \(8,\) for x, got \(5,\)"):
        interpretgan.diagnose(net, ex, x[:8], y[:5], attack="fgsm", progress=False)
    empty = Explainer(net, "4", device="cpu", **TINY)  # one layer's name as a string
    assert empty.layers == ["4"]
    with pytest.raises(RuntimeError, match="call fit"):
        empty.agreement(x[:2])
    with pytest.raises(ValueError, match="no generators"):
        interpretgan.diagnose(net, empty, x[:8], y, attack="fgsm", progress=False)


def test_seeds_as_a_count_and_data_sets_of_images_alone():
    net = tiny_net()
    assert Explainer(net, ["4"], device="cpu", seeds=3, **TINY).cfg.generator_seeds == (0, 1, 2)
    with pytest.raises(ValueError, match="seeds= or generator_seeds="):
        Explainer(net, ["4"], device="cpu", seeds=(0, 1), generator_seeds=(3,), **TINY)
    from interpretgan.data.splits import as_image_dataset
    x = torch.rand(5, 1, 16, 16)
    item = as_image_dataset(torch.utils.data.TensorDataset(x))[2]  # items (x,)
    assert torch.equal(item[0], x[2]) and int(item[1]) == 0
    with pytest.raises(ValueError, match=r"cannot take images of shape \(3, 16, 16\)"):
        Explainer(net, ["4"], device="cpu", **TINY)._check_model(torch.rand(2, 3, 16, 16))
