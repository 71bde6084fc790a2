"""Explanations, attribution baselines and the realism score."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from captum.attr import DeepLift

from interpretgan import models
from interpretgan.config import FitConfig
from interpretgan.explain import BASELINES, attribution_grid, attributions, explain_images, explanation_grid
from interpretgan.fitting import LayerGAN
from interpretgan.metrics import FeatureNet, kid


def test_kid_zero_for_same_distribution_positive_for_shift():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 8, generator=g)
    b = torch.randn(400, 8, generator=g)
    same, _ = kid(a, b, subsets=20)
    shifted, _ = kid(a, b + 1.0, subsets=20)
    assert abs(same) < 0.05 and shifted > 0.5 and shifted > 10 * abs(same)


def test_kid_by_hand_on_two_points():
    # m = 2, d = 1: k(a,b) = (ab + 1)^3; MMD² = k(a1,a2) + k(b1,b2) - 2 · mean of the cross terms
    a, b = torch.tensor([[0.0], [1.0]]), torch.tensor([[1.0], [2.0]])
    expected = (1.0) + (3.0 ** 3) - 2 * (1 + 1 + 8 + 27) / 4  # = 9.5
    got, _ = kid(a, b, subsets=1, subset_size=2)
    assert got == pytest.approx(expected)


def _setup():
    torch.manual_seed(0)
    f = models.create("smallcnn").eval()
    torch.nn.init.normal_(f.classifier.fc3.weight, std=0.1)
    cfg = FitConfig(code_dim=8, g_channels=(8, 8, 8, 8), d_channels=(8, 8, 8, 8), c_width_mult=0.25)
    gans = {n: LayerGAN(n, s, 1, cfg).eval() for n, s in
            [("feature_extractor.relu1", (32, 30, 30)), ("classifier.fc3", (10,))]}
    return f, gans, torch.rand(3, 1, 32, 32)


def test_explain_images_labels_are_f_of_explanations():
    f, gans, x = _setup()
    out = explain_images(f, gans, x)
    for n in gans:
        xh = out["explanations"][n]
        assert xh.shape == x.shape
        assert torch.equal(out["labels"][n], f(xh).argmax(1))
    assert torch.equal(out["pred"], f(x).argmax(1))


def test_attributions_all_methods_and_mode_restored(tmp_path):
    f, gans, x = _setup()
    f.train()
    target = torch.tensor([0, 1, 2])
    att = attributions(f, x, target)
    assert list(att) == list(BASELINES) and f.training
    for m, a in att.items():
        assert a.shape == x.shape and torch.isfinite(a).all(), m
    # input × gradient is, by definition, the input times the saliency's signed gradient
    f.eval()
    xg = x.clone().requires_grad_(True)
    f(xg)[torch.arange(3), target].sum().backward()
    torch.testing.assert_close(att["Input×Gradient"], x * xg.grad, rtol=1e-4, atol=1e-6)
    nat = explain_images(f, gans, x)
    p1 = explanation_grid(nat, nat, x, x, target, ["Conv1", "FC3"], tmp_path / "e.png")
    p2 = attribution_grid(x, x, att, att, tmp_path / "b.png")
    assert p1.read_bytes()[:4] == b"\x89PNG" and p2.read_bytes()[:4] == b"\x89PNG"


def test_feature_net_shapes():
    net = FeatureNet(3, 2)
    assert net.features(torch.rand(2, 3, 32, 32)).shape == (2, 128) and net(torch.rand(2, 3, 64, 64)).shape == (2, 2)


class _ResNetStyle(nn.Module):
    """torchvision's BasicBlock calls its one in-place ``self.relu`` twice per forward."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        out = self.relu(self.conv1(x))
        out = self.relu(self.conv2(out) + out)
        return self.fc(out.mean((2, 3)))


def test_deeplift_is_left_out_for_a_model_that_reuses_its_relu(caplog):
    f = _ResNetStyle().eval()
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(RuntimeError):  # what Captum does with it
        DeepLift(f).attribute(x.clone().requires_grad_(True), target=torch.tensor([0, 1]))
    with caplog.at_level("WARNING"):
        att = attributions(f, x, torch.tensor([0, 1]))
    assert list(att) == [m for m in BASELINES if m != "DeepLIFT"]
    assert "DeepLIFT baseline left out" in caplog.text
