"""The paper's CelebFaces setting: presets, Table 5's compression networks, generator scales
that follow the input size, and ``interpretgan run --preset celeba`` end to end on tiny
CelebA-format files (JPEGs at 178×218, the attribute and partition lists)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from interpretgan import models
from interpretgan.config import (FIT_PRESETS, RUN_PRESETS, TRAIN_PRESETS, ConfigError, FitConfig,
                                 RunConfig, fit_for_image_size, resolve_run, run_preset_for)
from interpretgan.fitting import GanBank
from interpretgan.gan import compression_stages, generator_scales
from interpretgan.layers import default_layers, layer_shapes
from interpretgan.pipeline import load_any
from interpretgan.runs import load_checkpoint, read_json

# Table 5 of the paper, row by row: (3×3 conv width, followed by 2×2 average pooling) per stage,
# then the FC to the code. Conv Block5 has its lone 3×3 conv of 512 without pooling.
TABLE5 = {
    "features.block1": [(128, True), (256, True), (512, True), (512, True)],
    "features.block2": [(256, True), (512, True), (512, True)],
    "features.block3": [(512, True), (512, True)],
    "features.block4": [(512, True)],
    "features.block5": [(512, False)],
    "classifier.relu1": [],
    "classifier.relu2": [],
    "classifier.fc3": [],
}


def compressor_layout(c: nn.Module) -> list[tuple[int, bool]]:
    """(conv width, pooled) per stage, read off the built network's modules."""
    mods, out = list(c.net), []
    for i, m in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            assert m.kernel_size == (3, 3)
            out.append((m.out_channels, any(isinstance(n, nn.AvgPool2d) for n in mods[i + 1: i + 3])))
    return out


def test_table5_compression_networks_layer_by_layer():
    """The celeba presets build exactly Table 5's compression networks on VGG16 at 128 px."""
    net = models.create("vgg16", num_classes=2, input_size=128).eval()
    assert tuple(default_layers(net)) == tuple(TABLE5)  # five conv blocks, then the FC layers
    with torch.device("meta"):
        shapes = layer_shapes(net.to("meta"), torch.zeros(1, 3, 128, 128), list(TABLE5))
    assert shapes["features.block1"] == (64, 64, 64) and shapes["features.block5"] == (512, 4, 4)
    for preset in ("celeba", "celeba-paper"):
        cfg = FIT_PRESETS.get(preset)
        bank = GanBank.empty([(n, shapes[n]) for n in TABLE5], 3, cfg)
        for (layer, want), c in zip(TABLE5.items(), bank.Cs):
            assert compressor_layout(c) == want, (preset, layer)
            fc = [m for m in c.net if isinstance(m, nn.Linear)]
            assert len(fc) == 1 and fc[0].out_features == cfg.code_dim, (preset, layer)
        # the pooled stages end at 4×4 maps of 512 channels for every conv block
        for layer in list(TABLE5)[:5]:
            c = bank.Cs[list(TABLE5).index(layer)]
            assert c.net[-1].in_features == 512 * 4 * 4, (preset, layer)
    # Table 4 (MNIST) keeps Conv4 without a conv: the lone conv is Table 5's alone
    assert compression_stages((64, 5, 5)) == [] and not FIT_PRESETS.get("paper").c_conv_small_maps


def test_generator_scales_follow_the_input_size():
    assert [generator_scales(s) for s in (28, 32, 64, 128)] == [4, 4, 5, 6]
    paper = FIT_PRESETS.get("celeba-paper")
    assert paper.g_channels[-1] and len(paper.g_channels) == 6
    assert paper.steps_per_scale == (48000,) + (96000,) * 5
    assert fit_for_image_size(paper, 128) is paper
    five = fit_for_image_size(paper, 64)  # a user's 64 px model: scales 4 … 64 px
    assert five.g_channels == (512, 512, 512, 512, 256) and five.steps_per_scale == (48000,) + (96000,) * 4
    quick = fit_for_image_size(FIT_PRESETS.get("quick"), 128)  # the MNIST preset at 128 px
    assert quick.g_channels == (32, 32, 16, 8, 8, 8) and quick.steps_per_scale == (30, 30, 60, 60, 60, 360)
    # the run resolves its fit for the classifier's input size, a user's model at fit time
    assert len(resolve_run(RUN_PRESETS.get("celeba")).fit.g_channels) == 6
    small = resolve_run(RunConfig(**{**RUN_PRESETS.get("celeba").__dict__, "image_size": 64}))
    assert len(small.fit.g_channels) == 5 and small.natural.data.image_size == 64


