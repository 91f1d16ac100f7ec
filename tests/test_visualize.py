"""The visualizer: the deconvnet's pieces against exact oracles, then the pictures it writes.

Oracles: autograd (a convolution's transpose is its input gradient; max-pool unpooling with the
switches is the max pool's gradient), a hand computation for a conv-ReLU-pool stack, and for
whole GoogLeNets the gradient of a copy whose ReLUs pass back only positive signals and whose
LRNs pass gradients through, which is the deconvnet (Springenberg et al. 2014, arXiv:1412.6806).
"""

from __future__ import annotations

import argparse
import copy
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import goingdeeper as gd
from goingdeeper.cli import main
from goingdeeper.cli.visualize import add_parser, parse_channels
from goingdeeper.errors import UnknownLayerError, UnsupportedLayerError, VisualizeError
from goingdeeper.images import load_image
from goingdeeper.models.inception import Inception
from goingdeeper.preprocess import CAFFE_BGR, Preprocessing
from goingdeeper.visualize import (
    deconv,
    feature_map_grid,
    feature_maps,
    filter_grid,
    occlusion_picture,
    occlusion_sensitivity,
    project,
    receptive_field,
    record,
    save_png,
    top9_grid,
    top_activations,
    unpool,
)
from goingdeeper.visualize.top9 import images_to_rank, merge_strongest
from goingdeeper.weights import WeightsCard, import_bvlc, save_weights

# --- helpers -------------------------------------------------------------------------------------


def one_hot_like(out: torch.Tensor, channel: int, value: float | None = None):
    """A map shaped like `out` (1 x C x H x W): the channel's maximum kept, all else zero."""
    fmap = out[0, channel]
    y, x = divmod(int(fmap.argmax()), fmap.shape[-1])
    signal = torch.zeros_like(out)
    signal[0, channel, y, x] = float(fmap[y, x]) if value is None else value
    return signal, (y, x)


def deconvnet_by_autograd(model: nn.Module, x: torch.Tensor, layer: str, signal: torch.Tensor):
    """Gradient of <layer output, signal> in a copy whose ReLUs pass back relu(grad) and whose
    LRNs pass grad through: the deconvnet, computed by autograd."""
    net = copy.deepcopy(model).eval()
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
            module.register_full_backward_hook(lambda m, gi, go: (go[0].clamp(min=0),))
        elif isinstance(module, nn.LocalResponseNorm):
            module.register_full_backward_hook(lambda m, gi, go: (go[0],))
    captured = {}

    def stop(module, inputs, out):
        captured["out"] = out
        raise _Reached  # the rest of the network is not needed

    dict(net.named_modules())[layer].register_forward_hook(stop)
    x = x.clone().requires_grad_(True)
    with pytest.raises(_Reached):
        net(x)
    (grad,) = torch.autograd.grad((captured["out"] * signal).sum(), x)
    return grad


class _Reached(Exception):
    pass


def pixel_std(path) -> float:
    return float(np.asarray(Image.open(path).convert("RGB"), dtype=np.float64).std())


def tiny_net() -> nn.Sequential:
    """A ZFNet-like stack: every layer type the deconvnet inverts, small and fast."""
    torch.manual_seed(1)
    net = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 7, stride=2, padding=3),
            relu1=nn.ReLU(inplace=True),
            pool1=nn.MaxPool2d(3, stride=2, ceil_mode=True),
            lrn1=nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0),
            conv2=nn.Conv2d(8, 16, 3, padding=1),
            bn2=nn.BatchNorm2d(16),
            relu2=nn.ReLU(inplace=True),
            drop=nn.Dropout(0.5),
            pool2=nn.MaxPool2d(2),
            gap=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(16, 5),
        )
    )
    with torch.no_grad():
        net.bn2.running_mean.uniform_(-0.1, 0.1)
        net.bn2.running_var.uniform_(0.5, 2.0)
        net.bn2.weight.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Twelve small pictures with structure (stripes, blobs) and one file that is not an image."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:72, 0:80]
    for i in range(12):
        angle = i * np.pi / 12
        stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / (2 + i % 4))
        rgb = np.stack([stripes, np.roll(stripes, 5 * i, 1), rng.normal(0, 0.3, stripes.shape)])
        arr = np.clip(127 + 100 * rgb.transpose(1, 2, 0), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:02d}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


SMALL = Preprocessing(resize=64, crop=56)

