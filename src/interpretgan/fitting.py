"""Fitting InterpretGAN generators for several layers of one classifier at once.

All layers share the data pipeline and one forward pass of the frozen classifier per
batch; each step then updates every layer's D and C/G, with the explanations of all layers
going through the classifier as one batch (:func:`gan_step`). Run folder::

    RUN/fit/config.json               the resolved FitConfig (+ classifier and layers)
    RUN/fit/metrics.jsonl             losses and held-out agreement as training goes
    RUN/fit/<layer>/last.pt           resumable state of that layer (atomic, every ckpt_every steps)
    RUN/fit/<layer>/scale<k>.pt       G and C at the end of scale k
    RUN/fit/summary.json              agreement and realism per layer
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import FitConfig, RunConfig, same_config
from .data import batches, images_at, load_split, num_batches
from .devices import eval_mode, module_device, resolve_device
from .gan import GAN_LOSSES, Compressor, Discriminator, Generator, to_classifier, to_resolution
from .layers import capture, default_layers, layer_shapes
from .precision import autocast, use_amp
from .runs import append_jsonl, load_checkpoint, save_checkpoint, write_json

log = logging.getLogger(__name__)


def layer_dirname(name: str) -> str:
    return name.replace("/", "_").replace("@", "_at_")


class LayerGAN(nn.Module):
    """C, G and D for one layer, plus an exponential moving average of C and G (ProGAN's
    G_ema) when ``cfg.ema_beta > 0``: training updates C/G, explanations in eval mode use
    the average, which smooths out the GAN's step-to-step swings."""

    def __init__(self, layer: str, shape: Sequence[int], image_channels: int, cfg: FitConfig):
        super().__init__()
        self.layer = layer
        self.C = Compressor(shape, cfg.code_dim, cfg.c_width_mult)
        self.G = Generator(cfg.code_dim, cfg.g_channels, image_channels)
        self.D = Discriminator(cfg.d_channels, image_channels)
        self.ema_beta = cfg.ema_beta
        self.ema: nn.ModuleDict | None = None
        if cfg.ema_beta > 0:
            self.ema = copy.deepcopy(nn.ModuleDict({"C": self.C, "G": self.G})).requires_grad_(False)

    def explain(self, l: torch.Tensor, scale: int | None = None, alpha: float = 1.0,
                use_ema: bool | None = None) -> torch.Tensor:
        """x̂ = G(C(l)). l: (B, *shape) → (B, C, R, R) in [0, 1]. ``use_ema`` defaults to
        "in eval mode, if there is an average"."""
        if use_ema is None:
            use_ema = not self.training and self.ema is not None
        if use_ema:
            return self.ema["G"](self.ema["C"](l), scale, alpha)
        return self.G(self.C(l), scale, alpha)

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema ← β·ema + (1 − β)·live, for C and G (call after each C/G update)."""
        if self.ema is None:
            return
        for name, live in (("C", self.C), ("G", self.G)):
            for pe, p in zip(self.ema[name].parameters(), live.parameters()):
                pe.lerp_(p, 1.0 - self.ema_beta)
            for be, b in zip(self.ema[name].buffers(), live.buffers()):
                be.copy_(b)


@dataclasses.dataclass
class Phase:
    scale: int
    alpha: float
    warmup: bool
    step: int = 0


def schedule(cfg: FitConfig, step: int) -> Phase:
    """Scale, fade-in weight and warm-up flag at a global ``step``."""
    total = sum(cfg.steps_per_scale)
    start = 0
    for s, n in enumerate(cfg.steps_per_scale):
        if step < start + n or s == len(cfg.steps_per_scale) - 1:
            into = step - start
            fade = cfg.fade_fraction * n
            alpha = 1.0 if s == 0 or fade <= 0 else min(1.0, (into + 1) / fade)
            return Phase(s, alpha, step < cfg.warmup_fraction * total, step)
        start += n
    raise AssertionError


def gan_step(gans: Mapping[str, LayerGAN], classifier: nn.Module, loss_fn,
             opts: Mapping[str, tuple[torch.optim.Optimizer, torch.optim.Optimizer]],
             feats: Mapping[str, torch.Tensor], real: torch.Tensor, target: torch.Tensor,
             phase: Phase, lam: float, image_size: int,
             amp: bool = False) -> dict[str, dict[str, float]]:
    """One InterpretGAN step for every layer in ``gans``: per layer a D update (unless warming
    up), then the C/G update on GAN loss + λ·L_I.

    feats[name]: (B, *shape) that layer's output; real: (B, C, H, W) images; target: (B,) f(x).
    The layers' explanations go through the frozen classifier as one batch (one forward and
    backward for all layers, the costliest part of a step); since each layer's loss only
    reaches its own C/G, this equals separate steps per layer. ``amp``: forward passes under
    bf16 autocast (weights, optimiser state and losses stay fp32). Returns ``{layer: losses}``.
    """
    out: dict[str, dict[str, float]] = {n: {} for n in gans}
    device = real.device
    with autocast(amp, device):
        x_hats = {n: lg.explain(feats[n], phase.scale, phase.alpha) for n, lg in gans.items()}
    if not phase.warmup:
        for n, lg in gans.items():  # one G forward serves the D and the G update
            real_r = to_resolution(real, lg.G.resolution(phase.scale))
            with autocast(amp, device):
                d_loss, d_stats = loss_fn.d_loss(lg.D, real_r, x_hats[n].detach(), phase.scale,
                                                 phase.alpha, phase.step)
            opt_d = opts[n][1]
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            out[n].update(d_stats)
    names = list(gans)
    with autocast(amp, device):
        logits = classifier(torch.cat([to_classifier(x_hats[n], image_size) for n in names]))
    total = 0.0
    for n, chunk in zip(names, logits.float().split(len(target))):
        li = F.cross_entropy(chunk, target)  # L_I of Eq. 3–4
        loss = lam * li
        if not phase.warmup:
            with autocast(amp, device):
                scores = gans[n].D(x_hats[n], phase.scale, phase.alpha)
            g_adv = loss_fn.g_loss(scores.float())
            loss = loss + g_adv
            out[n]["g_loss"] = g_adv.item()
        out[n]["l_i"] = li.item()
        total = total + loss
    for n in names:
        opts[n][0].zero_grad(set_to_none=True)
    total.backward()
    for n in names:
        opts[n][0].step()
        gans[n].update_ema()
    return out


def _stream(ds, batch_size: int, seed: int, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled batches; step k always gets the same batch (so resume is exact)."""
    nb = num_batches(ds, batch_size, drop_last=True)
    epoch, skip = divmod(start_step, nb)
    while True:
        for i, (x, y) in enumerate(batches(ds, batch_size, shuffle=True, seed=seed, epoch=epoch,
                                            drop_last=True)):
            if i >= skip:
                yield x, y
        epoch, skip = epoch + 1, 0


