"""Hidden-layer contract: naming, tapping, f_pre/f_post split, no leaked hooks or modes."""
from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path

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


# --------------------------------------------------------------------------- in-place modules
class ConvReLU(nn.Module):
    """torchvision style: a conv whose output an in-place ReLU rewrites at once."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True),
                                      nn.Conv2d(4, 4, 3), nn.ReLU(inplace=True))
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def _example(name: str):
    """A module of examples/ (its models are the ones users start from)."""
    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# torchvision's ResNet block: conv → BN → ReLU(inplace) → conv → BN, ``out += identity``, the
# same in-place ReLU again
BasicBlock = _example("inplace_cnn").Residual


class TinyResNet(nn.Module):
    """Stem conv → BN → ReLU(inplace), one residual block, global pooling, a linear head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4),
                                  nn.ReLU(inplace=True))
        self.block = BasicBlock(4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.pool(self.block(self.stem(x))).flatten(1))


def _random_bn(net: nn.Module) -> nn.Module:
    """Non-trivial BN statistics (negative outputs for the ReLUs to rewrite), eval mode."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net.eval()


def _resnet_truth(net: TinyResNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every module's output (and the ReLUs' inputs) computed alone, step by step, out of place."""
    s, b = net.stem, net.block
    t = {"stem.0": s[0](x)}
    t["stem.1"] = s[1](t["stem.0"])
    t["stem.2"] = torch.relu(t["stem.1"])
    t["block.conv1"] = b.conv1(t["stem.2"])
    t["block.bn1"] = b.bn1(t["block.conv1"])
    t["block.relu@0"] = torch.relu(t["block.bn1"])
    t["block.conv2"] = b.conv2(t["block.relu@0"])
    t["block.bn2"] = b.bn2(t["block.conv2"])
    t["block.relu@1"] = t["block"] = torch.relu(t["block.bn2"] + t["stem.2"])
    return t


def test_in_place_relu_never_changes_a_captured_conv_output():
    net = ConvReLU().eval()
    x = torch.rand(2, 1, 8, 8)
    conv0 = net.features[0](x)  # the conv's own output, computed alone
    assert (conv0 < 0).any()  # there is something for the ReLU to rewrite
    conv2 = net.features[2](torch.relu(conv0))
    for names in (["features.0"], ["features.0"], ["features.0", "features.2"],
                  ["features.0", "head"], ["features.2", "features.0", "features.3"]):
        got = capture(net, x, names)  # alone (verified on a full forward), again, with later layers
        torch.testing.assert_close(got["features.0"], conv0, msg=str(names))
        if "features.2" in names:
            torch.testing.assert_close(got["features.2"], conv2, msg=str(names))
    # what the in-place ReLU takes is the conv's output, not its own result
    got = capture(net, x, ["features.1", "features.3"], inputs=True)
    torch.testing.assert_close(got["features.1"], conv0)
    torch.testing.assert_close(got["features.3"], conv2)


@pytest.mark.parametrize("names", [
    ["stem.0"], ["stem.1"], ["block.bn2"], ["block.conv1", "block.bn1"],
    ["stem.0", "stem.1", "stem.2", "block.bn1", "block.bn2", "block", "fc"],
    ["block.relu@0", "block.relu@1", "stem.1"]])
def test_every_call_shape_gives_the_true_outputs_of_a_residual_in_place_net(names):
    net = _random_bn(TinyResNet())
    x = torch.rand(3, 1, 6, 6)
    truth = _resnet_truth(net, x)
    for _ in range(2):  # first use (one full forward checks the names), then stopping early
        got = capture(net, x, names)
        for n in names:
            if n in truth:
                torch.testing.assert_close(got[n], truth[n], msg=n)
    got = capture(net, x, ["stem.2", "block.relu@0", "block.relu@1"], inputs=True)
    torch.testing.assert_close(got["stem.2"], truth["stem.1"])
    torch.testing.assert_close(got["block.relu@0"], truth["block.bn1"])
    torch.testing.assert_close(got["block.relu@1"], truth["block.bn2"] + truth["stem.2"])


def test_capture_of_an_in_place_net_is_differentiable_with_respect_to_x():
    net = _random_bn(TinyResNet())
    x = torch.rand(2, 1, 6, 6, requires_grad=True)
    got = capture(net, x, ["stem.1", "block.bn2"])
    (got["stem.1"].sum() + got["block.bn2"].sum()).backward()
    x2 = x.detach().clone().requires_grad_()
    truth = _resnet_truth(net, x2)
    (truth["stem.1"].sum() + truth["block.bn2"].sum()).backward()
    torch.testing.assert_close(x.grad, x2.grad)


