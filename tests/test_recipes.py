"""The papers' recipes where they go beyond one preset: VGG's nets B-E started from a trained
net A (section 3.1) and its staged scales, dense evaluation at the scales the training scale
calls for (sections 4.1-4.2), ZFNet's ten fixed training sub-crops (section 3), a plateau
schedule that stops after the papers' three divisions; and every recipe number declared once,
in data/recipes, never restated by a pipeline."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from goingdeeper import create_model
from goingdeeper.data import pipelines
from goingdeeper.data.pipelines.held import WholeImageAugment
from goingdeeper.data.pipelines.pillow import FixedSubCrops, RandomHorizontalFlip, train_transform
from goingdeeper.data.pipelines.tensor import BatchAugment
from goingdeeper.data.recipes import (
    GOOGLENET_CROP,
    GOOGLENET_INTERPOLATIONS,
    RECIPES,
    VGG_SCALES,
    WHOLE_IMAGE_RECIPES,
    Photometric,
    recipe,
)
from goingdeeper.errors import ConfigError, PreprocessingError
from goingdeeper.evaluate import dense_scales, evaluate, ten_crops
from goingdeeper.models.vgg import FROM_NET_A
from goingdeeper.preprocess import Preprocessing
from goingdeeper.registry import model_card
from goingdeeper.train import config as cfg
from goingdeeper.train import fit
from goingdeeper.train.build import model_for_run, training_scale
from goingdeeper.train.engine import plateau_divisions
from goingdeeper.weights import WeightsCard, load_weights, save_weights

RAW = Preprocessing(scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # values = pixels


def coord_image(width: int, height: int) -> Image.Image:
    """R = x, G = y (both below 256 here), B = 0: every crop shows where it was cut."""
    y, x = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([x, y, 0 * x], axis=-1).astype(np.uint8), "RGB")


# --- VGG: nets B-E from a trained net A (section 3.1) ----------------------------------------

# a narrow head (fc6, fc7 of 16) keeps the nets small; the convolutions are Table 1's
SMALL_HEAD = dict(fc_width=16, num_classes=10)


@pytest.fixture(scope="module")
def trained_a(tmp_path_factory):
    """A net A with weights unlike any fresh initialisation (every tensor shifted by 1), saved
    as a training run saves it."""
    torch.manual_seed(1)
    net_a = create_model("vgg_a", init="normal", **SMALL_HEAD)
    with torch.no_grad():
        for p in net_a.parameters():
            p.add_(1.0)
    card = WeightsCard(
        model="vgg_a", model_kwargs=dict(init="normal", **SMALL_HEAD), num_classes=10
    )
    path = save_weights(net_a, card, tmp_path_factory.mktemp("vgg_a") / "model")
    return net_a, path


def _config(tmp_path, **changes) -> cfg.TrainConfig:
    base = dict(model="vgg_d", model_args=dict(init="normal", fc_width=16), out=str(tmp_path))
    return cfg.from_dict({**base, **changes})


def test_vgg_d_takes_net_a_first_four_convolutions_and_its_fc_layers(trained_a, tmp_path):
    net_a, path = trained_a
    torch.manual_seed(0)
    fresh = create_model("vgg_d", init="normal", **SMALL_HEAD)
    torch.manual_seed(0)  # the same fresh weights, then A's layers over them
    model, kwargs, _ = model_for_run(_config(tmp_path, init_from=str(path)), 10)
    assert kwargs["num_classes"] == 10 and kwargs["fc_width"] == 16
    theirs, before = net_a.state_dict(), fresh.state_dict()
    taken = 0
    for key, value in model.state_dict().items():
        layer = key.split(".")[0]
        if layer in FROM_NET_A:  # conv1_1.conv.weight, fc6.fc.bias, fc8.weight ...
            assert torch.equal(value, theirs[key]), key
            assert not torch.equal(value, before[key]), key  # the copy changed something
            taken += 1
        else:  # conv1_2, conv2_2, conv3_3, blocks 4 and 5: freshly initialised
            assert torch.equal(value, before[key]), key
    assert taken == 2 * len(FROM_NET_A)  # a weight and a bias each
    # A's conv3_2 reads conv3_1's 256 maps in D too: the paper's layers, not the n-th ones
    assert model.conv3_2.conv.weight.shape == net_a.conv3_2.conv.weight.shape == (256, 256, 3, 3)


def test_init_from_refuses_what_the_paper_does_not_describe(trained_a, tmp_path):
    _, path = trained_a
    with pytest.raises(ConfigError, match="lenet5 declares no layers to take"):
        model_for_run(_config(tmp_path, model="lenet5", model_args={}, init_from=str(path)), 10)
    with pytest.raises(ConfigError, match="fc8 differs from net A's"):
        model_for_run(_config(tmp_path, init_from=str(path)), 7)  # other classes than A's
    d = create_model("vgg_d", **SMALL_HEAD)
    other = save_weights(d, WeightsCard("vgg_d", SMALL_HEAD, 10), tmp_path / "d")
    with pytest.raises(ConfigError, match="start from a trained net A, got D"):
        model_for_run(_config(tmp_path, init_from=str(other)), 10)
    missing = _config(tmp_path / "run", init_from=str(tmp_path / "a.safetensors"))
    with pytest.raises(ConfigError, match="no such weights file; train that net first"):
        fit(missing)
    assert not (tmp_path / "run").exists()  # refused before the run folder is made
    with pytest.raises(ConfigError, match="init_from and init_weights exclude each other"):
        cfg.resolve("vgg_256", overrides=[f"init_weights={other}"])


def test_vgg_presets_are_the_papers_chain_of_scales():
    """Section 3.1: A at S = 256 from random weights; D at S = 256 from A; D at S = 384 from
    that, at 10^-3; the multi-scale D fine-tuned from the S = 384 one."""
    stages = {name: cfg.resolve(name) for name in ("vgg_a", "vgg_256", "vgg_384", "vgg")}
    a, d256, d384, multi = stages.values()
    assert (a.model, a.init_from, a.init_weights, a.model_args) == (
        "vgg_a",
        "",
        "",
        {"init": "normal"},
    )
    assert d256.model == d384.model == multi.model == "vgg_d"
    assert d256.init_from == f"{a.out}/model.safetensors" and d256.model_args["init"] == "normal"
    assert d384.init_weights == f"{d256.out}/model.safetensors"
    assert multi.init_weights == f"{d384.out}/model.safetensors"
    assert [c.scale_jitter for c in stages.values()] == [[256], [256], [384], [256, 512]]
    assert [c.lr for c in stages.values()] == [1e-2, 1e-2, 1e-3, 1e-3]
    for c in stages.values():
        assert (c.lr_schedule, c.lr_gamma, c.lr_plateau_divisions) == ("plateau", 0.1, 3)
        assert c.recipe == "vgg" and c.batch_size == 256 and not c.polyak
        assert "dense" in c.eval_views
    assert {"150", "dense+150"} <= set(multi.eval_views)
    # the card will say how each stage's weights were trained
    pre = model_card("vgg_d").preprocessing
    assert [training_scale(c, pre) for c in stages.values()] == [[256], [256], [384], [256, 512]]


# --- dense evaluation's scales follow the training scale (sections 4.1-4.2) -----------------


class ShapeProbe(nn.Module):
    """A 'fully convolutional' net that records every batch it is given and answers with a
    1x1 score map of 3 classes."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        self.seen.append(x.clone())
        return self.bias.expand(len(x), 3)[:, :, None, None]

    def fully_convolutional(self):
        return self


