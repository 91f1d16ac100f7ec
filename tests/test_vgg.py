"""VGG (2014) against the paper and torchvision: Table 1's configurations A to E (weight
layers, 1x1 convolutions, widths), torchvision's state-dict layout tensor for tensor, and
dense evaluation (section 3.2: fc layers as convolutions) against the plain network. The checks
every model shares are in test_models.py."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import goingdeeper as gd
from goingdeeper.errors import InputError
from goingdeeper.models.vgg import (
    CFGS,
    average_score_map,
    parse_layer,
    to_fully_convolutional,
)
from helpers import on_meta

pytestmark = pytest.mark.usefixtures("one_thread")


def test_vgg_table_one():
    convs = {
        cfg: [parse_layer(s) for block in b for s in block if s != "LRN"] for cfg, b in CFGS.items()
    }
    assert {cfg: len(c) + 3 for cfg, c in convs.items()} == {
        "A": 11,
        "A-LRN": 11,
        "B": 13,
        "C": 16,
        "D": 16,
        "E": 19,
    }
    assert [k for k, _ in convs["C"]].count(1) == 3  # 1x1 convolutions in blocks 3, 4, 5
    assert [c for _, c in convs["E"]] == [64] * 2 + [128] * 2 + [256] * 4 + [512] * 8
    model = on_meta("vgg_c")
    assert model.conv3_3.conv.kernel_size == (1, 1) and model.conv5_3.conv.out_channels == 512
    assert isinstance(on_meta("vgg_a_lrn").lrn1, nn.LocalResponseNorm)


def test_vgg_torchvision_state_dict_layout():
    for name in ("vgg16", "vgg11_bn"):
        with torch.device("meta"):
            theirs = getattr(torchvision.models, name)(weights=None, init_weights=False)
        ours = on_meta(name)
        assert {k: v.shape for k, v in ours.state_dict().items()} == {
            k: v.shape for k, v in theirs.state_dict().items()
        }


def test_dense_evaluation():
    model = gd.create_model("vgg_a", num_classes=10, fc_width=32).eval()
    dense = to_fully_convolutional(model).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        scores = dense(x)
        assert scores.shape == (1, 10, 1, 1)
        torch.testing.assert_close(average_score_map(scores), model(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="smallest that works is 224x224"):
        dense(torch.zeros(1, 3, 200, 200))
    # a larger image gives a class score map (shapes only: the meta device does no arithmetic)
    with torch.device("meta"):
        big = to_fully_convolutional(gd.create_model("vgg_d", num_classes=10))(
            torch.zeros(2, 3, 384, 384)
        )
    assert big.shape == (2, 10, 6, 6)  # 384 / 32 = 12 -> 12 - 7 + 1 = 6
    assert average_score_map(big).shape == (2, 10)


def test_dense_evaluation_torchvision_layout():
    model = gd.create_model("vgg11_bn", num_classes=4, fc_width=16)
    dense = to_fully_convolutional(model)
    fc6, fc8 = model.classifier[0], model.classifier[6]
    assert dense.head.fc6.kernel_size == (7, 7) and dense.head.fc8.kernel_size == (1, 1)
    assert torch.equal(dense.head.fc6.weight.flatten(1), fc6.weight)
    assert torch.equal(dense.head.fc8.weight.flatten(1), fc8.weight)
    assert list(dense.features.features.state_dict()) == list(model.features.state_dict())