@pytest.mark.parametrize("name", ["features.0", "features.2"])
def test_f_post_never_modifies_its_argument_and_passes_gradients(name):
    net = ConvReLU().eval()
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    f_pre, f_post = split(net, name)
    l = f_pre(x)
    kept = l.detach().clone()
    assert (kept < 0).any()
    torch.testing.assert_close(f_post(l), net(x))
    assert torch.equal(l.detach(), kept)  # the in-place ReLU after the layer worked on a copy
    leaf = kept.clone().requires_grad_()  # a leaf: an in-place op on it would be refused
    f_post(leaf).sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0 and torch.equal(leaf.detach(), kept)
    f_post(f_pre(x)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_split_of_a_residual_in_place_net():
    net = _random_bn(TinyResNet())
    x = torch.rand(2, 1, 6, 6)
    for name in ["stem.0", "stem.1", "stem.2", "block"]:
        f_pre, f_post = split(net, name)
        l = f_pre(x)
        kept = l.clone()
        torch.testing.assert_close(l, _resnet_truth(net, x)[name])
        torch.testing.assert_close(f_post(l), net(x))
        assert torch.equal(l, kept), name
    f_pre, f_post = split(net, "block.bn2")  # the identity path bypasses it
    with pytest.raises(ValueError, match="not a cut"):
        f_post(f_pre(x))


# --------------------------------------------------------------------------- tuple outputs
class SelfAttention(nn.Module):
    """Tokens (B, 5, 4) → embedding → the same ``nn.MultiheadAttention`` twice → linear head."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8 * 5, 3)

    def forward(self, x):
        h = self.embed(x)
        h = self.attn(h, h, h)[0]
        h = self.attn(h, h, h)[0]
        return self.head(h.flatten(1))


def test_tuple_outputs_are_named_by_element_and_composed_with_calls():
    net = SelfAttention().eval()
    x = torch.rand(2, 5, 4)
    names = list_layers(net, x)
    assert {"attn@0[0]", "attn@0[1]", "attn@1[0]", "attn@1[1]"} <= set(names)
    assert not any(n in names for n in ("attn", "attn@0", "attn@1"))
    h = net.embed(x)
    a0 = net.attn(h, h, h)[0]
    a1 = net.attn(a0, a0, a0)
    for _ in range(2):
        got = capture(net, x, ["attn@0[0]", "attn@1[0]", "attn@1[1]"])
        torch.testing.assert_close(got["attn@0[0]"], a0)
        torch.testing.assert_close(got["attn@1[0]"], a1[0])
        torch.testing.assert_close(got["attn@1[1]"], a1[1])
    assert layers.layer_shapes(net, x, ["attn@1[0]", "attn@1[1]"]) == {"attn@1[0]": (5, 8),
                                                                         "attn@1[1]": (5, 5)}
    for name in ["attn@0[0]", "attn@1[0]"]:
        f_pre, f_post = split(net, name)
        l = f_pre(x)
        kept = l.clone()
        torch.testing.assert_close(f_post(l), net(x))  # only that element substituted
        assert torch.equal(l, kept)
    got = capture(net, x, ["attn@0[2]"], inputs=True)  # its third positional input: the values
    torch.testing.assert_close(got["attn@0[2]"], h)


def test_a_tuple_output_named_without_an_element_is_one_line_naming_the_form():
    net = SelfAttention().eval()
    x = torch.rand(2, 5, 4)
    with pytest.raises(LayerNameError, match=r"'attn@0\[0\]'") as e:
        capture(net, x, ["attn@0"])
    assert "\n" not in str(e.value)
    with pytest.raises(LayerNameError, match="attn@0\\[0\\]' … 'attn@1\\[0\\]"):
        capture(net, x, ["attn[0]"])  # called twice: name a call
    with pytest.raises(LayerNameError, match="no element"):
        capture(net, x, ["attn@0[5]"])
    with pytest.raises(LayerNameError, match="no element"):
        capture(net, x, ["embed[0]"])  # a tensor output has no elements
    with pytest.raises(LayerNameError, match="nameable layers"):
        capture(net, x, ["attn@0[x]"])
    assert _hook_count(net) == 0
