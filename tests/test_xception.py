"""Xception (2016) against the paper: Fig. 5's entry, middle and exit flows (output sizes at
299), the 36 convolution layers of section 3, dropout 0.5 and where the residual projections
are. The checks every model shares, Table 3's parameter count included, are in
test_models.py."""

from __future__ import annotations

import goingdeeper as gd
from goingdeeper.analysis import summarize
from helpers import on_meta


def test_model_card():
    card = gd.model_card("xception")
    assert (card.family, card.arxiv, card.input_size, card.preprocessing.crop) == (
        "Xception",
        "1610.02357",
        299,
        299,
    )
    costs = gd.model_costs("xception")
    assert (costs.params, costs.macs) == (22_855_952, 8_357_403_496)  # Table 3; at 299


def test_xception_fig5_shapes_and_depth():
    rows = {r.name: r for r in summarize(on_meta("xception").eval(), 299).rows}
    assert rows["conv1"].output == (32, 149, 149) and rows["conv2"].output == (64, 147, 147)
    assert rows["block3"].output == (728, 19, 19)  # end of the entry flow
    assert all(rows[f"block{i}"].output == (728, 19, 19) for i in range(4, 12))  # middle x8
    assert rows["block12"].output == (1024, 10, 10) and rows["conv4"].output == (2048, 10, 10)
    assert sum(r.depth for r in rows.values()) == 36 + 1  # 36 conv layers (section 3) + fc
    m = on_meta("xception")
    assert m.dropout.p == 0.5
    assert m.block4.shortcut is None and m.block1.shortcut.conv.stride == (2, 2)
