"""l∞ attacks on [0, 1] images: FGSM, PGD-k (random start), momentum PGD.

All three are one loop (:func:`pgd`): FGSM is one step of size ε from the clean point,
M-PGD accumulates gradients (g ← μ·g + ∇) before taking the sign. The model is put in
eval mode for the attack (its mode is restored afterwards) and its parameters' ``.grad``
are never touched: gradients are taken with respect to the input only.

>>> x_adv = pgd(model, x, y, eps=0.3, alpha=0.01, steps=40)
>>> atk = get_attack("pgd-40", dataset="mnist"); x_adv = atk(model, x, y)
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import Registry, UnknownNameError
from ..runtime.devices import eval_mode, frozen_params, noise_like
from ..runtime.precision import autocast

log = logging.getLogger(__name__)


def _check_eps(eps: float, alpha: float) -> None:
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must lie in [0, 1] for [0, 1] images, got {eps}")
    if alpha < 0:
        raise ValueError(f"step size must be non-negative, got {alpha}")


def _input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool,
                amp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """∇ₓ of the attack loss (CE, or −CE towards the target) and the logits."""
    x = x.detach().requires_grad_(True)
    with autocast(amp, x.device):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y, reduction="sum")
    if targeted:
        loss = -loss
    (grad,) = torch.autograd.grad(loss, [x])
    return grad, logits.detach()


def _step_and_project(xa: torch.Tensor, direction: torch.Tensor, x0: torch.Tensor, alpha: float,
                      eps: float, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """One step ``alpha · direction`` from ``xa``, projected onto the l∞ ball of radius ``eps``
    around ``x0`` and into ``[lo, hi]`` (every PGD-style attack's update; all (B, ...))."""
    xa = xa + alpha * direction
    return torch.min(torch.max(xa, x0 - eps), x0 + eps).clamp_(lo, hi)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 0.3, alpha: float = 0.01,
        steps: int = 40, random_start: bool = True, momentum: float = 0.0, targeted: bool = False,
        bounds: tuple[float, float] = (0.0, 1.0), early_stop: bool = False, amp: bool = False,
        generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Projected gradient descent in the l∞ ball of radius ``eps`` around ``x``.

    x: (B, ...) clean inputs in ``bounds``; y: (B,) true labels (target labels if
    ``targeted``). ``momentum`` μ > 0 gives M-PGD (g ← μ·g + ∇, step α·sign(g)).
    ``early_stop`` freezes samples as soon as they are misclassified (for accuracy
    evaluation only: a frozen sample stays fooled, so the robust accuracy is the same or
    lower). ``amp`` runs the model under bf16 autocast. ``noise``: the random start's
    uniform [0, 1) draws (x's shape) when given, else drawn from ``generator``. Returns the
    adversarial batch.
    """
    _check_eps(eps, alpha)
    lo, hi = bounds
    x = x.detach()
    with eval_mode(model), frozen_params(model):
        if random_start:
            u = noise_like(x, generator) if noise is None else noise.to(x.device)
            x_adv = (x + (2 * u - 1) * eps).clamp_(lo, hi)
        else:
            x_adv = x.clone()
        g = torch.zeros_like(x) if momentum else None
        active = torch.arange(len(x), device=x.device)
        for _ in range(steps):
            if len(active) == 0:
                break
            xa = x_adv[active]
            grad, logits = _input_grad(model, xa, y[active], targeted, amp)
            if early_stop:
                fooled = (logits.argmax(1) == y[active]) if targeted else (logits.argmax(1) != y[active])
                if fooled.any():
                    keep = ~fooled
                    active, xa, grad = active[keep], xa[keep], grad[keep]
                    if len(active) == 0:
                        break
            if g is not None:
                g[active] = momentum * g[active] + grad
                direction = g[active].sign()
            else:
                direction = grad.sign()
            x_adv[active] = _step_and_project(xa, direction, x[active], alpha, eps, lo, hi)
    return x_adv.detach()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 0.3,
         targeted: bool = False, bounds: tuple[float, float] = (0.0, 1.0), amp: bool = False,
         **_: object) -> torch.Tensor:
    """Fast gradient sign method: one step of size ε from the clean input."""
    return pgd(model, x, y, eps=eps, alpha=eps, steps=1, random_start=False, targeted=targeted,
               bounds=bounds, amp=amp)


def mpgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 0.3, alpha: float = 0.01,
         steps: int = 40, momentum: float = 1.0, **kwargs) -> torch.Tensor:
    """Momentum PGD as in the TRADES/ATTA evaluation code (g ← g + ∇, step α·sign(g))."""
    kwargs.setdefault("random_start", True)
    return pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, momentum=momentum, **kwargs)


# --------------------------------------------------------------------------- named attacks
ATTACK_KINDS: Registry = Registry("attack")
ATTACK_KINDS.register("pgd", pgd)
ATTACK_KINDS.register("mpgd", mpgd)
ATTACK_KINDS.register("fgsm", fgsm)

# ε and α of the paper's threat model per dataset.
THREAT_MODELS: dict[str, tuple[float, float]] = {
    "mnist": (0.3, 0.01),
    "fashion-mnist": (0.1, 0.01),
    "cifar10": (8 / 255, 0.003),
    "celeba": (2 / 255, 0.5 / 255),
    "folder": (8 / 255, 2 / 255),  # a folder of natural images: CIFAR-10's budget
}


@dataclasses.dataclass(frozen=True)
class Attack:
    """A configured attack: ``Attack("pgd", 0.3, 0.01, 40)(model, x, y)``."""

    kind: str
    eps: float
    alpha: float = 0.0
    steps: int = 1
    random_start: bool = True
    targeted: bool = False
    amp: bool = False

    def __post_init__(self):
        ATTACK_KINDS.get(self.kind)
        _check_eps(self.eps, self.alpha)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"an attack takes at least 1 step, got {self.steps!r}")

    @property
    def name(self) -> str:
        return self.kind if self.kind == "fgsm" else f"{self.kind}-{self.steps}"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 early_stop: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.kind == "fgsm":
            return fgsm(model, x, y, eps=self.eps, targeted=self.targeted, amp=self.amp)
        return ATTACK_KINDS.get(self.kind)(
            model, x, y, eps=self.eps, alpha=self.alpha, steps=self.steps,
            random_start=self.random_start, targeted=self.targeted, early_stop=early_stop,
            amp=self.amp, generator=generator)


_NAME = re.compile(r"^(?:(?P<ds>[a-z0-9]+(?:-mnist)?)-)?(?P<kind>m?pgd|fgsm)(?:-(?P<steps>\d+))?$")


def get_attack(name: str, dataset: str = "mnist", eps: float | None = None,
               alpha: float | None = None, **kwargs) -> Attack:
    """Parse a preset name: ``pgd-40``, ``pgd-100``, ``mpgd-40``, ``fgsm`` (threat model of
    ``dataset``), or with the dataset in front, ``cifar10-pgd-20``. ``eps``/``alpha`` override."""
    m = _NAME.match(name.strip().lower())
    if m is None or (m["kind"] != "fgsm" and m["steps"] is None):
        raise UnknownNameError(
            f"unknown attack {name!r}; use fgsm, pgd-K or mpgd-K (e.g. pgd-40), optionally "
            f"prefixed by a dataset ({', '.join(THREAT_MODELS)})")
    if m["kind"] != "fgsm" and int(m["steps"]) < 1:
        raise UnknownNameError(f"attack {name!r} takes no steps: use {m['kind']}-K with K ≥ 1 "
                               f"(e.g. {m['kind']}-40)")
    ds = m["ds"] or dataset
    if ds == "cifar":
        ds = "cifar10"
    if ds not in THREAT_MODELS:
        raise UnknownNameError(f"no threat model for dataset {ds!r}; known: {', '.join(THREAT_MODELS)}")
    d_eps, d_alpha = THREAT_MODELS[ds]
    eps = d_eps if eps is None else eps
    steps = 1 if m["kind"] == "fgsm" else int(m["steps"])
    alpha = (eps if m["kind"] == "fgsm" else d_alpha) if alpha is None else alpha
    if m["kind"] != "fgsm" and steps * alpha < eps:
        _warn_short(name, steps, alpha, eps)
    return Attack(m["kind"], eps, alpha, steps, **kwargs)


@functools.lru_cache(maxsize=None)  # once per attack and process, however often it is built
def _warn_short(name: str, steps: int, alpha: float, eps: float) -> None:
    """Warn that ``steps`` × ``alpha`` < ε: the attack cannot use its whole budget."""
    log.warning("%s: %d steps of %g move at most %.3g from the random start, less than ε = %g; it can "
                "be weaker than FGSM (%d steps or more reach ε)", name, steps, alpha, steps * alpha, eps,
                math.ceil(round(eps / alpha, 6)))


def paper_attacks(dataset: str) -> list[str]:
    """The attack columns of the paper's Table 2 (MNIST) / Table 3 (CIFAR-10)."""
    return {"mnist": ["pgd-40", "pgd-100", "mpgd-40", "fgsm"],
            "cifar10": ["pgd-20", "pgd-100", "mpgd-20", "fgsm"],
            "celeba": ["pgd-20"]}.get(dataset, ["pgd-40", "fgsm"])


def trades_kl(logits_adv: torch.Tensor, logits_nat: torch.Tensor) -> torch.Tensor:
    """KL(softmax(nat) ‖ softmax(adv)) summed over classes, averaged over the batch (TRADES)."""
    return F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits_nat, 1), reduction="batchmean")


def kl_attack(model: nn.Module, x: torch.Tensor, x_start: torch.Tensor, eps: float, alpha: float,
              steps: int, amp: bool = False) -> torch.Tensor:
    """TRADES' inner maximisation: ``steps`` sign steps on KL(f(x) ‖ f(x')) from ``x_start``.

    x, x_start: (B, C, H, W). Returns x' in the ε-ball around x, clipped to [0, 1].
    ``amp``: the model's forward passes under bf16 autocast.
    """
    with eval_mode(model), torch.no_grad(), autocast(amp, x.device):
        p_nat = F.softmax(model(x).float(), 1)
    x_adv = x_start.detach()
    with eval_mode(model), frozen_params(model):
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with autocast(amp, x.device):
                logits = model(x_adv)
            loss = F.kl_div(F.log_softmax(logits.float(), 1), p_nat, reduction="sum")
            (grad,) = torch.autograd.grad(loss, [x_adv])
            x_adv = _step_and_project(x_adv.detach(), grad.sign(), x, alpha, eps)
    return x_adv.detach()