# --- the three operations ------------------------------------------------------------------------


def test_unpool_puts_the_maxima_back_exactly():
    x = torch.randn(2, 3, 8, 8)
    trace = record(nn.Sequential(nn.MaxPool2d(2)), x)
    step = trace.items[0]
    pooled = F.max_pool2d(x, 2)
    back = unpool(pooled, step.switches, x.shape)
    is_max = x == F.interpolate(pooled, scale_factor=2, mode="nearest")
    assert is_max.flatten(2).sum(2).eq(16).all()  # one maximum in each of the 16 windows
    assert torch.equal(back, torch.where(is_max, x, torch.zeros_like(x)))


def test_overlapping_unpool_is_the_max_pool_transpose():
    """3x3/2 with ceil rounding (GoogLeNet's pools): windows share pixels; values add up."""
    x = torch.randn(1, 4, 11, 11, requires_grad=True)
    pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
    step = record(nn.Sequential(pool), x.detach()).items[0]
    g = torch.randn(1, 4, 5, 5)
    (expected,) = torch.autograd.grad((pool(x) * g).sum(), x)
    back = unpool(g, step.switches, x.shape)
    torch.testing.assert_close(back, expected, rtol=0, atol=1e-6)
    assert back[back != 0].numel() <= step.switches.unique().numel() * 4


@pytest.mark.parametrize(
    "kwargs, size",
    [
        (dict(kernel_size=7, stride=2, padding=3), 23),  # conv1 of GoogLeNet, odd input
        (dict(kernel_size=3, stride=1, padding=1, groups=2), 12),  # AlexNet's two towers
        (dict(kernel_size=5, stride=3), 17),  # strided, trailing rows dropped
        (dict(kernel_size=3, padding=2, dilation=2), 10),
    ],
)
def test_one_convolution_is_its_input_gradient(kwargs, size):
    conv = nn.Conv2d(4, 6, bias=True, **kwargs)
    x = torch.randn(1, 4, size, size, requires_grad=True)
    out = conv(x)
    signal, (y, x0) = one_hot_like(out.detach(), 2, value=1.0)
    (grad,) = torch.autograd.grad(out[0, 2, y, x0], x)
    trace = record(nn.Sequential(conv), x.detach())
    mine = project(trace, "0", signal)
    torch.testing.assert_close(mine, grad, rtol=1e-5, atol=1e-6)
    direct = F.conv_transpose2d(
        signal,
        conv.weight,
        None,
        conv.stride,
        conv.padding,
        output_padding=tuple(x.shape[2 + i] - grad.shape[2 + i] for i in range(2)),
        groups=conv.groups,
        dilation=conv.dilation,
    )
    torch.testing.assert_close(mine, direct)


def _hand_net() -> nn.Sequential:
    conv1 = nn.Conv2d(1, 1, 1)
    conv2 = nn.Conv2d(1, 1, (1, 2), padding=(0, 1), bias=False)
    with torch.no_grad():
        conv1.weight.fill_(3.0)
        conv1.bias.fill_(1.0)  # used forward, never backward
        conv2.weight.copy_(torch.tensor([[[[-2.0, 1.0]]]]))
    return nn.Sequential(
        OrderedDict(
            conv1=conv1,
            relu1=nn.ReLU(),
            pool=nn.MaxPool2d((1, 2)),
            conv2=conv2,
            relu2=nn.ReLU(),
        )
    )


def test_conv_relu_pool_by_hand():
    # x = [0, 1, 5, 2] -> conv1 (3x + 1) = [1, 4, 16, 7] -> pool (1x2) = [4, 16], switches 1, 2
    # -> conv2 over [0, 4, 16, 0] with [-2, 1] = [4, 8, -32] -> relu = [4, 8, 0]
    net, x = _hand_net(), torch.tensor([0.0, 1.0, 5.0, 2.0]).view(1, 1, 4)
    (at_pool,) = deconv(net, x, "pool", [0])
    # pool: 16 at x=1 -> unpool [0, 0, 16, 0] -> relu -> conv1 transposed (3) -> [0, 0, 48, 0]
    assert at_pool.position == (0, 1) and at_pool.value == 16.0
    assert at_pool.image.flatten().tolist() == [0.0, 0.0, 48.0, 0.0]
    (at_relu2,) = deconv(net, x, "relu2", [0])
    # relu2: 8 at x=1 -> conv2 transposed: [8 * -2, 8 * 1] on the pooled positions 0, 1
    # -> unpool with the switches [0, -16, 8, 0] -> rectified [0, 0, 8, 0] -> conv1 transposed
    # -> [0, 0, 24, 0]
    assert at_relu2.position == (0, 1) and at_relu2.value == 8.0
    assert at_relu2.image.flatten().tolist() == [0.0, 0.0, 24.0, 0.0]
    # The gradient differs exactly by the rectification: ReLU backward keeps the -16.
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(xg.unsqueeze(0))[0, 0, 0, 1] * 8.0, xg)
    assert grad.flatten().tolist() == [0.0, -48.0, 24.0, 0.0]