@pytest.mark.parametrize(
    ("trained_at", "multi", "want"),
    [
        ([384], True, (352, 384, 416)),  # 4.2: Q = {S - 32, S, S + 32}
        ([256], True, (224, 256, 288)),
        ([256, 512], True, (256, 384, 512)),  # 4.2: {S_min, (S_min + S_max) / 2, S_max}
        ([384], False, (384,)),  # 4.1: Q = S
        ([256, 512], False, (384,)),  # 4.1: Q = (S_min + S_max) / 2
        ([], True, (256, 384, 512)),  # not known: 4.2's jittered scales
    ],
)
def test_dense_evaluation_takes_its_scales_from_the_card(trained_at, multi, want):
    probe = ShapeProbe()
    card = WeightsCard("vgg_d", num_classes=3, preprocessing=RAW, training_scale=trained_at)
    image = coord_image(150, 100)  # landscape: the height is the shorter side
    r = evaluate([(probe, card)], [(image, 0)], "dense", dense_multi=multi)
    assert r.dense_scales == [list(want)] and r.crops == 2 * len(want)
    assert [tuple(x.shape) for x in probe.seen] == [(2, 3, q, round(q * 1.5)) for q in want]
    for x in probe.seen:  # the image and its mirror, at each scale
        assert torch.equal(x[1], x[0].flip(-1)) and not torch.equal(x[0], x[1])
        assert x[0, 0, 0, 0] < x[0, 0, 0, -1]  # red grows with x: the first is not mirrored
    assert dense_scales(trained_at, 224, multi=multi) == want


