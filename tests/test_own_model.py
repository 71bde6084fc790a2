"""A researcher's own classifier through ``interpretgan run``: input size and channels,
normalisation outside the model, and a one-line error for every way the inputs can be wrong."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from interpretgan.cli import main
from interpretgan.runs import load_checkpoint, read_json
from test_pipeline import tiny_cli

# 28-px grey-scale: the linear layer fits 28 px only (32 px fails with "mat1 and mat2 shapes").
GREY28 = '''
import torch
import torch.nn as nn

class Net(nn.Module):
    def __init__(self, classes=10, channels=1, mean=None):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, stride=2)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 6 * 6, classes)
        self.spare = nn.Linear(3, 3)  # never called
        self.mean = mean

    def forward(self, x):
        if self.mean is not None and float(x.min()) >= 0:
            raise ValueError("expects (x - mean) / std, got [0, 1] images")
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))

def build():
    return Net()

def build_normalized():
    return Net(mean=0.5)

def build_rgb():
    return Net(channels=3)

def build_five():
    return Net(classes=5)

def build_with_args(width):
    return Net()

class Maps(Net):
    def forward(self, x):
        return self.act(self.conv(x))

def build_maps():
    return Maps()
'''


@pytest.fixture
def own(tmp_path, mnist_small, shared_cache, monkeypatch):
    """(model file, checkpoint of ``build()``, run-args maker) for the 28-px grey model."""
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    src = tmp_path / "net.py"
    src.write_text(GREY28)
    ns: dict = {}
    exec(compile(GREY28, str(src), "exec"), ns)
    torch.manual_seed(0)
    ckpt = tmp_path / "net.pt"
    torch.save(ns["build"]().state_dict(), ckpt)

    def args(root, fn="build", checkpoint=ckpt, *extra):
        return [*tiny_cli(root, "cpu"), "--layers", "conv,fc", "--model-file", f"{src}:{fn}",
                "--checkpoint", str(checkpoint), *extra]
    return src, ckpt, args


@pytest.mark.parametrize("size_flag", [[], ["--image-size", "28"]], ids=["probed", "flag"])
def test_a_28px_grey_model_on_mnist(own, tmp_path, size_flag):
    _, _, args = own
    root = tmp_path / "run"
    assert main(args(root, "build", own[1], *size_flag)) == 0
    ck = load_checkpoint(root / "user" / "checkpoints" / "final.pt")
    assert ck["config"]["data"]["image_size"] == 28 and ck["normalize"] is None
    res = read_json(root / "results.json")
    assert res["layers"] == ["conv", "fc"] and "natural" not in res
    assert res["classes"] == [str(i) for i in range(10)]
    assert torch.tensor(res["user"]["misclassification"]).shape == (10, 10)
    assert res["paper"] is None  # Table 1 is the paper's MNIST SmallCNN, not this model
    html = (root / "report" / "index.html").read_text()
    assert "(paper:" not in html and "grey: the paper's Table 1" not in html  # no paper markers


def test_a_model_that_needs_normalize(own, tmp_path, caplog):
    src, ckpt, args = own
    root = tmp_path / "run"
    assert main(args(root, "build_normalized")) == 2  # fed [0, 1] images, it refuses them
    assert "expects (x - mean) / std" in caplog.text and not root.exists()
    assert main(args(root, "build_normalized", ckpt, "--normalize", "0.5,0.25")) == 0
    final = root / "user" / "checkpoints" / "final.pt"
    assert load_checkpoint(final)["normalize"] == [0.5, 0.25]
    from interpretgan.pipeline import load_any

    assert load_checkpoint(final)["model_file_sha256"]  # the file is recorded, never run from it
    net = load_any(final, model_file=f"{src}:build_normalized")  # with the same normalisation
    x = torch.rand(2, 1, 28, 28)
    ns: dict = {}
    exec(compile(GREY28, "m", "exec"), ns)
    ref = ns["build"]()
    ref.load_state_dict(torch.load(ckpt))
    assert torch.allclose(net(x), ref.eval()((x - 0.5) / 0.25), atol=1e-6)
    key = read_json(root / "stages" / "train__user.json")["key"]
    assert main(args(root, "build_normalized", ckpt, "--normalize", "0.5,0.5")) == 0
    assert read_json(root / "stages" / "train__user.json")["key"] != key  # part of the key


def _one_error(caplog, rc: int, *needles: str) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert rc == 2 and len(errors) == 1 and "\n" not in errors[0], errors
    assert "Traceback" not in caplog.text
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


def test_a_size_the_model_refuses_names_the_shapes_and_the_flag(own, tmp_path, caplog):
    _, ckpt, args = own
    root = tmp_path / "run"
    _one_error(caplog, main(args(root, "build", ckpt, "--image-size", "32")),
               "(2, 1, 32, 32)", "mat1 and mat2", "--image-size")
    assert not root.exists()


def test_no_size_fits_lists_every_shape_tried(own, tmp_path, caplog):
    src, _, args = own
    other = tmp_path / "other.pt"  # a model whose linear layer fits neither 28 nor 32 px
    src.write_text(GREY28.replace("4 * 6 * 6", "4 * 5 * 5"))
    ns: dict = {}
    exec(compile(src.read_text(), "m", "exec"), ns)
    torch.save(ns["build"]().state_dict(), other)
    _one_error(caplog, main(args(tmp_path / "run", "build", other)),
               "(2, 1, 28, 28)", "(2, 1, 32, 32)", "--image-size N")


ERRORS = {  # what is wrong → (function, extra args, words the one line must hold)
    "no file": ("build", ["--model-file", "/nonexistent/m.py:build"], ["no such file"]),
    "no function": ("nothing", [], ["has no function 'nothing'"]),
    "function needs arguments": ("build_with_args", [], ["needs arguments (width)"]),
    "checkpoint does not fit": ("build_five", [], ["does not fit", "fc.weight", "fc.bias"]),
    "output is not logits": ("build_maps", [], ["not (2, classes) logits"]),
    "classes differ": ("build_five", ["FIVE"], ["outputs 5 classes", "have 10"]),
    "layer never reached": ("build", ["--layers", "conv,spare"], ["'spare'", "not reached"]),
    "empty layer list": ("build", ["--layers", ","], ["empty"]),
    "unknown layer": ("build", ["--layers", "conv,nope"], ["no layer 'nope'"]),
    "grey data, RGB model": ("build_rgb", ["RGB"], ["grey-scale (1 channel)", "takes 3 channel"]),
    "normalize values": ("build", ["--normalize", "0.5,0.5,0.5,0.2,0.2,0.2"], ["6 values", "1 channel"]),
    "normalize std": ("build", ["--normalize", "0.5,0"], ["normalize", "greater than 0"]),
    "normalize text": ("build", ["--normalize", "a,b"], ["comma-separated numbers"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_each_wrong_input_is_one_line_before_the_run_folder_is_touched(own, tmp_path, caplog, case):
    src, ckpt, args = own
    fn, extra, needles = ERRORS[case]
    if extra[:1] in (["FIVE"], ["RGB"]):  # a checkpoint of that very model
        ns: dict = {}
        exec(compile(GREY28, "m", "exec"), ns)
        ckpt = tmp_path / f"{fn}.pt"
        torch.save(ns[fn]().state_dict(), ckpt)
        extra = []
    root = tmp_path / "run"
    _one_error(caplog, main(args(root, fn, ckpt, *extra)), *needles)
    assert not root.exists()


RGB32 = '''
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 7 * 7, 3)

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))

def build():
    return Net()
'''


def _rgb_model(tmp_path, source: str):
    """``tmp_path/rgb.py`` holding ``source`` and ``tmp_path/rgb.pt``, its ``build()``'s weights."""
    src = tmp_path / "rgb.py"
    src.write_text(source)
    ns: dict = {}
    exec(compile(source, str(src), "exec"), ns)
    torch.save(ns["build"]().state_dict(), tmp_path / "rgb.pt")
    return src