# --- Inception: split over the branches, sum at the input --------------------------------------


def _inception_net() -> nn.Sequential:
    torch.manual_seed(2)
    return nn.Sequential(
        OrderedDict(
            stem=nn.Conv2d(3, 8, 3, padding=1),
            relu=nn.ReLU(inplace=True),
            mix=Inception(8, 4, 3, 5, 2, 3, 6),  # widths 4 + 5 + 3 + 6 = 18
        )
    ).eval()


def test_inception_channel_of_the_1x1_branch_touches_only_that_branch():
    net, x = _inception_net(), torch.randn(1, 3, 10, 10)
    trace = record(net, x, keep=["mix"])
    out = trace.outputs["mix"]
    signal, _ = one_hot_like(out, 2)  # channel 2: the 1x1 branch (channels 0-3)
    mine = project(trace, "mix", signal)
    # by hand: rectify, 1x1 transposed, rectify, stem transposed
    w1x1 = net.mix.branch1x1.conv.weight
    at_input = F.conv_transpose2d(signal[:, :4].clamp(min=0), w1x1).clamp(min=0)
    expected = F.conv_transpose2d(at_input, net.stem.weight, padding=1)
    torch.testing.assert_close(mine, expected)
    # the other branches' weights are never read: make them NaN, nothing changes
    with torch.no_grad():
        for branch in (net.mix.branch3x3, net.mix.branch5x5, net.mix.branch_pool):
            for p in branch.parameters():
                p.fill_(float("nan"))
    assert torch.equal(project(trace, "mix", signal), mine)


def test_inception_pool_branch_and_the_sum_over_branches():
    net, x = _inception_net(), torch.randn(1, 3, 10, 10)
    trace = record(net, x, keep=["mix"])
    out = trace.outputs["mix"]
    pool_channel = 4 + 5 + 3 + 1
    s_pool, _ = one_hot_like(out, pool_channel)
    s_5x5, _ = one_hot_like(out, 4 + 5 + 1)
    # pool branch by hand: proj transposed, unpool with the 3x3/1 pool's switches, stem
    stem_out = F.relu(net.stem(x))
    _, switches = F.max_pool2d(stem_out, 3, 1, 1, ceil_mode=True, return_indices=True)
    proj = F.conv_transpose2d(s_pool[:, 12:].clamp(min=0), net.mix.branch_pool.proj.conv.weight)
    unpooled = unpool(proj, switches, stem_out.shape)
    expected = F.conv_transpose2d(unpooled.clamp(min=0), net.stem.weight, padding=1)
    torch.testing.assert_close(project(trace, "mix", s_pool), expected)
    # two channels in two branches: the module input gets the sum of both projections
    both = project(trace, "mix", s_pool + s_5x5)
    torch.testing.assert_close(
        both, project(trace, "mix", s_pool) + project(trace, "mix", s_5x5), rtol=1e-5, atol=1e-6
    )


def test_a_layer_inside_an_inception_branch():
    net, x = _inception_net(), torch.randn(1, 3, 10, 10)
    trace = record(net, x, keep=["mix.branch3x3.reduce"])
    signal, _ = one_hot_like(trace.outputs["mix.branch3x3.reduce"], 1)
    expected = deconvnet_by_autograd(net, x, "mix.branch3x3.reduce", signal)
    torch.testing.assert_close(project(trace, "mix.branch3x3.reduce", signal), expected)