def test_dense_scales_scale_with_the_crop_and_a_given_list_wins():
    assert dense_scales([128], 112) == (112, 128, 144)  # the 32 of 224-pixel crops is 16
    assert dense_scales([], 112) == (128, 192, 256)
    probe = ShapeProbe()
    card = WeightsCard("vgg_d", num_classes=3, preprocessing=RAW, training_scale=[384])
    evaluate([(probe, card)], [(coord_image(60, 40), 0)], "dense", dense_scales=(40, 48))
    assert [min(x.shape[-2:]) for x in probe.seen] == [40, 48]


def test_the_card_records_the_training_scale_and_the_plateau_stops_dividing(tmp_path):
    """A tiny run of the vgg recipe at a fixed S = 36 with a rate too small to move the error:
    every epoch after the first is a plateau, yet the rate is divided once only."""
    c = cfg.from_dict(
        dict(
            model="lenet5",
            input_size=32,
            data="digits",
            recipe="vgg",
            scale_jitter=[36],
            epochs=3,
            batch_size=16,
            lr=1e-9,
            lr_schedule="plateau",
            lr_patience=1,
            lr_gamma=0.1,
            lr_plateau_divisions=1,
            limit_train=32,
            limit_test=16,
            workers=0,
            progress=False,
            tensorboard=False,
            plots=False,
            polyak=False,
            log_every=0,
            eval_views=[],
            out=str(tmp_path / "run"),
        )
    )
    result = fit(c)
    errors = [1 - h.test_acc for h in result.history]
    assert plateau_divisions(errors, 1) == 2  # two plateaus: the cap is what held it at one
    assert [h.lr for h in result.history] == pytest.approx([1e-9, 1e-9, 1e-10])
    _, card = load_weights(tmp_path / "run" / "model.safetensors")
    assert card.training_scale == [36]


def test_plateau_divisions_stop_at_the_limit():
    errors = [0.5, 0.6, 0.6, 0.6, 0.6, 0.6]  # five epochs without a new lowest error
    assert [plateau_divisions(errors, 1, limit) for limit in (0, 1, 3, 5, 9)] == [5, 1, 3, 5, 5]
    assert plateau_divisions([0.5, 0.6, 0.4, 0.6, 0.6], 2, 3) == 1  # 0.4 reset the wait
    for preset in ("alexnet", "vgg"):  # AlexNet 5 and VGG 3.1: "reduced three times"
        assert cfg.resolve(preset).lr_plateau_divisions == 3


def test_config_takes_vgg_protocols_and_refuses_dense_for_a_net_without_it(tmp_path):
    c = cfg.resolve(overrides=["eval_views=dense,150,dense+150"])
    assert c.eval_views == ["dense", "150", "dense+150"]
    with pytest.raises(ConfigError, match="eval_views takes 1, 10, 144, 150, dense"):
        cfg.resolve(overrides=["eval_views=12"])
    with pytest.raises(ConfigError, match=r"scale_jitter is \[S\]"):
        cfg.resolve(overrides=["scale_jitter=[512,256]"])
    run = dict(model="lenet5", input_size=32, data="digits", recipe="simple", epochs=1)
    run.update(limit_train=16, limit_test=8, workers=0, progress=False, tensorboard=False)
    c = cfg.from_dict({**run, "eval_views": ["dense"], "out": str(tmp_path / "run")})
    with pytest.raises(ConfigError, match="lenet5 has no fully convolutional form"):
        fit(c)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # refused before any training


# --- ZFNet: ten fixed sub-crops (section 3) --------------------------------------------------


def test_zfnet_sub_crops_are_the_ten_test_views():
    """The ten crops ZFNet trains on are AlexNet's ten test views of the same 256 x 256
    square: the corners and the center of it, and their mirrors, in that order."""
    pre = model_card("zfnet").preprocessing
    assert (pre.resize, pre.crop) == (256, 224)
    image = coord_image(256, 256)
    views = FixedSubCrops(224).views(image)
    pixels = np.stack([np.asarray(v) for v in views])
    assert torch.equal(pre.normalize(pixels), ten_crops(image, pre))
    corners = [(int(v[0, 0, 0]), int(v[0, 0, 1])) for v in pixels]  # (x, y) of the top left
    assert corners[:5] == [(16, 16), (0, 0), (32, 0), (0, 32), (32, 32)]
    assert corners[5:] == [(x + 223, y) for x, y in corners[:5]]  # mirrored: right edge first


