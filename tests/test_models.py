"""Model zoo: shapes for every registered model × pool, TRADES keys, checkpoint errors."""
from __future__ import annotations

import pytest
import torch

from interpretgan import models
from interpretgan.layers import capture, default_layers
from interpretgan.runs import save_checkpoint

# Small-but-real configurations so the whole registry is tested quickly.
SMALL = {
    "smallcnn": [dict(input_size=32), dict(input_size=28)],
    "vgg16": [dict(input_size=32, hidden=64), dict(input_size=128, hidden=32, num_classes=2)],
    "wrn-34-10": [dict(depth=10, widen=1)],
}


def _inputs(name, kw):
    c = 1 if name == "smallcnn" else 3
    s = kw.get("input_size", 32)
    return torch.rand(2, c, s, s)


def test_every_registered_model_has_a_test_config():
    assert set(models.list_models()) == set(SMALL)


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("name", models.list_models())
def test_shapes_and_pooling(name, pool):
    for kw in SMALL[name]:
        net = models.create(name, pool=pool, **kw).eval()
        x = _inputs(name, kw)
        out = net(x)
        assert out.shape == (2, kw.get("num_classes", 10))
        kinds = {type(m) for m in net.modules()}
        want = torch.nn.MaxPool2d if pool == "max" else torch.nn.AvgPool2d
        if name == "wrn-34-10":
            want = torch.nn.AdaptiveMaxPool2d if pool == "max" else torch.nn.AdaptiveAvgPool2d
        assert want in kinds
        other = {torch.nn.MaxPool2d: torch.nn.AvgPool2d, torch.nn.AvgPool2d: torch.nn.MaxPool2d,
                 torch.nn.AdaptiveMaxPool2d: torch.nn.AdaptiveAvgPool2d,
                 torch.nn.AdaptiveAvgPool2d: torch.nn.AdaptiveMaxPool2d}[want]
        assert other not in kinds
        feats = capture(net, x, default_layers(net))
        assert len(feats) == len(net.default_layers)


def test_full_size_wrn_34_10_parameter_count():
    net = models.create("wrn-34-10")
    n = sum(p.numel() for p in net.parameters())
    assert 46_000_000 < n < 46_300_000  # WRN-34-10 has 46.16M parameters


def test_smallcnn_layer_shapes_32_and_28():
    for size, side in [(32, 5), (28, 4)]:
        net = models.create("smallcnn", input_size=size).eval()
        f = capture(net, torch.rand(1, 1, size, size), ["feature_extractor.pool2", "classifier.fc1"])
        assert f["feature_extractor.pool2"].shape == (1, 64, side, side)
        assert net.classifier.fc1.in_features == 64 * side * side


def test_avg_pool_is_really_average():
    net = models.create("smallcnn", pool="avg").eval()
    x = torch.rand(1, 1, 32, 32)
    f = capture(net, x, ["feature_extractor.relu2", "feature_extractor.pool1"])
    a = f["feature_extractor.relu2"]
    torch.testing.assert_close(f["feature_extractor.pool1"][0, :, 0, 0], a[0, :, :2, :2].mean((1, 2)))


TRADES_SMALLCNN_KEYS = [
    "feature_extractor.conv1.weight", "feature_extractor.conv1.bias",
    "feature_extractor.conv2.weight", "feature_extractor.conv2.bias",
    "feature_extractor.conv3.weight", "feature_extractor.conv3.bias",
    "feature_extractor.conv4.weight", "feature_extractor.conv4.bias",
    "classifier.fc1.weight", "classifier.fc1.bias", "classifier.fc2.weight", "classifier.fc2.bias",
    "classifier.fc3.weight", "classifier.fc3.bias",
]


def _trades_state_dict(side=4):
    shapes = [(32, 1, 3, 3), (32,), (32, 32, 3, 3), (32,), (64, 32, 3, 3), (64,), (64, 64, 3, 3), (64,),
              (200, 64 * side * side), (200,), (200, 200), (200,), (10, 200), (10,)]
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(s, generator=g) * 0.05 for k, s in zip(TRADES_SMALLCNN_KEYS, shapes)}


def test_state_dict_keys_match_trades():
    assert list(models.create("smallcnn").state_dict()) == TRADES_SMALLCNN_KEYS