# --- whole networks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("googlenet", {}),
        ("googlenet_bn", {}),
        ("googlenet_torchvision", {}),
        ("googlenet", {"conv1": "separable"}),  # a depthwise (grouped) first convolution
    ],
    ids=["googlenet", "googlenet_bn", "googlenet_torchvision", "separable_conv1"],
)
def test_registry_googlenets_match_the_autograd_deconvnet(name, kwargs):
    torch.manual_seed(0)
    model = gd.create_model(name, aux_logits=False, **kwargs).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 48, 48)
    trace = record(model, x, keep=["conv2", "inception4a"])
    for layer in ("conv2", "inception4a"):
        out = trace.outputs[layer]
        channel = int(out.flatten(2).amax(2)[0].argmax())  # an active one
        signal, _ = one_hot_like(out, channel)
        mine = project(trace, layer, signal)
        expected = deconvnet_by_autograd(model, x, layer, signal)
        assert expected.abs().max() > 0
        torch.testing.assert_close(mine, expected, rtol=1e-4, atol=1e-5 * expected.abs().max())


def test_a_sequential_stack_with_every_layer_type():
    net, x = tiny_net(), torch.randn(1, 3, 40, 40)
    trace = record(net, x, keep=["pool2"])
    assert [s.name for s in trace.items][:9] == [
        "conv1",
        "relu1",
        "pool1",
        "lrn1",
        "conv2",
        "bn2",
        "relu2",
        "drop",
        "pool2",
    ]
    signal, _ = one_hot_like(trace.outputs["pool2"], 3)
    expected = deconvnet_by_autograd(net, x, "pool2", signal)
    torch.testing.assert_close(project(trace, "pool2", signal), expected, rtol=1e-4, atol=1e-6)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x) + x)  # the addition is no module: hooks cannot see it


def test_a_residual_addition_is_refused_not_silently_wrong():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), _Residual(), nn.Conv2d(4, 2, 1))
    trace = record(net, torch.randn(1, 3, 9, 9), keep=["1.conv", "2"])
    assert [s.chained for s in trace.items] == [True, True, False, True]
    with pytest.raises(UnsupportedLayerError, match="1.relu does not read the output"):
        project(trace, "2", trace.outputs["2"])
    project(trace, "1.conv", trace.outputs["1.conv"])  # before the addition: fine


def test_receptive_field_from_the_layer_arithmetic():
    model = gd.create_model("googlenet", aux_logits=False).eval()
    x = torch.randn(1, 3, 96, 96)
    trace = record(model, x, keep=["inception3a"])
    assert receptive_field(trace, "conv1", (5, 6)) == (7, 9, 14, 16)  # 7x7/2 pad 3
    # pool1 3x3/2 over conv1: pooled p <- conv1 2p..2p+2 <- input 4p-3 .. 4p+7
    assert receptive_field(trace, "pool1", (2, 3)) == (5, 9, 16, 20)
    # a 1x1-branch channel of 3a sees less than a 5x5-branch channel
    one = receptive_field(trace, "inception3a", (3, 3), channel=0)
    five = receptive_field(trace, "inception3a", (3, 3), channel=64 + 128 + 1)
    assert five[2] - five[0] == one[2] - one[0] + 4 * 8
    # every non-zero pixel of a projection lies inside it
    signal = torch.zeros_like(trace.outputs["inception3a"])
    signal[0, 64 + 128 + 1, 3, 3] = 1.0
    nonzero = project(trace, "inception3a", signal)[0].abs().sum(0).nonzero()
    assert len(nonzero) and nonzero[:, 0].min() >= five[0] and nonzero[:, 0].max() < five[2]
    assert nonzero[:, 1].min() >= five[1] and nonzero[:, 1].max() < five[3]


def test_errors_for_people():
    model = gd.create_model("googlenet", aux_logits=False)
    with pytest.raises(UnknownLayerError, match="inception3a, inception3b") as err:
        record(model, torch.zeros(1, 3, 64, 64), keep=["inception9z"])
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)
    assert "conv1" in str(err.value) and "fc" not in str(err.value).split(": ", 1)[1].split(", ")
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AvgPool2d(2), nn.ReLU())
    trace = record(net, torch.randn(1, 3, 9, 9), keep=["2"])
    with pytest.raises(UnsupportedLayerError, match="AvgPool2d"):
        project(trace, "2", trace.outputs["2"])
    with pytest.raises(VisualizeError, match="channels 0-7"):
        deconv(tiny_net(), torch.randn(3, 32, 32), "conv1", [8])
    with pytest.raises(VisualizeError, match="--channels"):
        parse_channels("a-b")
    assert parse_channels("0-3,8,2") == [0, 1, 2, 3, 8]


