"""InterpretGAN networks and fitting: compression rule, fade-in, L_I gradient, resume."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn as nn

from interpretgan import models
from interpretgan.config import FIT_PRESETS, FitConfig
from interpretgan.data import ImageDataset
from interpretgan.fitting import (GanBank, LayerGAN, agreement, fit_generators, gan_step, layer_dirname,
                                  load_generators, make_optimizers, schedule, split_member, warmup_steps)
from interpretgan.gan import (GAN_LOSSES, Compressor, Discriminator, Generator, compression_plan,
                              interpretability_loss, member_of, minibatch_std, stack_members,
                              to_classifier)
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


TABLE4 = {"feature_extractor.relu1": [64, 128, 256], "feature_extractor.pool1": [64, 128],
          "feature_extractor.relu3": [128, 256], "feature_extractor.pool2": [],
          "classifier.relu1": [], "classifier.relu2": [], "classifier.fc3": []}


@pytest.mark.parametrize("run_preset", ["quick", "paper"])
def test_fit_builds_table4_compressors(run_preset, toy, tmp_path):
    """The compression networks the MNIST run presets' fit builds and saves have Table 4's
    conv widths on the SmallCNN's seven default layers (every generator seed)."""
    from interpretgan.config import RUN_PRESETS, resolve_run

    f, ds, ex = toy
    # the preset's compression settings (code size, width multiplier, small-map rule) as they
    # are; G and D made narrow and the floor off, which C's widths do not depend on
    cfg = dataclasses.replace(resolve_run(RUN_PRESETS.get(run_preset)).fit, steps_per_scale=(1, 1, 1, 1),
                              batch_size=4, ckpt_every=1, train_subset=None, g_channels=(8, 8, 8, 8),
                              d_channels=(8, 8, 8, 8), min_agreement=0.0)
    fit_generators(f, ds, ex[:8], cfg, tmp_path / "fit", progress=False)
    saved = load_generators(tmp_path / "fit")
    assert len(saved) == len(TABLE4) * len(cfg.generator_seeds)
    for key, bank in saved.items():
        (c,) = bank.Cs
        widths = [m.out_channels for m in c.modules() if isinstance(m, nn.Conv2d)]
        assert widths == TABLE4[split_member(key)[0]], key


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
    z = torch.randn(1, 4, 16)  # (members, batch, code)
    for s in range(4):
        x = G(z, s)
        assert x.shape == (1, 4, 1, 4 * 2 ** s, 4 * 2 ** s) and 0 <= x.min() and x.max() <= 1
        assert D(x, s).shape == (1, 4)
    # alpha = 0: the new scale contributes nothing, the image is the previous scale upsampled
    full_prev = G(z, 1)
    faded = G(z, 2, alpha=0.0)
    torch.testing.assert_close(faded[0], torch.nn.functional.interpolate(full_prev[0], scale_factor=2))
    mid = G(z, 2, alpha=0.5)
    assert not torch.allclose(mid, faded) and not torch.allclose(mid, G(z, 2, alpha=1.0))
    # D at alpha = 0 sees only the downsampled image through the previous scale's path
    img = torch.rand(1, 4, 1, 16, 16)
    torch.testing.assert_close(D(img, 2, alpha=0.0), D(torch.nn.functional.avg_pool2d(img[0], 2)[None], 1))


