"""Training methods as step objects: natural, TRADES, Madry PGD-AT and ATTA-1 TRADES (one
perturbation kept per training example), each a :class:`Method` in :data:`TRAIN_METHODS`."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.transforms import crop_flip, uncrop_flip
from ..registry import Registry
from .attacks import kl_attack, pgd, trades_kl
from ..runtime.devices import noise_like
from ..runtime.distributed import BatchShare, World
from ..runtime.precision import autocast, use_amp


def _sgd_update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def natural_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                 y: torch.Tensor, amp: bool = False) -> dict[str, float]:
    """One SGD step on CE(f(x), y). x: (B, C, H, W), y: (B,). ``amp``: bf16 autocast."""
    return _ce_update(model, optimizer, x, y, amp, "acc")


def _ce_update(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               amp: bool, acc_key: str) -> dict[str, float]:
    """One SGD step on CE(f(x), y) in train mode; returns the loss and the batch accuracy
    (under ``acc_key``)."""
    model.train()
    with autocast(amp, x.device):
        logits = model(x).float()
    loss = F.cross_entropy(logits, y)
    _sgd_update(optimizer, loss)
    return {"loss": loss.item(), acc_key: (logits.argmax(1) == y).float().mean().item()}


def trades_update(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                  x_adv: torch.Tensor, y: torch.Tensor, beta: float,
                  amp: bool = False) -> dict[str, float]:
    """SGD step on the TRADES loss CE(f(x), y) + β·KL(f(x) ‖ f(x_adv))."""
    model.train()
    with autocast(amp, x.device):
        logits = model(torch.cat([x, x_adv])).float()
    nat, adv = logits[: len(x)], logits[len(x):]
    ce = F.cross_entropy(nat, y)
    kl = trades_kl(adv, nat)
    _sgd_update(optimizer, ce + beta * kl)
    return {"loss": (ce + beta * kl).item(), "ce": ce.item(), "kl": kl.item(),
            "acc": (nat.argmax(1) == y).float().mean().item(),
            "adv_acc": (adv.argmax(1) == y).float().mean().item()}


def trades_step(model, optimizer, x, y, eps: float = 0.3, alpha: float = 0.01, steps: int = 40,
                beta: float = 6.0, generator: torch.Generator | None = None,
                amp: bool = False, noise: torch.Tensor | None = None) -> dict[str, float]:
    """TRADES with a fresh k-step KL attack started at x + 0.001·N(0, 1) (``noise``: those
    N(0, 1) draws, x's shape, when given; else drawn from ``generator``)."""
    if noise is None:
        noise = noise_like(x, generator, normal=True)
    start = (x + 0.001 * noise.to(x.device)).clamp(0, 1)
    x_adv = kl_attack(model, x, start, eps, alpha, steps, amp)
    return trades_update(model, optimizer, x, x_adv, y, beta, amp)


def atta_trades_step(model, optimizer, x, y, delta: torch.Tensor, eps: float = 0.3,
                     alpha: float = 0.01, beta: float = 6.0,
                     amp: bool = False) -> tuple[dict[str, float], torch.Tensor]:
    """ATTA-1 + TRADES: continue the stored perturbation ``delta`` (B, C, H, W) by one KL
    step, train on the TRADES loss, and return ``(losses, new delta)``."""
    start = (x + delta).clamp(0, 1)
    x_adv = kl_attack(model, x, start, eps, alpha, 1, amp)
    out = trades_update(model, optimizer, x, x_adv, y, beta, amp)
    return out, (x_adv - x).detach()


def pgd_at_step(model, optimizer, x, y, eps: float = 0.3, alpha: float = 0.01, steps: int = 40,
                generator: torch.Generator | None = None, amp: bool = False,
                noise: torch.Tensor | None = None) -> dict[str, float]:
    """Madry et al.'s adversarial training: CE on PGD-k examples (random start; ``noise``:
    its uniform draws when given, see :func:`~interpretgan.attacks.pgd`)."""
    x_adv = pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, generator=generator, amp=amp,
                noise=noise)
    return _ce_update(model, optimizer, x_adv, y, amp, "adv_acc")


# --------------------------------------------------------------------------- methods
@dataclasses.dataclass
class Batch:
    """What one training step gets (:meth:`Method.step`): this rank's examples ``x`` (B, C, H, W)
    and ``y`` (B,), their rows ``idx`` in this rank's state, the crop + flip ``aug`` they were
    given (``(dy, dx, flip)``, or None), the method's ``state``, the run's ``cfg``
    (:class:`~interpretgan.robust.config.TrainConfig`), the random stream ``gen`` and the
    rank's ``share`` of the global batch (None for a lone process)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    idx: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    aug: tuple | None
    state: dict
    cfg: object
    gen: torch.Generator
    share: BatchShare | None


class Method:
    """Binds a step function to the training loop: per-run state and per-batch call.

    With W ranks, rank r trains on its contiguous 1/W of every global batch; a method with
    per-example state (``by_index``) shards it by example index instead: rank r holds
    examples r, r + W, r + 2W, … and trains on exactly those examples of every batch
    (:func:`~interpretgan.distributed.batch_share`). ``idx`` in :meth:`step` are the rows of
    the batch's examples in this rank's state (example index // W). ``cfg`` is the run's
    :class:`~interpretgan.robust.config.TrainConfig`."""

    by_index = False  # ranks take their examples by index (per-example state) or by position

    def init_state(self, train_set, cfg, shape, world: World) -> dict:
        return {}

    def on_epoch_start(self, state: dict, cfg, epoch: int, world: World) -> None:
        pass

    def step(self, b: Batch) -> dict[str, float]:
        """One step on this rank's examples ``b.x``, ``b.y`` (``b.share``: their rows in the
        global batch, see :func:`_share_noise`)."""
        raise NotImplementedError

    def local_state(self, state: dict, world: World) -> dict:
        """This rank's share of a whole state (as a 1-rank run saves it)."""
        return state

    def merge_states(self, shards: list[dict]) -> dict:
        """The whole state from every rank's share (``shards[r]``: rank r's)."""
        return shards[0]