# --- pictures ------------------------------------------------------------------------------------


def test_strongest_keeps_one_activation_per_image():
    fmap = torch.zeros(3, 2, 4, 4)
    fmap[0, 0, 1, 2], fmap[1, 0, 3, 3], fmap[1, 0, 0, 0], fmap[2, 1, 2, 1] = 5, 7, 6, 1
    best = merge_strongest(None, fmap, torch.tensor([10, 11, 12]), k=2)
    assert best.values[:, 0].tolist() == [7, 5] and best.images[:, 0].tolist() == [11, 10]
    assert best.positions[:, 0].tolist() == [15, 6] and best.images[0, 1] == 12


def test_top9_grid_png(image_folder, tmp_path):
    images = images_to_rank(image_folder)
    names = [images.describe(i) for i in range(len(images))]
    few = images_to_rank(image_folder, limit=4)
    assert len(images) == 13 and [few.describe(i) for i in range(4)] == names[::3][:4]
    net = tiny_net()
    result = top_activations(net, SMALL, images, ["conv1", "pool2"], [0, 1, 2], k=9)
    assert result.images == 12 and [Path(p).name for p in result.skipped] == ["broken.jpg"]
    for layer in ("conv1", "pool2"):
        for found in result.entries[layer].values():
            assert len(found) <= 9 and len({e.image for e in found}) == len(found)
            assert [e.value for e in found] == sorted((e.value for e in found), reverse=True)
            for e in found:
                top, left, bottom, right = e.box
                assert e.patch.size == e.reconstruction.size == (right - left, bottom - top)
    assert len(result.entries["conv1"][0]) == 9
    tile, cols = 20, 2
    img = top9_grid(result.entries["pool2"], tile=tile, cols=cols)
    side = 3 * (tile + 1) + 1  # a 3x3 block, 1 px apart
    block = (2 * side + 3, side + 18)  # reconstructions | patches, caption band of 18
    expected = (cols * (block[0] + 10) + 10, 2 * (block[1] + 10) + 10)  # 3 channels: 2 rows
    path = save_png(img, tmp_path / "top9.png")
    with Image.open(path) as png:
        assert png.size == expected and png.format == "PNG"
    assert pixel_std(path) > 0


def test_filters_and_feature_maps_png(tmp_path):
    net = tiny_net()
    path = save_png(
        filter_grid(net.conv1.weight, channel_order="BGR", tile=20, cols=4), tmp_path / "f.png"
    )
    with Image.open(path) as png:
        assert png.size == (4 * 22 + 2, 2 * 22 + 2)  # 8 filters
    assert pixel_std(path) > 0
    with pytest.raises(VisualizeError, match="1 or 3 channels"):
        filter_grid(net.conv2.weight)
    maps = feature_maps(net, torch.randn(3, 40, 40), "relu2")
    assert maps.shape == (16, 10, 10) and maps.min() >= 0
    path = save_png(feature_map_grid(maps, range(6), tile=30, cols=3), tmp_path / "maps.png")
    with Image.open(path) as png:
        assert png.size == (3 * 33 + 3, 2 * (30 + 16 + 3) + 3)
    assert pixel_std(path) > 0


