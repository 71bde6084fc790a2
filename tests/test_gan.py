"""InterpretGAN networks and fitting: compression rule, fade-in, L_I gradient, resume."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn as nn

from interpretgan import models
from interpretgan.config import FitConfig
from interpretgan.data import ImageDataset
from interpretgan.fitting import (LayerGAN, agreement, fit_generators, gan_step, layer_dirname,
                                  load_generators, schedule)
from interpretgan.gan import (GAN_LOSSES, Compressor, Discriminator, Generator, compression_plan,
                              interpretability_loss, minibatch_std, to_classifier)
from interpretgan.layers import capture, default_layers, layer_shapes
from interpretgan.runs import load_checkpoint, read_jsonl


def test_compression_plan_reproduces_tables_4_and_5():
    mnist = {(32, 30, 30): [64, 128, 256], (32, 14, 14): [64, 128], (64, 12, 12): [128, 256],
             (64, 5, 5): [], (200,): [], (10,): []}
    for shape, plan in mnist.items():
        assert compression_plan(shape) == plan
    celeba = {(64, 64, 64): [128, 256, 512, 512], (128, 32, 32): [256, 512, 512],
              (256, 16, 16): [512, 512], (512, 8, 8): [512]}
    for shape, plan in celeba.items():
        assert compression_plan(shape) == plan


@pytest.mark.parametrize("name,kw,size", [("smallcnn", {}, 32), ("smallcnn", {"input_size": 28}, 28),
                                          ("vgg16", {"hidden": 16}, 32)])
def test_every_compression_rule_output_shape(name, kw, size):
    net = models.create(name, **kw).eval()
    x = torch.rand(3, 1 if name == "smallcnn" else 3, size, size)
    shapes = layer_shapes(net, x, default_layers(net))
    for layer, shape in shapes.items():
        c = Compressor(shape, 24, width_mult=0.25)
        out = c(torch.randn(3, *shape))
        assert out.shape == (3, 24), layer
        convs = [m for m in c.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == len(compression_plan(shape))


def test_generator_discriminator_scales_and_fade_in():
    torch.manual_seed(0)
    G, D = Generator(16, [16, 16, 8, 8], 1), Discriminator([16, 16, 8, 8], 1)
    z = torch.randn(4, 16)
    for s in range(4):
        x = G(z, s)
        assert x.shape == (4, 1, 4 * 2 ** s, 4 * 2 ** s) and 0 <= x.min() and x.max() <= 1
        assert D(x, s).shape == (4,)
    # alpha = 0: the new scale contributes nothing, the image is the previous scale upsampled
    full_prev = G(z, 1)
    faded = G(z, 2, alpha=0.0)
    torch.testing.assert_close(faded, torch.nn.functional.interpolate(full_prev, scale_factor=2))
    mid = G(z, 2, alpha=0.5)
    assert not torch.allclose(mid, faded) and not torch.allclose(mid, G(z, 2, alpha=1.0))
    # D at alpha = 0 sees only the downsampled image through the previous scale's path
    img = torch.rand(4, 1, 16, 16)
    torch.testing.assert_close(D(img, 2, alpha=0.0), D(torch.nn.functional.avg_pool2d(img, 2), 1))


def test_schedule_fade_and_warmup():
    cfg = FitConfig(steps_per_scale=(10, 10, 10, 20), fade_fraction=0.5, warmup_fraction=0.2)
    assert schedule(cfg, 0) == schedule(cfg, 0) and schedule(cfg, 0).scale == 0
    assert schedule(cfg, 0).alpha == 1.0 and schedule(cfg, 9).warmup and not schedule(cfg, 10).warmup
    p = schedule(cfg, 10)
    assert p.scale == 1 and p.alpha == pytest.approx(0.2)
    assert schedule(cfg, 14).alpha == 1.0 and schedule(cfg, 30).scale == 3
    assert schedule(cfg, 49).scale == 3 and schedule(cfg, 49).alpha == 1.0


def test_minibatch_std_channel():
    x = torch.zeros(4, 2, 3, 3)
    x[0] = 1.0
    out = minibatch_std(x, group=4)
    assert out.shape == (4, 3, 3, 3)
    assert torch.allclose(out[:, 2], torch.full((4, 3, 3), (0.75 * 0.25) ** 0.5, dtype=out.dtype), atol=1e-3)


def test_interpretability_gradient_reaches_g_and_c_not_f():
    f = models.create("smallcnn").eval()
    nn.init.normal_(f.classifier.fc3.weight, std=0.1)  # TRADES' init zeroes it: no input gradient
    for p in f.parameters():
        p.requires_grad_(False)
    cfg = FitConfig(code_dim=8, g_channels=(8, 8, 8, 8), d_channels=(8, 8, 8, 8), c_width_mult=0.25)
    lg = LayerGAN("classifier.relu1", (200,), 1, cfg)
    x_hat = to_classifier(lg.explain(torch.randn(4, 200), scale=2), 32)
    assert x_hat.shape == (4, 1, 32, 32)
    interpretability_loss(f, x_hat, torch.tensor([1, 2, 3, 4])).backward()
    assert lg.G.fc.weight.grad.abs().sum() > 0 and lg.C.net[-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in lg.D.parameters())
    assert all(p.grad is None for p in f.parameters())


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("loss", GAN_LOSSES.names())
def test_gan_step_updates_and_reports(loss, amp):
    torch.manual_seed(0)
    f = models.create("smallcnn").eval()
    for p in f.parameters():
        p.requires_grad_(False)
    cfg = FitConfig(code_dim=8, g_channels=(8, 8, 8, 8), d_channels=(8, 8, 8, 8), gan_loss=loss)
    lg = LayerGAN("classifier.fc3", (10,), 1, cfg)
    opt_g = torch.optim.Adam([*lg.G.parameters(), *lg.C.parameters()], lr=1e-3)
    opt_d = torch.optim.Adam(lg.D.parameters(), lr=1e-3)
    d_before = [p.clone() for p in lg.D.parameters()]
    phase = schedule(dataclasses.replace(cfg, steps_per_scale=(1, 1, 1, 1), warmup_fraction=0), 3)
    out = gan_step({"fc3": lg}, f, GAN_LOSSES.get(loss)(), {"fc3": (opt_g, opt_d)}, {"fc3": torch.randn(6, 10)},
                   torch.rand(6, 1, 32, 32), torch.arange(6), phase, 1.0, 32, amp=amp)["fc3"]
    assert {"d_loss", "g_loss", "l_i"} <= set(out)
    assert all(math.isfinite(v) for v in out.values())
    assert all(p.dtype == torch.float32 for p in lg.parameters())  # bf16 only inside autocast
    assert any(not torch.equal(a, b) for a, b in zip(d_before, lg.D.parameters()))
    # in warm-up, D is not updated and there is no GAN term
    d_before = [p.clone() for p in lg.D.parameters()]
    warm = dataclasses.replace(phase, warmup=True)
    out = gan_step({"fc3": lg}, f, GAN_LOSSES.get(loss)(), {"fc3": (opt_g, opt_d)}, {"fc3": torch.randn(6, 10)},
                   torch.rand(6, 1, 32, 32), torch.arange(6), warm, 1.0, 32, amp=amp)["fc3"]
    assert set(out) == {"l_i"} and all(torch.equal(a, b) for a, b in zip(d_before, lg.D.parameters()))


def _toy_data(n=256):
    """Class c: a bright bar at rows 3c..3c+2; a classifier for it trains in a second."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 10
    x = (torch.rand(n, 1, 32, 32, generator=g) * 40).to(torch.uint8)
    for i, c in enumerate(y):
        x[i, 0, 3 * c + 1: 3 * c + 4, 4:28] = 255
    return ImageDataset(x, y)