@torch.no_grad()
def agreement(classifier: nn.Module, gans: dict[str, LayerGAN], x: torch.Tensor,
              image_size: int, scale: int | None = None, batch_size: int = 250,
              labels: torch.Tensor | None = None, alpha: float = 1.0) -> dict[str, float]:
    """Per layer, the share of images with f(G(C(f_pre(x)))) = f(x) (or = ``labels``).

    x: (N, C, H, W), labels: (N,), anywhere (CPU as a rule): each batch is moved to the
    classifier's device, where ``gans`` must be too."""
    dev = module_device(classifier)
    hits = {n: 0 for n in gans}
    with eval_mode(classifier):
        for s in range(0, len(x), batch_size):
            xb = x[s: s + batch_size].to(dev)
            feats = capture(classifier, xb, list(gans))
            ref = classifier(xb).argmax(1) if labels is None else labels[s: s + batch_size].to(dev)
            for n, lg in gans.items():
                with eval_mode(lg):
                    xh = to_classifier(lg.explain(feats[n], scale, alpha), image_size)
                hits[n] += (classifier(xh).argmax(1) == ref).sum().item()
    return {n: h / len(x) for n, h in hits.items()}


def fit_generators(classifier: nn.Module, train_set, eval_x: torch.Tensor, cfg: FitConfig,
                   out_dir: str | Path, layers: Sequence[str] | None = None,
                   progress: bool = True, stop_after: int | None = None,
                   log_every: int = 50) -> dict[str, LayerGAN]:
    """Train one generator per layer of the frozen ``classifier``; resumable.

    ``train_set``: images for the GAN (real samples and classifier inputs). ``eval_x``:
    held-out images (N, C, H, W) for the running agreement. ``stop_after``: end the call
    after that many steps (to simulate a kill in tests). Returns ``{layer: LayerGAN}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classifier.eval()
    for p in classifier.parameters():
        p.requires_grad_(False)
    names = list(layers or cfg.layers or default_layers(classifier))
    x0 = eval_x[:2]
    shapes = layer_shapes(classifier, x0, names)
    image_channels, image_size = x0.shape[1], x0.shape[-1]
    if 4 * 2 ** (len(cfg.g_channels) - 1) != image_size:
        log.info("generator renders %d px; explanations are resized to the classifier's %d px",
                 4 * 2 ** (len(cfg.g_channels) - 1), image_size)
    loss_fn = GAN_LOSSES.get(cfg.gan_loss)()
    amp = use_amp(cfg.amp, eval_x.device)
    log.info("fitting %d layers (%s)", len(names), "bf16 autocast" if amp else "fp32")
    total = sum(cfg.steps_per_scale)
    torch.manual_seed(cfg.seed)
    gans, opts, steps = {}, {}, {}
    for n in names:
        lg = LayerGAN(n, shapes[n], image_channels, cfg)
        opt_g = torch.optim.Adam([*lg.G.parameters(), *lg.C.parameters()], lr=cfg.lr, betas=cfg.betas)
        opt_d = torch.optim.Adam(lg.D.parameters(), lr=cfg.lr, betas=cfg.betas)
        step = 0
        ck_path = out / layer_dirname(n) / "last.pt"
        if ck_path.exists():
            ck = load_checkpoint(ck_path)
            if not same_config(ck["config"], cfg) or tuple(ck["shape"]) != tuple(shapes[n]):
                raise ValueError(f"{ck_path} was written with another config or classifier; "
                                 "use a new run directory")
            lg.load_state_dict(ck["gan"])
            opt_g.load_state_dict(ck["opt_g"])
            opt_d.load_state_dict(ck["opt_d"])
            step = ck["step"]
        gans[n], opts[n], steps[n] = lg, (opt_g, opt_d), step
    start = min(steps.values())
    write_json(out / "config.json", {"fit": dataclasses.asdict(cfg), "layers": names,
                                     "shapes": {n: list(s) for n, s in shapes.items()}})
    if start >= total:
        return gans
    if start > 0:
        log.info("resuming generator fitting at step %d of %d", start, total)
    stream = _stream(train_set, cfg.batch_size, cfg.seed, start)
    bar = tqdm(range(start, total), total=total, initial=start, disable=not progress,
               desc="fit " + ",".join(n.split(".")[-1] for n in names)[:40], leave=False)
    sums: dict[str, dict[str, float]] = {n: {} for n in names}
    t0, done = time.perf_counter(), 0
    for step in bar:
        x, _ = next(stream)
        phase = schedule(cfg, step)
        with torch.no_grad():
            feats = capture(classifier, x, names)
            target = classifier(x).argmax(1)
        # a layer whose checkpoint is ahead (killed between two saves) skips this step
        due = {n: gans[n].train() for n in names if steps[n] <= step}
        stats = gan_step(due, classifier, loss_fn, opts, feats, x, target, phase, cfg.lam, image_size,
                         amp=amp)
        for n, st in stats.items():
            steps[n] = step + 1
            for k, v in st.items():
                sums[n][k] = sums[n].get(k, 0.0) + v
        done += 1
        end_of_scale = step + 1 == total or schedule(cfg, step + 1).scale != phase.scale
        if (step + 1) % log_every == 0 or end_of_scale:
            agree = agreement(classifier, gans, eval_x[:200], image_size, phase.scale, alpha=phase.alpha)
            row = {"step": step + 1, "scale": phase.scale, "alpha": round(phase.alpha, 3),
                   "warmup": phase.warmup, "seconds": time.perf_counter() - t0,
                   **{f"{n}/{k}": v / max(1, done) for n in names for k, v in sums[n].items()},
                   **{f"{n}/agreement200": a for n, a in agree.items()}}
            append_jsonl(out / "metrics.jsonl", row)
            bar.set_postfix(_postfix(sums, done, agree))
            sums = {n: {} for n in names}
            done = 0
        if (step + 1) % cfg.ckpt_every == 0 or end_of_scale or step + 1 == total:
            for n in names:
                _save_layer(out, n, gans[n], opts[n], steps[n], cfg, shapes[n])
                if end_of_scale:
                    save_checkpoint(out / layer_dirname(n) / f"scale{phase.scale}.pt",
                                    {"layer": n, "scale": phase.scale, "C": gans[n].C.state_dict(),
                                     "G": gans[n].G.state_dict(), "shape": list(shapes[n]),
                                     "config": dataclasses.asdict(cfg)})
        if stop_after is not None and step + 1 - start >= stop_after:
            for n in names:
                _save_layer(out, n, gans[n], opts[n], steps[n], cfg, shapes[n])
            break
    return gans


def _postfix(sums: dict[str, dict[str, float]], done: int, agree: dict[str, float]) -> dict[str, str]:
    """Progress-bar fields: the mean losses over layers since the last log, then the running
    agreement per layer (by the last part of its name)."""
    out = {}
    for key, label in (("l_i", "L_I"), ("g_loss", "G"), ("d_loss", "D")):
        vals = [s[key] / max(1, done) for s in sums.values() if key in s]
        if vals:
            out[label] = f"{sum(vals) / len(vals):.3f}"
    out.update({n.split(".")[-1]: f"{a:.2f}" for n, a in agree.items()})
    return out


def _save_layer(out: Path, name: str, lg: LayerGAN, opts, step: int, cfg: FitConfig, shape) -> None:
    save_checkpoint(out / layer_dirname(name) / "last.pt", {
        "layer": name, "gan": lg.state_dict(), "opt_g": opts[0].state_dict(),
        "opt_d": opts[1].state_dict(), "step": step, "shape": list(shape),
        "config": dataclasses.asdict(cfg)})


def load_generators(fit_dir: str | Path, image_channels: int = 1) -> dict[str, LayerGAN]:
    """The fitted layer GANs of a run folder's ``fit/`` (final state), in eval mode."""
    from .config import from_dict

    fit_dir = Path(fit_dir)
    meta = __import__("json").loads((fit_dir / "config.json").read_text())
    cfg = from_dict(FitConfig, meta["fit"])
    gans = {}
    for n in meta["layers"]:
        ck = load_checkpoint(fit_dir / layer_dirname(n) / "last.pt")
        lg = LayerGAN(n, ck["shape"], image_channels, cfg)
        lg.load_state_dict(ck["gan"])
        gans[n] = lg.eval()
    return gans


