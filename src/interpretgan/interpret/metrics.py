"""Explanation quality: agreement lives in :mod:`fitting`; realism here, as KID in the
feature space of an independently trained classifier (never the one being explained)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.sources import default_cache_dir
from ..data.splits import batches
from ..runtime.devices import module_device
from ..runtime.runs import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


class FeatureNet(nn.Module):
    """A small independent CNN whose 128-d penultimate features score realism.

    x: (B, C, H, W) in [0, 1] → logits (B, num_classes); ``features(x)`` → (B, 128).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2), nn.ELU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ELU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(64 * 16, 128), nn.ELU())
        self.head = nn.Linear(128, num_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def feature_net(train_set, name: str, cache_dir: str | Path | None = None, epochs: int = 1,
                seed: int = 12345, device: str | torch.device = "cpu") -> FeatureNet:
    """Train (once, cached as ``feature-nets/<name>.pt``) the realism feature network, on
    ``device``; returned there, in eval mode. The cached weights are CPU tensors, so any
    device can reuse them; the initial weights and batch order come from CPU generators."""
    device = torch.device(device)
    path = Path(cache_dir or default_cache_dir()) / "feature-nets" / f"{name}.pt"
    shape = tuple(train_set.shape)
    net = FeatureNet(shape[0], train_set.num_classes)
    if path.exists():
        ck = load_checkpoint(path)
        if tuple(ck["shape"]) == shape:
            net.load_state_dict(ck["state_dict"])
            return net.to(device).eval()
    with torch.random.fork_rng():  # seeded without touching the caller's RNG
        torch.manual_seed(seed)
        net = FeatureNet(shape[0], train_set.num_classes).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        net.train()
        for epoch in range(epochs):
            for x, y in batches(train_set, 128, shuffle=True, seed=seed, epoch=epoch, device=device):
                loss = F.cross_entropy(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
    save_checkpoint(path, {"state_dict": {k: v.cpu() for k, v in net.state_dict().items()},
                           "shape": list(shape)})
    log.info("trained the realism feature network %s", path)
    return net.eval()


@torch.no_grad()
def embed(net: FeatureNet, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Features (N, 128) of images x (N, C, H, W), on the CPU; each batch runs on the
    network's device."""
    dev = module_device(net)
    return torch.cat([net.features(x[i: i + batch_size].to(dev)).cpu()
                      for i in range(0, len(x), batch_size)])


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = 10, subset_size: int = 100,
        seed: int = 0) -> tuple[float, float]:
    """Kernel inception distance between feature sets (N, d): the unbiased MMD² with the
    cubic polynomial kernel k(a, b) = (a·b/d + 1)³, averaged over random subsets.
    Returns ``(mean, std)``; 0 for identical distributions, larger is less realistic."""
    d = real.shape[1]
    m = min(subset_size, len(real), len(fake))
    g = torch.Generator().manual_seed(seed)  # subsets drawn on the CPU, whatever the device
    vals = []
    for _ in range(subsets):
        a = real[torch.randperm(len(real), generator=g)[:m].to(real.device)].double()
        b = fake[torch.randperm(len(fake), generator=g)[:m].to(fake.device)].double()
        kaa, kbb, kab = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
        mmd = ((kaa.sum() - kaa.diagonal().sum()) / (m * (m - 1))
               + (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1)) - 2 * kab.mean())
        vals.append(mmd.item())
    t = torch.tensor(vals)
    return t.mean().item(), (t.std().item() if len(vals) > 1 else 0.0)
