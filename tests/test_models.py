"""What every registered model shares, checked once for each name in `gd.list_models()`:

- its counts (all parameters, those of the inference network, multiply-adds at the card's
  input size) against one table pinned from the papers and torchvision, and the analyzer
  (`count_params_macs`, `model_costs`) against torch.utils.flop_counter;
- forward, backward, output shape, eval determinism, forward = head(features) and
  `reset_classifier` on small inputs (GoogLeNets: the training record with both aux heads);
- the smallest input it takes (`min_size`, and `max_size` for a network of one size) and its
  input planes, refused below with an `InputError`;
- the capabilities its card declares (`has_aux`, `takes_input_size`) against its builder;
- the registry's errors: close matches for an unknown name, the builder's message for an
  unknown keyword.

Counting builds the models on the meta device (shapes only: no memory, no initialisation), so
that VGG's 100 M-weight fc6 costs nothing; the numeric checks run narrow classifiers (fc6/fc7
of 16 units) at 32x32 (96 for the aux heads, the models' own size for LeNet).
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import goingdeeper as gd
from goingdeeper.analysis import count_params_macs, model_costs
from goingdeeper.errors import InputError, ModelArgumentError, UnknownModelError
from goingdeeper.models.base import Classifier, example_input
from goingdeeper.models.features import FeatureExtractor
from goingdeeper.models.googlenet import INCEPTION_TABLE, GoogLeNetOutputs
from helpers import on_meta

MODELS = gd.list_models()

# name: (all parameters, parameters of the inference network, MACs at the card's input size);
# MACs = FLOPs / 2. All and inference differ only where training-only aux heads are built.
COUNTS = {
    # LeNet: "2578 independent parameters" (1990); "60,000 trainable parameters" (1998)
    "lenet1": (2_578, 2_578, 94_592),
    "lenet5": (60_000, 60_000, 332_824),
    "lenet5_modern": (61_706, 61_706, 416_520),
    # AlexNet (the paper's two towers at 227), torchvision's one-tower AlexNet, ZFNet
    "alexnet": (60_965_224, 60_965_224, 724_406_816),
    "alexnet_torchvision": (61_100_840, 61_100_840, 714_188_480),
    "caffenet": (60_965_224, 60_965_224, 724_406_816),  # alexnet's layers, pool before LRN
    "zfnet": (62_357_608, 62_357_608, 1_168_032_896),
    # NIN: the CIFAR-10 network at 32 and the Caffe model zoo's ImageNet NIN at 224 (7.6 M
    # weights: its 29 MB release); test_nin.py derives both by hand from the prototxts' tables
    "nin_cifar10": (966_986, 966_986, 222_486_528),
    "nin_imagenet": (7_595_176, 7_595_176, 1_100_188_800),
    # VGG: Table 2 (133, 133, 134, 138, 144 M); torchvision's vgg11 ... vgg19_bn the same
    "vgg_a": (132_863_336, 132_863_336, 7_609_090_048),
    "vgg_a_lrn": (132_863_336, 132_863_336, 7_609_090_048),
    "vgg_b": (133_047_848, 133_047_848, 11_308_466_176),
    "vgg_c": (133_638_952, 133_638_952, 11_770_888_192),
    "vgg_d": (138_357_544, 138_357_544, 15_470_264_320),
    "vgg_e": (143_667_240, 143_667_240, 19_632_062_464),
    "vgg_a_bn": (132_868_840, 132_868_840, 7_609_090_048),
    "vgg_b_bn": (133_053_736, 133_053_736, 11_308_466_176),
    "vgg_c_bn": (133_647_400, 133_647_400, 11_770_888_192),
    "vgg_d_bn": (138_365_992, 138_365_992, 15_470_264_320),
    "vgg_e_bn": (143_678_248, 143_678_248, 19_632_062_464),
    "vgg11": (132_863_336, 132_863_336, 7_609_090_048),
    "vgg11_bn": (132_868_840, 132_868_840, 7_609_090_048),
    "vgg13": (133_047_848, 133_047_848, 11_308_466_176),
    "vgg13_bn": (133_053_736, 133_053_736, 11_308_466_176),
    "vgg16": (138_357_544, 138_357_544, 15_470_264_320),
    "vgg16_bn": (138_365_992, 138_365_992, 15_470_264_320),
    "vgg19": (143_667_240, 143_667_240, 19_632_062_464),
    "vgg19_bn": (143_678_248, 143_678_248, 19_632_062_464),
    # GoogLeNet: Table 1 with a plain 7x7 conv1 (BVLC); all = with both aux heads.
    # googlenet_torchvision = torchvision's googlenet (6,624,904 without its aux heads, 1.498 G);
    # googlenet_bn = googlenet + 2 x the 7,280 convolution outputs of Table 1 (BatchNorm's
    # scale and shift); googlenet_naive = Fig. 2(a)'s modules at Table 1's widths. The last
    # two have no published count: test_counts_agree_with_the_papers_and_torchvision derives
    # them by hand from Table 1.
    "googlenet": (13_378_280, 6_998_552, 1_582_671_872),
    "googlenet_bn": (13_393_352, 7_013_112, 1_582_671_872),
    "googlenet_torchvision": (13_004_888, 6_624_904, 1_498_376_192),
    "googlenet_naive": (31_685_672, 25_305_944, 4_426_547_200),
    # BN-Inception: Figure 5 (separable conv1, no conv bias); the Caffe port's layout (plain
    # conv1, conv biases). test_bn_inception.py derives both by hand from Figure 5's columns
    "bn_inception": (11_278_528, 11_278_528, 1_948_605_440),
    "bn_inception_caffe": (11_295_240, 11_295_240, 2_032_600_064),
    # Inception v3 at 299: torchvision's inception_v3 27,161,264 with its aux head, 23,834,568
    # without (timm's the same); the paper's layout "less than 25 million parameters"
    "inception_v3": (27_589_936, 24_263_240, 5_864_860_256),
    "inception_v3_torchvision": (27_161_264, 23_834_568, 5_713_216_096),
    # Inception-v4 paper, at 299: timm's inception_v4 42,679,816, inception_resnet_v2 55,843,464
    "inception_v4": (42_679_816, 42_679_816, 12_253_974_624),
    "inception_resnet_v1": (22_756_328, 22_756_328, 6_206_361_696),
    "inception_resnet_v2": (32_433_928, 32_433_928, 9_257_953_632),
    "inception_resnet_v2_timm": (55_843_464, 55_843_464, 13_155_794_016),
    # ResNet: Table 1 (1.8, 3.6, 3.8, 7.6, 11.3 x 10^9 multiply-adds); torchvision's "v1.5"
    # puts the stride in the 3x3 of a bottleneck
    "resnet18": (11_689_512, 11_689_512, 1_814_073_344),
    "resnet34": (21_797_672, 21_797_672, 3_663_761_408),
    "resnet50": (25_557_032, 25_557_032, 4_089_184_256),
    "resnet101": (44_549_160, 44_549_160, 7_801_405_440),
    "resnet152": (60_192_808, 60_192_808, 11_513_626_624),
    "resnet50_paper": (25_557_032, 25_557_032, 3_857_973_248),
    "resnet101_paper": (44_549_160, 44_549_160, 7_570_194_432),
    "resnet152_paper": (60_192_808, 60_192_808, 11_282_415_616),
    # DenseNet-BC (k = 32): torchvision's densenet121, 169, 201 parameter for parameter
    "densenet121": (7_978_856, 7_978_856, 2_834_161_664),
    "densenet169": (14_149_480, 14_149_480, 3_359_843_328),
    "densenet201": (20_013_928, 20_013_928, 4_291_365_888),
    "densenet264": (33_337_704, 33_337_704, 5_751_653_376),
    # Xception: Table 3's 22,855,952, at 299
    "xception": (22_855_952, 22_855_952, 8_357_403_496),
    # SE-ResNet-50: ~28.1 M, 3.87 GFLOPs (Table 2); SE-GoogLeNet: all = with both aux heads
    "se_resnet50": (28_088_024, 28_088_024, 3_860_488_192),
    "se_googlenet": (13_858_383, 7_478_655, 1_583_146_144),
}
INPUT_SIZE = {
    "nin_cifar10": 32,
    "lenet1": 28,
    "lenet5": 32,
    "lenet5_modern": 32,
    "alexnet": 227,
    "caffenet": 227,
    "xception": 299,
}
INPUT_SIZE |= dict.fromkeys(
    [*gd.list_models("inception_v*"), *gd.list_models("inception_res*")], 299
)
# fc6 and fc7 narrowed from 4096 to 16: the same layers and graph, a fraction of the cost
NARROW = {"AlexNet": {"fc_width": 16}, "ZFNet": {"fc_width": 16}, "VGG": {"fc_width": 16}}
# Inception-v4 and Inception-ResNet with one module of each kind in the A and B stages and two
# in C (the release's last one is linear): every kind of module, a third of the work
NARROW["Inception-v4"] = {"repeats": (1, 1, 2)}
SMALL = 32  # the last stage of ResNet, DenseNet and Xception is then 1x1 (BatchNorm: batch 2)
AUX_SIZE = 96  # the aux heads' 5x5/3 pool needs 79 pixels


pytestmark = pytest.mark.usefixtures("one_thread")


def _small(name: str, num_classes: int = 7, *, aux: bool = False) -> tuple[nn.Module, int]:
    """The model with a narrow classifier, and the small square input it runs at: its only
    size (LeNet), 96 where the card says the aux heads are sized for the input, with `aux`
    the smallest input aux heads of a fixed reach take in training (Inception v3's: 299),
    else 32 or the model's smallest if that is larger."""
    card = gd.model_card(name)
    kwargs = {"num_classes": num_classes, **NARROW.get(card.family, {})}
    if card.takes_input_size:
        kwargs["input_size"] = AUX_SIZE
    model = gd.create_model(name, **kwargs)
    if card.takes_input_size:
        return model, AUX_SIZE
    if aux and card.has_aux:  # aux heads of a fixed reach (Inception v3's: 17x17 maps, 299)
        return model, model.min_size_aux
    return model, model.max_size or max(model.min_size, SMALL)


def test_registry_holds_exactly_the_counted_models():
    assert len(MODELS) == len(set(MODELS)) == len(COUNTS) == 55 and set(MODELS) == set(COUNTS)
    classic = [*gd.list_models("lenet*"), *gd.list_models("alexnet*"), "caffenet", "zfnet"]
    assert len([*classic, *gd.list_models("vgg*")]) == 26
    more = [n for n in MODELS if n.startswith(("resnet", "densenet", "xception", "se_"))]
    assert len(more) == 15
    assert len(gd.list_models("inception_*")) == 6  # v3 (2), v4, Inception-ResNet (3)


# --- counts: the papers' numbers, and the analyzer against torch.utils.flop_counter ------------


@pytest.mark.parametrize("name", MODELS)
def test_counts_equal_the_table_and_the_flop_counter(name):
    total, inference, macs = COUNTS[name]
    size = INPUT_SIZE.get(name, 224)
    assert gd.model_card(name).input_size == size
    model = on_meta(name)  # as the registry builds it: aux heads included
    assert sum(p.numel() for p in model.parameters()) == total
    with FlopCounterMode(display=False) as counter:
        counted = count_params_macs(model, size)  # one forward pass, batch of 1
    assert counted == (inference, macs)
    assert counter.get_total_flops() // 2 == macs  # what PyTorch counts in that pass
    costs = gd.model_costs(name)
    assert gd.model_costs is model_costs and (costs.params, costs.macs) == (inference, macs)


def _tv_params(name: str, **kwargs) -> int:
    with torch.device("meta"):
        model = getattr(torchvision.models, name)(weights=None, **kwargs)
    return sum(p.numel() for p in model.parameters())


def _fig2a_googlenet() -> tuple[int, int, int]:
    """GoogLeNet with the naive modules of Fig. 2(a) (a 1x1, a 3x3 and a 5x5 convolution and
    the pool projection, all reading the module's input), by hand from Table 1's widths and
    output sizes: (all parameters, inference parameters, MACs at 224)."""
    params = 3 * 49 * 64 + 64 + 64 * 64 + 64 + 64 * 9 * 192 + 192  # conv1, conv2 (1x1, 3x3)
    macs = 112 * 112 * 64 * 3 * 49 + 56 * 56 * 64 * 64 + 56 * 56 * 192 * 64 * 9
    sides = [28, 28, 14, 14, 14, 14, 14, 7, 7]
    channels, aux_inputs = 192, []
    for (name, c1, _, c3, _, c5, proj), side in zip(INCEPTION_TABLE, sides, strict=True):
        weights = channels * (c1 + 9 * c3 + 25 * c5 + proj)
        params += weights + c1 + c3 + c5 + proj
        macs += side * side * weights
        channels = c1 + c3 + c5 + proj
        if name in ("inception4a", "inception4d"):
            aux_inputs.append(channels)
    params += channels * 1000 + 1000  # fc
    macs += channels * 1000
    # an aux head: 1x1 conv to 128, fc 4x4x128 -> 1024, fc 1024 -> 1000
    aux = sum(c * 128 + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000 for c in aux_inputs)
    return params + aux, params, macs


def test_counts_agree_with_the_papers_and_torchvision():
    # ResNet paper, Table 1 (multiply-adds, 10^9); Xception paper, Table 3 (parameters);
    # SE paper: ~2.5 M more parameters than ResNet-50 (section 4), ~28.1 M in all
    for name, paper in [("resnet18", 1.8), ("resnet34", 3.6), ("resnet50_paper", 3.8)]:
        assert round(COUNTS[name][2] / 1e9, 1) in (paper, paper + 0.1)
    assert round(COUNTS["resnet101_paper"][2] / 1e9, 1) == 7.6
    assert round(COUNTS["resnet152_paper"][2] / 1e9, 1) == 11.3
    assert COUNTS["xception"][0] == 22_855_952
    assert round(COUNTS["se_resnet50"][0] / 1e6, 1) == 28.1
    # torchvision's own models, counted on the meta device
    assert COUNTS["densenet121"][0] == _tv_params("densenet121")
    for ours, theirs in [("alexnet_torchvision", "alexnet"), ("vgg16_bn", "vgg16_bn")]:
        assert COUNTS[ours][0] == _tv_params(theirs)
    for name in ("resnet18", "resnet50", "resnet152", "densenet201"):
        assert COUNTS[name][0] == _tv_params(name)
    total, inference, macs = COUNTS["googlenet_torchvision"]
    assert inference == _tv_params("googlenet", aux_logits=False, init_weights=False) == 6_624_904
    assert total == _tv_params("googlenet", aux_logits=True, init_weights=False)
    assert round(macs / 1e9, 3) == 1.498
    # BatchNorm adds a scale and a shift per convolution output: conv1, conv2's two, the
    # nine modules' six convolutions (Table 1's widths), the aux heads' 128 each
    outputs = 64 + 64 + 192 + sum(sum(row[1:]) for row in INCEPTION_TABLE)
    assert outputs == 7_280
    assert COUNTS["googlenet_bn"][1] == COUNTS["googlenet"][1] + 2 * outputs
    assert COUNTS["googlenet_bn"][0] == COUNTS["googlenet"][0] + 2 * (outputs + 2 * 128)
    assert COUNTS["googlenet_bn"][2] == COUNTS["googlenet"][2]
    assert COUNTS["googlenet_naive"] == _fig2a_googlenet()


# --- every model: forward, backward, shape, determinism ---------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_shape_and_eval_determinism(name):
    model, size = _small(name, aux=True)
    card = gd.model_card(name)
    x = torch.randn(2, model.in_channels, size, size)
    model.train()
    out = model(x)
    if card.has_aux:  # in training: the record of the logits and each aux head's
        assert isinstance(out, tuple) and out._fields[0] == "logits"
        assert [t.shape for t in out] == [torch.Size([2, 7])] * (1 + len(model.aux_heads))
        if isinstance(model, gd.GoogLeNet):
            assert isinstance(out, GoogLeNetOutputs)
    else:
        assert isinstance(out, torch.Tensor) and out.shape == (2, 7)
    model.training_loss(out, torch.tensor([1, 6])).total.backward()  # cross-entropy (+ aux)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
        features = model.forward_features(x)
        assert isinstance(a, torch.Tensor) and a.shape == (2, 7)
        assert isinstance(features, torch.Tensor)
        assert torch.equal(a, b)  # eval is deterministic
        assert torch.equal(a, model.forward_head(features))  # forward = head(features)
        model.reset_classifier(3)
        assert model.forward_head(features).shape == (2, 3)


# --- the input a model takes ------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_smallest_input_runs_and_smaller_is_refused(name):
    model, _ = _small(name)
    model.eval()
    smallest, planes = model.min_size, model.in_channels
    fixed = model.max_size is not None
    assert planes == gd.model_card(name).preprocessing.channels
    x = example_input(model)  # a zero batch of one at the model's smallest (or only) size
    assert x.shape == (1, planes, smallest, smallest)
    with torch.no_grad():
        assert model(x + torch.randn_like(x)).shape == (1, 7)
    if fixed:  # one size only (LeNet)
        assert model.max_size == smallest
        message = f"takes N x {planes} x {smallest} x {smallest} images"
        with pytest.raises(InputError, match=message):
            model(torch.zeros(1, planes, smallest + 1, smallest + 1))
    else:
        message = f"smallest that works is {smallest}x{smallest}"
    for h, w in [(smallest - 1, smallest - 1), (smallest + 8, smallest - 1)]:
        with pytest.raises(InputError, match=message):
            model(torch.zeros(1, planes, h, w))
    with pytest.raises(InputError, match=f"takes N x {planes} x"):  # other planes
        model(torch.zeros(1, 4 - planes, smallest, smallest))
    with pytest.raises(InputError, match=f"takes N x {planes} x"):  # no batch axis
        model(torch.zeros(planes, smallest, smallest))


# --- what the card declares, against the builder ----------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_card_capabilities_agree_with_the_builder(name):
    card = gd.model_card(name)
    model = on_meta(name)
    assert isinstance(model, Classifier)
    assert bool(model.aux_heads) == card.has_aux
    assert all(isinstance(getattr(model, head), nn.Module) for head in model.aux_heads)
    model.remove_aux_heads()
    assert all(getattr(model, head) is None for head in model.aux_heads)
    assert sum(p.numel() for p in model.parameters()) == COUNTS[name][1]  # the inference net
    if card.has_aux:
        without = on_meta(name, aux_logits=False)
        assert all(getattr(without, head) is None for head in without.aux_heads)
    else:
        with pytest.raises(ModelArgumentError, match="unexpected keyword argument 'aux_logits'"):
            gd.create_model(name, aux_logits=False)
    if card.takes_input_size:
        assert on_meta(name, input_size=AUX_SIZE).input_size == AUX_SIZE
    else:
        with pytest.raises(ModelArgumentError, match="unexpected keyword argument 'input_size'"):
            gd.create_model(name, input_size=AUX_SIZE)


# --- the registry's errors --------------------------------------------------------------------


def test_unknown_model_lists_close_matches():
    for lookup in (gd.create_model, gd.model_card):
        with pytest.raises(KeyError) as err:
            lookup("googlenett")
        assert isinstance(err.value, UnknownModelError)
        assert "googlenet" in str(err.value) and "did you mean" in str(err.value)
    with pytest.raises(UnknownModelError, match="goingdeeper models"):  # nothing close
        gd.create_model("qqqqqqqq")


@pytest.mark.parametrize("name", MODELS)
def test_unknown_keyword_is_a_model_argument_error_with_the_builders_message(name):
    with pytest.raises(ModelArgumentError, match=f"^{name}: .*unexpected keyword argument 'nope'"):
        gd.create_model(name, nope=1)


# --- the timm-style surface: feature maps, pretrained_cfg --------------------------------------


def _strides(name: str) -> list[int]:
    if name == "lenet1":
        return [1, 2, 2, 4]
    if name.startswith("lenet5"):
        return [1, 2, 2, 4, 4]
    if name.startswith("alexnet") or name == "caffenet":
        return [4, 8, 16, 32]
    if name == "zfnet":
        return [2, 8, 16, 32]
    if name == "nin_cifar10":
        return [1, 1, 2, 4]
    if name == "nin_imagenet":
        return [4, 8, 16, 32]
    if name.startswith("vgg"):
        return [1, 2, 4, 8, 16, 32]
    return [2, 4, 8, 16, 32]


@pytest.mark.parametrize("name", MODELS)
def test_features_only_gives_each_stage_with_its_channels_and_reduction(name):
    card = gd.model_card(name)
    kwargs = {**NARROW.get(card.family, {})}
    extractor = gd.create_model(name, features_only=True, **kwargs).eval()
    info = extractor.feature_info
    stages = extractor.model.feature_stages
    assert len(info) == len(stages) >= 4 and info.module_name() == list(stages)
    # on the meta device at the card's size: the stated channels; the reductions are the
    # strides the papers' tables give (a stride-4 first layer in AlexNet, stride 2 in ZFNet)
    maps = on_meta(name, **kwargs).forward_intermediates(
        example_input(on_meta(name, **kwargs), 1, card.input_size).to("meta")
    )
    assert info.channels() == [m.shape[1] for m in maps]
    assert info.reduction() == _strides(name)
    # the same description from a model given as it is (measured on its own weights)
    own = FeatureExtractor(gd.create_model(name, **kwargs).eval()).feature_info
    assert own.reduction() == info.reduction() and own.channels() == info.channels()
    # on real numbers at a small size: the chosen maps, in order, are the model's own
    model, size = _small(name)
    x = torch.randn(2, model.in_channels, size, size)
    chosen = FeatureExtractor(model.eval(), out_indices=(0, -1))
    with torch.no_grad():
        first, last = chosen(x)
        all_maps = model.forward_intermediates(x)
    assert len(all_maps) == len(stages)
    assert [m.shape[1] for m in (first, last)] == [info.channels()[0], info.channels()[-1]]
    torch.testing.assert_close(first, all_maps[0], rtol=0, atol=0)
    torch.testing.assert_close(last, all_maps[-1], rtol=0, atol=0)
    assert chosen.feature_info.module_name() == [stages[0], stages[-1]]


@pytest.mark.parametrize("name", [n for n in MODELS if not n.startswith("lenet")])
def test_the_feature_chain_is_forward_features(name):
    """Models whose feature maps come from a chain of modules: the chain run to its end is
    `forward_features` (LeNet squashes between its modules and gives its maps itself)."""
    model, size = _small(name)
    model.eval()
    x = torch.randn(2, model.in_channels, size, size)
    y = x
    with torch.no_grad():
        for module in model.feature_chain():
            y = model.get_submodule(module)(y)
        torch.testing.assert_close(y, model.forward_features(x), rtol=0, atol=0)
    assert set(model.feature_stages) <= set(model.feature_chain())


@pytest.mark.parametrize("name", MODELS)
def test_pretrained_cfg_is_what_timm_resolves(name):
    from timm.data import resolve_data_config

    card = gd.model_card(name)
    model = on_meta(name)
    model.pretrained_cfg = card.pretrained_cfg
    assert gd.create_model.__module__ == "goingdeeper.factory"
    config = resolve_data_config({}, model=model)
    pre = card.preprocessing
    assert (
        config["input_size"]
        == (pre.channels, pre.crop, pre.crop)
        == card.pretrained_cfg["input_size"]
    )
    assert config["crop_pct"] == pytest.approx(pre.crop / pre.resize)
    assert config["interpolation"] in (pre.interpolation, "box")
    # timm's mean/std act on 0..1 values: the same input as ours on 0..255 pixels
    pixel = torch.tensor([0.0, 127.0, 255.0])
    for c in range(pre.channels):
        ours = (pixel * pre.scale - pre.mean[c]) / pre.std[c]
        timms = (pixel / 255 - config["mean"][c]) / config["std"][c]
        torch.testing.assert_close(timms, ours, rtol=1e-6, atol=1e-5)
    assert card.pretrained_cfg["num_classes"] == card.num_classes
    assert card.pretrained_cfg["channel_order"] == pre.channel_order