@pytest.fixture(scope="module")
def toy():
    from interpretgan.data import batches
    from interpretgan.training import natural_step

    torch.manual_seed(0)
    ds = _toy_data()
    f = models.create("smallcnn")
    opt = torch.optim.SGD(f.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(6):
        for x, y in batches(ds, 32, shuffle=True, epoch=epoch):
            natural_step(f, opt, x, y)
    f.eval()
    ex = ds.images[:64].float() / 255
    assert (f(ex).argmax(1) == ds.labels[:64]).float().mean() > 0.9
    return f, ds, ex


TINY = FitConfig(code_dim=16, g_channels=(16, 16, 8, 8), d_channels=(16, 16, 8, 8), c_width_mult=0.25,
                 steps_per_scale=(4, 4, 4, 12), batch_size=16, ckpt_every=5, warmup_fraction=0.25)
LAYERS = ["feature_extractor.pool2", "classifier.fc3"]


def test_fit_writes_checkpoints_per_layer_and_scale(toy, tmp_path):
    f, ds, ex = toy
    gans = fit_generators(f, ds, ex, TINY, tmp_path / "fit", LAYERS, progress=False, log_every=4)
    for n in LAYERS:
        d = tmp_path / "fit" / layer_dirname(n)
        assert sorted(p.name for p in d.glob("scale*.pt")) == ["scale0.pt", "scale1.pt", "scale2.pt", "scale3.pt"]
        assert load_checkpoint(d / "last.pt")["step"] == 24
    rows = read_jsonl(tmp_path / "fit" / "metrics.jsonl")
    assert rows[-1]["step"] == 24 and "classifier.fc3/agreement200" in rows[-1]
    back = load_generators(tmp_path / "fit")
    x = torch.randn(2, 10)
    torch.testing.assert_close(back["classifier.fc3"].explain(x), gans["classifier.fc3"].eval().explain(x))
    a = agreement(f, back, ex, 32)
    assert set(a) == set(LAYERS) and all(0 <= v <= 1 for v in a.values())
    # f stays frozen and in eval mode
    assert not f.training and all(not p.requires_grad for p in f.parameters())


def test_resume_mid_scale_matches_uninterrupted(toy, tmp_path):
    f, ds, ex = toy
    full = fit_generators(f, ds, ex, TINY, tmp_path / "a", LAYERS, progress=False)
    fit_generators(f, ds, ex, TINY, tmp_path / "b", LAYERS, progress=False, stop_after=14)  # mid scale 3
    assert load_checkpoint(tmp_path / "b" / layer_dirname(LAYERS[0]) / "last.pt")["step"] == 14
    resumed = fit_generators(f, ds, ex, TINY, tmp_path / "b", LAYERS, progress=False)
    for n in LAYERS:
        for (k, a), b in zip(full[n].state_dict().items(), resumed[n].state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{n} {k}")


def test_fit_on_a_28px_classifier_resizes():
    torch.manual_seed(0)
    f = models.create("smallcnn", input_size=28).eval()
    ds = ImageDataset((torch.rand(32, 1, 28, 28) * 255).to(torch.uint8), torch.arange(32) % 10)
    cfg = dataclasses.replace(TINY, steps_per_scale=(1, 1, 1, 2))
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        gans = fit_generators(f, ds, ds.images[:8].float() / 255, cfg, d, ["classifier.fc3"], progress=False)
    assert set(agreement(f, gans, ds.images[:8].float() / 255, 28)) == {"classifier.fc3"}


def test_lazy_r1_every_k_steps():
    torch.manual_seed(0)
    D = Discriminator([8, 8], 1)
    loss = GAN_LOSSES.get("ns-r1")()
    real, fake = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    with_r1 = [("r1" in loss.d_loss(D, real, fake, 1, 1.0, step)[1]) for step in range(8)]
    assert with_r1 == [True, False, False, False, True, False, False, False]
    total, stats = loss.d_loss(D, real, fake, 1, 1.0, 0)
    assert total.item() == pytest.approx(stats["d_loss"] + 0.5 * 1.0 * 4 * stats["r1"], rel=1e-5)


def test_fit_run_writes_summary_with_agreement_and_kid(mnist_small, session_cache, tmp_path, monkeypatch):
    from interpretgan.config import DataConfig, TrainConfig
    from interpretgan.fitting import fit_run
    from interpretgan.runs import read_json
    from interpretgan.training import train_classifier

    monkeypatch.setenv("INTERPRETGAN_CACHE", str(session_cache))
    tc = TrainConfig(data=DataConfig(train_subset=256, test_subset=100), epochs=1, batch_size=64,
                     lr_milestones=())
    train_classifier(tc, tmp_path / "clf", progress=False)
    cfg = dataclasses.replace(TINY, steps_per_scale=(1, 1, 1, 3), train_subset=128, eval_images=40)
    summary = fit_run(tmp_path / "clf" / "checkpoints" / "final.pt", tmp_path / "clf", cfg,
                      layers=["classifier.fc3"], progress=False)
    saved = read_json(tmp_path / "clf" / "fit" / "summary.json")
    row = saved["layers"]["classifier.fc3"]
    assert 0 <= row["agreement"] <= 1 and row["kid"] > saved["kid_real_vs_real"]
    assert summary["n_eval"] == 40 and (session_cache / "feature-nets" / "mnist-32-10k.pt").exists()


def test_ema_tracks_live_weights_and_serves_explanations_in_eval_mode():
    torch.manual_seed(0)
    f = models.create("smallcnn").eval()
    for p in f.parameters():
        p.requires_grad_(False)
    torch.nn.init.normal_(f.classifier.fc3.weight)  # TRADES initialises it to 0: no gradient
    cfg = FitConfig(code_dim=8, g_channels=(8, 8, 8, 8), d_channels=(8, 8, 8, 8), ema_beta=0.9)
    lg = LayerGAN("classifier.fc3", (10,), 1, cfg)
    init = [p.clone() for p in lg.G.parameters()]
    opt_g = torch.optim.Adam([*lg.G.parameters(), *lg.C.parameters()], lr=1e-2)
    opt_d = torch.optim.Adam(lg.D.parameters(), lr=1e-3)
    phase = schedule(dataclasses.replace(cfg, steps_per_scale=(1, 1, 1, 1), warmup_fraction=1.0), 3)
    l = torch.randn(6, 10)
    gan_step({"fc3": lg.train()}, f, GAN_LOSSES.get("ns-r1")(), {"fc3": (opt_g, opt_d)}, {"fc3": l},
             torch.rand(6, 1, 32, 32), torch.arange(6), phase, 1.0, 32)
    # one step: ema = 0.9·init + 0.1·live, worked out per parameter
    assert any(not torch.equal(p0, p) for p0, p in zip(init, lg.G.parameters()))
    for e, p0, p in zip(lg.ema["G"].parameters(), init, lg.G.parameters()):
        torch.testing.assert_close(e, 0.9 * p0 + 0.1 * p)
    assert not any(p.requires_grad for p in lg.ema.parameters())
    with torch.no_grad():
        live = lg.explain(l, 3, use_ema=False)
        avg = lg.explain(l, 3, use_ema=True)
        assert not torch.equal(live, avg)
        torch.testing.assert_close(lg.train().explain(l, 3), live)  # training: live weights
        torch.testing.assert_close(lg.eval().explain(l, 3), avg)  # eval: the average
    off = LayerGAN("classifier.fc3", (10,), 1, dataclasses.replace(cfg, ema_beta=0.0))
    assert off.ema is None
    off.update_ema()  # a no-op


@pytest.mark.parametrize("loss", GAN_LOSSES.names())
def test_joint_step_over_layers_equals_separate_steps(loss):
    """All layers' explanations share one classifier batch; each layer's update is unchanged."""
    torch.manual_seed(0)
    f = models.create("smallcnn").eval()
    torch.nn.init.normal_(f.classifier.fc3.weight, std=0.1)
    for p in f.parameters():
        p.requires_grad_(False)
    cfg = FitConfig(code_dim=8, g_channels=(8, 8, 8, 8), d_channels=(8, 8, 8, 8), c_width_mult=0.25,
                    gan_loss=loss)
    x, target = torch.rand(6, 1, 32, 32), torch.arange(6)
    names = ["feature_extractor.pool2", "classifier.fc3"]
    feats = capture(f, x, names)
    phase = schedule(dataclasses.replace(cfg, steps_per_scale=(1, 1, 1, 1), warmup_fraction=0), 3)

    def build():
        torch.manual_seed(1)
        gans = {n: LayerGAN(n, feats[n].shape[1:], 1, cfg).train() for n in names}
        # SGD: Adam's first step is ≈ lr·sign(grad), which would magnify rounding differences
        opts = {n: (torch.optim.SGD([*g.G.parameters(), *g.C.parameters()], lr=0.1),
                    torch.optim.SGD(g.D.parameters(), lr=0.1)) for n, g in gans.items()}
        return gans, opts

    joint, jopts = build()
    torch.manual_seed(2)  # WGAN-GP draws its interpolation weights
    out = gan_step(joint, f, GAN_LOSSES.get(loss)(), jopts, feats, x, target, phase, 1.0, 32)
    alone, aopts = build()
    torch.manual_seed(2)
    outs = {n: gan_step({n: alone[n]}, f, GAN_LOSSES.get(loss)(), aopts, feats, x, target, phase, 1.0, 32)[n]
            for n in names}
    for n in names:
        assert out[n] == pytest.approx(outs[n], rel=1e-4)
        for a, b in zip(joint[n].parameters(), alone[n].parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_progress_bar_shows_mean_losses_and_agreement_per_layer():
    from interpretgan.fitting import _postfix

    sums = {"feature_extractor.relu1": {"l_i": 2.0, "g_loss": 1.0, "d_loss": 3.0},
            "classifier.fc3": {"l_i": 4.0}}  # fc3 still warming up: no GAN terms
    out = _postfix(sums, 2, {"feature_extractor.relu1": 0.5, "classifier.fc3": 0.875})
    # L_I: mean over layers of (sum / steps) = (1.0 + 2.0) / 2; G and D only from relu1
    assert out == {"L_I": "1.500", "G": "0.500", "D": "1.500", "relu1": "0.50", "fc3": "0.88"}