def test_celeba_presets_are_the_papers_setting():
    r = RUN_PRESETS.get("celeba-paper")
    res = resolve_run(r)
    assert r.dataset == "celeba" and r.attack == "pgd-20" and r.adversarial is None
    assert res.adversarial is None
    t = res.natural
    assert (t.model.name, t.model.kwargs["input_size"], t.data.image_size) == ("vgg16", 128, 128)
    assert (t.epochs, t.lr, t.method) == (7, 0.001, "natural")
    f = res.fit
    assert f.c_width_mult == 1.0 and f.c_conv_small_maps and f.lam == 1.0 and f.lr == 0.001
    quick = resolve_run(RUN_PRESETS.get("celeba"))
    assert quick.natural.model.kwargs["input_size"] == 128 and quick.fit.c_conv_small_maps
    # the robust partner preset resolves at the paper's CelebA budget
    pair = resolve_run(RunConfig(**{**r.__dict__, "adversarial": "celeba-atta-trades"}))
    assert pair.adversarial.eps == pytest.approx(2 / 255) and pair.adversarial.data.dataset == "celeba"
    # --dataset celeba picks the celeba preset; the MNIST presets refuse CelebA in one line
    assert run_preset_for("celeba") == "celeba" and run_preset_for("mnist") == "quick"
    assert run_preset_for("cifar10") == "quick"
    with pytest.raises(ConfigError, match="--preset celeba"):
        resolve_run(RunConfig(dataset="celeba"))
    with pytest.raises(ConfigError, match="celeba-natural is for celeba, not mnist"):
        resolve_run(RunConfig(**{**r.__dict__, "dataset": "mnist", "attack": "pgd-40"}))
    resolve_run(RunConfig(dataset="celeba"), own_model=True)  # a user's model: presets unused
    assert "celeba-natural" in TRAIN_PRESETS