def test_zfnet_recipe_draws_among_the_ten_and_nothing_else():
    """Through the training transform of the zfnet recipe: a 320 x 256 image is cut to its
    center 256 x 256 square, and each draw is one of that square's ten sub-crops."""
    pre = model_card("zfnet").preprocessing
    image = coord_image(320, 256)
    square = image.crop((32, 0, 288, 256))
    ten = {np.asarray(v).tobytes() for v in FixedSubCrops(224).views(square)}
    five = {np.asarray(v).tobytes() for v in FixedSubCrops(224, flip=False).views(square)}
    for flip, want in ((True, ten), (False, five)):
        recipe = train_transform("zfnet", 224, pre, flip=flip, pixels=True, draft=False)
        assert not any(isinstance(s, RandomHorizontalFlip) for s in recipe.transforms)
        torch.manual_seed(0)
        drawn = {recipe(image).numpy().tobytes() for _ in range(200)}
        assert drawn == want  # 200 draws miss one of ten with probability < 1e-8


# --- every recipe number has one home: data/recipes -------------------------------------------

PIPELINES = Path(pipelines.__file__).parent
# values too common to mean a recipe (bounds, indices, counts): never counted
COMMON = {0.0, 1.0, 2.0}
# a half (the flip's probability, Howard's spreads) is everywhere in rounding; it counts only
# where a parameter is set, as a keyword (`probability=0.5`), a default (`p: float = 0.5`) or a
# coin flip (`torch.rand(...) < 0.5`)
HALF = 0.5


def _leaves(value) -> tuple[set[float], set[tuple]]:
    """The numbers and the tuples a spec holds, however deep, with the ranges they imply."""
    numbers, tuples = set(), set()
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            more = _leaves(getattr(value, f.name))
            numbers |= more[0]
            tuples |= more[1]
        if isinstance(value, Photometric):
            for name in ("brightness", "contrast", "saturation"):
                low, high = value.factors(name)
                numbers |= {_key(low), _key(high)}
                tuples.add(_key((low, high)))
    elif isinstance(value, tuple):
        tuples.add(_key(value))
        for item in value:
            more = _leaves(item)
            numbers |= more[0]
            tuples |= more[1]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        numbers.add(_key(value))
    return numbers, tuples


def _key(value):
    """Numbers rounded so that 4 / 3 written as 1.3333333333 still matches; tuples likewise."""
    if isinstance(value, tuple):
        return tuple(_key(v) for v in value)
    return round(float(value), 6) if isinstance(value, int | float) else value


def _constant(node: ast.AST):
    """The value of a literal expression (`0.08`, `-0.5675`, `3 / 4`, `(256, 512)`), or None."""
    if isinstance(node, ast.Constant) and not isinstance(node.value, bool):
        return node.value if isinstance(node.value, int | float | str) else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _constant(node.operand)
        return -inner if isinstance(node.op, ast.USub) and _is_number(inner) else inner
    if isinstance(node, ast.BinOp):
        left, right = _constant(node.left), _constant(node.right)
        if _is_number(left) and _is_number(right):
            try:
                return eval(compile(ast.Expression(node), "<literal>", "eval"))  # numbers only
            except ZeroDivisionError:
                return None
    if isinstance(node, ast.Tuple | ast.List):
        items = [_constant(item) for item in node.elts]
        return tuple(items) if items and all(item is not None for item in items) else None
    return None


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _where_parameters_are_set(tree: ast.AST) -> set[int]:
    """ids of the nodes that set a parameter: keyword values, defaults, coin flips."""
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.keyword)
            or isinstance(node, ast.AnnAssign)
            and node.value is not None
        ):
            found.add(id(node.value))
        elif isinstance(node, ast.arguments):
            found |= {id(d) for d in [*node.defaults, *node.kw_defaults] if d is not None}
        elif isinstance(node, ast.Compare) and any(_draws(n) for n in ast.walk(node.left)):
            found |= {id(c) for c in node.comparators}
    return found


def _draws(node: ast.AST) -> bool:
    """Whether `node` calls a uniform draw (`torch.rand`, `random.random`, `np.random.uniform`)."""
    if not isinstance(node, ast.Call):
        return False
    name = getattr(node.func, "attr", getattr(node.func, "id", ""))
    return name in ("rand", "random", "uniform")


