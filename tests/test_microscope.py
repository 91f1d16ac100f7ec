"""The microscope's pieces: feature visualisation, captum attribution (and captum as the oracle
of the ZFNet deconvnet and occlusion), Lucid's layer names."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from captum.attr import NeuronDeconvolution, Occlusion
from torch import nn

import goingdeeper as gd
from goingdeeper.errors import UnknownLayerError, VisualizeError
from goingdeeper.images import folder_images, load_image
from goingdeeper.microscope import (
    COLOUR_SQRT,
    INCEPTION_V1,
    Robustness,
    Unit,
    colour_sqrt,
    grad_cam,
    integrated_gradients,
    network_input,
    parse_unit,
    resolve_layer,
    unit_value,
    visualize_units,
)
from goingdeeper.microscope.featurevis import pre_relu_sources
from goingdeeper.microscope.site import SiteConfig, plan_site
from goingdeeper.preprocess import CAFFE_BGR, IMAGENET_RGB
from goingdeeper.visualize import deconv, occlusion_maps, occlusion_sensitivity, record
from goingdeeper.weights import WeightsCard

SMALL_MOVES = Robustness(pad=4, jitter=2, fine_jitter=1)
STILL = Robustness(pad=0, jitter=0, scales=(1.0, 1.0), degrees=0.0, fine_jitter=0)


@pytest.fixture(scope="module")
def googlenet(one_thread):
    torch.manual_seed(0)
    return gd.create_model("googlenet", aux_logits=False).eval()


# --- feature visualisation -----------------------------------------------------------------------


def test_network_input_is_the_preprocessing_on_0_to_1_pixels():
    rgb = torch.rand(2, 3, 5, 7)
    pixels = (rgb * 255).permute(0, 2, 3, 1).numpy()
    for prep in (CAFFE_BGR, IMAGENET_RGB):
        torch.testing.assert_close(network_input(rgb, prep), prep.normalize(pixels))


def test_colour_sqrt_squares_to_the_covariance():
    rng = np.random.default_rng(0)
    mix = np.array([[1.0, 0.2, 0.0], [0.9, 0.0, 0.3], [0.8, -0.2, 0.1]])
    pixels = rng.normal(size=(20000, 3)) @ mix.T
    root = colour_sqrt(pixels)
    np.testing.assert_allclose(root @ root.T, np.cov(pixels.T), atol=1e-10)
    assert (root[0] >= 0).all()


@pytest.mark.slow
def test_colour_constant_comes_from_the_photos(shared_data):
    files = folder_images(shared_data / "imagenet-sample")[::20]
    crops = [np.asarray(CAFFE_BGR.crop_image(load_image(f)), dtype=np.float64) for f in files]
    pixels = np.concatenate([c[::8, ::8].reshape(-1, 3) / 255 for c in crops])
    np.testing.assert_allclose(colour_sqrt(pixels), COLOUR_SQRT.numpy(), atol=0.03)


def test_pre_relu_source_holds_the_channel_before_its_relu(googlenet):
    layer, channels = "inception4a", [3, 250, 430, 500]  # 1x1, 3x3, 5x5, pool branches
    sources = pre_relu_sources(googlenet, layer, channels, 48)
    assert [name for name, _ in sources] == [
        "inception4a.branch1x1.conv",
        "inception4a.branch3x3.conv.conv",
        "inception4a.branch5x5.conv.conv",
        "inception4a.branch_pool.proj.conv",
    ]
    x = torch.randn(1, 3, 48, 48)
    seen = {}
    modules = dict(googlenet.named_modules())
    hooks = [
        modules[name].register_forward_hook(lambda m, i, o, n=name: seen.setdefault(n, o.clone()))
        for name, _ in sources
    ]
    out = record(googlenet, x, keep=[layer]).outputs[layer]
    for h in hooks:
        h.remove()
    for channel, (name, index) in zip(channels, sources, strict=True):
        torch.testing.assert_close(seen[name][0, index].clamp(min=0), out[0, channel])


def test_feature_visualisation_is_seeded(googlenet):
    units = [Unit("inception3a", 5), Unit("inception3a", 200)]
    kwargs = {"size": 40, "steps": 4, "lr": 0.1, "moves": SMALL_MOVES}
    a = visualize_units(googlenet, IMAGENET_RGB, units, seed=1, **kwargs)
    b = visualize_units(googlenet, IMAGENET_RGB, units, seed=1, **kwargs)
    c = visualize_units(googlenet, IMAGENET_RGB, units, seed=2, **kwargs)
    assert [np.asarray(p).tolist() for p in a] == [np.asarray(p).tolist() for p in b]
    assert np.asarray(a[0]).tolist() != np.asarray(c[0]).tolist()
    assert a[0].size == (40, 40)


def test_feature_visualisation_raises_its_unit(googlenet):
    """Without the random moves (a 40-pixel picture has no room for them in a few steps), the
    optimised picture drives each unit harder than the starting one, each in its own row."""
    units = [Unit("inception3a", 5), Unit("inception3a", 200), Unit("conv2", 3, "neuron")]
    kwargs = {"size": 40, "lr": 0.1, "moves": STILL}
    start = visualize_units(googlenet, IMAGENET_RGB, units[:2], steps=0, **kwargs)
    done = visualize_units(googlenet, IMAGENET_RGB, units[:2], steps=20, **kwargs)
    start += visualize_units(googlenet, IMAGENET_RGB, units[2:], steps=0, **kwargs)
    done += visualize_units(googlenet, IMAGENET_RGB, units[2:], steps=20, **kwargs)
    for unit, before, after in zip(units, start, done, strict=True):
        assert unit_value(googlenet, IMAGENET_RGB, unit, after) > unit_value(
            googlenet, IMAGENET_RGB, unit, before
        )
    assert all(p.requires_grad for p in googlenet.parameters())  # given back as they were


def test_feature_visualisation_of_a_class_logit(googlenet):
    unit = Unit("logits", 7, kind="logit")
    kwargs = {"size": 40, "lr": 0.1, "moves": STILL}
    before = visualize_units(googlenet, IMAGENET_RGB, [unit], steps=0, **kwargs)[0]
    after = visualize_units(googlenet, IMAGENET_RGB, [unit], steps=20, **kwargs)[0]
    rgb = [
        torch.from_numpy(np.asarray(p, dtype=np.float32) / 255).permute(2, 0, 1)
        for p in (before, after)
    ]
    with torch.no_grad():
        logits = googlenet(network_input(torch.stack(rgb), IMAGENET_RGB))
    assert logits[1, 7] > logits[0, 7]


def test_mixed_layers_in_one_batch_are_refused(googlenet):
    with pytest.raises(VisualizeError, match="share one layer"):
        visualize_units(googlenet, IMAGENET_RGB, [Unit("conv1", 0), Unit("conv2", 0)], steps=1)


# --- Lucid's names -----------------------------------------------------------------------------


def test_every_lucid_name_is_a_module_of_googlenet_with_table1_widths(googlenet):
    for lucid in INCEPTION_V1:
        assert resolve_layer(googlenet, lucid) == INCEPTION_V1[lucid]
    shapes = record(googlenet, torch.zeros(1, 3, 224, 224)).shapes
    # Table 1 of the paper: conv1 64, conv2 192, 3a 256, 4a's 3x3 reduce 96, 4d 528, 5b 1024
    expected = {
        "conv2d0": 64,
        "conv2d1": 64,
        "conv2d2": 192,
        "mixed3a": 256,
        "mixed4a_3x3_bottleneck": 96,
        "mixed4a_pool_reduce": 64,
        "mixed4d": 528,
        "mixed5b": 1024,
        "maxpool4": 480,
    }
    for lucid, channels in expected.items():
        assert shapes[resolve_layer(googlenet, lucid)][1] == channels, lucid
    assert shapes["pool4"][2:] == (7, 7)
    assert resolve_layer(googlenet, "mixed4a_pre_relu") == "inception4a"
    assert parse_unit(googlenet, "mixed4a:97") == ("inception4a", 97)
    assert parse_unit(googlenet, "inception4a:97") == ("inception4a", 97)


def test_unknown_names_say_which_there_are(googlenet):
    with pytest.raises(UnknownLayerError, match="inception4a"):
        resolve_layer(googlenet, "mixed9z")
    with pytest.raises(VisualizeError, match="LAYER:CHANNEL"):
        parse_unit(googlenet, "mixed4a")
    stack = nn.Sequential(OrderedDict(conv1=nn.Conv2d(3, 4, 3), relu1=nn.ReLU()))
    assert resolve_layer(stack, "conv1") == "conv1"
    with pytest.raises(UnknownLayerError):
        resolve_layer(stack, "mixed4a")  # an alias only for a model that has its module


# --- attribution -------------------------------------------------------------------------------


def test_grad_cam_is_zero_where_the_layer_saw_nothing():
    torch.manual_seed(0)
    net = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(3, 8, 3, padding=1, bias=False),
            relu=nn.ReLU(),
            gap=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(8, 4),
        )
    ).eval()
    x = torch.zeros(3, 16, 16)
    x[:, :, :6] = torch.rand(3, 16, 6)
    cams = grad_cam(net, x, "conv", [0, 1, 2, 3])
    assert cams.shape == (4, 16, 16)
    assert (cams >= 0).all()
    assert cams[:, :, 9:].abs().max() == 0  # the right part, beyond the conv's reach of the left
    assert cams[:, :, :6].sum() > 0
    assert not torch.equal(cams[0], cams[1])
    with pytest.raises(VisualizeError, match="class 9"):
        grad_cam(net, x, "conv", [9])
    with pytest.raises(UnknownLayerError):
        grad_cam(net, x, "conv9", [0])


def test_integrated_gradients_add_up_to_the_score_difference(googlenet):
    x = torch.randn(3, 48, 48)
    attr = integrated_gradients(googlenet, x, 3, steps=64)
    with torch.no_grad():
        scores = googlenet(torch.stack([x, torch.zeros_like(x)]))[:, 3]
    difference = float(scores[0] - scores[1])
    assert attr.shape == x.shape
    assert float(attr.sum()) == pytest.approx(difference, rel=0.02, abs=1e-3)


# --- captum as the oracle of the ZFNet views ---------------------------------------------------


def _captum_deconvnet(model: nn.Module, x: torch.Tensor, layer: str, channel: int, pos):
    """captum's Deconvolution of one neuron (ReLUs out of place: captum hooks their backward)."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    module = dict(model.named_modules())[layer]
    return NeuronDeconvolution(model, module).attribute(
        x.unsqueeze(0), neuron_selector=(channel, *pos)
    )[0]


