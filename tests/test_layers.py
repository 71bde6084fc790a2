"""Hidden-layer contract: naming, tapping, f_pre/f_post split, no leaked hooks or modes."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

from interpretgan import layers, models
from interpretgan.layers import LayerNameError, capture, list_layers, split


class TradesStyleSmallCNN(nn.Module):
    """TRADES' SmallCNN: one ReLU instance registered (and used) at six places."""

    def __init__(self):
        super().__init__()
        act = nn.ReLU()
        self.feature_extractor = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(1, 4, 3)), ("relu1", act), ("conv2", nn.Conv2d(4, 4, 3)),
            ("relu2", act), ("maxpool1", nn.MaxPool2d(2)), ("conv3", nn.Conv2d(4, 8, 3)),
            ("relu3", act), ("conv4", nn.Conv2d(8, 8, 3)), ("relu4", act),
            ("maxpool2", nn.MaxPool2d(2))]))
        self.classifier = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(8 * 4 * 4, 20)), ("relu1", act), ("drop", nn.Dropout(0.5)),
            ("fc2", nn.Linear(20, 20)), ("relu2", act), ("fc3", nn.Linear(20, 10))]))

    def forward(self, x):
        return self.classifier(self.feature_extractor(x).view(-1, 8 * 4 * 4))