class _TopLeftDetector(nn.Module):
    """Class 0's logit is the brightness of the top-left 16x16 corner."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, x):
        corner = x[:, :, :16, :16].mean((1, 2, 3))
        return torch.stack([corner * self.scale, torch.zeros_like(corner)], 1)


def test_occlusion_map_finds_what_the_class_needs(tmp_path):
    x = torch.ones(3, 56, 56)
    result = occlusion_sensitivity(_TopLeftDetector(), x, size=16, stride=8)
    assert result.target == 0 and result.tops == [0, 8, 16, 24, 32, 40]
    assert result.probs.shape == (6, 6)
    assert int(result.probs.argmin()) == 0  # the square on the corner hurts most
    assert result.probs[5, 5] == pytest.approx(result.unoccluded)  # far away: no effect
    view = Image.new("RGB", (56, 56), (200, 120, 40))
    path = save_png(occlusion_picture(view, result, "corner"), tmp_path / "occ.png")
    with Image.open(path) as png:  # three 56 px pictures 6 px apart, widened for the caption
        assert png.size[0] >= 3 * 56 + 2 * 6 and png.size[1] == 56 + 18
    assert pixel_std(path) > 0


def test_visualize_command(tmp_path, image_folder):
    net = gd.create_model("googlenet", aux_logits=False, init_weights=True)
    weights = save_weights(
        net,
        WeightsCard(model="googlenet", model_kwargs={"aux_logits": False}, preprocessing=SMALL),
        tmp_path / "net.safetensors",
    )
    parser = argparse.ArgumentParser(prog="goingdeeper")
    add_parser(parser.add_subparsers(dest="command"))

    def run(*argv):
        args = parser.parse_args(["visualize", *argv, "--out", str(tmp_path / "out")])
        return args.func(args)

    image = str(image_folder / "img03.png")
    assert run("filters", "--weights", str(weights)) == 0
    assert run("maps", "--weights", str(weights), "--layer", "conv2", "--image", image) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["filters_conv1.conv.png", "maps_conv2_img03.png"]
    assert all(pixel_std(p) > 0 for p in (tmp_path / "out").iterdir())
    with pytest.raises(UnknownLayerError, match="inception4d"):
        run("deconv", "--weights", str(weights), "--layer", "inception4z", "--image", image)
    with pytest.raises(VisualizeError, match="needs --layer; the layers of this model are"):
        run("top9", "--weights", str(weights), "--data", str(image_folder))
    with pytest.raises(VisualizeError, match="give the weights: --weights googlenet.bvlc_in1k"):
        run("filters")


def test_top9_ranks_the_images_of_any_source_discover_reads(image_folder, tmp_path):
    """The same twelve pictures as a class folder written to shards: top-9 ranks them inside
    the shards, with the values it finds in the folder."""
    tree = tmp_path / "tree" / "stripes"
    tree.mkdir(parents=True)
    for f in sorted(image_folder.glob("img*.png")):
        (tree / f.name).write_bytes(f.read_bytes())
    shards = tmp_path / "shards"
    assert main(["data", "shard", str(tmp_path / "tree"), "--out", str(shards)]) == 0
    in_shards = images_to_rank(shards)
    in_folder = images_to_rank(tree)
    assert len(in_shards) == len(in_folder) == 12
    assert ".tar" in in_shards.describe(0) and in_folder.describe(0).endswith(".png")
    net = tiny_net()
    a = top_activations(net, SMALL, in_shards, ["conv1"], [0, 1], k=3)
    b = top_activations(net, SMALL, in_folder, ["conv1"], [0, 1], k=3)
    assert a.images == b.images == 12
    for c in (0, 1):  # the same pixels; a float32 sum of conv1's few terms in another order
        values = [e.value for e in b.entries["conv1"][c]]
        assert [e.value for e in a.entries["conv1"][c]] == pytest.approx(values, rel=1e-5)


# --- real data -----------------------------------------------------------------------------------


@pytest.mark.data
def test_bvlc_top9_on_real_photos(shared_data, tmp_path):
    """BVLC GoogLeNet on 20 ImageNet photos: top-9 of inception3a, as ZFNet Fig. 2."""
    model, card = import_bvlc(shared_data / "bvlc-googlenet")
    assert card.preprocessing == CAFFE_BGR
    images = images_to_rank(shared_data / "imagenet-sample", limit=20)
    result = top_activations(model, card.preprocessing, images, ["inception3a"], [0, 1, 2, 3])
    assert result.images == 20 and not result.skipped
    entries = result.entries["inception3a"]
    for found in entries.values():
        assert len(found) == 9 and found[0].value > 0
        for e in found:
            assert e.reconstruction.size == e.patch.size
            top, left, bottom, right = e.box
            assert 0 <= top < bottom <= 224 and 0 <= left < right <= 224
    # the strongest activation is really there: recompute it from the photo
    best = entries[0][0]
    x = card.preprocessing(load_image(best.name))
    assert best.name == images.describe(best.image)
    fmap = feature_maps(model, x, "inception3a")[0]
    assert float(fmap.max()) == pytest.approx(best.value, rel=1e-5)
    assert divmod(int(fmap.argmax()), fmap.shape[1]) == best.position
    path = save_png(top9_grid(entries, tile=48, title="inception3a"), tmp_path / "top9.png")
    with Image.open(path) as png:
        assert png.size[0] > 4 * 2 * 3 * 48
    assert pixel_std(path) > 20
