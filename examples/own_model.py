"""A classifier of one's own, for ``interpretgan run --model-file examples/own_model.py:build``.

``python examples/own_model.py my.pt`` trains it for one epoch on 10,000 MNIST images at
their native 28 px (about 92 % clean accuracy, in seconds on a CPU) and saves its
``state_dict``.
"""
import logging
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    """28×28 grey-scale digits → 10 logits: x (B, 1, 28, 28) → (B, 10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3)  # 26
        self.conv2 = nn.Conv2d(16, 32, 3)  # 24 → pool 12
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 12 * 12, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv2(F.relu(self.conv1(x)))))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def build() -> Net:
    return Net()


def train(path: str) -> None:
    from interpretgan.data import batches, load_mnist

    torch.manual_seed(0)
    data = load_mnist("train", size=28).subset(10000)
    net = build()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for x, y in batches(data, 64, shuffle=True):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(net.state_dict(), path)
    logging.info("saved %s (last batch loss %.3f)", path, loss.item())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    train(sys.argv[1] if len(sys.argv) > 1 else "my.pt")
