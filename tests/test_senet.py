"""Squeeze-and-Excitation networks (2017) against the paper: the SE block as Eqs. 2 to 4
written out, SE-ResNet-50's layout (16 SE bottlenecks, reduction 16, the stride in the 1x1 as
in the authors' models) and SE-GoogLeNet as GoogLeNet with an SE block after each Inception
module (Table 1's widths and depth kept, GoogLeNet's weights loading around the SE blocks).
The checks every model shares, counts included, are in test_models.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import goingdeeper as gd
from goingdeeper.analysis import summarize
from goingdeeper.models.inception import Inception
from goingdeeper.models.resnet import Bottleneck
from goingdeeper.models.senet import SEBottleneck, SEInception, SqueezeExcitation
from helpers import on_meta


def test_model_card():
    card = gd.model_card("se_googlenet")  # built with its aux heads, counted without them
    assert (card.family, card.arxiv) == ("SENet", "1709.01507")
    assert card.has_aux and card.takes_input_size  # a GoogLeNet, aux heads and all
    assert gd.model_costs("se_googlenet").params == 7_478_655


def test_se_block_is_eqs_2_to_4():
    se = SqueezeExcitation(32, 16)
    assert sum(p.numel() for p in se.parameters()) == 2 * 32 * 2 + 32 + 2  # W1, W2, biases
    x = torch.randn(3, 32, 5, 7)
    z = x.mean((2, 3))  # squeeze (Eq. 2)
    s = torch.sigmoid(se.fc2(torch.relu(se.fc1(z))))  # excitation (Eq. 3)
    torch.testing.assert_close(se(x), x * s[:, :, None, None])  # scale (Eq. 4)
    nn.init.zeros_(se.fc2.weight)
    nn.init.zeros_(se.fc2.bias)
    torch.testing.assert_close(se(x), 0.5 * x)
    with pytest.raises(ValueError, match="reduction"):
        SqueezeExcitation(8, 16)


def test_se_resnet50_layout():
    m = on_meta("se_resnet50")
    blocks = [b for i in range(1, 5) for b in m.get_submodule(f"layer{i}")]
    assert len(blocks) == 16 and all(isinstance(b, SEBottleneck) for b in blocks)
    assert all(isinstance(b, Bottleneck) and b.se.channels == b.out_channels for b in blocks)
    assert blocks[3].conv1.stride == (2, 2)  # conv3_1: stride in the 1x1 (authors' models)
    assert all(b.se.fc1.out_features == b.out_channels // 16 for b in blocks)


def test_se_googlenet_keeps_googlenet():
    m = gd.create_model("se_googlenet")
    plain = gd.create_model("googlenet")
    for name in ("inception3a", "inception4e", "inception5b"):
        module = getattr(m, name)
        assert isinstance(module, SEInception) and isinstance(module, Inception)
        assert module.widths == getattr(plain, name).widths
        assert module.se.channels == module.out_channels
    extra = set(m.state_dict()) - set(plain.state_dict())
    assert set(plain.state_dict()) < set(m.state_dict())
    assert extra and all(".se." in k for k in extra)  # googlenet's weights load, SE aside
    missing, unexpected = m.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and set(missing) == extra
    rows = {r.name: r for r in summarize(m.eval(), 96).rows}
    assert rows["inception3a"].type == "inception" and rows["inception3a"].channels["ch1x1"] == 64
    assert sum(r.depth for r in rows.values()) == 22  # SE adds no depth to Table 1's count
