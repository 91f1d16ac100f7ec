"""The classic line (LeNet, AlexNet, ZFNet, VGG) against its oracles: the papers' counts,
torch.utils.flop_counter, torchvision's own models, hand-written LRN and connection tables,
and dense evaluation against the plain network.

Counting tests build the models on the meta device (shapes only, no memory, no init), so that
all 25 of them, VGG included, take a fraction of a second each."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import goingdeeper as gd
from goingdeeper.analysis import count_params_macs, summarize
from goingdeeper.errors import WeightsError
from goingdeeper.models.alexnet import renormalize_filters
from goingdeeper.models.lenet import (
    C3_TABLE,
    H3_TABLE,
    EuclideanRBF,
    PartialConv2d,
    connections,
    rbf_codes,
    scaled_tanh,
)
from goingdeeper.models.vgg import (
    CFGS,
    average_score_map,
    parse_layer,
    to_fully_convolutional,
)
from goingdeeper.preprocess import IMAGENET_RGB
from goingdeeper.weights import import_torchvision, recognise

CLASSIC = [
    *gd.list_models("lenet*"),
    *gd.list_models("alexnet*"),
    "zfnet",
    *gd.list_models("vgg*"),
]

# name: (parameters, MACs per image at the card's input size); MACs = FLOPs / 2
COUNTS = {
    "lenet1": (2_578, 94_592),
    "lenet5": (60_000, 332_824),
    "lenet5_modern": (61_706, 416_520),
    "alexnet": (60_965_224, 724_406_816),
    "alexnet_torchvision": (61_100_840, 714_188_480),
    "zfnet": (62_357_608, 1_168_032_896),
    "vgg_a": (132_863_336, 7_609_090_048),
    "vgg_a_lrn": (132_863_336, 7_609_090_048),
    "vgg_b": (133_047_848, 11_308_466_176),
    "vgg_c": (133_638_952, 11_770_888_192),
    "vgg_d": (138_357_544, 15_470_264_320),
    "vgg_e": (143_667_240, 19_632_062_464),
    "vgg_a_bn": (132_868_840, 7_609_090_048),
    "vgg_b_bn": (133_053_736, 11_308_466_176),
    "vgg_c_bn": (133_647_400, 11_770_888_192),
    "vgg_d_bn": (138_365_992, 15_470_264_320),
    "vgg_e_bn": (143_678_248, 19_632_062_464),
    "vgg11": (132_863_336, 7_609_090_048),
    "vgg11_bn": (132_868_840, 7_609_090_048),
    "vgg13": (133_047_848, 11_308_466_176),
    "vgg13_bn": (133_053_736, 11_308_466_176),
    "vgg16": (138_357_544, 15_470_264_320),
    "vgg16_bn": (138_365_992, 15_470_264_320),
    "vgg19": (143_667_240, 19_632_062_464),
    "vgg19_bn": (143_678_248, 19_632_062_464),
}
INPUT_SIZE = {"lenet1": 28, "lenet5": 32, "lenet5_modern": 32, "alexnet": 227}  # else 224


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Small convolutions: on a busy 2-core machine (or under `pytest -n 2`) a second OpenMP
    # thread spins more than it works; one thread made this file several times faster there.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return gd.create_model(name, **kwargs).eval()


def test_registry_holds_the_classic_line():
    assert len(CLASSIC) == len(COUNTS) == 25 and set(CLASSIC) == set(COUNTS)


# --- every model: forward, backward, shape, determinism ---------------------------------------


def _small(name: str) -> tuple[nn.Module, torch.Tensor]:
    """The model with narrow fc6/fc7 and its smallest input: the same code, a fraction of the
    cost (VGG's fc6 alone has 103 M weights)."""
    if name.startswith("lenet"):
        model = gd.create_model(name, num_classes=7)
        size = INPUT_SIZE[name]
    else:
        model = gd.create_model(name, num_classes=7, fc_width=16)
        size = model.min_size
    return model, torch.randn(1, model.in_channels, size, size)  # BatchNorm: 2x2 before pool5


@pytest.mark.parametrize("name", CLASSIC)
def test_forward_backward_shape_and_eval_determinism(name):
    model, x = _small(name)
    model.train()
    out = model(x)
    assert out.shape == (1, 7)
    F.cross_entropy(out, torch.tensor([6])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        assert torch.equal(model(x), model.forward_head(features))  # twice, the same
        model.reset_classifier(3)
        assert model.forward_head(features).shape == (1, 3)


# --- counts: the papers' numbers, and the analyzer against torch.utils.flop_counter ------------


@pytest.mark.parametrize("name", CLASSIC)
def test_params_and_macs_equal_flop_counter(name):
    model = _meta(name)
    size = INPUT_SIZE.get(name, 224)
    with FlopCounterMode(display=False) as counter:
        params, macs = count_params_macs(model, size)  # one forward pass, batch of 1
    assert counter.get_total_flops() // 2 == macs
    assert (params, macs) == COUNTS[name]
    assert sum(p.numel() for p in model.parameters()) == params


def test_lenet_macs_are_real_work():
    # on real tensors too: C3's partial connections cost what is counted, not a dense 6 -> 16
    for name in ("lenet1", "lenet5"):
        model = gd.create_model(name).eval()
        x = torch.zeros(1, 1, INPUT_SIZE[name], INPUT_SIZE[name])
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        assert counter.get_total_flops() // 2 == COUNTS[name][1]


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
    assert gd.model_card("lenet5").params == 60_000 and gd.model_card("lenet5").depth == 7


def test_lenet_rejects_wrong_input():
    with pytest.raises(ValueError, match="LeNet-5 takes N x 1 x 32 x 32"):
        gd.create_model("lenet5")(torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match="got 'sigmoid'"):
        gd.create_model("lenet5", activation="sigmoid")


# --- AlexNet and ZFNet --------------------------------------------------------------------------


def test_alexnet_and_zfnet_sizes_follow_the_papers():
    rows = {r.name: r.output for r in summarize(_meta("alexnet"), 227).rows}
    assert rows["conv1"] == (96, 55, 55) and rows["pool1"] == (96, 27, 27)
    assert rows["conv2"] == (256, 27, 27) and rows["pool2"] == (256, 13, 13)
    assert rows["conv5"] == (256, 13, 13) and rows["pool5"] == (256, 6, 6)
    names = [r.name for r in summarize(_meta("alexnet"), 227).rows]
    assert names[:7] == ["conv1", "lrn1", "pool1", "conv2", "lrn2", "pool2", "conv3"]
    zf = summarize(_meta("zfnet"), 224).rows  # Fig. 3: 110, 55, 26, 13, 13, 13, 6
    rows = {r.name: r.output for r in zf}
    assert rows["conv1"] == (96, 110, 110) and rows["pool1"] == (96, 55, 55)
    assert rows["conv2"] == (256, 26, 26) and rows["pool2"] == (256, 13, 13)
    assert rows["conv3"] == (384, 13, 13) and rows["pool5"] == (256, 6, 6)
    assert [r.name for r in zf][:6] == ["conv1", "pool1", "lrn1", "conv2", "pool2", "lrn2"]


def test_alexnet_towers_are_groups():
    model = _meta("alexnet")
    groups = {n: model.get_submodule(f"{n}.conv").groups for n in ("conv1", "conv2", "conv3")}
    assert groups == {"conv1": 1, "conv2": 2, "conv3": 1}
    assert model.conv4.conv.groups == model.conv5.conv.groups == 2


def test_alexnet_lrn_is_the_papers_formula():
    lrn = gd.create_model("alexnet", fc_width=8).lrn1
    a = torch.randn(2, 12, 5, 5) * 10
    sq = F.pad(a.pow(2), (0, 0, 0, 0, 2, 2))  # channels i-2 .. i+2, clipped at the ends
    window = sum(sq[:, i : i + 12] for i in range(5))
    expected = a / (2.0 + 1e-4 * window).pow(0.75)  # k 2, alpha 1e-4 on the plain sum
    torch.testing.assert_close(lrn(a), expected)


@pytest.mark.parametrize("size", [5, 4, 3])
@pytest.mark.parametrize("beta", [0.75, 0.6])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_lrn_equals_pytorchs_in_value_and_gradient(size, beta, channels_last):
    """The shifted-sum LRN against F.local_response_norm: outputs and input gradients, in
    both memory layouts, even and odd windows, the 0.75 shortcut and a general beta."""
    from goingdeeper.models.lrn import LocalResponseNorm

    torch.manual_seed(size)
    x = torch.relu(torch.randn(3, 11, 6, 5) * 30)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    fast = LocalResponseNorm(size, 1e-3, beta, 2.0)
    assert isinstance(fast, nn.LocalResponseNorm)
    grad = torch.randn(3, 11, 6, 5)
    results = []
    for fn in (fast, lambda t: F.local_response_norm(t, size, 1e-3, beta, 2.0)):
        leaf = x.clone().requires_grad_(True)
        out = fn(leaf)
        out.backward(grad)
        results.append((out.detach(), leaf.grad))
    (out, g), (ref_out, ref_g) = results
    assert out.abs().max() > 1  # the normalisation is not trivially the identity
    assert (out - x).abs().max() > 1e-2 * x.abs().max()
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g, ref_g, rtol=1e-5, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    with torch.no_grad():  # the inference branch
        torch.testing.assert_close(fast(x), ref_out, rtol=1e-5, atol=1e-5)


def test_fast_lrn_gradcheck():
    from goingdeeper.models.lrn import local_response_norm

    x = (torch.randn(2, 7, 3, 4, dtype=torch.double) * 10).requires_grad_(True)
    for size, beta in [(5, 0.75), (4, 0.6)]:
        lrn = partial(local_response_norm, size=size, alpha=1e-2, beta=beta, k=2.0)
        assert torch.autograd.gradcheck(lrn, x)


def test_zfnet_switches():
    model = gd.create_model("zfnet", num_classes=5, fc_width=16).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model.forward_with_switches(x)
        assert torch.equal(out.logits, model(x))
    assert list(out.switches) == ["pool1", "pool2", "pool5"]
    for name, (indices, size) in out.switches.items():
        pool = getattr(model, name)
        pooled = out.activations[name]
        assert pool.ceil_mode and indices.shape == pooled.shape
        # unpooling with the switches puts each max back where it came from
        unpooled = F.max_unpool2d(pooled, indices, pool.kernel_size, pool.stride, output_size=size)
        again = F.max_pool2d(unpooled, pool.kernel_size, pool.stride, ceil_mode=True)
        assert torch.equal(again, pooled)


def test_renormalize_filters():
    model = gd.create_model("zfnet", num_classes=5, fc_width=16)
    w = model.conv1.conv.weight
    with torch.no_grad():
        w.normal_(0.0, 0.01)
        w[:3] *= 50  # RMS ~0.5
    before = w.detach().clone()
    rescaled = renormalize_filters(model)
    rms = w.detach().pow(2).mean((1, 2, 3)).sqrt()
    assert rescaled >= 3
    torch.testing.assert_close(rms[:3], torch.full((3,), 0.1))
    assert torch.equal(w[3:].detach(), before[3:])
    assert (rms <= 0.1 + 1e-6).all()


# --- VGG: Table 1, torchvision's layout, dense evaluation ---------------------------------------


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
    model = _meta("vgg_c")
    assert model.conv3_3.conv.kernel_size == (1, 1) and model.conv5_3.conv.out_channels == 512
    assert isinstance(_meta("vgg_a_lrn").lrn1, nn.LocalResponseNorm)


def test_vgg_torchvision_state_dict_layout():
    for name in ("vgg16", "vgg11_bn"):
        with torch.device("meta"):
            theirs = getattr(torchvision.models, name)(weights=None, init_weights=False)
        ours = _meta(name)
        assert {k: v.shape for k, v in ours.state_dict().items()} == {
            k: v.shape for k, v in theirs.state_dict().items()
        }


def _perturb_batchnorm(model: nn.Module) -> nn.Module:
    for m in model.modules():  # non-trivial statistics, so that they are tested too
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model


def _narrow_torchvision_vgg(name: str, width: int = 32, classes: int = 10) -> nn.Module:
    """torchvision's own VGG with a narrow classifier: its features built on the meta device
    and initialised as torchvision does, so that no 100 M-weight fc6 is ever filled."""
    with torch.device("meta"):
        model = getattr(torchvision.models, name)(weights=None, init_weights=False)
    model.features.to_empty(device="cpu")
    for m in model.features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
            m.reset_running_stats()
    model.classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, width),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(width, width),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(width, classes),
    )
    return model


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "vgg11_bn_narrow"])
def test_torchvision_import_same_outputs(name):
    if name.endswith("_narrow"):
        name = name.removesuffix("_narrow")
        theirs = _perturb_batchnorm(_narrow_torchvision_vgg(name)).eval()
    else:
        theirs = getattr(torchvision.models, name)(weights=None).eval()
    ours, card = import_torchvision(theirs)
    assert card.model == ("alexnet_torchvision" if name == "alexnet" else name)
    assert card.preprocessing == IMAGENET_RGB and not ours.training
    x = torch.randn(2, 3, 224 if name == "alexnet" else 64, 224 if name == "alexnet" else 64)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max().item() <= 1e-5
    if card.num_classes == 1000:
        assert len(card.class_names) == 1000 and card.model_kwargs == {"num_classes": 1000}
    else:
        assert card.model_kwargs == {"num_classes": 10, "fc_width": 32}


def test_torchvision_import_rejects_other_state_dicts():
    with pytest.raises(WeightsError, match="not a torchvision state dict"):
        recognise({"fc.weight": torch.zeros(2, 2)})


def test_dense_evaluation():
    model = gd.create_model("vgg_a", num_classes=10, fc_width=32).eval()
    dense = to_fully_convolutional(model).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        scores = dense(x)
        assert scores.shape == (1, 10, 1, 1)
        torch.testing.assert_close(average_score_map(scores), model(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="smallest that works is 224x224"):
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
