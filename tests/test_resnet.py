"""ResNet (2015) against the paper: Table 1's stages, output sizes and depths, where the stride
of a bottleneck sits (the paper's 1x1 or torchvision's 3x3), and the three shortcut options of
section 3.3 (A: zero padding, B: projections where the shape changes, C: projections
everywhere). The checks every model shares, counts included, are in test_models.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import goingdeeper as gd
from goingdeeper.analysis import summarize
from goingdeeper.errors import ModelArgumentError
from goingdeeper.models.resnet import ResNet, ZeroPadShortcut
from helpers import on_meta

pytestmark = pytest.mark.usefixtures("one_thread")


def test_model_card():
    card = gd.model_card("resnet18")
    assert (card.family, card.arxiv, card.year, card.input_size) == (
        "ResNet",
        "1512.03385",
        2015,
        224,
    )
    costs = gd.model_costs("resnet18")
    assert (costs.params, costs.macs) == (11_689_512, 1_814_073_344)  # 1.8 x 10^9 (Table 1)
    assert costs.depth == 18


def test_resnet_stride_placement_is_a_switch():
    tv, paper = on_meta("resnet50"), on_meta("resnet50_paper")
    for i in (2, 3, 4):
        first = getattr(tv, f"layer{i}")[0]
        assert (first.conv1.stride, first.conv2.stride) == ((1, 1), (2, 2))  # torchvision v1.5
        first = getattr(paper, f"layer{i}")[0]
        assert (first.conv1.stride, first.conv2.stride) == ((2, 2), (1, 1))  # section 3.4
    assert tv.state_dict().keys() == paper.state_dict().keys()


def test_resnet_shortcut_options():
    b = on_meta("resnet34")
    assert [type(getattr(b, f"layer{i}")[0].downsample) for i in (1, 2, 3, 4)] == [
        type(None),
        nn.Sequential,
        nn.Sequential,
        nn.Sequential,
    ]
    # option A: no projection parameters; B has three (1x1 conv + BatchNorm): 173,824 more
    a = on_meta("resnet34", shortcut="A")
    assert isinstance(a.layer2[0].downsample, ZeroPadShortcut)
    assert sum(p.numel() for p in a.parameters()) == 21_797_672 - 173_824
    a = gd.create_model("resnet34", shortcut="A", num_classes=10).eval()
    with torch.no_grad():
        assert a(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    c = on_meta("resnet18", shortcut="C")
    assert all(
        isinstance(blk.downsample, nn.Sequential)
        for i in range(1, 5)
        for blk in c.get_submodule(f"layer{i}")
    )
    with pytest.raises(ModelArgumentError, match="shortcut must be"):
        gd.create_model("resnet18", shortcut="D")
    with pytest.raises(ModelArgumentError, match="depth must be one of"):
        ResNet(depth=42)


def test_zero_pad_shortcut():
    x = torch.randn(1, 4, 6, 6)
    y = ZeroPadShortcut(8, 2)(x)
    assert y.shape == (1, 8, 3, 3)
    torch.testing.assert_close(y[:, :4], x[:, :, ::2, ::2])
    assert not y[:, 4:].any()


def test_table1_stages():
    rows = {r.name: r for r in summarize(on_meta("resnet18").eval(), 224).rows}
    assert [rows[n].output for n in ("conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x")] == [
        (64, 112, 112),
        (64, 56, 56),
        (128, 28, 28),
        (256, 14, 14),
        (512, 7, 7),
    ]
    assert sum(r.depth for r in rows.values()) == 18  # shortcuts add no depth
    rows = {r.name: r for r in summarize(on_meta("resnet152").eval(), 32).rows}
    assert sum(r.depth for r in rows.values()) == 152
    assert rows["conv5_x"].output[0] == 2048