def restated_recipe_numbers(source: str) -> list[str]:
    """Each literal in `source` that equals a number or a tuple of a recipe in `RECIPES`:
    '<line>: <literal>'."""
    numbers, tuples = set(), set()
    for spec in RECIPES.values():
        more = _leaves(spec)
        numbers |= more[0]
        tuples |= more[1]
    tree = ast.parse(source)
    setting = _where_parameters_are_set(tree)
    found = []
    for node in ast.walk(tree):
        value = _constant(node)
        if value is None or isinstance(value, str):
            continue
        key = _key(value)
        if isinstance(value, tuple):
            hit = key in tuples
        else:
            hit = key in numbers and key not in COMMON and (key != HALF or id(node) in setting)
        if hit:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_pipeline_restates_a_recipe_number():
    """The backends (Pillow, tensor, held, DALI, the loader) read every number of a recipe
    from its spec: no literal in data/pipelines equals one (an area range, an aspect ratio, a
    PCA eigenvalue, a scale range, a photometric range, the interpolations, a flip's
    probability set as a parameter)."""
    modules = sorted(PIPELINES.glob("*.py"))
    assert {p.stem for p in modules} >= {"pillow", "tensor", "held", "dali", "prefetch", "loader"}
    found = {p.name: restated_recipe_numbers(p.read_text()) for p in modules}
    assert {name: hits for name, hits in found.items() if hits} == {}


@pytest.mark.parametrize(
    "line",
    [
        "crop(random_area=[0.08, 1.0])",  # GoogLeNet's area range
        "crop(random_aspect_ratio=[3 / 4, 4 / 3])",  # its aspect ratios, as fractions
        "ratio = 1.3333333333",  # 4/3 written out
        "EIGVAL = (0.2175, 0.0188, 0.0045)",  # AlexNet's PCA eigenvalues
        "v = -0.5836",  # one eigenvector entry
        "scales = (256, 512)",  # VGG's training scales
        "factors = uniform(range=[0.5, 1.5])",  # Howard's factor range
        "coin = coin_flip(probability=0.5)",  # the flip's probability, set as a parameter
        "flip = torch.rand(()) < 0.5",  # the same as a coin flip
        "flip = torch.rand((), generator=g).item() < 0.5",  # and through .item()
        "names = ('bilinear', 'area', 'nearest', 'bicubic')",  # GoogLeNet's interpolations
        "class Flip:\n    p: float = 0.5",  # a default
    ],
)
def test_the_check_finds_a_restated_number(line):
    """The check above is real: each of these, written in a backend, fails it."""
    assert restated_recipe_numbers(line) != []


def test_the_check_passes_what_is_no_recipe_number():
    """Halves for rounding, 8-bit limits and filter supports are not recipe numbers."""
    source = "x = floor(v + 0.5)\ny = clamp(v, 0, 255)\nbox = (x > -0.5) & (x <= 0.5)\nz = f(dim=2)"
    assert restated_recipe_numbers(source) == []


def test_every_recipe_is_declared_once_and_read_by_the_pipelines():
    """The recipe names, the whole-image recipes and those the tensor and DALI loaders run all
    derive from the specs; the Pillow steps take their numbers from them."""
    assert tuple(RECIPES) == cfg.CHOICES["recipe"]
    assert WHOLE_IMAGE_RECIPES == ("simple", "lenet", "none")
    assert cfg.TENSOR_RECIPES == cfg.DALI_RECIPES == ("googlenet", "simple")
    pre = model_card("googlenet").preprocessing
    crop = train_transform("googlenet", 224, pre).transforms[0]
    assert (crop.area, crop.ratio, crop.attempts) == (
        GOOGLENET_CROP.area,
        GOOGLENET_CROP.ratio,
        GOOGLENET_CROP.attempts,
    )
    assert crop.interpolations == GOOGLENET_INTERPOLATIONS
    alexnet = train_transform("alexnet", 224, pre).transforms[-1]
    assert alexnet.lighting.eigval == RECIPES["alexnet"].lighting.eigval
    tensor = BatchAugment(32, pre)  # the tensor loader's draws come from the same spec
    assert (tensor.crop.area, tensor.crop.ratio, tensor.crop.attempts) == (
        GOOGLENET_CROP.area,
        GOOGLENET_CROP.ratio,
        GOOGLENET_CROP.attempts,
    )
    assert tensor.distort.brightness == RECIPES["googlenet"].photometric.brightness
    assert tensor.flip_p == RECIPES["googlenet"].flip.p
    assert WholeImageAugment(32, pre).flip_p == RECIPES["simple"].flip.p
    assert VGG_SCALES.for_size(112) == (128, 256)
    with pytest.raises(PreprocessingError, match="unknown recipe 'inception'; choose one of"):
        recipe("inception")