class CustomForward(nn.Module):
    """A custom forward with a reused activation module and a functional op in between."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.act = nn.Tanh()
        self.body = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Sequential(nn.ReLU(), nn.Flatten()))
        self.head = nn.Linear(3 * 8 * 8, 5)

    def forward(self, x):
        h = self.act(self.conv(x)) * 2.0
        h = self.act(self.body[0](h))
        h = self.body[1](h)
        return self.head(h)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x):
        return self.b(self.a(x)) + x


def test_sequential_names_and_split_exact():
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).eval()
    assert list_layers(net) == ["0", "1", "2"]
    x = torch.randn(4, 3)
    f_pre, f_post = split(net, "1")
    l = f_pre(x)
    torch.testing.assert_close(l, torch.relu(net[0](x)))
    assert torch.equal(f_post(l), net(x))


def test_shared_activation_resolved_by_order():
    net = TradesStyleSmallCNN().eval()
    x = torch.rand(2, 1, 28, 28)
    names = list_layers(net, x)
    assert "feature_extractor.relu3" in names and "classifier.relu2" in names
    f = capture(net, x, ["feature_extractor.relu1", "feature_extractor.relu3", "classifier.relu1"])
    fe = net.feature_extractor
    h1 = torch.relu(fe.conv1(x))
    torch.testing.assert_close(f["feature_extractor.relu1"], h1)
    h3 = torch.relu(fe.conv3(fe.maxpool1(torch.relu(fe.conv2(h1)))))
    torch.testing.assert_close(f["feature_extractor.relu3"], h3)
    assert f["classifier.relu1"].shape == (2, 20)
    for name in ["feature_extractor.relu2", "feature_extractor.relu4", "classifier.relu2"]:
        f_pre, f_post = split(net, name)
        assert torch.equal(f_post(f_pre(x)), net(x))


def test_custom_forward_and_repeated_calls_named_with_at():
    net = CustomForward().eval()
    x = torch.rand(2, 1, 8, 8)
    names = list_layers(net, x)
    assert "act@0" in names and "act@1" in names and "act" not in names
    assert "body.1.0" in names
    with pytest.raises(LayerNameError, match="act@0"):
        capture(net, x, ["act"])
    f = capture(net, x, ["act@0", "act@1", "body.1.0"])
    torch.testing.assert_close(f["act@0"], torch.tanh(net.conv(x)))
    for name in ["act@0", "act@1", "body.1.0", "body.1", "head"]:
        f_pre, f_post = split(net, name)
        assert torch.equal(f_post(f_pre(x)), net(x)), name


def test_layer_bypassed_by_skip_connection_is_refused():
    net = Residual().eval()
    x = torch.randn(3, 4)
    f_pre, f_post = split(net, "a")
    with pytest.raises(ValueError, match="not a cut"):
        f_post(f_pre(x))
    f_pre, f_post = split(net, "b")
    with pytest.raises(ValueError, match="not a cut"):
        f_post(f_pre(x))


def test_nested_zoo_models_split_exact_for_default_layers():
    for name, kw, shape in [("smallcnn", {}, (2, 1, 32, 32)),
                            ("vgg16", {"hidden": 16}, (1, 3, 32, 32)),
                            ("wrn-34-10", {"depth": 10, "widen": 1}, (2, 3, 32, 32))]:
        net = models.create(name, **kw).eval()
        x = torch.rand(shape)
        for layer in layers.default_layers(net):
            f_pre, f_post = split(net, layer)
            assert torch.equal(f_post(f_pre(x)), net(x)), (name, layer)


def test_unknown_name_lists_layers_and_is_keyerror_and_valueerror():
    net = models.create("smallcnn")
    with pytest.raises(LayerNameError) as e:
        split(net, "feature_extractor.conv9")
    assert isinstance(e.value, KeyError) and isinstance(e.value, ValueError)
    assert "classifier.fc1" in str(e.value)
    with pytest.raises(LayerNameError):
        capture(net, torch.rand(1, 1, 32, 32), ["classifier.fc1@3"])


def _hook_count(net):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())


def test_no_hooks_leak_and_mode_is_kept_even_on_error():
    net = models.create("smallcnn")
    net.train()
    x = torch.rand(2, 1, 32, 32)
    capture(net, x, ["classifier.fc1"])
    f_pre, f_post = split(net.eval(), "classifier.relu1")
    f_post(f_pre(x))
    list_layers(net, x)
    assert _hook_count(net) == 0 and not net.training
    net.train()
    with pytest.raises(RuntimeError):
        capture(net, torch.rand(2, 3, 32, 32), ["classifier.fc1"])  # wrong channels
    assert _hook_count(net) == 0 and net.training


def test_capture_is_differentiable_and_stops_early():
    net = models.create("smallcnn").eval()
    calls = []
    h = net.classifier.fc3.register_forward_hook(lambda *a: calls.append(1))
    x = torch.rand(2, 1, 32, 32, requires_grad=True)
    capture(net, x, ["feature_extractor.relu1"])  # first use: one full forward checks the name
    assert calls == [1]
    f = capture(net, x, ["feature_extractor.relu1"])
    f["feature_extractor.relu1"].sum().backward()
    h.remove()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert calls == [1]  # the second forward stopped before the classifier


def test_default_layers_for_unknown_model():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    assert layers.default_layers(net) == ["1", "3"]


def test_capture_inputs_of_named_calls_and_shared_modules():
    net = CustomForward().eval()
    x = torch.rand(2, 1, 8, 8)
    got = capture(net, x, ["act@0", "act@1", "head"], inputs=True)
    h0 = net.conv(x)
    torch.testing.assert_close(got["act@0"], h0)  # what the first tanh call takes
    torch.testing.assert_close(got["act@1"], net.body[0](torch.tanh(h0) * 2.0))
    outs = capture(net, x, ["body.1"])
    torch.testing.assert_close(got["head"], outs["body.1"])  # head's input = body.1's output
    trades = TradesStyleSmallCNN().eval()
    y = torch.rand(2, 1, 28, 28)
    fin = capture(trades, y, ["feature_extractor.maxpool2", "classifier.relu1"], inputs=True)
    fout = capture(trades, y, ["feature_extractor.relu4", "classifier.fc1"])
    torch.testing.assert_close(fin["feature_extractor.maxpool2"], fout["feature_extractor.relu4"])
    torch.testing.assert_close(fin["classifier.relu1"], fout["classifier.fc1"])  # 5th call of the shared ReLU
    assert _hook_count(net) == 0 and _hook_count(trades) == 0
    with pytest.raises(RuntimeError):
        capture(net, torch.rand(2, 3, 8, 8), ["head"], inputs=True)  # wrong channels
    assert _hook_count(net) == 0