def test_load_bare_trades_state_dict(tmp_path):
    sd = _trades_state_dict()
    p = tmp_path / "model-nn-epoch100.pt"
    torch.save({f"module.{k}": v for k, v in sd.items()}, p)  # DataParallel prefix too
    net = models.load_classifier(p, "smallcnn", input_size=28)
    assert not net.training
    torch.testing.assert_close(net.classifier.fc1.weight, sd["classifier.fc1.weight"])
    with pytest.raises(models.CheckpointMismatchError, match="classifier.fc1.weight"):
        models.load_classifier(p, "smallcnn", input_size=32)
    with pytest.raises(ValueError, match="bare state_dict"):
        models.load_classifier(p)


def test_our_checkpoint_roundtrip_and_wrong_architecture(tmp_path):
    net = models.create("smallcnn", pool="avg")
    p = save_checkpoint(tmp_path / "c.pt", models.classifier_state(net))
    back = models.load_classifier(p)
    assert back.model_kwargs == {"pool": "avg"} and isinstance(back.feature_extractor.pool1, torch.nn.AvgPool2d)
    x = torch.rand(3, 1, 32, 32)
    torch.testing.assert_close(back(x), net.eval()(x))
    with pytest.raises(models.CheckpointMismatchError, match="holds a smallcnn"):
        models.load_classifier(p, "vgg16")
    v = models.create("vgg16", hidden=16)
    with pytest.raises(models.CheckpointMismatchError, match="does not fit vgg16"):
        models.load_state_dict_strict(v, net.state_dict())


def test_unknown_model_and_pool():
    with pytest.raises(KeyError, match="known: smallcnn"):
        models.create("resnet9000")
    with pytest.raises(ValueError, match="pool"):
        models.create("smallcnn", pool="median")


def test_normalisation_lives_inside_the_model():
    net = models.create("vgg16", hidden=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).eval()
    x = torch.full((1, 3, 32, 32), 0.5)
    f = capture(net, x, ["normalize"])
    assert f["normalize"].abs().max() == 0


@pytest.mark.parametrize("name", models.list_models())
def test_fast_layout_same_function_and_layout_neutral_checkpoints(name, tmp_path):
    """Channels-last weights (CPU) change speed, not results; checkpoints stay contiguous."""
    torch.manual_seed(0)
    kw = SMALL[name][0]
    net = models.create(name, **kw).eval()
    x = _inputs(name, kw)
    ref = net(x)
    models.fast_layout(net)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    torch.testing.assert_close(net(x), ref, rtol=1e-4, atol=1e-5)
    state = models.classifier_state(net)["state_dict"]
    assert all(v.is_contiguous() for v in state.values())
    p = save_checkpoint(tmp_path / "c.pt", models.classifier_state(net))
    loaded = models.load_classifier(p)
    assert loaded is not net and not loaded.training
    torch.testing.assert_close(loaded(x), ref, rtol=1e-4, atol=1e-5)
    assert models.fast_layout(torch.nn.Linear(2, 2), "cpu").weight.is_contiguous()


def test_select_output_reads_tuples_dicts_and_attributes_in_place():
    from types import SimpleNamespace

    from interpretgan.models import output_selection, read_output, select_output

    t = torch.randn(2, 3)
    assert read_output(t) == (t, None)
    assert read_output((t, 1))[1] == "[0]" and read_output({"logits": t})[1] == "logits"
    assert read_output(SimpleNamespace(logits=t))[1] == "logits"
    assert read_output((1, t), "1")[1] == "[1]" and read_output({"s": t}, "s")[1] == "s"
    for out, sel, words in [((t,), "[3]", "does not exist"), ({"a": t}, "b", "keys a"),
                            (t, "0", "leave --output out"), ({"a": t}, None, "--output"),
                            ({"a": [t]}, "a", "not a tensor")]:
        with pytest.raises(ValueError, match=words):
            read_output(out, sel)

    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x), x

    net = Pair()
    keys = list(net.state_dict())
    x = torch.randn(2, 4)
    assert select_output(net, "[0]") is net and torch.equal(net(x), net.fc(x))
    assert list(net.state_dict()) == keys and output_selection(net) == {"selector": "[0]", "auto": False}
    assert output_selection(Pair()) == {"selector": None, "auto": False}
    with pytest.raises(ValueError, match="once"):
        select_output(net, "[0]")