def write_celeba(root, n_train: int = 24, n_valid: int = 4, n_test: int = 16, seed: int = 0):
    """A tiny aligned-CelebA folder: JPEGs at 178×218 (the release's size) whose label is
    visible: a dark lower face ("beard") for male, a bright upper band for female."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "img_align_celeba").mkdir(parents=True)
    names = ["5_o_Clock_Shadow", "Male", "Young"]
    attrs, parts = [], []
    n = n_train + n_valid + n_test
    for i in range(n):
        fn = f"{i + 1:06d}.jpg"
        male = i % 2 == 0
        arr = rng.integers(90, 170, (218, 178, 3)).astype(np.uint8)
        arr[70:150, 40:140] = [205, 160, 130]  # a face
        if male:
            arr[125:150, 55:125] = [40, 30, 25]
        else:
            arr[45:75, 25:155] = [230, 200, 90]
        Image.fromarray(arr).save(root / "img_align_celeba" / fn, quality=90)
        attrs.append(f"{fn} -1 {1 if male else -1:2d}  1")
        parts.append(f"{fn} {0 if i < n_train else 1 if i < n_train + n_valid else 2}")
    (root / "list_attr_celeba.txt").write_text(f"{n}\n{' '.join(names)}\n" + "\n".join(attrs) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return root


TINY_VGG = {"num_classes": 2, "input_size": 128, "width": 0.0625, "hidden": 16}


def tiny_celeba_cli(data, root) -> list[str]:
    """``interpretgan run --preset celeba`` with every size shrunk by ``--set``."""
    sets = {"train.epochs": 1, "train.batch_size": 8, "train.model.kwargs": TINY_VGG,
            "fit.code_dim": 8, "fit.g_channels": [8] * 6, "fit.d_channels": [8] * 6,
            "fit.steps_per_scale": [1, 1, 1, 1, 1, 2], "fit.batch_size": 4, "fit.eval_images": 4,
            "fit.ckpt_every": 2, "dstar_images": 6, "explain_images": 2}
    args = ["-q", "run", "--preset", "celeba", "--data-dir", str(data), "--run-dir", str(root),
            "--device", "cpu"]
    for k, v in sets.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    return args


@pytest.fixture
def one_thread():
    """One intra-op thread: this test's many small ops ran several times slower with two
    threads on two cores shared with other work (threads waiting on each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_run_preset_celeba_end_to_end(tmp_path, cache, one_thread):
    from interpretgan.cli import main

    data = write_celeba(tmp_path / "celeba")
    root = tmp_path / "run"
    assert main(tiny_celeba_cli(data, root)) == 0
    stages = {p.stem: read_json(p) for p in (root / "stages").iterdir()}
    assert set(stages) == {f"{s}__natural" for s in ("train", "dstar", "fit", "diagnose", "explain")}
    assert all(r["done"] for r in stages.values())  # every stage ran, for the one classifier
    res = read_json(root / "results.json")
    assert res["layers"] == list(TABLE5) and "adversarially_trained" not in res
    assert res["layer_labels"][:5] == [f"Conv Block{i}" for i in range(1, 6)]
    assert res["classes"] == ["female", "male"]
    r = res["natural"]
    assert r["attack"] == "pgd-20" and r["n"] == 6
    assert set(r["per_layer"]) == set(TABLE5)  # one Acc_i (and Vul_i) per interpreted layer
    accs = [r["per_layer"][n]["acc"] for n in res["layers"]]
    vul = [r["per_layer"][n]["vul"] for n in res["layers"]]
    # each Acc_i is a count of hitting explanations over D*'s images and the generator seeds
    hits = [a * r["n"] * r["generator_seeds"] for a in accs]
    assert hits == pytest.approx([round(h) for h in hits]) and vul[0] == pytest.approx(1 - accs[0])
    assert vul[1:] == pytest.approx([a - b for a, b in zip(accs, accs[1:])])
    assert len(r["maxpool_index_change"]) == 5  # VGG16's five max pools
    # the classifier is the shrunk VGG16 at 128 px; the generators have six scales up to 128 px
    ck = load_checkpoint(root / "natural" / "checkpoints" / "final.pt")
    assert ck["model"] == "vgg16" and ck["model_kwargs"]["input_size"] == 128
    fit = read_json(root / "natural" / "fit" / "config.json")
    assert len(fit["fit"]["g_channels"]) == 6 and fit["fit"]["c_conv_small_maps"]
    assert fit["shapes"]["features.block5"] == [32, 4, 4]
    # the saved explanations: RGB at 128 px, with labels and confidences
    ex = load_checkpoint(root / "natural" / "explain" / "explanations.pt")
    f = load_any(root / "natural" / "checkpoints" / "final.pt")
    for kind in ("natural", "adversarial"):
        for n in TABLE5:
            assert ex[kind]["explanations"][n].shape == (2, 3, 128, 128)
            with torch.no_grad():  # the label and confidence shown are f's on that explanation
                probs = f(ex[kind]["explanations"][n].float()).float().softmax(1)
            torch.testing.assert_close(ex[kind]["confidence"][n].float(), probs.max(1).values, atol=2e-3, rtol=0)
            assert torch.equal(ex[kind]["labels"][n].long(), probs.argmax(1))
    # the report: the CelebFaces note, Acc_i / Vul_i, and the RGB grid at one pixel per pixel
    html = (root / "report" / "index.html").read_text()
    assert "<b>gender</b>" in html and "female / male" in html and "Vul<sub>i</sub>" in html
    assert "Figures 4 and 5" in html and "src='http" not in html
    from PIL import Image

    with Image.open(root / "report" / "explanations_natural.png") as im:
        grid = np.asarray(im.convert("RGB"))
    w, h = grid.shape[1], grid.shape[0]
    assert w >= 9 * 128 and h >= 4 * 128  # 9 columns (input + 8 layers), 2 images × 2 rows
    assert (np.abs(grid[..., 0].astype(int) - grid[..., 2].astype(int)) > 30).any()  # colour
    # its titles: the label and confidence above each explanation
    explain = read_json(root / "natural" / "explain" / "explain.json")
    assert set(explain["natural_confidence"]) == set(TABLE5)
    render_in_chromium(root / "report" / "index.html", tmp_path)


def render_in_chromium(page, tmp_path) -> None:
    """The report loads in headless Chromium with every image decoded, no script errors."""
    from test_report_browser import render

    html = page.read_text()
    images, bad, errors = render(page, tmp_path / "profile")
    assert images == html.count("<img") >= 4
    assert bad == "[]" and errors == "[]"
    assert "alt='explanations'" in html


def test_128px_rgb_generators_resume_mid_scale_after_a_kill(tmp_path, one_thread):
    """Six-scale generators on 128 px CelebA files, killed in the middle of the 128 px scale,
    resume to exactly the uninterrupted fit (as the MNIST fit does)."""
    from interpretgan.data import images_at, load_celeba
    from interpretgan.fitting import fit_generators

    data = write_celeba(tmp_path / "celeba", n_train=8, n_valid=0, n_test=4)
    train, test = load_celeba("train", data_dir=data), load_celeba("test", data_dir=data)
    ex, _ = images_at(test, torch.arange(len(test)))
    torch.manual_seed(0)
    f = models.create("vgg16", **TINY_VGG).eval()
    cfg = FitConfig(code_dim=8, g_channels=(8,) * 4, d_channels=(8,) * 4, c_width_mult=1.0,
                    c_conv_small_maps=True, steps_per_scale=(1, 1, 1, 3), batch_size=4,
                    ckpt_every=2, warmup_fraction=0.0, train_subset=None, eval_images=4)
    layers = ["features.block1", "features.block5", "classifier.fc3"]
    full = fit_generators(f, train, ex, cfg, tmp_path / "a", layers, progress=False)
    saved = read_json(tmp_path / "a" / "config.json")["fit"]  # 4 scales given, 6 fitted (128 px)
    assert saved["steps_per_scale"] == [1, 1, 1, 1, 1, 3] and len(saved["g_channels"]) == 6
    assert full["features.block1"].explain(torch.randn(2, 4, 64, 64)).shape == (2, 3, 128, 128)
    fit_generators(f, train, ex, cfg, tmp_path / "b", layers, progress=False, stop_after=6)
    last = load_checkpoint(tmp_path / "b" / "features.block5" / "last.pt")
    assert last["step"] == 6  # killed after the first of the three 128 px steps
    resumed = fit_generators(f, train, ex, cfg, tmp_path / "b", layers, progress=False)
    for n in layers:
        for (k, a), b in zip(full[n].state_dict().items(), resumed[n].state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{n} {k}")


OWN_RESNET = '''
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(x + self.conv(x))


class Net(nn.Module):
    """A small ResNet-style RGB classifier (global average pooling: any input size)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.res = Block(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.pool(self.res(self.stem(x))).flatten(1))


def build():
    return Net()
'''


def test_own_rgb_model_at_64px_gets_five_scales(tmp_path, cache, one_thread):
    """A user's RGB ResNet-style model at 64 px through ``run --preset celeba``: the
    generators get five scales (4 → 64 px) and the explanations are RGB at 64 px."""
    from interpretgan.cli import main
    from interpretgan.pipeline import load_model_file

    data = write_celeba(tmp_path / "celeba", n_train=12, n_valid=0, n_test=12)
    src = tmp_path / "my_resnet.py"
    src.write_text(OWN_RESNET)
    torch.save(load_model_file(f"{src}:build").state_dict(), tmp_path / "my.pt")
    root = tmp_path / "run"
    sets = {"fit.code_dim": 8, "fit.g_channels": [8] * 6, "fit.d_channels": [8] * 6,
            "fit.steps_per_scale": [1, 1, 1, 1, 1, 2], "fit.batch_size": 4, "fit.eval_images": 3,
            "dstar_images": 6, "explain_images": 2}
    args = ["-q", "run", "--dataset", "celeba", "--data-dir", str(data), "--run-dir", str(root),
            "--device", "cpu", "--model-file", f"{src}:build", "--checkpoint", str(tmp_path / "my.pt"),
            "--image-size", "64", "--layers", "stem.1,res,fc"]
    for k, v in sets.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert main(args) == 0
    fit = read_json(root / "user" / "fit" / "config.json")["fit"]
    assert fit["g_channels"] == [8] * 5 and fit["steps_per_scale"] == [1, 1, 1, 1, 2]
    res = read_json(root / "results.json")
    assert res["layers"] == ["stem.1", "res", "fc"] and set(res["user"]["per_layer"]) == set(res["layers"])
    ex = load_checkpoint(root / "user" / "explain" / "explanations.pt")
    assert ex["adversarial"]["explanations"]["res"].shape == (2, 3, 64, 64)
    assert (root / "report" / "explanations_user.png").exists()
