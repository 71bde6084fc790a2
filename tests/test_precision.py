"""bf16 autocast switches: resolution of "auto"/"on"/"off" and the steps that honour them."""
import pytest
import torch

from interpretgan import models, precision
from interpretgan.config import TRAIN_PRESETS, FitConfig, TrainConfig
from interpretgan.training import atta_trades_step, natural_step


@pytest.fixture
def flags(monkeypatch):
    def set_flags(*names):
        monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset(names))
    return set_flags


def test_auto_follows_the_cpu_flags(flags):
    flags("avx2", "avx512f")
    assert not precision.native_bf16("cpu")
    assert precision.use_amp("auto") is False
    flags("avx2", "avx512f", "avx512_bf16")
    assert precision.use_amp("auto") is True
    flags("amx_bf16")
    assert precision.use_amp("auto") is True


def test_on_off_and_bools_ignore_the_hardware(flags):
    flags()
    assert precision.use_amp("on") is True
    assert precision.use_amp(True) is True
    flags("avx512_bf16")
    assert precision.use_amp("off") is False
    assert precision.use_amp(False) is False


def test_unknown_setting_is_an_error():
    with pytest.raises(ValueError, match="auto"):
        precision.use_amp("fast")


def test_autocast_lowers_convs_only_when_enabled():
    conv = torch.nn.Conv2d(1, 2, 3)
    x = torch.rand(1, 1, 5, 5)
    with precision.autocast(False):
        assert conv(x).dtype == torch.float32
    with precision.autocast(True):
        assert conv(x).dtype == torch.bfloat16


def test_defaults():
    assert FitConfig().amp == "auto"
    assert TrainConfig().amp == "off"  # training presets opt in one by one
    assert TRAIN_PRESETS.get("mnist-atta-trades-quick").amp == "auto"
    assert TRAIN_PRESETS.get("mnist-atta-trades").amp == "off"


def _model():
    torch.manual_seed(0)
    net = models.create("smallcnn")
    torch.nn.init.normal_(net.classifier.fc3.weight, std=0.05)  # TRADES' init is all zeros
    return net


@pytest.mark.parametrize("amp", [False, True])
def test_natural_step_under_bf16_is_close_to_fp32(amp):
    x, y = torch.rand(16, 1, 32, 32), torch.randint(0, 10, (16,))
    ref = natural_step(_model(), torch.optim.SGD(_model().parameters(), lr=0.0), x, y)
    net = _model()
    w0 = net.classifier.fc3.weight.clone()
    out = natural_step(net, torch.optim.SGD(net.parameters(), lr=0.1), x, y, amp=amp)
    assert net.classifier.fc3.weight.dtype == torch.float32  # weights stay fp32
    assert not torch.equal(w0, net.classifier.fc3.weight)  # and were updated
    assert out["loss"] == pytest.approx(ref["loss"], abs=0.02 if amp else 1e-6)


def test_atta_step_under_bf16_keeps_the_perturbation_in_the_ball():
    net = _model()
    x, y = torch.rand(8, 1, 32, 32), torch.randint(0, 10, (8,))
    delta = 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    out, new = atta_trades_step(net, torch.optim.SGD(net.parameters(), lr=0.01), x, y, delta,
                                eps=0.3, alpha=0.1, amp=True)
    assert new.dtype == torch.float32
    assert new.abs().max() <= 0.3 + 1e-6
    assert (new.abs() > 0.05).float().mean() > 0.5  # most pixels took the step of 0.1
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