@pytest.mark.filterwarnings("ignore:Setting backward hooks", "ignore:Input Tensor 0 did not")
@pytest.mark.parametrize("lrn", [False, True], ids=["no_lrn", "lrn"])
def test_deconvnet_against_captum_deconvolution(lrn):
    """Without LRN the two are the same computation (ReLU backward replaced by ReLU of the
    signal, max pools and convolutions transposed, biases unused): equal up to the activation's
    value, with which ZFNet seeds the projection and captum does not (it starts from 1). With
    LRN they part: the deconvnet passes LRN through (ZFNet inverts only pooling, rectification
    and filtering), captum backpropagates LRN's Jacobian, so the two agree in direction only."""
    torch.manual_seed(0)
    model = gd.create_model("googlenet", aux_logits=False, lrn=lrn).eval()
    x = torch.randn(3, 48, 48)
    outputs = record(model, x.unsqueeze(0), keep=["conv2", "inception3a"]).outputs
    for layer, out in outputs.items():
        channel = int(out[0].flatten(1).amax(1).argmax())  # an active one
        (mine,) = deconv(model, x, layer, [channel])
        theirs = _captum_deconvnet(model, x, layer, channel, mine.position) * mine.value
        assert theirs.abs().max() > 0
        if not lrn:
            scale = theirs.abs().max()
            torch.testing.assert_close(mine.image, theirs, rtol=1e-4, atol=1e-5 * scale)
        else:
            cosine = torch.cosine_similarity(mine.image.flatten(), theirs.flatten(), dim=0)
            assert not torch.allclose(mine.image, theirs, rtol=1e-3, atol=0)
            assert cosine > 0.9


