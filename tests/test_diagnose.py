"""Diagnosis: Eq. 5 on hand-made numbers, pooling index change by hand, misclassification table."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from interpretgan.diagnose import (index_change, large_vulnerability, maxpool_index_change,
                                   misclassification_table, top_targets, vulnerability)

PAPER_NAT = [0.526, 0.263, 0.216, 0.099, 0.043, 0.030, 0.035]
PAPER_ADV = [0.951, 0.940, 0.939, 0.926, 0.901, 0.900, 0.895]


def test_eq5_reproduces_paper_table_1():
    assert vulnerability(PAPER_NAT) == pytest.approx([0.474, 0.263, 0.047, 0.117, 0.056, 0.013, -0.005])
    assert vulnerability(PAPER_ADV) == pytest.approx([0.049, 0.011, 0.001, 0.013, 0.025, 0.001, 0.005])
    assert sum(vulnerability([0.9, 0.5, 0.6])) == pytest.approx(1 - 0.6)


def test_large_vulnerability_marks_the_papers_layers():
    marked = [i for i, m in enumerate(large_vulnerability(vulnerability(PAPER_NAT))) if m]
    assert marked == [0, 1, 3, 4]  # Conv1, Conv2, Conv4, FC1
    marked = [i for i, m in enumerate(large_vulnerability(vulnerability(PAPER_ADV))) if m]
    assert marked == [0, 1, 3, 4]


def test_index_change_on_a_hand_made_tensor():
    pool = nn.MaxPool2d(2, 2)
    a = torch.tensor([[[[1.0, 0, 0, 2], [0, 0, 0, 0], [0, 3, 0, 0], [0, 0, 0, 4]]]])
    b = a.clone()
    b[0, 0, 0, 1] = 5.0  # window (0,0): max moves from (0,0) to (0,1)
    b[0, 0, 3, 3] = 9.0  # window (1,1): same position, larger value → unchanged
    assert index_change(a, b, pool) == pytest.approx(1 / 4)


def test_maxpool_index_change_per_pooling_layer():
    net = nn.Sequential(nn.Identity(), nn.MaxPool2d(2), nn.MaxPool2d(2)).eval()
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1
    x[0, 0, 2, 2] = 1
    x_adv = x.clone()
    x_adv[0, 0, 1, 1] = 2  # first pool, window (0,0): arg-max (0,0) → (1,1)
    x_adv[0, 0, 3, 3] = 3  # first pool, window (1,1): (2,2) → (3,3); second pool: (0,0) → (1,1)
    out = maxpool_index_change(net, x, x_adv)
    assert out == pytest.approx({"1": 2 / 4, "2": 1.0})
    x_adv2 = x.clone()
    x_adv2[0, 0, 1, 1] = 2  # first pool changes 1 of 4; second pool still picks its (0,0)
    assert maxpool_index_change(net, x, x_adv2) == pytest.approx({"1": 0.25, "2": 0.0})
    assert not any(m._forward_hooks for m in net.modules())


def test_misclassification_table_and_top_targets():
    y = torch.tensor([0, 0, 0, 0, 7, 7, 1])
    p = torch.tensor([6, 6, 0, 5, 3, 7, 1])
    t = misclassification_table(y, p, 10)
    assert t.shape == (10, 10) and t.sum() == 7
    assert t[0, 6] == 2 and t[0, 0] == 1 and t[0, 5] == 1 and t[7, 3] == 1
    top = top_targets(t)
    assert top[0] == {"true": 0, "top_target": 6, "count": 2, "share": 0.5, "misclassified_share": 0.75}
    assert top[7]["top_target"] == 3 and top[7]["share"] == 0.5
