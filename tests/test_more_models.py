"""ResNet, DenseNet, Xception and SE-Net: registry-parametrised checks, exact counts against
the papers and torchvision, MACs against torch.utils.flop_counter, torchvision weight import.

Cheap by design (the CI machine has two shared cores): backward passes run at 32x32 (96 for
SE-GoogLeNet, whose aux heads need 79), and only the count oracle runs at the card's size.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import goingdeeper as gd
from goingdeeper.analysis import count_params_macs, summarize
from goingdeeper.errors import WeightsError
from goingdeeper.models.googlenet import GoogLeNetOutputs, googlenet_loss
from goingdeeper.models.inception import Inception
from goingdeeper.models.resnet import Bottleneck, ZeroPadShortcut
from goingdeeper.models.senet import SEBottleneck, SEInception, SqueezeExcitation
from goingdeeper.weights import IMAGENET_RGB_V2, import_torchvision

import_torchvision_densenet = import_torchvision_resnet = import_torchvision

# name: (all parameters, parameters of the inference network, MACs at the card's input size)
COUNTS = {
    "resnet18": (11_689_512, 11_689_512, 1_814_073_344),  # Table 1: 1.8 x 10^9
    "resnet34": (21_797_672, 21_797_672, 3_663_761_408),  # 3.6 x 10^9
    "resnet50": (25_557_032, 25_557_032, 4_089_184_256),  # v1.5: stride in the 3x3
    "resnet101": (44_549_160, 44_549_160, 7_801_405_440),
    "resnet152": (60_192_808, 60_192_808, 11_513_626_624),
    "resnet50_paper": (25_557_032, 25_557_032, 3_857_973_248),  # Table 1: 3.8 x 10^9
    "resnet101_paper": (44_549_160, 44_549_160, 7_570_194_432),  # 7.6 x 10^9
    "resnet152_paper": (60_192_808, 60_192_808, 11_282_415_616),  # 11.3 x 10^9
    "densenet121": (7_978_856, 7_978_856, 2_834_161_664),
    "densenet169": (14_149_480, 14_149_480, 3_359_843_328),
    "densenet201": (20_013_928, 20_013_928, 4_291_365_888),
    "densenet264": (33_337_704, 33_337_704, 5_751_653_376),
    "xception": (22_855_952, 22_855_952, 8_357_403_496),  # Table 3: 22,855,952; at 299
    "se_resnet50": (28_088_024, 28_088_024, 3_860_488_192),  # ~28.1 M; 3.87 GFLOPs (Table 2)
    "se_googlenet": (13_858_383, 7_478_655, 1_583_146_144),  # all: with both aux heads
}
MODELS = list(COUNTS)
# the aux heads' 5x5/3 pool needs 79 pixels; everything else runs at 32 (the last stage of
# ResNet, DenseNet and Xception is then 1x1, which BatchNorm takes with a batch of two)
SMALL = {"se_googlenet": 96}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a shared two-core machine (and under `pytest -n 2`) a second
    OpenMP thread waits at every barrier for a core it does not get, ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_registry_has_exactly_these_models():
    ours = [n for n in gd.list_models() if n.startswith(("resnet", "densenet", "xception", "se_"))]
    assert sorted(ours) == sorted(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_shape_determinism(name):
    size = SMALL.get(name, 32)
    kwargs = {"input_size": size} if name == "se_googlenet" else {}  # aux FC sized for it
    model = gd.create_model(name, num_classes=10, **kwargs)
    x = torch.randn(2, 3, size, size)
    model.train()
    out = model(x)
    if name == "se_googlenet":  # a GoogLeNet: the training record with both aux heads
        assert isinstance(out, GoogLeNetOutputs)
    googlenet_loss(out, torch.tensor([1, 2])).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        a = model(x)
        features = model.forward_features(x)
        if isinstance(features, tuple):  # GoogLeNet: also the aux heads' inputs
            features = features[0]
        b = model.forward_head(features)
        assert a.shape == (2, 10)
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # deterministic; forward = head(features)
        model.reset_classifier(5)
        assert model.forward_head(features).shape == (2, 5)


def flop_counter_macs(model: nn.Module, size: int) -> int:
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name", MODELS)
def test_exact_counts_and_macs_equal_flop_counter(name):
    total, inference, macs = COUNTS[name]
    size = 299 if name == "xception" else 224
    model = gd.create_model(name, init_weights=False)
    assert sum(p.numel() for p in model.parameters()) == total
    assert count_params_macs(model, size) == (inference, macs)
    assert flop_counter_macs(model, size) == macs


def test_paper_counts():
    # ResNet paper, Table 1 (multiply-adds, 10^9); Xception paper, Table 3 (parameters);
    # SE paper: ~2.5 M more parameters than ResNet-50 (section 4), ~28.1 M in all
    for name, paper in [("resnet18", 1.8), ("resnet34", 3.6), ("resnet50_paper", 3.8)]:
        assert round(COUNTS[name][2] / 1e9, 1) in (paper, paper + 0.1)
    assert round(COUNTS["resnet101_paper"][2] / 1e9, 1) == 7.6
    assert round(COUNTS["resnet152_paper"][2] / 1e9, 1) == 11.3
    assert COUNTS["xception"][0] == 22_855_952
    assert round(COUNTS["se_resnet50"][0] / 1e6, 1) == 28.1
    assert COUNTS["densenet121"][0] == sum(
        p.numel() for p in torchvision.models.densenet121(weights=None).parameters()
    )


def test_model_cards():
    card = gd.model_card("resnet18")
    assert (card.family, card.arxiv, card.year, card.input_size) == (
        "ResNet",
        "1512.03385",
        2015,
        224,
    )
    assert (card.params, card.macs) == COUNTS["resnet18"][1:]
    card = gd.model_card("xception")
    assert (card.family, card.arxiv, card.input_size, card.preprocessing.crop) == (
        "Xception",
        "1610.02357",
        299,
        299,
    )
    assert (card.params, card.macs) == COUNTS["xception"][1:]
    card = gd.model_card("se_googlenet")  # built with its aux heads, counted without them
    assert (card.family, card.arxiv, card.params) == ("SENet", "1709.01507", 7_478_655)


# --- ResNet ------------------------------------------------------------------------------------


def on_meta(name: str, **kwargs) -> nn.Module:
    """A model without storage, for tests of its structure: built in a blink."""
    with torch.device("meta"):
        return gd.create_model(name, **kwargs)


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
    with pytest.raises(ValueError, match="shortcut must be"):
        gd.create_model("resnet18", shortcut="D")
    with pytest.raises(ValueError, match="depth must be one of"):
        gd.models.resnet.ResNet(depth=42)


def test_zero_pad_shortcut():
    x = torch.randn(1, 4, 6, 6)
    y = ZeroPadShortcut(8, 2)(x)
    assert y.shape == (1, 8, 3, 3)
    torch.testing.assert_close(y[:, :4], x[:, :, ::2, ::2])
    assert not y[:, 4:].any()


def test_table1_stages():
    rows = {r.name: r for r in summarize(gd.create_model("resnet18"), 224).rows}
    assert [rows[n].output for n in ("conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x")] == [
        (64, 112, 112),
        (64, 56, 56),
        (128, 28, 28),
        (256, 14, 14),
        (512, 7, 7),
    ]
    assert sum(r.depth for r in rows.values()) == 18  # shortcuts add no depth
    rows = {r.name: r for r in summarize(gd.create_model("resnet152"), 32).rows}
    assert sum(r.depth for r in rows.values()) == 152
    assert rows["conv5_x"].output[0] == 2048


# --- DenseNet ----------------------------------------------------------------------------------


def test_densenet_table1_rows():
    rows = {r.name: r for r in summarize(gd.create_model("densenet121"), 224).rows}
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


# --- Xception ----------------------------------------------------------------------------------


def test_xception_fig5_shapes_and_depth():
    rows = {r.name: r for r in summarize(gd.create_model("xception"), 299).rows}
    assert rows["conv1"].output == (32, 149, 149) and rows["conv2"].output == (64, 147, 147)
    assert rows["block3"].output == (728, 19, 19)  # end of the entry flow
    assert all(rows[f"block{i}"].output == (728, 19, 19) for i in range(4, 12))  # middle x8
    assert rows["block12"].output == (1024, 10, 10) and rows["conv4"].output == (2048, 10, 10)
    assert sum(r.depth for r in rows.values()) == 36 + 1  # 36 conv layers (section 3) + fc
    m = on_meta("xception")
    assert m.dropout.p == 0.5
    assert m.block4.shortcut is None and m.block1.shortcut.conv.stride == (2, 2)


# --- SE-Net ------------------------------------------------------------------------------------


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


# --- torchvision weights -----------------------------------------------------------------------


def _randomised(model: nn.Module) -> nn.Module:
    """torchvision's random convolutions, and BatchNorm made random too (it starts as an
    identity), so that no mapping error can hide."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize(
    "arch, importer",
    [
        ("resnet18", import_torchvision_resnet),
        ("resnet50", import_torchvision_resnet),
        ("densenet121", import_torchvision_densenet),
    ],
)
def test_torchvision_import_gives_the_same_outputs(arch, importer):
    theirs = _randomised(getattr(torchvision.models, arch)(weights=None))
    ours, card = importer(theirs)
    assert card.model == arch and card.num_classes == 1000 and len(card.class_names) == 1000
    assert card.preprocessing.mean == (0.485, 0.456, 0.406) and card.preprocessing.crop == 224
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max().item() <= 1e-5


