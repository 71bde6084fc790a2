"""A CNN written the torchvision way, for ``interpretgan run --model-file
examples/inplace_cnn.py:build``: conv → BatchNorm → ReLU(inplace=True), and a residual block
that adds its input in place (``out += identity``) before an in-place ReLU, as torchvision's
ResNets do. 32-px RGB images, normalised ((x − mean) / std, ``--normalize``), 4 classes.
"""
import torch.nn as nn


class Residual(nn.Module):
    """(B, C, H, W) → same: relu(bn(conv(relu(bn(conv(x))))) + x), the ReLUs and the sum in place."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Net(nn.Module):
    """x (B, 3, 32, 32) → logits (B, classes)."""

    def __init__(self, classes: int = 4, width: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = Residual(width)
        self.pool = nn.MaxPool2d(2)  # 16 px
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)  # 8 px
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.layer2 = Residual(2 * width)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.layer1(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.relu(self.bn2(self.conv2(self.pool(x)))))
        return self.fc(self.avgpool(x).flatten(1))


def build() -> Net:
    return Net()