def summarize_fit(classifier: nn.Module, gans: dict[str, LayerGAN], eval_x: torch.Tensor,
                  real_ref: torch.Tensor, feat_net, seconds: float | None = None,
                  batch_size: int = 250) -> dict:
    """Agreement and realism (KID vs held-out real images) per layer, with a real-vs-real
    KID as the floor to read them against.

    eval_x, real_ref: (N, C, H, W) images in [0, 1] (CPU as a rule; batches go to the
    classifier's device, where ``gans`` and ``feat_net`` must be too)."""
    from .metrics import embed, kid

    size = eval_x.shape[-1]
    dev = module_device(classifier)
    agree = agreement(classifier, gans, eval_x, size, batch_size=batch_size)
    real_feats = embed(feat_net, real_ref)
    floor = kid(real_feats, embed(feat_net, eval_x))
    rows = {}
    with torch.no_grad(), eval_mode(classifier):
        for n, lg in gans.items():
            fake = []
            for s in range(0, len(eval_x), batch_size):
                feats = capture(classifier, eval_x[s: s + batch_size].to(dev), [n])
                with eval_mode(lg):
                    fake.append(embed(feat_net, to_classifier(lg.explain(feats[n]), size)))
            k = kid(real_feats, torch.cat(fake))
            rows[n] = {"agreement": agree[n], "kid": k[0], "kid_std": k[1]}
    return {"layers": rows, "kid_real_vs_real": floor[0], "n_eval": len(eval_x),
            "fit_seconds": seconds}


