"""Network in Network against its sources: the layer names of the Caffe model zoo's prototxt
(what a Caffe importer maps blobs by), each block's output at the published input sizes,
parameters and multiply-adds derived by hand from the tables, Caffe's ceil rounding, the
dropout placement, the prototxt's initialisation, and the head (class maps + global average
pool). The checks every model shares are in test_models.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import goingdeeper as gd
from goingdeeper.errors import ModelArgumentError
from goingdeeper.models.nin import NIN_CIFAR10, NIN_IMAGENET
from helpers import on_meta

# the ImageNet NIN prototxt's layers with weights, in order ("conv4-1024" -> conv4_1024)
CAFFE_LAYERS = [
    "conv1", "cccp1", "cccp2", "conv2", "cccp3", "cccp4", "conv3", "cccp5", "cccp6",
    "conv4_1024", "cccp7_1024", "cccp8_1024",
]  # fmt: skip


def _shapes(name: str, size: int) -> dict[str, tuple[int, ...]]:
    """Every top-level layer's output (C, H, W) at `size`, on the meta device."""
    model = on_meta(name)
    seen: dict[str, tuple[int, ...]] = {}
    for child, module in model.named_children():
        module.register_forward_hook(
            lambda m, i, o, child=child: seen.__setitem__(child, tuple(o.shape[1:]))
        )
    model(torch.zeros(1, 3, size, size, device="meta"))
    return seen


def test_imagenet_layers_carry_the_prototxt_names():
    model = on_meta("nin_imagenet")
    layout = [name for name, _ in model.named_children()]
    assert layout == [
        "conv1", "cccp1", "cccp2", "pool0", "conv2", "cccp3", "cccp4", "pool2",
        "conv3", "cccp5", "cccp6", "pool3", "drop", "conv4_1024", "cccp7_1024", "cccp8_1024",
        "pool4",
    ]  # fmt: skip
    keys = list(model.state_dict())
    assert keys == [f"{layer}.conv.{blob}" for layer in CAFFE_LAYERS for blob in ("weight", "bias")]


def test_each_block_at_the_published_sizes():
    # ImageNet at 224: 54 after conv1 (floor), pools rounding up as Caffe does: 27, 13, 6
    s = _shapes("nin_imagenet", 224)
    assert s["cccp2"] == (96, 54, 54) and s["pool0"] == (96, 27, 27)
    assert s["cccp4"] == (256, 27, 27) and s["pool2"] == (256, 13, 13)
    assert s["cccp6"] == (384, 13, 13) and s["pool3"] == (384, 6, 6)
    assert s["cccp8_1024"] == (1000, 6, 6) and s["pool4"] == (1000, 1, 1)
    # floor rounding would give 26 after pool0, so 12 and 5 after the next pools
    assert (54 - 3) // 2 + 1 == 26
    # CIFAR-10 at 32: 32 -> 16 -> 8, then the ten class maps averaged
    s = _shapes("nin_cifar10", 32)
    assert s["cccp2"] == (96, 32, 32) and s["pool1"] == (96, 16, 16)
    assert s["cccp4"] == (192, 16, 16) and s["pool2"] == (192, 8, 8)
    assert s["cccp6"] == (10, 8, 8) and s["pool3"] == (10, 1, 1)


def _by_hand(blocks, size: int, classes: int) -> tuple[int, int]:
    """Parameters and MACs of a NIN from its table: each conv k x k x cin x cout + cout,
    times the output area for MACs; pools 3x3/2 with ceil rounding."""
    params = macs = 0
    cin, side = 3, size
    for (_, width, k, stride, pad), cccps, (_, kind, pk, ps), _ in blocks:
        side = (side + 2 * pad - k) // stride + 1
        layers = [(k, width), *((1, w) for _, w in cccps)]
        layers[-1] = (layers[-1][0], classes) if kind == "global" else layers[-1]
        for kernel, cout in layers:
            params += kernel * kernel * cin * cout + cout
            macs += kernel * kernel * cin * cout * side * side
            cin = cout
        if kind != "global":
            side = -(-(side - pk) // ps) + 1
    return params, macs


def test_counts_by_hand_from_the_tables():
    costs = gd.model_costs("nin_cifar10")
    assert (costs.params, costs.macs) == _by_hand(NIN_CIFAR10, 32, 10) == (966_986, 222_486_528)
    costs = gd.model_costs("nin_imagenet")
    assert (costs.params, costs.macs) == _by_hand(NIN_IMAGENET, 224, 1000)
    # the release's 29 MB file: 7.6 M float32 weights
    assert round(costs.params * 4 / 2**20) == 29
    assert costs.depth == 12 and gd.model_costs("nin_cifar10").depth == 9


def test_pools_dropout_and_head_as_published():
    m = gd.create_model("nin_cifar10")
    assert isinstance(m.pool1, nn.MaxPool2d) and isinstance(m.pool2, nn.AvgPool2d)
    assert m.pool1.ceil_mode and m.pool2.ceil_mode and m.pool2.kernel_size == 3
    assert m.drop1.p == m.drop2.p == 0.5  # on the outputs of all but the last mlpconv
    dropouts = [n for n, x in m.named_children() if isinstance(x, nn.Dropout)]
    assert dropouts == ["drop1", "drop2"] and m.feature_chain().index("drop2") == 9  # pool2's
    assert m.feature_chain()[-2:] == ["conv3", "cccp5"] and m.num_features == 192
    i = gd.create_model("nin_imagenet")
    dropouts = [n for n, x in i.named_children() if isinstance(x, nn.Dropout)]
    assert dropouts == ["drop"] and i.feature_chain().index("drop") == 12  # after pool3
    # the head: class maps (1x1 + ReLU) then the average over the map, nothing else
    m.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = m.cccp6(m.forward_features(x))
        assert (maps >= 0).all()  # both prototxts put a ReLU on the class maps
        want = nn.AvgPool2d(8, stride=1)(maps).flatten(1)  # the prototxt's pool3
        torch.testing.assert_close(m(x), want, rtol=1e-6, atol=1e-7)


def test_caffe_initialisation_and_kaiming_switch():
    torch.manual_seed(0)
    m = gd.create_model("nin_imagenet")
    # Gaussian std 0.01 in conv1, conv3, cccp8-1024, 0.05 elsewhere; zero biases. The sample
    # std of n >= 9216 values is within 4% of the true one with overwhelming odds
    # (its relative standard error is 1 / sqrt(2n) < 0.8%)
    for layer, std in [("conv1", 0.01), ("cccp1", 0.05), ("conv3", 0.01), ("cccp8_1024", 0.01)]:
        conv = getattr(m, layer).conv
        assert conv.weight.std().item() == pytest.approx(std, rel=0.04)
        assert not conv.bias.any()
    k = gd.create_model("nin_cifar10", init="kaiming")
    fan_in = 192 * 9
    assert k.conv3.conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.04)
    with pytest.raises(ModelArgumentError, match="init must be 'caffe' or 'kaiming'"):
        gd.create_model("nin_cifar10", init="xavier")