@pytest.mark.parametrize("channels", [1, 3])
def test_stacked_members_compute_what_each_member_alone_computes(channels):
    """A stack of M generators / discriminators is M independent networks, run as one."""
    torch.manual_seed(0)
    make_g = lambda m: Generator(16, [16, 8, 8], channels, members=m)  # noqa: E731
    make_d = lambda m: Discriminator([16, 8, 8], channels, members=m)  # noqa: E731
    gs, ds = [make_g(1) for _ in range(3)], [make_d(1) for _ in range(3)]
    G, D = stack_members(make_g, gs), stack_members(make_d, ds)
    z = torch.randn(3, 5, 16)
    for scale, alpha in ((0, 1.0), (2, 0.3), (2, 1.0)):
        x = G(z, scale, alpha)
        assert x.shape == (3, 5, channels, 4 * 2 ** scale, 4 * 2 ** scale)
        scores = D(x, scale, alpha)
        for i in range(3):
            torch.testing.assert_close(x[i], gs[i](z[i: i + 1], scale, alpha)[0], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(scores[i], ds[i](x[i: i + 1], scale, alpha)[0], rtol=1e-5, atol=1e-5)
    one = member_of(make_g, G, 1)
    torch.testing.assert_close(one(z[1:2]), gs[1](z[1:2]))


def test_bank_members_do_not_depend_on_their_neighbours():
    cfg = FitConfig(code_dim=8, g_channels=(8, 8), d_channels=(8, 8), c_width_mult=0.25)
    a, b = ("feature_extractor.pool2", (64, 5, 5)), ("classifier.fc3", (10,))
    both = GanBank.build([a, b], 1, cfg).eval()
    alone = GanBank.build([b], 1, cfg).eval()
    l2, l3 = torch.randn(4, 64, 5, 5), torch.randn(4, 10)
    with torch.no_grad():
        torch.testing.assert_close(both.explain_all([l2, l3])[1], alone.explain(l3))
        torch.testing.assert_close(both.member(1).explain(l3), alone.explain(l3))
    for k, v in both.member(1).state_dict().items():
        torch.testing.assert_close(v, alone.state_dict()[k], msg=k)


def test_schedule_fade_and_warmup():
    cfg = FitConfig(steps_per_scale=(10, 10, 10, 20), fade_fraction=0.5, warmup_fraction=0.2,
                    warmup_each_scale=False)
    assert schedule(cfg, 0) == schedule(cfg, 0) and schedule(cfg, 0).scale == 0
    assert schedule(cfg, 0).alpha == 1.0 and schedule(cfg, 9).warmup and not schedule(cfg, 10).warmup
    p = schedule(cfg, 10)
    assert p.scale == 1 and p.alpha == pytest.approx(0.2)
    assert schedule(cfg, 14).alpha == 1.0 and schedule(cfg, 30).scale == 3
    assert schedule(cfg, 49).scale == 3 and schedule(cfg, 49).alpha == 1.0


def test_schedule_warmup_inside_each_scale():
    cfg = FitConfig(steps_per_scale=(10, 10, 10, 20), warmup_fraction=0.2)
    warm = [schedule(cfg, k).warmup for k in range(50)]
    assert warm == [k % 10 < 2 if k < 30 else k < 34 for k in range(50)]


@pytest.mark.parametrize("preset", ["quick", "paper", "celeba", "celeba-paper"])
def test_presets_train_d_at_every_scale(preset):
    """Progressive growing (Sec. 3.2): every scale gets D updates, not the last scale alone."""
    cfg = FIT_PRESETS.get(preset)
    total = sum(cfg.steps_per_scale)
    gan_scales = {p.scale for p in (schedule(cfg, k) for k in range(0, total, 1 if total < 5000 else 7))
                  if not p.warmup}
    assert gan_scales == set(range(len(cfg.steps_per_scale)))


@pytest.mark.parametrize("each", [True, False])
def test_warmup_steps_count_the_schedule(each):
    cfg = FitConfig(steps_per_scale=(7, 9, 13, 31), warmup_fraction=0.37, warmup_each_scale=each)
    counted = [0, 0, 0, 0]
    for k in range(sum(cfg.steps_per_scale)):
        p = schedule(cfg, k)
        counted[p.scale] += p.warmup
    assert warmup_steps(cfg) == counted


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
    assert lg.G.fc.weight.grad.abs().sum() > 0 and lg.Cs[0].net[-1].weight.grad.abs().sum() > 0
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
    opts = make_optimizers(lg, cfg)
    d_before = [p.clone() for p in lg.D.parameters()]
    phase = schedule(dataclasses.replace(cfg, steps_per_scale=(1, 1, 1, 1), warmup_fraction=0), 3)
    feats = {"classifier.fc3": torch.randn(6, 10)}
    out = gan_step([lg], f, GAN_LOSSES.get(loss)(), [opts], feats,
                   torch.rand(6, 1, 32, 32), torch.arange(6), phase, 1.0, 32, amp=amp)[0]
    assert {"d_loss", "g_loss", "l_i"} <= set(out)
    assert all(v.shape == (1,) and math.isfinite(v.item()) for v in out.values())
    assert all(p.dtype == torch.float32 for p in lg.parameters())  # bf16 only inside autocast
    assert any(not torch.equal(a, b) for a, b in zip(d_before, lg.D.parameters()))
    # in warm-up, D is not updated and there is no GAN term
    d_before = [p.clone() for p in lg.D.parameters()]
    warm = dataclasses.replace(phase, warmup=True)
    out = gan_step([lg], f, GAN_LOSSES.get(loss)(), [opts], feats,
                   torch.rand(6, 1, 32, 32), torch.arange(6), warm, 1.0, 32, amp=amp)[0]
    assert set(out) == {"l_i"} and all(torch.equal(a, b) for a, b in zip(d_before, lg.D.parameters()))


def _toy_data(n=256):
    """Class c: a bright bar at rows 3c..3c+2; a classifier for it trains in a second."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 10
    x = (torch.rand(n, 1, 32, 32, generator=g) * 40).to(torch.uint8)
    for i, c in enumerate(y):
        x[i, 0, 3 * c + 1: 3 * c + 4, 4:28] = 255
    return ImageDataset(x, y)


def train_toy(epochs: int):
    """A SmallCNN trained ``epochs`` epochs on :func:`_toy_data` (seed 0), in eval mode, with
    the data and its first 64 images as floats."""
    from interpretgan.data import batches
    from interpretgan.training import natural_step

    torch.manual_seed(0)
    ds = _toy_data()
    f = models.create("smallcnn")
    opt = torch.optim.SGD(f.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(epochs):
        for x, y in batches(ds, 32, shuffle=True, epoch=epoch):
            natural_step(f, opt, x, y)
    return f.eval(), ds, ds.images[:64].float() / 255


@pytest.fixture(scope="module")
def toy():
    f, ds, ex = train_toy(6)
    assert (f(ex).argmax(1) == ds.labels[:64]).float().mean() > 0.9
    return f, ds, ex


TINY = FitConfig(code_dim=16, g_channels=(16, 16, 8, 8), d_channels=(16, 16, 8, 8), c_width_mult=0.25,
                 steps_per_scale=(4, 4, 4, 12), batch_size=16, ckpt_every=5, warmup_fraction=0.25,
                 min_agreement=0.0)  # the agreement floor off (its own tests below)
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
    a = agreement(f, back, ex, 32, batch_size=20)
    with torch.no_grad():  # the share of images whose explanation f labels f(x), by hand
        feats, ref = capture(f, ex, LAYERS), f(ex).argmax(1)
        by_hand = {n: (f(to_classifier(back[n].explain(feats[n]), 32)).argmax(1) == ref).float().mean().item()
                   for n in LAYERS}
    assert a == pytest.approx(by_hand) and all(v * len(ex) == round(v * len(ex)) for v in a.values())
    assert agreement(f, back, ex, 32, labels=(ref + 1) % 10) != a  # against other labels, other shares
    # f stays frozen and in eval mode
    assert not f.training and all(not p.requires_grad for p in f.parameters())


def test_resume_after_a_kill_in_the_middle_of_a_save(toy, tmp_path):
    """One layer's new last.pt written, the other's not yet: both resume from the older save."""
    f, ds, ex = toy
    full = fit_generators(f, ds, ex, TINY, tmp_path / "a", LAYERS, progress=False)
    fit_generators(f, ds, ex, TINY, tmp_path / "b", LAYERS, progress=False, stop_after=10)
    d0, d1 = (tmp_path / "b" / layer_dirname(n) for n in LAYERS)
    assert load_checkpoint(d0 / "last.pt")["step"] == 10 and load_checkpoint(d0 / "prev.pt")["step"] == 8
    (d1 / "last.pt").unlink()  # killed after moving layer 1's step-10 file aside, before writing it
    resumed = fit_generators(f, ds, ex, TINY, tmp_path / "b", LAYERS, progress=False)
    for n in LAYERS:
        for (k, a), b in zip(full[n].state_dict().items(), resumed[n].state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{n} {k}")


def test_two_kills_in_the_middle_of_saves_in_a_row(toy, tmp_path):
    """After a kill mid-save, the next save must not move away the step every layer still
    shares: a second kill mid-save resumes from it, not from step 0."""
    f, ds, ex = toy
    full = fit_generators(f, ds, ex, TINY, tmp_path / "a", LAYERS, progress=False)
    b = tmp_path / "b"
    fit_generators(f, ds, ex, TINY, b, LAYERS, progress=False, stop_after=10)
    d0, d1 = (b / layer_dirname(n) for n in LAYERS)
    (d1 / "last.pt").unlink()  # first kill: layer 1's step-10 save never happened
    fit_generators(f, ds, ex, TINY, b, LAYERS, progress=False, stop_after=2)  # 8 → 10 again
    (d1 / "last.pt").unlink()  # second kill at the same point of the next save
    assert load_checkpoint(d0 / "prev.pt")["step"] == 8 == load_checkpoint(d1 / "prev.pt")["step"]
    resumed = fit_generators(f, ds, ex, TINY, b, LAYERS, progress=False)
    for n in LAYERS:
        for (k, a), c in zip(full[n].state_dict().items(), resumed[n].state_dict().values()):
            torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-5, msg=f"{n} {k}")


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
    real, fake = torch.rand(4, 1, 8, 8), torch.rand(1, 4, 1, 8, 8)
    with_r1 = [("r1" in loss.d_loss(D, real, fake, 1, 1.0, step)[1]) for step in range(8)]
    assert with_r1 == [True, False, False, False, True, False, False, False]
    total, stats = loss.d_loss(D, real, fake, 1, 1.0, 0)
    assert total.item() == pytest.approx((stats["d_loss"] + 0.5 * 1.0 * 4 * stats["r1"]).item(), rel=1e-5)


def test_fit_run_writes_summary_with_agreement_and_kid(mnist_small, shared_cache, tmp_path, monkeypatch):
    from interpretgan.config import DataConfig, RunConfig, TrainConfig
    from interpretgan.data import images_at, load_split
    from interpretgan.diagnosis.diagnose import dstar_indices
    from interpretgan.fitting import fit_run, heldout_indices
    from interpretgan.pipeline import load_any
    from interpretgan.runs import read_json
    from interpretgan.training import train_classifier

    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    tc = TrainConfig(data=DataConfig(train_subset=256, test_subset=100), epochs=1, batch_size=64,
                     lr_milestones=())
    train_classifier(tc, tmp_path / "clf", progress=False)
    cfg = dataclasses.replace(TINY, steps_per_scale=(1, 1, 1, 3), train_subset=128, eval_images=40)
    summary = fit_run(tmp_path / "clf" / "checkpoints" / "final.pt", tmp_path / "clf", cfg,
                      layers=["classifier.fc3"], progress=False)
    saved = read_json(tmp_path / "clf" / "fit" / "summary.json")
    row = saved["layers"]["classifier.fc3"]
    assert row["kid"] > saved["kid_real_vs_real"]
    # the agreement is the saved generator's on the 40 held-out images outside D*
    test = load_split(tc.data, "test")
    eval_idx, _, outside = heldout_indices(len(test), dstar_indices(test, RunConfig.dstar_images), 40)
    eval_x, _ = images_at(test, eval_idx)
    clf = load_any(tmp_path / "clf" / "checkpoints" / "final.pt", "cpu")
    again = agreement(clf, load_generators(tmp_path / "clf" / "fit"), eval_x, 32)
    assert row["agreement"] == pytest.approx(again["classifier.fc3"]) and outside == saved["heldout_outside_dstar"]
    assert summary["n_eval"] == 40 and (shared_cache / "feature-nets" / "mnist-32-10k.pt").exists()


def test_ema_tracks_live_weights_and_serves_explanations_in_eval_mode():
    torch.manual_seed(0)
    f = models.create("smallcnn").eval()
    for p in f.parameters():
        p.requires_grad_(False)
    torch.nn.init.normal_(f.classifier.fc3.weight)  # TRADES initialises it to 0: no gradient
    cfg = FitConfig(code_dim=8, g_channels=(8, 8, 8, 8), d_channels=(8, 8, 8, 8), ema_beta=0.9)
    lg = LayerGAN("classifier.fc3", (10,), 1, cfg)
    init = [p.clone() for p in lg.G.parameters()]
    opts = make_optimizers(lg, dataclasses.replace(cfg, lr=1e-2))
    phase = schedule(dataclasses.replace(cfg, steps_per_scale=(1, 1, 1, 1), warmup_fraction=1.0), 3)
    l = torch.randn(6, 10)
    gan_step([lg.train()], f, GAN_LOSSES.get("ns-r1")(), [opts], {"classifier.fc3": l},
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


def _step_setup(loss):
    torch.manual_seed(0)
    f = models.create("smallcnn").eval()
    torch.nn.init.normal_(f.classifier.fc3.weight, std=0.1)
    for p in f.parameters():
        p.requires_grad_(False)
    cfg = FitConfig(code_dim=8, g_channels=(8, 8, 8, 8), d_channels=(8, 8, 8, 8), c_width_mult=0.25,
                    gan_loss=loss)
    x, target = torch.rand(6, 1, 32, 32), torch.arange(6)
    names = ["feature_extractor.relu1", "feature_extractor.pool2", "classifier.fc3"]
    feats = capture(f, x, names)
    members = [(n, feats[n].shape[1:]) for n in names]
    return f, cfg, x, target, feats, members


@pytest.mark.parametrize("loss", GAN_LOSSES.names())
def test_stacked_step_over_layers_equals_separate_steps(loss):
    """All layers as one stacked bank (one G, one D, one classifier batch) or one bank per
    layer: the same losses and the same updated weights."""
    f, cfg, x, target, feats, members = _step_setup(loss)
    phase = schedule(dataclasses.replace(cfg, steps_per_scale=(1, 1, 1, 1), warmup_fraction=0), 3)

    def run(banks):
        # SGD: Adam's first step is ≈ lr·sign(grad), which would magnify rounding differences
        opts = [tuple(torch.optim.SGD([p for _, p in g], lr=0.1) for g in b.param_groups()) for b in banks]
        return gan_step(banks, f, GAN_LOSSES.get(loss)(), opts, feats, x, target, phase, 1.0, 32)

    joint = GanBank.build(members, 1, cfg)
    alone = [GanBank.build([m], 1, cfg) for m in members]
    out_joint, out_alone = run([joint]), run(alone)
    for i in range(len(members)):
        for k, v in out_joint[0].items():
            assert v[i].item() == pytest.approx(out_alone[i][k].item(), rel=1e-4, abs=1e-5), k
        for k, v in joint.member(i).state_dict().items():
            torch.testing.assert_close(v, alone[i].state_dict()[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.parametrize("amp", [False, True])
def test_launch_saving_step_equals_the_per_layer_reference(amp):
    """The fit's fast path (stacked bank, fused Adam) against the reference (a bank and an
    unfused, per-parameter Adam per layer): same losses and weights after three steps.

    Without autocast the claim is exactness up to float rounding, checked in fp64 (where a
    gradient near 0 cannot round to the other side, which would move an Adam weight by 2·lr):
    weights within 1e-9. Under bf16 autocast the paths round differently, so losses are
    compared to bf16 precision and weights to 2·lr per step."""
    f, cfg, x, target, feats, members = _step_setup("ns-r1")
    dtype = torch.float32 if amp else torch.float64
    f, x = f.to(dtype), x.to(dtype)
    feats = {k: v.to(dtype) for k, v in feats.items()}
    tol = dict(rtol=5e-2, atol=5e-3) if amp else dict(rtol=1e-9, atol=1e-10)
    w_tol = dict(rtol=0, atol=3 * 2 * cfg.lr + 1e-5) if amp else dict(rtol=1e-9, atol=1e-9)

    def run(banks, adam):
        c = dataclasses.replace(cfg, adam=adam)
        opts = [make_optimizers(b, c) for b in banks]
        outs = []
        for step in range(3):
            phase = schedule(dataclasses.replace(cfg, steps_per_scale=(1, 1, 1, 3), warmup_fraction=0), 3 + step)
            outs.append(gan_step(banks, f, GAN_LOSSES.get("ns-r1")(), opts, feats, x, target, phase,
                                 1.0, 32, amp=amp))
        return outs

    fast = GanBank.build(members, 1, cfg).to(dtype)
    ref = [GanBank.build([m], 1, cfg).to(dtype) for m in members]
    out_fast, out_ref = run([fast], "fused"), run(ref, "loop")
    for step in range(3):
        for i in range(len(members)):
            for k, v in out_fast[step][0].items():
                torch.testing.assert_close(v[i], out_ref[step][i][k][0], **tol, msg=f"step {step} {k}")
    for i in range(len(members)):
        for k, v in fast.member_state(i).items():  # in the bank's dtype
            torch.testing.assert_close(v, ref[i].state_dict()[k], **w_tol, msg=k)


def test_progress_bar_shows_mean_losses_and_agreement_per_layer():
    from interpretgan.fitting import _postfix

    means = {"feature_extractor.relu1": {"l_i": 1.0, "g_loss": 0.5, "d_loss": 1.5},
             "classifier.fc3": {"l_i": 2.0}}  # fc3 still warming up: no GAN terms
    out = _postfix(means, {"feature_extractor.relu1": 0.5, "classifier.fc3": 0.875})
    # L_I: mean over layers (1.0 + 2.0) / 2; G and D only from relu1
    assert out == {"L_I": "1.500", "G": "0.500", "D": "1.500", "relu1": "0.50", "fc3": "0.88"}


def test_a_fit_of_k_generator_seeds_equals_k_separate_fits(toy, tmp_path):
    """Generator seeds (0, 1, 2) fitted together in one loop give, member for member, the
    generators of three fits of one seed each; the diagnosis names them layer#seed<g>."""
    from interpretgan.fitting import first_seeds, member_key, members_by_layer, split_member

    f, ds, ex = toy
    cfg = dataclasses.replace(TINY, steps_per_scale=(2, 2, 2, 6), generator_seeds=(0, 1, 2))
    joint = fit_generators(f, ds, ex, cfg, tmp_path / "joint", LAYERS, progress=False)
    keys = [member_key(n, g) for n in LAYERS for g in (0, 1, 2)]
    assert list(joint) == keys and keys[1] == "feature_extractor.pool2#seed1"
    assert split_member(keys[1]) == ("feature_extractor.pool2", 1) and split_member(LAYERS[0]) == (LAYERS[0], 0)
    assert list(members_by_layer(keys)) == LAYERS and list(first_seeds(joint)) == LAYERS
    for g in (0, 1, 2):
        alone = fit_generators(f, ds, ex, dataclasses.replace(cfg, generator_seeds=(g,)),
                               tmp_path / f"seed{g}", LAYERS, progress=False)
        assert list(alone) == [member_key(n, g) for n in LAYERS]
        for k, bank in alone.items():
            for (name, a), b in zip(joint[k].state_dict().items(), bank.state_dict().values()):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{k} {name}")
    # seeds really differ, and every member is saved and loaded under its own name
    w = [next(iter(joint[member_key(LAYERS[1], g)].G.parameters())) for g in (0, 1)]
    assert not torch.allclose(w[0], w[1])
    back = load_generators(tmp_path / "joint")
    assert list(back) == keys
    assert (tmp_path / "joint" / "classifier.fc3_seed2" / "last.pt").exists()