def test_densenet_legacy_keys_from_a_pth_file(tmp_path):
    theirs = torchvision.models.densenet121(weights=None, num_classes=10)
    state = theirs.state_dict()
    legacy = {}
    for key, value in state.items():  # as torchvision's published .pth files spell them
        for part in ("norm1", "norm2", "relu1", "relu2", "conv1", "conv2"):
            if ".denselayer" in key and f".{part}." in key:
                key = key.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
        legacy[key] = value
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    path = tmp_path / "densenet121-legacy.pth"
    torch.save(legacy, path)
    ours, card = import_torchvision_densenet(path)
    assert card.model == "densenet121" and card.num_classes == 10 and card.class_names == []
    assert card.provenance["source"] == str(path)
    for key, value in ours.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_torchvision_resnet_v2_preprocessing_and_errors(tmp_path):
    state = torchvision.models.resnet34(weights=None, num_classes=7).state_dict()
    model, card = import_torchvision_resnet(state, preprocessing=IMAGENET_RGB_V2)
    assert card.model == "resnet34" and card.preprocessing.resize == 232
    assert model.fc.out_features == 7 and not model.training
    with pytest.raises(WeightsError, match="not a ResNet of Table 1"):
        import_torchvision_resnet({k: v for k, v in state.items() if not k.startswith("layer4.2")})
    with pytest.raises(WeightsError, match="not a torchvision densenet"):
        import_torchvision_densenet(state)
    with pytest.raises(WeightsError, match="no such file"):
        import_torchvision_resnet(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a PyTorch state dict"):
        import_torchvision_resnet(tmp_path / "junk.pth")
