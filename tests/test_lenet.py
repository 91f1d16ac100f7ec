"""LeNet-1 (1990) and LeNet-5 (1998) against the papers: layer sizes and parameters as
published, the connection counts (multiply-adds + one bias connection per unit), Table 1's
C3 connections against a masked dense convolution, the RBF output against its formula, and the
grayscale 32x32 (28x28) input. The checks every model shares are in test_models.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import goingdeeper as gd
from goingdeeper.analysis import summarize
from goingdeeper.errors import InputError, ModelArgumentError
from goingdeeper.models.lenet import C3_TABLE, H3_TABLE
from goingdeeper.models.lenet_layers import (
    EuclideanRBF,
    PartialConv2d,
    connections,
    rbf_codes,
    scaled_tanh,
)

INPUT_SIZE = {"lenet1": 28, "lenet5": 32, "lenet5_modern": 32}
MACS = {"lenet1": 94_592, "lenet5": 332_824}  # the count table of test_models.py


pytestmark = pytest.mark.usefixtures("one_thread")


def test_lenet_macs_are_real_work():
    # on real tensors too: C3's partial connections cost what is counted, not a dense 6 -> 16
    for name in ("lenet1", "lenet5"):
        model = gd.create_model(name).eval()
        x = torch.zeros(1, 1, INPUT_SIZE[name], INPUT_SIZE[name])
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        assert counter.get_total_flops() // 2 == MACS[name]


def test_lenet5_rows_as_published():
    s = summarize(gd.create_model("lenet5"), 32, detail="stages")
    rows = {r.name: r for r in s.rows}
    assert [r.name for r in s.rows] == ["C1", "S2", "C3", "S4", "C5", "F6", "output"]
    assert {n: r.params for n, r in rows.items()} == {
        "C1": 156,
        "S2": 12,
        "C3": 1_516,
        "S4": 32,
        "C5": 48_120,
        "F6": 10_164,
        "output": 0,  # fixed codes, a buffer
    }
    assert s.total_params == 60_000
    assert rows["C1"].output == (6, 28, 28) and rows["S2"].output == (6, 14, 14)
    assert rows["C3"].output == (16, 10, 10) and rows["S4"].output == (16, 5, 5)
    assert rows["C5"].output == (120, 1, 1) and rows["F6"].output == (84,)
    assert rows["C3"].macs == 150_000  # 60 kernels of 5x5 at 10x10
    # "7 layers, not counting the input, all of which contain trainable parameters"
    assert sum(r.depth for r in s.rows) == 7
    # the paper's 340,908 connections = our multiply-adds + one bias connection per unit
    bias_units = 6 * 28 * 28 + 6 * 14 * 14 + 16 * 10 * 10 + 16 * 5 * 5 + 120 + 84
    assert s.total_macs + bias_units == 340_908


def test_lenet1_counts_match_the_1990_paper():
    s = summarize(gd.create_model("lenet1"), 28)
    assert s.total_params == 2_578  # "2578 independent parameters"
    bias_units = 4 * 24 * 24 + 4 * 12 * 12 + 12 * 8 * 8 + 12 * 4 * 4 + 10
    assert s.total_macs + bias_units == 98_442  # "98442 connections"
    assert sum(len(c) for c in connections(H3_TABLE)) == 20
    assert sum(p.numel() for p in gd.create_model("lenet1", subsampling="average").parameters()) < (
        3_000
    )


# --- LeNet-5 pieces ---------------------------------------------------------------------------


def test_c3_table_is_table_one():
    c3 = connections(C3_TABLE)
    assert c3[:6] == tuple(tuple(sorted((j + i) % 6 for i in range(3))) for j in range(6))
    assert c3[6:12] == tuple(tuple(sorted((j + i) % 6 for i in range(4))) for j in range(6))
    assert c3[12:] == ((0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5), (0, 1, 2, 3, 4, 5))
    assert sum(len(c) * 25 + 1 for c in c3) == 1_516


@pytest.mark.parametrize(
    "table",
    [
        connections(C3_TABLE),
        connections(H3_TABLE),
        ((0, 2), (1,), (0, 1, 2), (2,), (1, 2)),  # fan-ins out of order: outputs reordered
        ((2, 0, 1), (1,)),  # reads every map, in its own order
    ],
)
def test_partial_conv_equals_masked_dense_conv(table):
    in_channels = 1 + max(i for c in table for i in c)
    layer = PartialConv2d(in_channels, table, 5)
    x = torch.randn(2, in_channels, 14, 14)
    dense = layer.dense_weight()
    mask = torch.zeros(len(table), in_channels, dtype=torch.bool)
    for j, c in enumerate(table):
        mask[j, list(c)] = True
    assert torch.equal(dense.abs().sum((2, 3)) > 0, mask)
    expected = F.conv2d(x, dense, layer.bias)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_rbf_output_is_negative_squared_distance_to_fixed_codes():
    model = gd.create_model("lenet5").eval()
    rbf = model.output
    assert isinstance(rbf, EuclideanRBF) and not list(rbf.parameters())
    codes = rbf.codes
    assert codes.shape == (10, 84) and set(codes.unique().tolist()) == {-1.0, 1.0}
    assert len({tuple(c.tolist()) for c in codes}) == 10
    assert torch.equal(codes, rbf_codes(10)) and torch.equal(rbf_codes(7), rbf_codes(7))
    x = torch.randn(4, 84)
    torch.testing.assert_close(rbf(x), -torch.cdist(x, codes).pow(2), rtol=1e-4, atol=1e-4)
    assert torch.equal(rbf(codes).argmax(1), torch.arange(10))  # a code is nearest to itself
    assert torch.equal(
        scaled_tanh(torch.tensor([1.0, -1.0])).round(decimals=4), torch.tensor([1.0, -1.0])
    )


def test_lenet_cards_take_one_grayscale_plane():
    for name in ("lenet1", "lenet5", "lenet5_modern"):
        card = gd.model_card(name)
        assert card.preprocessing.channels == gd.create_model(name).in_channels == 1
        assert card.preprocessing.crop == card.input_size == INPUT_SIZE[name]
    costs = gd.model_costs("lenet5")
    assert costs.params == 60_000 and costs.depth == 7


def test_lenet_rejects_wrong_input():
    with pytest.raises(InputError, match="LeNet-5 takes N x 1 x 32 x 32"):
        gd.create_model("lenet5")(torch.zeros(1, 1, 28, 28))
    with pytest.raises(ModelArgumentError, match="got 'sigmoid'"):
        gd.create_model("lenet5", activation="sigmoid")