def _captum_occlusion(model, x, target, size, stride):
    probs = lambda batch: torch.softmax(model(batch), dim=1)  # noqa: E731
    return Occlusion(probs).attribute(
        x.unsqueeze(0),
        sliding_window_shapes=(3, size, size),
        strides=(3, stride, stride),
        baselines=0.0,
        target=target,
        perturbations_per_eval=16,
    )[0, 0]


def test_occlusion_against_captum_occlusion():
    """captum records p(whole) - p(occluded) averaged over the windows covering each pixel; ours
    records p(occluded) averaged alike: the two add up to p(whole) wherever the windows are the
    same. They are all the same when the stride divides (side - square). When it does not, the
    last window differs: ours is a whole square moved back to sit flush with the edge, captum's
    starts one stride further on and is cut by the edge (a smaller square). The maps differ
    where those two last windows reach, and only there."""
    torch.manual_seed(0)
    model = gd.create_model("googlenet", aux_logits=False).eval()
    with torch.no_grad():
        model.fc.weight.mul_(300)  # a confident classifier: p(class) far from uniform
    x = torch.randn(3, 48, 48)
    with torch.no_grad():
        target = int(model(x.unsqueeze(0)).argmax())
    for size, stride in ((16, 8), (16, 10)):
        ours = occlusion_sensitivity(model, x, target, size=size, stride=stride)
        captum = _captum_occlusion(model, x, target, size, stride).detach()
        mine = ours.unoccluded - torch.from_numpy(ours.per_pixel(48, 48)).float()
        assert captum.abs().max() > 0.01
        if (48 - size) % stride == 0:
            torch.testing.assert_close(mine, captum, rtol=1e-4, atol=1e-5)
            continue
        flush = ours.tops[-1]  # our extra window starts here
        same = (slice(0, flush), slice(0, flush))
        torch.testing.assert_close(mine[same], captum[same], rtol=1e-4, atol=1e-5)
        assert (mine - captum)[flush:, :].abs().max() > 1e-4