def write_folder(root, classes=("cat", "dog", "fox"), n=(8, 20), side=20):
    """``root/{train,test}/<class>/*.png``: RGB images of ``side`` px, one tint per class."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(3)
    for split, count in zip(("train", "test"), n):
        for k, c in enumerate(classes):
            (root / split / c).mkdir(parents=True)
            for i in range(count):
                arr = rng.integers(0, 120, (side, side, 3)).astype(np.uint8)
                arr[..., k] += 120
                Image.fromarray(arr).save(root / split / c / f"{i}.png")
    return root


def test_a_3_channel_model_on_a_folder_of_images(tmp_path, shared_cache, monkeypatch):
    from PIL import Image

    from interpretgan.data import DataConfig, load_split
    from interpretgan.fitting import load_generators

    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    data = write_folder(tmp_path / "pets")
    ds = load_split(DataConfig(dataset="folder", data_dir=str(data), image_size=32), "test")
    assert ds.shape == (3, 32, 32) and ds.classes == ["cat", "dog", "fox"] and len(ds) == 60
    src = _rgb_model(tmp_path, RGB32)
    root = tmp_path / "run"
    # the native 20 px fails the model, 32 px fits: probed without --image-size
    assert main([*tiny_cli(root, "cpu"), "--layers", "conv,fc", "--dataset", "folder",
                 "--data-dir", str(data), "--model-file", f"{src}:build",
                 "--checkpoint", str(tmp_path / "rgb.pt")]) == 0
    res = read_json(root / "results.json")
    assert res["classes"] == ["cat", "dog", "fox"] and res["paper"] is None
    assert torch.tensor(res["user"]["misclassification"]).shape == (3, 3)
    assert torch.tensor(res["user"]["misclassification"]).sum() == 40
    gans = load_generators(root / "user" / "fit", image_channels=3)  # G emits 3 channels
    assert gans["conv"].explain(torch.randn(2, 4, 15, 15)).shape[1] == 3
    with Image.open(root / "user" / "explain" / "explanations.png") as im:
        assert im.mode in ("RGB", "RGBA")
    html = (root / "report" / "index.html").read_text()
    assert "cat →" in html or "dog →" in html or "fox →" in html


def test_a_3_channel_32px_model_on_cifar_format_files(tiny_cifar, tmp_path, shared_cache, monkeypatch, caplog):
    """CIFAR-10's python batches as they are on disk (tiny ones, so their checksums differ:
    refused unless --no-verify), a 3-channel 32-px model, RGB generators, class names."""
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    src = _rgb_model(tmp_path, RGB32.replace("nn.Linear(4 * 7 * 7, 3)", "nn.Linear(4 * 7 * 7, 10)"))
    root = tmp_path / "run"
    args = [*tiny_cli(root, "cpu"), "--layers", "conv,fc", "--dataset", "cifar10",
            "--data-dir", str(tiny_cifar), "--dstar-images", "2", "--set", "fit.eval_images=2",
            "--model-file", f"{src}:build", "--checkpoint", str(tmp_path / "rgb.pt")]
    _one_error(caplog, main(args), "MD5 mismatch", "--no-verify")
    assert not root.exists()
    assert main([*args, "--no-verify"]) == 0
    res = read_json(root / "results.json")
    assert res["classes"][:3] == ["airplane", "automobile", "bird"] and res["paper"] is None
    assert torch.tensor(res["user"]["misclassification"]).shape == (10, 10)
    from interpretgan.fitting import load_generators

    gans = load_generators(root / "user" / "fit", image_channels=3)
    assert gans["conv"].explain(torch.randn(2, 4, 15, 15)).shape == (2, 3, 32, 32)


def test_edited_image_folder_is_not_served_from_the_cache(tmp_path, shared_cache, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    data = write_folder(tmp_path / "pets")
    src = _rgb_model(tmp_path, RGB32)
    root = tmp_path / "run"
    args = [*tiny_cli(root, "cpu"), "--layers", "conv,fc", "--dataset", "folder", "--data-dir", str(data),
            "--model-file", f"{src}:build", "--checkpoint", str(tmp_path / "rgb.pt"), "--image-size", "32"]
    assert main(args) == 0
    before = read_json(root / "stages" / "dstar__user.json")["key"]
    first = next((data / "test" / "cat").iterdir())
    Image.new("RGB", (20, 20), (0, 0, 0)).save(first)  # one test image changed on disk
    assert main(args) == 0
    assert read_json(root / "stages" / "dstar__user.json")["key"] != before


def test_a_folder_mixing_grey_and_rgb_images_loads_as_rgb_in_both_splits(tmp_path):
    from PIL import Image

    from interpretgan.data import DataConfig, load_split

    data = write_folder(tmp_path / "pets")
    grey = next((data / "test" / "dog").iterdir())
    Image.new("L", (20, 20), 128).save(grey)  # one grey image among RGB ones
    for split in ("train", "test"):
        assert load_split(DataConfig(dataset="folder", data_dir=str(data), image_size=32), split).shape[0] == 3
    with pytest.raises(ValueError, match="already has a normalisation"):
        from interpretgan.models import with_normalization

        with_normalization(with_normalization(torch.nn.Linear(2, 2), [0.5, 0.5]), [0.5, 0.5])


# --------------------------------------------------------------------------- model outputs
OUTPUTS = GREY28 + '''

class Pair(Net):
    """(logits, aux): torchvision's Inception / GoogLeNet style."""

    def forward(self, x):
        h = self.pool(self.act(self.conv(x))).flatten(1)
        return self.fc(h), h

