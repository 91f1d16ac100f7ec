"""DenseNet-BC (2016) against the paper: Table 1's rows (output sizes and channels after each
dense block and transition, k = 32) and the depths 121, 169, 201 and 264 counted as weighted
layers. The checks every model shares, counts against torchvision included, are in
test_models.py; the torchvision import is in test_torchvision_weights.py."""

from __future__ import annotations

import pytest
from torch import nn

from goingdeeper.analysis import summarize
from helpers import on_meta

pytestmark = pytest.mark.usefixtures("one_thread")


def test_densenet_table1_rows():
    rows = {r.name: r for r in summarize(on_meta("densenet121").eval(), 224).rows}
    expected = {
        "conv0": (64, 112, 112),
        "pool0": (64, 56, 56),
        "denseblock1": (64 + 6 * 32, 56, 56),
        "transition1": (128, 28, 28),
        "denseblock2": (128 + 12 * 32, 28, 28),
        "transition2": (256, 14, 14),
        "denseblock3": (256 + 24 * 32, 14, 14),
        "transition3": (512, 7, 7),
        "denseblock4": (512 + 16 * 32, 7, 7),
    }
    assert {n: rows[n].output for n in expected} == expected
    assert sum(r.depth for r in rows.values()) == 121
    assert rows["denseblock1"].depth == 12 and rows["classifier"].output == (1000,)


def test_densenet_depths_follow_table1():
    # DenseNet-264's blocks [6, 12, 64, 48] make 1 + 2 x 130 + 3 + 1 = 265 weighted layers:
    # the paper's name is one short (121, 169 and 201 add up)
    for depth, layers in [(121, 121), (169, 169), (201, 201), (264, 265)]:
        model = on_meta(f"densenet{depth}")
        convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
        assert convs + 1 == layers  # + the classifier
