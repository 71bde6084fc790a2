"""Attacks: hand-checked steps on a linear model, bounds, modes, presets, torchattacks parity."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from conftest import need
from interpretgan import attacks
from interpretgan.attacks import Attack, fgsm, get_attack, mpgd, pgd, robust_accuracy


class Linear2(nn.Module):
    """logits = [w·x, −w·x]: for label 0 the loss falls along +w, so attacks move along −sign(w)."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float32))

    def forward(self, x):
        s = x.flatten(1) @ self.w
        return torch.stack([s, -s], 1)


W = [1.0, -2.0, 0.5, -0.25]


def test_fgsm_by_hand():
    m = Linear2(W)
    x = torch.full((1, 4), 0.5)
    out = fgsm(m, x, torch.tensor([0]), eps=0.1)
    torch.testing.assert_close(out, torch.tensor([[0.4, 0.6, 0.4, 0.6]]))
    # clamped to [0, 1]
    out = fgsm(m, torch.tensor([[0.05, 0.98, 0.5, 0.5]]), torch.tensor([0]), eps=0.1)
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.0, 0.4, 0.6]]))


def test_pgd_walks_to_the_corner_and_stays_in_ball():
    m = Linear2(W)
    x = torch.full((3, 4), 0.5)
    y = torch.zeros(3, dtype=torch.long)
    out = pgd(m, x, y, eps=0.2, alpha=0.03, steps=10, random_start=False)
    torch.testing.assert_close(out, x + 0.2 * torch.tensor([-1.0, 1, -1, 1]))
    out = pgd(m, x, y, eps=0.2, alpha=0.03, steps=3, random_start=False)
    torch.testing.assert_close(out, x + 0.09 * torch.tensor([-1.0, 1, -1, 1]))
    r = pgd(m, torch.rand(50, 4), torch.zeros(50, dtype=torch.long), eps=0.1, alpha=0.05, steps=5)
    assert r.min() >= 0 and r.max() <= 1


def test_targeted_moves_towards_the_target():
    m = Linear2(W)
    x = torch.full((1, 4), 0.5)
    out = pgd(m, x, torch.tensor([0]), eps=0.1, alpha=0.1, steps=1, random_start=False, targeted=True)
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.4, 0.6, 0.4]]))


def test_mpgd_accumulates_gradients():
    # f has gradient sign +1 then, after crossing 0.5, a smaller opposite gradient:
    # plain PGD turns back at once, momentum (g ← g + ∇) keeps going.
    class Kink(nn.Module):
        def forward(self, x):
            s = torch.where(x < 0.5, x, 0.5 - 0.1 * (x - 0.5)).sum(1)
            return torch.stack([-s, s], 1)

    x = torch.full((1, 1), 0.45)
    y = torch.tensor([0])
    p = pgd(Kink(), x, y, eps=0.3, alpha=0.1, steps=3, random_start=False)
    m = mpgd(Kink(), x, y, eps=0.3, alpha=0.1, steps=3, random_start=False)
    assert p.item() == pytest.approx(0.55)  # 0.55 → 0.45 → 0.55
    assert m.item() == pytest.approx(0.75)  # g stays positive: 0.55, 0.65, 0.75
    torch.testing.assert_close(mpgd(Kink(), x, y, eps=0.3, alpha=0.1, steps=3, random_start=False,
                                    momentum=0.0), p)


def test_model_mode_restored_and_parameter_grads_untouched():
    m = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    m.train()
    x, y = torch.rand(5, 4), torch.zeros(5, dtype=torch.long)
    a = pgd(m, x, y, eps=0.1, alpha=0.02, steps=3, random_start=False)
    b = pgd(m, x, y, eps=0.1, alpha=0.02, steps=3, random_start=False)
    assert torch.equal(a, b)  # eval mode: dropout off, deterministic
    assert m.training and all(mod.training for mod in m.modules())
    assert all(p.grad is None for p in m.parameters())
    # parameters are frozen during the attack only; each one's flag comes back as it was
    m[2].bias.requires_grad_(False)
    pgd(m, x, y, eps=0.1, alpha=0.02, steps=2)
    assert [p.requires_grad for p in m.parameters()] == [True, True, True, False]


def test_early_stop_only_makes_the_attack_stronger(trained_smallcnn, mnist_small):
    net = trained_smallcnn
    _, test = mnist_small
    sub = test.subset(200)
    atk = get_attack("pgd-10", "mnist")
    with_stop = robust_accuracy(net, sub, atk, early_stop=True)
    without = robust_accuracy(net, sub, atk, early_stop=False)
    assert with_stop <= without + 1e-9 and without - with_stop <= 0.03


def test_presets_and_errors():
    a = get_attack("pgd-40", "mnist")
    assert (a.kind, a.eps, a.alpha, a.steps, a.name) == ("pgd", 0.3, 0.01, 40, "pgd-40")
    c = get_attack("cifar10-mpgd-20")
    assert c.eps == pytest.approx(8 / 255) and c.alpha == 0.003 and c.steps == 20
    assert get_attack("fgsm", "cifar10").alpha == pytest.approx(8 / 255)
    assert get_attack("pgd-20", "celeba").eps == pytest.approx(2 / 255)
    for bad in ["pgd", "pgd-x", "cw-10", "imagenet-pgd-10"]:
        with pytest.raises(KeyError):
            get_attack(bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        get_attack("pgd-40", eps=8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pgd(Linear2(W), torch.rand(1, 4), torch.tensor([0]), eps=-0.1)
    assert attacks.paper_attacks("mnist") == ["pgd-40", "pgd-100", "mpgd-40", "fgsm"]


def test_attack_object_matches_function(trained_smallcnn, mnist_small):
    _, test = mnist_small
    x, y = test.images[:16].float() / 255, test.labels[:16]
    atk = Attack("pgd", 0.3, 0.01, 5, random_start=False)
    torch.testing.assert_close(atk(trained_smallcnn, x, y),
                               pgd(trained_smallcnn, x, y, 0.3, 0.01, 5, random_start=False))


def test_same_robust_accuracy_as_torchattacks(trained_smallcnn, mnist_small):
    torchattacks = need("torchattacks")
    net = trained_smallcnn
    _, test = mnist_small
    x, y = test.images[:150].float() / 255, test.labels[:150]
    ours = pgd(net, x, y, eps=0.3, alpha=0.01, steps=10, random_start=False)
    theirs = torchattacks.PGD(net, eps=0.3, alpha=0.01, steps=10, random_start=False)(x, y)
    with torch.no_grad():
        acc_ours = (net(ours).argmax(1) == y).float().mean().item()
        acc_theirs = (net(theirs).argmax(1) == y).float().mean().item()
    assert abs(acc_ours - acc_theirs) <= 1 / 150 + 1e-9
    assert (ours - theirs).abs().max() < 1e-5 or (ours != theirs).float().mean() < 0.01
    # and with random starts (different draws), the same up to sampling noise
    torch.manual_seed(0)
    theirs = torchattacks.PGD(net, eps=0.3, alpha=0.01, steps=10, random_start=True)(x, y)
    ours = pgd(net, x, y, eps=0.3, alpha=0.01, steps=10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = (net(ours).argmax(1) == y).float().mean().item()
        b = (net(theirs).argmax(1) == y).float().mean().item()
    assert abs(a - b) <= 0.04
