"""Fitting InterpretGAN generators for several layers of one classifier at once.

All layers share the data pipeline and one forward pass of the frozen classifier per
batch; each step then updates every layer's D and C/G, with the explanations of all layers
going through the classifier as one batch (:func:`gan_step`). Run folder::

    RUN/fit/config.json               the resolved FitConfig (+ classifier and layers)
    RUN/fit/metrics.jsonl             losses and held-out agreement as training goes
                                      (rank r > 0 of a distributed fit: metrics.rank<r>.jsonl)
    RUN/fit/<layer>/last.pt           resumable state of that layer (atomic, every ckpt_every steps)
    RUN/fit/<layer>/prev.pt           the save before it (resume point after a kill mid-save)
    RUN/fit/<layer>/scale<k>.pt       G and C at the end of scale k
    RUN/fit/summary.json              agreement and realism per layer

With ``log_dir`` (:func:`fit_generators`), TensorBoard events beside them: every metrics row's
losses and running agreement per member, and the explanations at the end of every scale.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..data.splits import (balanced_order, batches, content_digest, dataset_labels, images_at,
                           load_split, num_batches, unpinned)
from .config import FitConfig, fit_for_image_size
from .gan import (Compressor, Discriminator, GAN_LOSSES, Generator, LayerReading, TokenLayoutError,
                  interpretability_loss, read_layer, to_classifier, to_resolution)
from .layers import default_layers, layer_shapes
from .explaining import agreement
from .members import layer_dirname, member_features, member_key, members_by_layer, split_member
from .metrics import embed, feature_net, kid
from ..runtime.devices import eval_mode, frozen_params, module_device, resolve_device
from ..runtime.distributed import World, shard_members
from ..runtime.precision import autocast, use_amp
from ..runtime.progress import progress_bar
from ..runtime.runs import (NonFiniteError, RunLock, append_jsonl, load_checkpoint, read_json,
                            save_checkpoint, sweep_temp, write_json)
from ..runtime.tensorboard import TensorBoard, require_tensorboard
from ..settings import from_dict, same_config

log = logging.getLogger(__name__)


def member_seed(seed: int, key: str) -> int:
    """The initialisation seed of member ``key`` in a fit seeded ``seed``: a member's initial
    weights do not depend on which other members are fitted beside it."""
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16)


class GanBank(nn.Module):
    """C, G and D of M members (one per interpreted layer), with G and D as stacks of M
    networks (:mod:`gan`) and one compression network C per member (layers differ in shape);
    plus an exponential moving average of C and G (ProGAN's G_ema) when ``cfg.ema_beta > 0``:
    training updates C/G, explanations in eval mode use the average.

    ``members``: ``[(layer, shape), …]``. Member i computes exactly what a one-member bank
    with member i's weights computes (:meth:`member`, :meth:`stack`), so fitting layers
    together or apart gives the same generators up to float rounding (bit for bit with one bank
    per member in fp32: ``stack_layers="off"``, ``amp="off"``).
    """

    def __init__(self, members: Sequence[tuple[str, Sequence[int]]], image_channels: int, cfg: FitConfig):
        super().__init__()
        self.layers = [layer for layer, _ in members]
        self.shapes = [tuple(shape) for _, shape in members]
        self.image_channels, self.cfg = image_channels, cfg
        m = len(members)
        self.Cs = nn.ModuleList([Compressor(s, cfg.code_dim, cfg.c_width_mult,
                                            conv_small_maps=cfg.c_conv_small_maps, tokens=cfg.tokens)
                                 for s in self.shapes])
        self.G = Generator(cfg.code_dim, cfg.g_channels, image_channels, members=m)
        self.D = Discriminator(cfg.d_channels, image_channels, members=m)
        self.ema_beta = cfg.ema_beta
        self.ema: nn.ModuleDict | None = None
        if cfg.ema_beta > 0:
            self.ema = copy.deepcopy(nn.ModuleDict({"Cs": self.Cs, "G": self.G})).requires_grad_(False)

    # ---------------------------------------------------------------- building and slicing
    @classmethod
    def build(cls, members: Sequence[tuple[str, Sequence[int]]], image_channels: int,
              cfg: FitConfig) -> "GanBank":
        """A bank whose member i starts from the weights of ``member_seed(cfg.seed, layer_i)``."""
        parts = []
        for layer, shape in members:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(member_seed(cfg.seed, layer))
                parts.append(cls([(layer, shape)], image_channels, cfg))
        return parts[0] if len(parts) == 1 else cls.stack(parts)

    @classmethod
    def empty(cls, members: Sequence[tuple[str, Sequence[int]]], image_channels: int,
              cfg: FitConfig, device: str | torch.device = "cpu") -> "GanBank":
        """A bank with uninitialised weights, to be filled by ``load_state_dict``: built on the
        meta device, so it draws no random numbers and initialises nothing."""
        with torch.device("meta"):
            shell = cls(members, image_channels, cfg)
        return shell.to_empty(device=device)

    @classmethod
    def stack(cls, banks: Sequence["GanBank"]) -> "GanBank":
        """One bank holding the members of ``banks`` in order (weights copied)."""
        first = banks[0]
        members = [(l, s) for b in banks for l, s in zip(b.layers, b.shapes)]
        out = cls.empty(members, first.image_channels, first.cfg, _device_of(first))
        states = [b.state_dict() for b in banks]
        merged, offset = {}, 0
        for b, st in zip(banks, states):
            for k, v in st.items():
                ck = _c_index(k)
                if ck is not None:  # per-member compressor: renumber
                    head, i, rest = ck
                    merged[f"{head}{i + offset}.{rest}"] = v
            offset += len(b.layers)
        for k in states[0]:
            if _c_index(k) is None:  # stacked G / D parameter: concatenate members
                merged[k] = torch.cat([st[k] for st in states])
        out.load_state_dict(merged)
        return out

    def member(self, i: int) -> "GanBank":
        """Member ``i`` as a one-member bank (a copy, in this bank's train/eval mode)."""
        out = self.empty([(self.layers[i], self.shapes[i])], self.image_channels, self.cfg,
                         _device_of(self))
        out.load_state_dict(self.member_state(i))
        return out.train(self.training)

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        """Member ``i``'s weights, keyed as a one-member bank's ``state_dict``."""
        out = {}
        for k, v in self.state_dict().items():
            ck = _c_index(k)
            if ck is None:
                out[k] = v[i: i + 1].clone()
            elif ck[1] == i:
                out[f"{ck[0]}0.{ck[2]}"] = v.clone()
        return out

    # ---------------------------------------------------------------- explanations
    def explain_all(self, feats: Sequence[torch.Tensor], scale: int | None = None, alpha: float = 1.0,
                    use_ema: bool | None = None) -> torch.Tensor:
        """x̂_m = G_m(C_m(l_m)) for every member. feats[m]: (B, *shape_m) → (M, B, C, R, R)
        in [0, 1]. ``use_ema`` defaults to "in eval mode, if there is an average"."""
        if use_ema is None:
            use_ema = not self.training and self.ema is not None
        Cs, G = (self.ema["Cs"], self.ema["G"]) if use_ema else (self.Cs, self.G)
        codes = torch.stack([c(l) for c, l in zip(Cs, feats)])  # (M, B, code_dim)
        return G(codes, scale, alpha)

    def explain(self, l: torch.Tensor, scale: int | None = None, alpha: float = 1.0,
                use_ema: bool | None = None) -> torch.Tensor:
        """A one-member bank's explanation x̂ = G(C(l)). l: (B, *shape) → (B, C, R, R)."""
        if len(self.layers) != 1:
            raise ValueError(f"explain() is for one member; this bank has {len(self.layers)}: use explain_all")
        return self.explain_all([l], scale, alpha, use_ema)[0]

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema ← β·ema + (1 − β)·live, for C and G (call after each C/G update)."""
        if self.ema is None:
            return
        live = [*self.Cs.parameters(), *self.G.parameters()]
        avg = [*self.ema["Cs"].parameters(), *self.ema["G"].parameters()]
        torch._foreach_lerp_(avg, live, 1.0 - self.ema_beta)

    def param_groups(self) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
        """(named C/G parameters, named D parameters): what the two optimisers update."""
        g = [(k, p) for k, p in self.named_parameters() if k.startswith(("Cs.", "G."))]
        d = [(k, p) for k, p in self.named_parameters() if k.startswith("D.")]
        return g, d


def _c_index(key: str) -> tuple[str, int, str] | None:
    """``"Cs.3.net.0.weight"`` → ``("Cs.", 3, "net.0.weight")`` (also under ``ema.``); None for
    the stacked G / D entries."""
    for head in ("Cs.", "ema.Cs."):
        if key.startswith(head):
            i, _, rest = key[len(head):].partition(".")
            return head, int(i), rest
    return None


def _device_of(m: nn.Module) -> torch.device:
    return next(m.parameters()).device


def layer_readings(shapes: Mapping[str, Sequence[int]], tokens: str = "auto") -> dict[str, LayerReading]:
    """How C reads each layer's output (:func:`~interpretgan.gan.read_layer`), from
    ``{layer: shape without batch}``. A token layer the ``tokens`` setting cannot read raises
    :class:`~interpretgan.gan.TokenLayoutError`, one line naming the layer and the settings."""
    out = {}
    for n, shape in shapes.items():
        try:
            out[n] = read_layer(shape, tokens)
        except TokenLayoutError as e:
            raise TokenLayoutError(f"layer {n!r}: {e}") from None
    return out


def check_readings(classifier: nn.Module, x: torch.Tensor, layers: Sequence[str] | None,
                   cfg: FitConfig) -> dict[str, LayerReading]:
    """:func:`layer_readings` of ``layers`` (None: the default ones) of ``classifier`` on
    example inputs ``x`` (B, C, H, W): the check a run makes before any work."""
    names = list(layers or cfg.layers or default_layers(classifier))
    return layer_readings(layer_shapes(classifier, x, names), cfg.tokens)


def layer_bank(layer: str, shape: Sequence[int], image_channels: int, cfg: FitConfig) -> GanBank:
    """One layer's C, G and D: a one-member :class:`GanBank` (initialised like ``build``)."""
    return GanBank.build([(layer, shape)], image_channels, cfg)


LayerGAN = layer_bank  # the name of 0.1 (a function, not a class)


def stacked(cfg: FitConfig, device: torch.device) -> bool:
    """Whether the fit runs all layers as one stacked bank (``cfg.stack_layers``; "auto":
    on a GPU, and on a CPU when G and D are at most 64 channels wide)."""
    if cfg.stack_layers != "auto":
        return cfg.stack_layers == "on"
    return device.type != "cpu" or max(*cfg.g_channels, *cfg.d_channels) <= 64


def make_optimizers(bank: GanBank, cfg: FitConfig) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam for C/G and for D (``cfg.adam``: "fused" — one kernel for all parameters —,
    "foreach" or "loop", the per-parameter reference)."""
    kw = {"fused": True} if cfg.adam == "fused" else {"foreach": cfg.adam == "foreach"}
    g, d = bank.param_groups()
    return (torch.optim.Adam([p for _, p in g], lr=cfg.lr, betas=cfg.betas, **kw),
            torch.optim.Adam([p for _, p in d], lr=cfg.lr, betas=cfg.betas, **kw))


@dataclasses.dataclass
class Phase:
    scale: int
    alpha: float
    warmup: bool
    step: int = 0


def schedule(cfg: FitConfig, step: int) -> Phase:
    """Scale, fade-in weight and warm-up flag at a global ``step``.

    Progressive growing: scale s runs ``steps_per_scale[s]`` steps, fading in over the first
    ``fade_fraction`` of them. Warm-up (L_I only, D not updated): the first ``warmup_fraction``
    of each scale's steps (``warmup_each_scale``; D then trains at every scale) or of all steps."""
    total = sum(cfg.steps_per_scale)
    start = 0
    for s, n in enumerate(cfg.steps_per_scale):
        if step < start + n or s == len(cfg.steps_per_scale) - 1:
            into = step - start
            fade = cfg.fade_fraction * n
            alpha = 1.0 if s == 0 or fade <= 0 else min(1.0, (into + 1) / fade)
            warm = into < cfg.warmup_fraction * n if cfg.warmup_each_scale else step < cfg.warmup_fraction * total
            return Phase(s, alpha, warm, step)
        start += n
    raise AssertionError


def warmup_steps(cfg: FitConfig) -> list[int]:
    """Per scale, how many of its steps :func:`schedule` spends in the L_I-only warm-up."""
    total, start, out = sum(cfg.steps_per_scale), 0, []
    for n in cfg.steps_per_scale:
        out.append(math.ceil(cfg.warmup_fraction * n) if cfg.warmup_each_scale else
                   max(0, min(n, math.ceil(cfg.warmup_fraction * total) - start)))
        start += n
    return out


def gan_step(banks: Sequence[GanBank], classifier: nn.Module, loss_fn,
             opts: Sequence[tuple[torch.optim.Optimizer, torch.optim.Optimizer]],
             feats: Mapping[str, torch.Tensor], real: torch.Tensor, target: torch.Tensor,
             phase: Phase, lam: float, image_size: int,
             amp: bool = False) -> list[dict[str, torch.Tensor]]:
    """One InterpretGAN step for every member of every bank: a D update (unless warming up),
    then the C/G update on GAN loss + λ·L_I (Eq. 3–4).

    feats[layer]: (B, *shape) that layer's output; real: (B, C, H, W) images; target: (B,) f(x).
    All members' explanations go through the frozen classifier as one batch (one forward and
    backward for every layer, the costliest part of a step); since each member's loss only
    reaches its own C/G, this equals separate steps per member. ``amp``: forward passes under
    bf16 autocast (weights, optimiser state and losses stay fp32).

    Returns, per bank, ``{stat: (M,) tensor}`` (``l_i``, and ``g_loss``, ``d_loss``, … after
    warm-up), detached and left on the device: reading them is the caller's (rare) sync.
    """
    device = real.device
    out: list[dict[str, torch.Tensor]] = [{} for _ in banks]
    with autocast(amp, device):
        x_hats = [b.explain_all([feats[l] for l in b.layers], phase.scale, phase.alpha) for b in banks]
    if not phase.warmup:
        real_r = to_resolution(real, banks[0].G.resolution(phase.scale))
        for b, x_hat, (_, opt_d), stats in zip(banks, x_hats, opts, out):
            with autocast(amp, device):
                d_total, d_stats = loss_fn.d_loss(b.D, real_r, x_hat.detach(), phase.scale,
                                                  phase.alpha, phase.step)
            opt_d.zero_grad(set_to_none=True)
            d_total.backward()
            opt_d.step()
            stats.update(d_stats)
    with autocast(amp, device):
        li = interpretability_loss(classifier, torch.cat(x_hats), target, image_size)  # (ΣM,)
    total = lam * li.sum()
    offset = 0
    for b, x_hat, stats in zip(banks, x_hats, out):
        m = len(b.layers)
        stats["l_i"] = li[offset: offset + m].detach()
        offset += m
        if not phase.warmup:
            with frozen_params(b.D), autocast(amp, device):  # no weight gradients for D here
                scores = b.D(x_hat, phase.scale, phase.alpha)
            g_adv = loss_fn.g_loss(scores.float())
            total = total + g_adv.sum()
            stats["g_loss"] = g_adv.detach()
    for opt_g, _ in opts:
        opt_g.zero_grad(set_to_none=True)
    total.backward()
    for b, (opt_g, _) in zip(banks, opts):
        opt_g.step()
        b.update_ema()
    return out


def check_fit_data(train_size: int, cfg: FitConfig) -> None:
    """The fit's training images fill at least one batch (every step takes a full one);
    else a one-line ``ValueError`` saying what to change."""
    if train_size < cfg.batch_size:
        raise ValueError(f"the training split holds {train_size} image(s), fewer than one fit batch "
                         f"(fit.batch_size {cfg.batch_size}): add images, or pass --set "
                         f"fit.batch_size=N with N ≤ {train_size}")


def _stream(ds, batch_size: int, seed: int, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled batches; step k always gets the same batch (so resume is exact)."""
    nb = num_batches(ds, batch_size, drop_last=True)
    if nb == 0:
        raise ValueError(f"{len(ds)} training image(s) fill no batch of {batch_size}")
    epoch, skip = divmod(start_step, nb)
    while True:
        for i, (x, y) in enumerate(batches(ds, batch_size, shuffle=True, seed=seed, epoch=epoch,
                                            drop_last=True)):
            if i >= skip:
                yield x, y
        epoch, skip = epoch + 1, 0


def _fit_setup(classifier: nn.Module, eval_x: torch.Tensor, cfg: FitConfig, layers: Sequence[str] | None):
    """The fit's setup, before any work: the classifier frozen in eval mode, the layers, their
    output shapes and readings (an unreadable token layer fails here), the image's channels
    and size, and ``cfg`` with the generators' scales following that size. Returns
    ``(cfg, names, shapes, readings, (channels, size))``."""
    classifier.eval()
    for p in classifier.parameters():
        p.requires_grad_(False)
    names = list(layers or cfg.layers or default_layers(classifier))
    x0 = eval_x[:2].to(module_device(classifier))
    shapes = layer_shapes(classifier, x0, names)
    readings = layer_readings(shapes, cfg.tokens)  # an unreadable token layer: before any work
    image_channels, image_size = x0.shape[1], x0.shape[-1]
    sized = fit_for_image_size(cfg, image_size)  # the generators' scales follow the input size
    if sized != cfg:
        log.info("%d px inputs: %d generator scales (g_channels %s, steps %s)", image_size,
                 len(sized.g_channels), list(sized.g_channels), list(sized.steps_per_scale))
        cfg = sized
    if 4 * 2 ** (len(cfg.g_channels) - 1) != image_size:
        log.info("generator renders %d px; explanations are resized to the classifier's %d px",
                 4 * 2 ** (len(cfg.g_channels) - 1), image_size)
    for n, r in readings.items():
        log.info("%s: read as %s", n, r.describe())
    return cfg, names, shapes, readings, (image_channels, image_size)


def fit_generators(classifier: nn.Module, train_set, eval_x: torch.Tensor, cfg: FitConfig,
                   out_dir: str | Path, layers: Sequence[str] | None = None,
                   progress: bool = True, stop_after: int | None = None,
                   log_every: int = 50, world: World | None = None,
                   log_dir: str | Path | None = None) -> dict[str, GanBank]:
    """Train one generator per layer of the frozen ``classifier``, on the classifier's device;
    resumable.

    ``train_set``: images for the GAN (real samples and classifier inputs), in CPU memory,
    moved a batch at a time. ``eval_x``: held-out images (N, C, H, W) for the running
    agreement and the agreement floor. ``stop_after``: end the call after that many steps
    (to simulate a kill in tests). Every layer's state is written to its own files
    (``fit/<layer>/``), so a later process could fit a share of the layers. Returns
    ``{layer: one-member GanBank}``.

    After the scheduled steps, members below the agreement floor ``cfg.min_agreement`` keep
    fitting at the last scale (:func:`_fit_to_floor`).

    ``world``: with several ranks, this rank fits only its share of the members
    (:func:`~interpretgan.distributed.shard_members`) on the same data stream, writes only
    their files, and logs to ``metrics.jsonl`` (rank 0) or ``metrics.rank<r>.jsonl``;
    ``config.json`` (all layers) is rank 0's. Returns this rank's members.

    ``log_dir``: TensorBoard events there, by rank 0 for its members (:func:`_log_row`,
    :func:`_log_explanations`), at the fit's steps; they change no result.
    """
    if log_dir is not None:
        require_tensorboard()  # the optional package, before any work
    world = world or World()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = module_device(classifier)
    cfg, names, shapes, readings, (image_channels, image_size) = _fit_setup(classifier, eval_x, cfg, layers)
    keys = [member_key(n, g) for n in names for g in cfg.generator_seeds]
    amp = use_amp(cfg.amp, device)
    total = sum(cfg.steps_per_scale)

    # The members (one per layer and generator seed), as one stacked bank or one bank each;
    # resumed where saved (members the agreement floor has stopped stay aside, frozen).
    members = [(k, shapes[split_member(k)[0]]) for k in keys]
    if world.distributed:  # this rank's share, balanced by compute
        members = shard_members(members, [member_cost(s, image_channels, cfg) for _, s in members], world)
    mine = [n for n, _ in members]
    start, saved, disk = _resume_point(out, members, cfg)
    if world.main:
        _write_config(out, cfg, names, keys, shapes, readings)
    if not members:
        log.warning("rank %d has no layer to fit: %d ranks for %d members (a member's batch is "
                    "not split across ranks, see distributed.py)", world.rank, world.size, len(keys))
        return {}
    floor, frozen, banks, opts = _resumed_banks(members, saved, image_channels, cfg, device)
    log.info("fitting %d members (%d layers × %d generator seeds) on %s (%s, %s)", len(mine),
             len(names), len(cfg.generator_seeds), device, "bf16 autocast" if amp else "fp32",
             "one stacked bank" if len(banks) == 1 else f"{len(banks)} banks")
    run = _FitRun(classifier, cfg, out, eval_x, image_size, image_channels, GAN_LOSSES.get(cfg.gan_loss)(),
                  amp, world, disk, train_set, log_every, progress, stop_after, start,
                  TensorBoard(log_dir if world.main else None, purge_step=start + 1))
    with run.board:
        return _scheduled_then_floor(run, banks, opts, start, total, (frozen, floor, mine))


def _write_config(out: Path, cfg: FitConfig, names: Sequence[str], keys: Sequence[str],
                  shapes: Mapping[str, Sequence[int]], readings: Mapping[str, LayerReading]) -> None:
    """``fit/config.json``: the resolved config, the layers, the members, their shapes and readings."""
    write_json(out / "config.json", {"fit": dataclasses.asdict(cfg), "layers": list(names), "members": list(keys),
                                     "shapes": {n: list(s) for n, s in shapes.items()},
                                     "readings": {n: r.as_dict() for n, r in readings.items()}})


def _resumed_banks(members: Sequence[tuple[str, Sequence[int]]], saved: Sequence[dict | None],
                   image_channels: int, cfg: FitConfig, device: torch.device):
    """The fit's members as :func:`_resume_point` left them (``saved``: their documents): the
    saved floor records, the members the floor has stopped (their documents, kept aside,
    frozen), and the banks and optimisers of the others, resumed where saved. Returns
    ``(floor, frozen, banks, opts)``."""
    floor = _saved_floor(saved)
    frozen = {n: doc for (n, _), doc in zip(members, saved) if floor and not floor[n]["active"]}
    live = [(m, doc) for m, doc in zip(members, saved) if m[0] not in frozen]
    banks, opts = _build_banks([m for m, _ in live], [doc for _, doc in live], image_channels, cfg, device)
    return floor, frozen, banks, opts


def _scheduled_then_floor(run: "_FitRun", banks, opts, start: int, total: int, floor_state) -> dict:
    """The scheduled steps from ``start`` (a resumed fit: past the saved step), then, where
    ``cfg.min_agreement`` asks for it, the agreement floor (:func:`_fit_to_floor`, given
    ``floor_state``: the frozen members, the saved floor, this rank's members)."""
    if start < total:
        if start > 0:
            log.info("resuming generator fitting at step %d of %d", start, total)
        if _run_steps(run, banks, opts, start, total, {}, None) or run.cfg.min_agreement <= 0:
            return _views(banks)
    elif run.cfg.min_agreement <= 0:
        return _views(banks)
    return _fit_to_floor(run, banks, opts, max(start, total), *floor_state)


@dataclasses.dataclass
class _FitRun:
    """What every step of one :func:`fit_generators` call shares."""

    classifier: nn.Module
    cfg: FitConfig  # sized for the input (fit_for_image_size)
    out: Path
    eval_x: torch.Tensor  # (N, C, H, W) held-out images
    image_size: int
    image_channels: int
    loss_fn: object
    amp: bool
    world: World
    disk: dict  # what is on disk (_resume_point, _save_members)
    train_set: object
    log_every: int
    progress: bool
    stop_after: int | None
    start: int  # the step this call started at
    board: TensorBoard = dataclasses.field(default_factory=lambda: TensorBoard(None))  # events (main rank)


def _build_banks(members: Sequence[tuple[str, Sequence[int]]], docs: Sequence[dict | None],
                 image_channels: int, cfg: FitConfig, device: torch.device):
    """The banks (one stacked bank, or one per member: :func:`stacked`) and their optimisers
    for ``members``, each from its saved document (weights and Adam state) or, where ``docs``
    holds None, from its initial weights. Returns ``(banks, opts)``."""
    parts = [GanBank.build([m], image_channels, cfg) for m in members]
    for p, doc in zip(parts, docs):
        if doc is not None:
            p.load_state_dict(doc["state"])
    groups = [parts] if stacked(cfg, device) else [[p] for p in parts]
    banks = [(GanBank.stack(g) if len(g) > 1 else g[0]).to(device) for g in groups if g]
    opts = [make_optimizers(b, cfg) for b in banks]
    if docs and docs[0] is not None:
        it = iter(docs)
        for b, o in zip(banks, opts):
            _load_adam(b, o, [next(it) for _ in b.layers])
    return banks, opts


def _run_steps(run: _FitRun, banks: Sequence[GanBank], opts, first: int, stop: int,
               frozen: dict[str, dict], floor: dict[str, dict] | None) -> bool:
    """Steps ``first`` … ``stop - 1`` of the fit for the members in ``banks`` (the schedule's
    phase at each step: past the scheduled steps, the last scale at full weight): a batch, the
    frozen classifier's layer outputs and labels, one joint step; metrics rows every
    ``log_every`` steps, at the end of each scale and at ``stop``, every member's files (``frozen``'s too,
    with the ``floor`` records) every ``ckpt_every`` steps, at the end of each scale and at a
    kill. Returns whether the call was killed (``stop_after``). Losses stay on the device and
    are read only when a row is logged."""
    cfg, classifier = run.cfg, run.classifier
    device = module_device(classifier)
    total = sum(cfg.steps_per_scale)
    names = [n for b in banks for n in b.layers]
    stream = _stream(run.train_set, cfg.batch_size, cfg.seed, first)
    bar = progress_bar(range(first, stop), total=stop, initial=first, enabled=run.progress,
                       desc=("fit " if first < total else "fit to floor ") + ",".join(n.split(".")[-1] for n in names)[:40])
    sums: list[dict[str, torch.Tensor]] = [{} for _ in banks]
    t0, done = time.perf_counter(), 0
    for step in bar:
        x, _ = next(stream)
        x = x.to(device, non_blocking=True)
        phase = schedule(cfg, step)
        with torch.no_grad():
            feats = member_features(classifier, x, names)
            target = classifier(x).argmax(1)
        for b in banks:
            b.train()
        stats = gan_step(banks, classifier, run.loss_fn, opts, feats, x, target, phase, cfg.lam,
                         run.image_size, amp=run.amp)
        for acc, st in zip(sums, stats):
            for k, v in st.items():
                acc[k] = acc[k] + v if k in acc else v.clone()
        done += 1
        end_of_scale = step + 1 == total or schedule(cfg, step + 1).scale != phase.scale
        if (step + 1) % run.log_every == 0 or end_of_scale or step + 1 == stop:
            _log_row(run, banks, sums, done, phase, step, time.perf_counter() - t0, bar)
            sums, done = [{} for _ in banks], 0
        killed = run.stop_after is not None and step + 1 - run.start >= run.stop_after
        if (step + 1) % cfg.ckpt_every == 0 or end_of_scale or killed:
            if sums[0]:  # never save weights that went non-finite since the last row
                _check_losses(banks, sums, done, run.out, step)
            _save_members(run.out, banks, opts, step + 1, cfg, run.disk, frozen, floor)
            if end_of_scale:
                _save_scale(run, banks, phase, step)
        if killed:
            return True
    return False


def _log_row(run: _FitRun, banks, sums, done: int, phase: Phase, step: int, seconds: float, bar) -> None:
    """A metrics row: mean losses since the last row and the running agreement on 200 held-out
    images (one host sync), in ``metrics.jsonl`` and as TensorBoard scalars ``<member>/<loss>``,
    ``<member>/agreement`` at the fit's step."""
    means = _check_losses(banks, sums, done, run.out, step)
    agree = agreement(run.classifier, _views(banks), run.eval_x[:200], run.image_size, phase.scale,
                      alpha=phase.alpha)
    row = {"step": step + 1, "scale": phase.scale, "alpha": round(phase.alpha, 3),
           "warmup": phase.warmup, "seconds": seconds,
           **{f"{n}/{k}": v for n, st in means.items() for k, v in st.items()},
           **{f"{n}/agreement200": a for n, a in agree.items()}}
    world = run.world
    append_jsonl(run.out / ("metrics.jsonl" if world.main else f"metrics.rank{world.rank}.jsonl"), row)
    run.board.scalars(step + 1, {**{f"{n}/{k}": v for n, st in means.items() for k, v in st.items()},
                                 **{f"{n}/agreement": a for n, a in agree.items()}})
    bar.set_postfix(_postfix(means, agree), refresh=False)


def _save_scale(run: _FitRun, banks: Sequence[GanBank], phase: Phase, step: int) -> None:
    """G and C of every member at the end of ``phase.scale`` (``fit/<member>/scale<k>.pt``),
    and their explanations in TensorBoard (:func:`_log_explanations`)."""
    scale = phase.scale
    for b in banks:
        for i, n in enumerate(b.layers):
            save_checkpoint(run.out / layer_dirname(n) / f"scale{scale}.pt",
                            {"layer": n, "scale": scale, "shape": list(b.shapes[i]),
                             "state": b.member_state(i), "config": dataclasses.asdict(run.cfg)})
    _log_explanations(run, banks, phase, step)


SAMPLE_IMAGES = 8  # held-out images explained in TensorBoard at the end of every scale


@torch.no_grad()
def _log_explanations(run: _FitRun, banks: Sequence[GanBank], phase: Phase, step: int) -> None:
    """TensorBoard, per member, at the fit's step ``step + 1``: the image
    ``<member>/explanations``, the first :data:`SAMPLE_IMAGES` held-out images (top row) over
    their explanations at ``phase``'s scale and fade-in weight, resized to the classifier's
    input (bottom row); in eval mode (the moving average of C/G, if any), as the running
    agreement judges them. Draws no random numbers and changes no weight."""
    if not run.board.enabled:
        return
    x = run.eval_x[:SAMPLE_IMAGES].to(module_device(run.classifier))  # the same images every time
    feats = member_features(run.classifier, x, [n for b in banks for n in b.layers])
    for b in banks:
        with eval_mode(b):
            x_hats = b.explain_all([feats[n] for n in b.layers], phase.scale, phase.alpha)
        for n, x_hat in zip(b.layers, x_hats):
            shown = torch.cat([x, to_classifier(x_hat.float(), run.image_size)])
            run.board.images(step + 1, f"{n}/explanations", shown, nrow=len(x))


# ---------------------------------------------------------------------------- agreement floor
# After its scheduled steps, every member (one generator seed of one layer) is judged on its own:
# its held-out agreement on the fit's evaluation images (eval mode, so the moving average of C/G,
# at full resolution: what summary.json reports). A member below cfg.min_agreement keeps fitting
# at the last scale (GAN + λ·L_I, as in the final phase) in rounds of a quarter of the cap
# (cfg.max_extra_fraction × the scheduled steps), judged again after each; a member at or above
# the floor, or at the cap, stops and stays frozen. Members are judged alone, so a layer's seeds
# and a distributed fit's shares give the generators they give fitted apart. The decisions are
# saved in every member's checkpoint ("floor" records), so a kill anywhere resumes exactly.
EXTRA_ROUNDS = 4


def extra_step_cap(cfg: FitConfig) -> int:
    """The most steps a member fits beyond the schedule to reach the agreement floor."""
    return int(round(cfg.max_extra_fraction * sum(cfg.steps_per_scale)))


def _fit_to_floor(run: _FitRun, banks: list[GanBank], opts, step: int, frozen: dict[str, dict],
                  floor: dict[str, dict] | None, order: Sequence[str]) -> dict[str, GanBank]:
    """Extra rounds at the last scale for the members below ``cfg.min_agreement``, from
    ``step`` (≥ the scheduled steps) up to the cap; ``frozen``: saved documents of the
    members already stopped, ``floor``: the saved records (None: none yet). Returns every
    member (``order``) as in :func:`fit_generators`."""
    cfg = run.cfg
    total = sum(cfg.steps_per_scale)
    end = total + extra_step_cap(cfg)
    length = max(1, math.ceil((end - total) / EXTRA_ROUNDS))
    while True:
        live = [n for b in banks for n in b.layers]
        boundary = (step - total) % length == 0 or step >= end
        if boundary and (floor is None or any(floor[n]["measured_at"] != step for n in live)):
            floor = _judge_floor(run, banks, floor, step, end)
            banks, opts, stopped = _keep_active(run, banks, opts, floor, step)
            frozen.update(stopped)
            _save_members(run.out, banks, opts, step, cfg, run.disk, frozen, floor)
        if not banks:
            break
        stop = min(end, total + ((step - total) // length + 1) * length)
        if _run_steps(run, banks, opts, step, stop, frozen, floor):
            break
        step = stop
    views = _views(banks)
    for n, doc in frozen.items():
        views[n] = GanBank.empty([(n, doc["shape"])], run.image_channels, cfg,
                                 module_device(run.classifier))
        views[n].load_state_dict(doc["state"])
    return {n: views[n] for n in order}


def _judge_floor(run: _FitRun, banks: Sequence[GanBank], floor: dict[str, dict] | None, step: int,
                 end: int) -> dict[str, dict]:
    """``floor`` with a new record for every member in ``banks``: its held-out agreement at
    ``step`` and whether it keeps fitting (below the floor, before the cap ``end``)."""
    cfg = run.cfg
    agree = agreement(run.classifier, _views(banks), run.eval_x, run.image_size)
    floor = dict(floor or {})
    for n, a in agree.items():
        floor[n] = {"agreement": a, "measured_at": step, "active": a < cfg.min_agreement and step < end,
                    "scheduled": floor.get(n, {}).get("scheduled", a)}  # after the scheduled steps
    below = {n: a for n, a in agree.items() if a < cfg.min_agreement}
    total = sum(cfg.steps_per_scale)
    if below and step < end:
        log.info("agreement floor %.2f: %d member(s) below it at step %d (%s); fitting them on at "
                 "the last scale, up to %d more steps", cfg.min_agreement, len(below), step,
                 ", ".join(f"{n} {a:.3f}" for n, a in below.items()), end - step)
    elif below:
        log.warning("agreement floor %.2f not reached after %d extra steps by %s: their Acc_i is "
                    "marked unreliable", cfg.min_agreement, step - total,
                    ", ".join(f"{n} ({a:.3f})" for n, a in below.items()))
    return floor


def _keep_active(run: _FitRun, banks: list[GanBank], opts, floor: dict[str, dict], step: int):
    """The banks regrouped to the members ``floor`` keeps fitting (weights and Adam states
    carried over), and the saved documents of those it stops. Returns ``(banks, opts,
    {stopped member: document})``."""
    if all(floor[n]["active"] for b in banks for n in b.layers):
        return banks, opts, {}
    docs = _member_docs(banks, opts, step, run.cfg)
    keep = [(n, b.shapes[i]) for b in banks for i, n in enumerate(b.layers) if floor[n]["active"]]
    stopped = {n: doc for n, doc in docs.items() if not floor[n]["active"]}
    banks, opts = _build_banks(keep, [docs[n] for n, _ in keep], run.image_channels, run.cfg,
                               module_device(run.classifier))
    return banks, opts, stopped


def _saved_floor(saved: Sequence[dict | None]) -> dict[str, dict] | None:
    """The floor records of the saved members (None unless every member has one)."""
    if not saved or any(doc is None or "floor" not in doc for doc in saved):
        return None
    return {doc["layer"]: {k: doc["floor"][k] for k in ("agreement", "measured_at", "active", "scheduled")}
            for doc in saved}


def floor_records(fit_dir: str | Path) -> dict[str, dict]:
    """``{member: floor record}`` of a fit folder's final checkpoints (agreement, the step it
    was judged at, whether it was still fitting, the extra steps it took); members without
    one (a fit without the floor, a folder without a fit) are left out."""
    fit_dir = Path(fit_dir)
    if not (fit_dir / "config.json").exists():
        return {}
    meta = read_json(fit_dir / "config.json")
    out = {}
    for n in meta.get("members", meta["layers"]):
        path = fit_dir / layer_dirname(n) / "last.pt"
        doc = load_checkpoint(path) if path.exists() else {}
        if "floor" in doc:
            out[n] = doc["floor"]
    return out


def floor_summary(summary: dict, cfg: FitConfig, records: Mapping[str, dict]) -> dict:
    """The agreement floor's outcome for ``summary.json``: per member ``reliable`` (its held-out
    agreement in ``summary`` at or above ``cfg.min_agreement``) and ``extra_steps``; per layer
    ``reliable`` when every generator seed of it is (and, where the floor judged it, its
    agreement when the scheduled steps ended). Returns the fields to add."""
    rows = summary["layers"]
    for n, row in rows.items():
        row["reliable"] = row["agreement"] >= cfg.min_agreement
        row["extra_steps"] = records.get(n, {}).get("extra_steps", 0)
        if n in records:  # its agreement when the scheduled steps ended
            row["agreement_scheduled"] = records[n]["scheduled"]
    layers = {layer: all(rows[k]["reliable"] for k in keys)
              for layer, keys in members_by_layer(list(rows)).items()}
    return {"agreement_floor": cfg.min_agreement, "max_extra_steps": extra_step_cap(cfg),
            "reliable": layers}


def _check_losses(banks, sums, done: int, out: Path, step: int) -> dict[str, dict[str, float]]:
    """The mean losses since the last row (one host sync); a non-finite one stops the fit."""
    means = _member_means(banks, sums, done)
    bad = [f"{n}/{k}" for n, st in means.items() for k, v in st.items() if not math.isfinite(v)]
    if bad:
        raise NonFiniteError(f"generator fitting in {out}: non-finite {', '.join(bad)} at step {step + 1}")
    return means


def _views(banks: Sequence[GanBank]) -> dict[str, GanBank]:
    return {n: b.member(i) for b in banks for i, n in enumerate(b.layers)}


def _member_means(banks: Sequence[GanBank], sums: Sequence[dict[str, torch.Tensor]],
                  done: int) -> dict[str, dict[str, float]]:
    """``{layer: {stat: mean since the last row}}`` from the per-bank (M,) sums."""
    out: dict[str, dict[str, float]] = {}
    for b, acc in zip(banks, sums):
        cols = {k: (v / max(1, done)).tolist() for k, v in acc.items()}
        for i, n in enumerate(b.layers):
            out[n] = {k: vals[i] for k, vals in cols.items()}
    return out


def _postfix(means: dict[str, dict[str, float]], agree: dict[str, float]) -> dict[str, str]:
    """Progress-bar fields: the mean losses over layers since the last row, then the running
    agreement per layer (by the last part of its name)."""
    out = {}
    for key, label in (("l_i", "L_I"), ("g_loss", "G"), ("d_loss", "D")):
        vals = [s[key] for s in means.values() if key in s]
        if vals:
            out[label] = f"{sum(vals) / len(vals):.3f}"
    out.update({n.split(".")[-1]: f"{a:.2f}" for n, a in agree.items()})
    return out


# ---------------------------------------------------------------------------- checkpoints
# Each layer's state lives in fit/<layer>/last.pt, and one earlier save in prev.pt. All
# layers are saved at the same steps, and a save never moves away the step every layer is
# known to have on disk (``disk["shared"]``): whatever the kills during saves, all layers
# keep one common step, and the fit resumes exactly from the latest one.
def _save_members(out: Path, banks: Sequence[GanBank], opts, step: int, cfg: FitConfig,
                  disk: dict, frozen: Mapping[str, dict] | None = None,
                  floor: Mapping[str, dict] | None = None) -> None:
    """Every member's ``last.pt`` at ``step``: those in ``banks``, and the ``frozen`` ones
    (saved documents of members the agreement floor stopped), each with its ``floor``
    record (and the extra steps it took) once the floor has judged it."""
    docs = _member_docs(banks, opts, step, cfg)
    docs.update({n: {**doc, "step": step} for n, doc in (frozen or {}).items()})
    total = sum(cfg.steps_per_scale)
    for n, doc in docs.items():
        if floor is not None:
            rec = floor[n]
            doc["floor"] = {**rec, "extra_steps": (step if rec["active"] else rec["measured_at"]) - total}
        d = out / layer_dirname(n)
        if disk["last"].get(n) is not None and disk["last"][n] == disk["shared"]:
            os.replace(d / "last.pt", d / "prev.pt")  # keep the shared step as prev
        save_checkpoint(d / "last.pt", doc)  # (a last.pt ahead of the shared step is replaced)
        disk["last"][n] = step
    disk["shared"] = step


def _member_docs(banks: Sequence[GanBank], opts, step: int, cfg: FitConfig) -> dict[str, dict]:
    """``{member: checkpoint document}``: its weights and Adam states at ``step``."""
    docs = {}
    for b, (opt_g, opt_d) in zip(banks, opts):
        g_names, d_names = b.param_groups()
        for i, n in enumerate(b.layers):
            docs[n] = {"layer": n, "shape": list(b.shapes[i]), "step": step, "config": dataclasses.asdict(cfg),
                       "state": b.member_state(i), "adam_g": _adam_slice(opt_g, g_names, i),
                       "adam_d": _adam_slice(opt_d, d_names, i)}
    return docs


def _adam_slice(opt: torch.optim.Optimizer, named: list[tuple[str, nn.Parameter]], i: int) -> dict:
    """Member ``i``'s share of an Adam state, keyed by one-member parameter names."""
    out = {}
    for k, p in named:
        ck = _c_index(k)
        if ck is not None and ck[1] != i:
            continue
        key = k if ck is None else f"{ck[0]}0.{ck[2]}"
        st = opt.state.get(p, {})
        out[key] = {s: (v if s == "step" else (v[i] if ck is None else v)).detach().cpu().clone()
                    for s, v in st.items()}
    return out


def _load_adam(bank: GanBank, opts, docs: Sequence[dict]) -> None:
    """Put the saved members' Adam states (``docs``, in member order) into ``bank``'s optimisers."""
    for opt, named, field in zip(opts, bank.param_groups(), ("adam_g", "adam_d")):
        sd = opt.state_dict()
        state = {}
        for idx, (k, p) in enumerate(named):
            ck = _c_index(k)
            if ck is None:
                per = [d[field][k] for d in docs]
                if not per[0]:
                    continue
                state[idx] = {s: (per[0][s] if s == "step" else torch.stack([q[s] for q in per]))
                              for s in per[0]}
            else:
                saved = docs[ck[1]][field][f"{ck[0]}0.{ck[2]}"]
                if saved:
                    state[idx] = dict(saved)
        opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


def _resume_point(out: Path, members: Sequence[tuple[str, Sequence[int]]],
                  cfg: FitConfig) -> tuple[int, list[dict | None], dict]:
    """The latest step saved for every member, each member's saved document at that step
    (all None when nothing is saved), and what is on disk (``{"shared": step, "last":
    {layer: step of last.pt}}``) for :func:`_save_members`."""
    found: list[dict[int, dict]] = []
    lasts: dict[str, int | None] = {}
    last_docs: dict[str, dict] = {}
    for n, shape in members:
        steps = {}
        for name in ("prev.pt", "last.pt"):
            path = out / layer_dirname(n) / name
            if path.exists():
                ck = load_checkpoint(path)
                if not same_config(ck["config"], cfg) or tuple(ck["shape"]) != tuple(shape):
                    raise ValueError(f"{path} was written with another config or classifier; "
                                     "use a new run directory")
                steps[ck["step"]] = ck
                if name == "last.pt":
                    last_docs[n] = ck
        found.append(steps)
        lasts[n] = next((s for s, ck in steps.items() if ck is last_docs.get(n)), None)
    if not any(found):
        return 0, [None] * len(members), {"shared": None, "last": lasts}
    common = set.intersection(*(set(s) for s in found)) if all(found) else set()
    if not common:  # a member never saved (killed during the first save): start again
        log.warning("fit checkpoints in %s do not share a step; starting the fit again", out)
        return 0, [None] * len(members), {"shared": None, "last": lasts}
    step = max(common)
    return step, [s[step] for s in found], {"shared": step, "last": lasts}


def load_generators(fit_dir: str | Path, image_channels: int = 1,
                    device: str | torch.device = "cpu") -> dict[str, GanBank]:
    """The fitted generators of a run folder's ``fit/`` (final state): ``{member: one-member
    GanBank}`` in eval mode on ``device``, one member per layer and generator seed
    (:func:`member_key`; with one seed, the layer names)."""

    fit_dir = Path(fit_dir)
    meta = read_json(fit_dir / "config.json")
    cfg = from_dict(FitConfig, meta["fit"])
    gans = {}
    for n in meta.get("members", meta["layers"]):
        ck = load_checkpoint(fit_dir / layer_dirname(n) / "last.pt")
        lg = GanBank.empty([(n, ck["shape"])], image_channels, cfg, device)
        lg.load_state_dict(ck["state"])
        gans[n] = lg.eval()
    return gans


def summarize_fit(classifier: nn.Module, gans: dict[str, GanBank], eval_x: torch.Tensor,
                  real_ref: torch.Tensor, feat_net, seconds: float | None = None,
                  batch_size: int = 250) -> dict:
    """Agreement and realism (KID vs held-out real images) per layer, with a real-vs-real
    KID as the floor to read them against.

    eval_x, real_ref: (N, C, H, W) images in [0, 1] (CPU as a rule; batches go to the
    classifier's device, where ``gans`` and ``feat_net`` must be too)."""

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
                feats = member_features(classifier, eval_x[s: s + batch_size].to(dev), [n])
                with eval_mode(lg):
                    fake.append(embed(feat_net, to_classifier(lg.explain(feats[n]), size)))
            k = kid(real_feats, torch.cat(fake))
            rows[n] = {"agreement": agree[n], "kid": k[0], "kid_std": k[1]}
    return {"layers": rows, "kid_real_vs_real": floor[0], "n_eval": len(eval_x),
            "fit_seconds": seconds}


def quality_summary(classifier: nn.Module, gans: dict[str, GanBank], data, eval_x: torch.Tensor,
                    real_ref: torch.Tensor, seconds: float | None = None) -> dict:
    """:func:`summarize_fit` with the realism network of ``data``'s dataset, trained (once,
    cached) on 10,000 of its training images, on the classifier's device."""


    full = load_split(data, "train")
    name = f"{data.dataset}-{data.image_size}-10k"
    if unpinned(data):  # no pinned files: cached by content
        name += "-" + content_digest(full)
    fnet = feature_net(full.subset(10000, seed=12345), name, device=module_device(classifier))
    return summarize_fit(classifier, gans, eval_x, real_ref, fnet, seconds)


def heldout_indices(size: int, dstar_indices: torch.Tensor | None,
                    n: int, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Held-out test images for judging generators: two disjoint index sets into a test
    split of ``size`` images, both outside D* (``dstar_indices``, see
    :func:`interpretgan.diagnosis.diagnose.dstar_indices`).

    Of the images outside D*, in order (with the split's ``labels`` (size,): in a seeded
    order balanced by class, :func:`~interpretgan.data.balanced_order`, so a split stored
    class by class is not judged on its first classes), the first k are the evaluation
    images (agreement, the fit's running agreement, the fake side of KID) and the next k
    KID's real reference, k = min(n, half of them). Returns ``(eval_idx, ref_idx,
    outside_dstar)``; when D* is the whole split (nothing is left outside it) the split's own
    images are used, with a warning, and ``outside_dstar`` is False.
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
    if labels is not None:
        pool = pool[balanced_order(torch.as_tensor(labels)[pool], seed=0)]
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
                      device: str | torch.device | None = None, progress: bool = True,
                      world: World | None = None, log_dir: str | Path | None = None) -> dict | None:
    """Fit generators for the frozen ``classifier`` into ``fit_dir`` and write
    ``fit_dir/summary.json`` (agreement + KID per layer); resumes a killed fit.

    Generators learn from ``data_cfg``'s training split (cut to ``fit_cfg.train_subset``);
    they are judged on test images outside D* (``dstar_indices`` into ``data_cfg``'s test
    split; :func:`heldout_indices`). ``device``: where to run (the classifier is moved there);
    None: where the classifier is. Data stay on the CPU. Returns the summary.

    ``world``: with several ranks, each fits its share of the layers (:func:`fit_generators`);
    rank 0 holds the folder's lock, writes the summary once every rank is done and returns
    it; the other ranks return None. ``log_dir``: TensorBoard events (:func:`fit_generators`).
    """
    if log_dir is not None:
        require_tensorboard()  # the optional package, before any work
    world = world or World()
    if device is not None:
        classifier.to(resolve_device(device))
    dev = module_device(classifier)
    train = load_split(data_cfg, "train")
    check_fit_data(len(train), fit_cfg)
    if fit_cfg.train_subset is not None:
        train = train.subset(fit_cfg.train_subset, seed=fit_cfg.seed)
    test = load_split(data_cfg, "test")
    eval_idx, ref_idx, outside = heldout_indices(len(test), dstar_indices, fit_cfg.eval_images,
                                                 dataset_labels(test))
    eval_x, _ = images_at(test, eval_idx)
    ref, _ = images_at(test, ref_idx)
    fit_dir = Path(fit_dir)
    fit_dir.mkdir(parents=True, exist_ok=True)
    # one fit per folder (`interpretgan fit` beside a `run`); rank 0 locks it for all ranks
    with RunLock(fit_dir) if world.main else contextlib.nullcontext():
        if world.main:
            sweep_temp(fit_dir)
        world.wait_all("fit-start")  # no rank writes before the sweep of temp files
        t0 = time.perf_counter()
        fit_generators(classifier, train, eval_x, fit_cfg, fit_dir, layers,
                       progress=progress and world.main, world=world, log_dir=log_dir)
        world.wait_all("fit-done")  # every rank's layers are on disk
        if not world.main:
            return None
        seconds = time.perf_counter() - t0
        gans = {n: g.to(dev) for n, g in load_generators(fit_dir, eval_x.shape[1]).items()}
        summary = quality_summary(classifier, gans, data_cfg, eval_x, ref, seconds)
        summary["heldout_outside_dstar"] = outside
        summary.update(floor_summary(summary, fit_for_image_size(fit_cfg, eval_x.shape[-1]),
                                     floor_records(fit_dir)))
        write_json(fit_dir / "summary.json", summary)
    return summary


# ---------------------------------------------------------------------------- fitting
def member_cost(shape: Sequence[int], image_channels: int, cfg) -> float:
    """The compute of one generator member in FLOPs: its compressor C on one feature map of
    ``shape`` (what differs between members — Conv1's C is the heaviest) plus G and D at the
    final scale (the same for every member), forward, counted on the meta device."""


    with torch.device("meta"):
        c = Compressor(tuple(shape), cfg.code_dim, cfg.c_width_mult, conv_small_maps=cfg.c_conv_small_maps, tokens=cfg.tokens)
        g = Generator(cfg.code_dim, cfg.g_channels, image_channels, members=1)
        d = Discriminator(cfg.d_channels, image_channels, members=1)
        feats = torch.empty(2, *shape)
        with FlopCounterMode(display=False) as counter:
            code = c(feats)
            img = g(code[None], None, 1.0)
            d(img, None, 1.0)
    return float(counter.get_total_flops()) / 2