TRAIN_METHODS: Registry[Method] = Registry("training method")


def _share_noise(x: torch.Tensor, gen: torch.Generator, share: BatchShare | None,
                 normal: bool) -> torch.Tensor | None:
    """A rank's random-start draws: those of the whole global batch (what one process
    draws from ``gen``), at this rank's rows; None for a lone process (the step draws)."""
    if share is None:
        return None
    draw = torch.randn if normal else torch.rand
    return draw((share.total, *x.shape[1:]), generator=gen, device=gen.device,
                dtype=x.dtype)[share.rows.to(gen.device)]


class _Natural(Method):
    def step(self, b):
        return natural_step(b.model, b.optimizer, b.x, b.y, use_amp(b.cfg.amp, b.x.device))


class _Trades(Method):
    def step(self, b):
        cfg, x = b.cfg, b.x
        return trades_step(b.model, b.optimizer, x, b.y, cfg.eps, cfg.step_size, cfg.attack_steps,
                           cfg.beta, b.gen, use_amp(cfg.amp, x.device),
                           noise=_share_noise(x, b.gen, b.share, normal=True))


class _PgdAT(Method):
    def step(self, b):
        cfg, x = b.cfg, b.x
        return pgd_at_step(b.model, b.optimizer, x, b.y, cfg.eps, cfg.step_size, cfg.attack_steps, b.gen,
                           use_amp(cfg.amp, x.device), noise=_share_noise(x, b.gen, b.share, normal=False))


class _AttaTrades(Method):
    """Keeps one perturbation per training example (on the padded image when augmenting)."""

    PAD = 4
    by_index = True

    def init_state(self, train_set, cfg, shape, world):
        c, h, w = shape
        if cfg.data.augment:
            h, w = h + 2 * self.PAD, w + 2 * self.PAD
        return {"delta": self._fresh((len(train_set), c, h, w), cfg, cfg.seed, world),
                "examples": len(train_set)}

    @staticmethod
    def _fresh(shape, cfg, seed, world: World | None = None):
        """This rank's rows (r, r + W, …) of the (N, C, H, W) initial store: drawn in chunks
        of 256 examples from one stream and kept only where they are this rank's, so every
        world size gets the same numbers and no rank holds the whole store."""
        if cfg.atta_init not in ("normal", "uniform"):
            raise ValueError(f"atta_init must be 'normal' or 'uniform', not {cfg.atta_init!r}")
        world = world or World()
        g = torch.Generator().manual_seed(seed + 7)
        n, parts = shape[0], []
        for s in range(0, n, 256):
            rows = (min(256, n - s), *shape[1:])
            chunk = ((2 * torch.rand(rows, generator=g) - 1) * cfg.eps if cfg.atta_init == "uniform"
                     else 0.001 * torch.randn(rows, generator=g))
            first = (world.rank - s) % world.size  # first row of this chunk that is ours
            parts.append(chunk[first::world.size])
        return torch.cat(parts)

    def on_epoch_start(self, state, cfg, epoch, world):
        if cfg.atta_reset_every and epoch > 0 and epoch % cfg.atta_reset_every == 0:
            n = state.get("examples", len(state["delta"]))
            state["delta"] = self._fresh((n, *state["delta"].shape[1:]), cfg, cfg.seed + epoch, world)

    def local_state(self, state, world):
        if not world.distributed:
            return state
        return {**state, "delta": state["delta"][world.rank::world.size].clone()}

    def merge_states(self, shards):
        w = len(shards)
        n = shards[0].get("examples", sum(len(s["delta"]) for s in shards))
        full = shards[0]["delta"].new_empty((n, *shards[0]["delta"].shape[1:]))
        for r, s in enumerate(shards):
            full[r::w] = s["delta"]
        return {**shards[0], "delta": full}

    def step(self, b):
        model, optimizer, idx, x, y, aug, cfg = b.model, b.optimizer, b.idx, b.x, b.y, b.aug, b.cfg
        store = b.state["delta"]  # (N, C, H, W) on the CPU; idx and aug are CPU tensors
        if aug is None:
            delta = store[idx]
        else:
            dy, dx, flip = aug
            delta = crop_flip(store[idx], dy, dx, flip, x.shape[-2], x.shape[-1])
        out, new = atta_trades_step(model, optimizer, x, y, delta.to(x.device), cfg.eps,
                                    cfg.step_size, cfg.beta, use_amp(cfg.amp, x.device))
        new = new.cpu()
        if aug is None:
            store[idx] = new
        else:
            padded = store[idx]
            store[idx] = uncrop_flip(new, padded, *aug)
        return out


TRAIN_METHODS.register("natural", _Natural())
TRAIN_METHODS.register("trades", _Trades())
TRAIN_METHODS.register("pgd-at", _PgdAT())
TRAIN_METHODS.register("atta-trades", _AttaTrades())