def test_class_maps_without_their_relu_keep_the_keys_and_can_go_negative():
    torch.manual_seed(0)
    plain = gd.create_model("nin_cifar10", init="kaiming", class_map_relu=False).eval()
    published = gd.create_model("nin_cifar10", init="kaiming").eval()
    assert list(plain.state_dict()) == list(published.state_dict())
    published.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        maps = plain.cccp6.conv(plain.forward_features(x))
        assert (maps < 0).any()  # He init: about half of the linear class maps are negative
        torch.testing.assert_close(plain(x), maps.mean((2, 3)), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(published(x), maps.clamp(min=0).mean((2, 3)))
    plain.reset_classifier(3)
    assert isinstance(plain.cccp6.relu, nn.Identity)


def test_reset_classifier_replaces_the_class_maps():
    m = gd.create_model("nin_cifar10").eval()
    before = m.cccp5.conv.weight.clone()
    m.reset_classifier(4)
    assert m.cccp6.conv.out_channels == 4 and m.cccp6.conv.in_channels == 192
    assert torch.equal(m.cccp5.conv.weight, before)
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 4)


def test_cards():
    c = gd.model_card("nin_cifar10")
    assert (c.arxiv, c.year, c.input_size, c.num_classes) == ("1312.4400", 2013, 32, 10)
    assert "10.41%" in c.top5_error and "8.81%" in c.top5_error
    i = gd.model_card("nin_imagenet")
    assert i.input_size == 224 and "59.36%" in i.top5_error
    assert i.preprocessing.channel_order == "BGR" and i.preprocessing.scale == 1.0
    assert gd.list_models("nin*") == ["nin_cifar10", "nin_imagenet"]
    order = gd.list_models()
    assert order.index("zfnet") < order.index("nin_cifar10") < order.index("vgg_a")


def test_the_cifar10_preset_is_the_papers_recipe():
    from goingdeeper.train import config as cfg

    c = cfg.resolve("nin-cifar10")
    # section 4.1, Krizhevsky et al.'s procedure: mini-batches of 128, the rate divided by 10
    # when the accuracy stops improving; Table 1's 10.41% is without augmentation
    assert (c.model, c.input_size, c.batch_size) == ("nin_cifar10", 32, 128)
    assert (c.lr_schedule, c.lr_gamma) == ("plateau", 0.1)
    assert (c.recipe, c.flip, c.photometric) == ("simple", False, False)
    # the released solver: 0.1, momentum 0.9, weight decay 1e-4, 120,000 iterations of 128
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay) == ("sgd", 0.1, 0.9, 1e-4)
    assert c.epochs == round(120_000 * 128 / 50_000, -2)
    assert (c.aux_weight, c.polyak) == (0.0, False)


def test_summary_paper_shows_the_releases_figures(capsys):
    from goingdeeper.cli import main

    assert main(["summary", "nin_imagenet", "--paper"]) == 0
    out = capsys.readouterr().out
    # 7,595,176 float32 weights are the release's 29 MB file; its accuracy as printed
    assert "29 MB model file (release); exact: 29.0 MiB of float32 weights: agrees" in out
    assert "59.36% top-1" in out and "conv4_1024" in out and "paper output" not in out
    assert main(["summary", "nin_cifar10", "--paper"]) == 0
    out = capsys.readouterr().out
    assert "10.41% test error without data augmentation" in out and "8x8x10" in out
    # GoogLeNet's comparison is still its Table 1
    assert main(["summary", "googlenet", "--paper"]) == 0
    assert "Table 1 (weights only, K = 1024" in capsys.readouterr().out