def test_one_occlusion_sweep_for_several_classes_is_one_sweep_per_class(googlenet):
    x = torch.randn(3, 48, 48)
    maps = occlusion_maps(googlenet, x, [3, 7], size=16, stride=10, batch_size=7)
    for target, found in zip([3, 7], maps, strict=True):
        alone = occlusion_sensitivity(googlenet, x, target, size=16, stride=10)
        assert (found.tops, found.lefts, found.target) == (alone.tops, alone.lefts, target)
        torch.testing.assert_close(found.probs, alone.probs)
        assert found.unoccluded == pytest.approx(alone.unoccluded)
    with pytest.raises(VisualizeError, match="class 1000"):
        occlusion_maps(googlenet, x, [1000])


def test_the_site_plan_lists_the_layers_with_weights_and_table1_rows(googlenet):
    plan = plan_site(googlenet, WeightsCard(model="googlenet"), SiteConfig(layers=[]))
    inceptions = [f"inception{m}" for m in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    assert [x.name for x in plan.layers] == ["conv1", "conv2_reduce", "conv2", *inceptions]
    rows = {x.name: x for x in plan.layers}
    # Table 1 of the paper (K = 1024 weights, M = 10^6 multiply-adds), within its rounding
    for name, params, ops in (
        ("conv2", 112, 360),
        ("inception3a", 159, 128),
        ("inception4e", 840, 170),
    ):
        assert float(rows[name].params.rstrip("K")) == pytest.approx(params, rel=0.01)
        assert float(rows[name].ops.rstrip("M")) == pytest.approx(ops, rel=0.01)
    assert rows["inception4d"].alias == "mixed4d" and rows["inception4d"].output == "528x14x14"
    assert plan.cam_layer == "inception5b"  # the last maps larger than 1x1
    with pytest.raises(VisualizeError, match="0-63, got 64"):
        plan_site(googlenet, WeightsCard(model="googlenet"), SiteConfig(["conv2d0"], [64]))