class Scores(Net):
    """A dict whose logits are not under "logits"."""

    def forward(self, x):
        h = self.pool(self.act(self.conv(x)))
        return {"features": h, "scores": self.fc(h.flatten(1))}

def build_pair():
    return Pair()

def build_scores():
    return Scores()
'''


@pytest.fixture
def outputs(own, tmp_path):
    """``(root, function, *extra) → run args`` of ``own`` over a file that also builds
    ``Pair`` and ``Scores`` (same parameters: the checkpoint of ``build()`` fits them all)."""
    src, ckpt, args = own
    src.write_text(OUTPUTS)
    return lambda root, fn, *extra: args(root, fn, ckpt, *extra)


def test_a_model_returning_logits_and_aux_is_read_at_its_first_element(own, outputs, tmp_path):
    root = tmp_path / "run"
    assert main(outputs(root, "build_pair")) == 0
    res = read_json(root / "results.json")
    assert res["user"]["output"] == {"selector": "[0]", "auto": True}
    assert res["config"]["output"] is None
    assert "[0]</code>, found" in (root / "report" / "index.html").read_text()
    from interpretgan.pipeline import load_any

    net = load_any(root / "user" / "checkpoints" / "final.pt",  # fit, explain: the same logits
                   model_file=f"{own[0]}:build_pair")
    ns: dict = {}
    exec(compile(OUTPUTS, "m", "exec"), ns)
    ref = ns["build_pair"]()
    ref.load_state_dict(torch.load(own[1]))
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(net(x), ref.eval()(x)[0])
    key = read_json(root / "stages" / "train__user.json")["key"]
    fit_key = read_json(root / "stages" / "fit__user.json")["key"]
    assert main(outputs(root, "build_pair", "--output", "1")) == 2  # aux: 144 ≠ 10 classes
    assert main(outputs(root, "build_pair", "--output", "0")) == 0  # given, not found
    assert read_json(root / "results.json")["user"]["output"] == {"selector": "[0]", "auto": False}
    assert read_json(root / "stages" / "train__user.json")["key"] != key  # part of the keys:
    assert read_json(root / "stages" / "fit__user.json")["key"] != fit_key  # the work is redone


def test_a_model_returning_a_dict_is_read_at_the_key_given(outputs, tmp_path, caplog):
    root = tmp_path / "run"
    _one_error(caplog, main(outputs(root, "build_scores")), "dict with keys features, scores",
               "--output")  # no "logits" key: the selector must be given
    assert not root.exists()
    caplog.clear()
    assert main(outputs(root, "build_scores", "--output", "scores")) == 0
    res = read_json(root / "results.json")
    assert res["user"]["output"] == {"selector": "scores", "auto": False}
    assert res["config"]["output"] == "scores"
    assert "scores</code>, as --output gave" in (root / "report" / "index.html").read_text()


@pytest.mark.parametrize("fn, selector, needles", [
    ("build_pair", "[2]", ["--output [2] does not exist", "tuple of 2"]),
    ("build_scores", "logits", ["--output logits does not exist", "features, scores"]),
    ("build_scores", "features", ["(2, classes) logits"]),
    ("build", "0", ["returns a tensor", "leave --output out"]),
])
def test_a_selector_the_output_lacks_is_one_line_and_nothing_is_written(outputs, tmp_path, caplog,
                                                                        fn, selector, needles):
    root = tmp_path / "run"
    _one_error(caplog, main(outputs(root, fn, "--output", selector)), *needles)
    assert not root.exists()


def test_output_without_a_model_of_ones_own_is_refused(tmp_path, caplog):
    from test_pipeline import tiny_cli as cli

    root = tmp_path / "run"
    _one_error(caplog, main([*cli(root, "cpu"), "--output", "0"]), "--output", "--model-file")
    assert not root.exists()


# --------------------------------------------------------------------------- in-place modules
# the residual block of examples/inplace_cnn.py (one in-place ReLU module called twice, as
# torchvision's BasicBlock does) in a grey 28-px, 10-class net
INPLACE = (Path(__file__).resolve().parent.parent / "examples" / "inplace_cnn.py").read_text() + '''

class GreyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(4), nn.ReLU(inplace=True))
        self.layer1 = Residual(4)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.pool(self.layer1(self.stem(x))).flatten(1))


def build_grey():
    return GreyNet()
'''


def _inplace_truth(net, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The outputs of the explained modules, computed one module at a time, out of place."""
    s, b = net.stem, net.layer1
    stem1 = s[1](s[0](x))
    bn2 = b.bn2(b.conv2(torch.relu(b.bn1(b.conv1(torch.relu(stem1))))))
    return {"stem.1": stem1, "layer1.bn2": bn2}


def test_a_torchvision_style_in_place_cnn_through_run(tmp_path, mnist_small, shared_cache, monkeypatch):
    """conv → BN → ReLU(inplace), a residual block with ``out += identity``: the layer values
    the fit and the diagnosis read are the modules' own outputs."""
    from interpretgan.fitting import member_features
    from interpretgan.pipeline import load_any

    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    src = tmp_path / "resnet.py"
    src.write_text(INPLACE)
    ns: dict = {}
    exec(compile(INPLACE, str(src), "exec"), ns)
    net = ns["build_grey"]()
    g = torch.Generator().manual_seed(1)
    for m in net.modules():  # BN statistics that leave negative values for the ReLUs to rewrite
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=g))
    torch.save(net.state_dict(), tmp_path / "resnet.pt")
    root = tmp_path / "run"
    assert main([*tiny_cli(root, "cpu"), "--layers", "stem.1,layer1.bn2,fc",
                 "--model-file", f"{src}:build_grey", "--checkpoint", str(tmp_path / "resnet.pt")]) == 0
    res = read_json(root / "results.json")
    assert res["layers"] == ["stem.1", "layer1.bn2", "fc"]
    assert res["user"]["output"] == {"selector": None, "auto": False}
    assert [res["user"]["per_layer"][n]["layer_reading"]["read_as"] for n in res["layers"]] == \
        ["map", "map", "vector"]
    model = load_any(root / "user" / "checkpoints" / "final.pt",  # what fit and diagnosis load
                     model_file=f"{src}:build_grey")
    x = torch.rand(4, 1, 28, 28)
    truth = _inplace_truth(model, x)
    assert (truth["stem.1"] < 0).any() and (truth["layer1.bn2"] < 0).any()
    for _ in range(2):  # first use (a full forward), then stopping early
        feats = member_features(model, x, ["stem.1", "layer1.bn2"])  # the fit's C inputs
        for n, t in truth.items():
            torch.testing.assert_close(feats[n], t, msg=n)