def quality_summary(classifier: nn.Module, gans: dict[str, LayerGAN], data, eval_x: torch.Tensor,
                    real_ref: torch.Tensor, seconds: float | None = None) -> dict:
    """:func:`summarize_fit` with the realism network of ``data``'s dataset, trained (once,
    cached) on 10,000 of its training images, on the classifier's device."""
    from .metrics import feature_net

    full = load_split(data, "train")
    fnet = feature_net(full.subset(10000, seed=12345), f"{data.dataset}-{data.image_size}-10k",
                       device=module_device(classifier))
    return summarize_fit(classifier, gans, eval_x, real_ref, fnet, seconds)


def heldout_indices(size: int, dstar_indices: torch.Tensor | None,
                    n: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Held-out test images for judging generators: two disjoint index sets into a test
    split of ``size`` images, both outside D* (``dstar_indices``, see
    :func:`interpretgan.diagnose.dstar_indices`).

    Of the images outside D*, in order, the first k are the evaluation images (agreement,
    the fit's running agreement, the fake side of KID) and the next k KID's real reference,
    k = min(n, half of them). Returns ``(eval_idx, ref_idx, outside_dstar)``; when D* is the
    whole split (nothing is left outside it) the split's own images are used, with a warning,
    and ``outside_dstar`` is False.
    """
    keep = torch.ones(size, dtype=torch.bool)
    if dstar_indices is not None:
        keep[torch.as_tensor(dstar_indices, dtype=torch.long)] = False
    pool = keep.nonzero().squeeze(1)
    outside = True
    if len(pool) == 0:
        log.warning("D* holds every one of the %d test images: the generators' agreement and KID "
                    "are measured on images that are also in D*", size)
        pool, outside = torch.arange(size), False
    k = min(n, len(pool) // 2)
    if k < 2:
        raise ValueError(f"only {len(pool)} test image(s) outside D*: too few held-out images to "
                         "judge the generators (use fewer D* images or more test images)")
    if k < n:
        log.info("judging the generators on %d held-out test images (asked for %d; %d are "
                 "outside D*, half of them serve as KID's real reference)", k, n, len(pool))
    return pool[:k], pool[k: 2 * k], outside


def fit_and_summarize(classifier: nn.Module, data_cfg, fit_cfg: FitConfig, fit_dir: str | Path,
                      layers: Sequence[str] | None = None,
                      dstar_indices: torch.Tensor | None = None,
                      device: str | torch.device | None = None, progress: bool = True) -> dict:
    """Fit generators for the frozen ``classifier`` into ``fit_dir`` and write
    ``fit_dir/summary.json`` (agreement + KID per layer); resumes a killed fit.

    Generators learn from ``data_cfg``'s training split (cut to ``fit_cfg.train_subset``);
    they are judged on test images outside D* (``dstar_indices`` into ``data_cfg``'s test
    split; :func:`heldout_indices`). ``device``: where to run (the classifier is moved there);
    None: where the classifier is. Data stay on the CPU. Returns the summary.
    """
    if device is not None:
        classifier.to(resolve_device(device))
    dev = module_device(classifier)
    train = load_split(data_cfg, "train")
    if fit_cfg.train_subset is not None:
        train = train.subset(fit_cfg.train_subset, seed=fit_cfg.seed)
    test = load_split(data_cfg, "test")
    eval_idx, ref_idx, outside = heldout_indices(len(test), dstar_indices, fit_cfg.eval_images)
    eval_x, _ = images_at(test, eval_idx)
    ref, _ = images_at(test, ref_idx)
    t0 = time.perf_counter()
    fit_generators(classifier, train, eval_x, fit_cfg, fit_dir, layers, progress=progress)
    seconds = time.perf_counter() - t0
    gans = {n: g.to(dev) for n, g in load_generators(fit_dir, eval_x.shape[1]).items()}
    summary = quality_summary(classifier, gans, data_cfg, eval_x, ref, seconds)
    summary["heldout_outside_dstar"] = outside
    write_json(Path(fit_dir) / "summary.json", summary)
    return summary


def fit_run(checkpoint: str | Path, run_dir: str | Path, cfg: FitConfig,
            layers: Sequence[str] | None = None, data_dir: str | None = None,
            progress: bool = True, device: str | torch.device | None = "auto",
            dstar_images: int | None = RunConfig.dstar_images) -> dict:
    """``interpretgan fit``: fit generators for a classifier checkpoint into ``run_dir/fit``
    on ``device`` (``"auto"``: a GPU if there is one) and write ``summary.json`` (agreement +
    KID per layer). Resumes a killed run, also on another device.

    The held-out images stay outside the D* of ``dstar_images`` test images that
    ``interpretgan run`` would diagnose this classifier on (:func:`fit_and_summarize`).
    """
    from .data import checkpoint_data_config
    from .diagnose import dstar_indices
    from .models import load_classifier

    dev = resolve_device(device)  # fail before any work on a bad name
    classifier = load_classifier(checkpoint, device=dev)
    data = checkpoint_data_config(checkpoint, data_dir=data_dir)
    test = load_split(data, "test")
    summary = fit_and_summarize(classifier, data, cfg, Path(run_dir) / "fit", layers,
                                dstar_indices=dstar_indices(test, dstar_images), progress=progress)
    summary["checkpoint"] = str(checkpoint)
    write_json(Path(run_dir) / "fit" / "summary.json", summary)
    return summary
