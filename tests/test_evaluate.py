"""The test protocol: view geometry on images whose pixels encode their coordinates, softmax
averaging over views and models against direct computations, the Table 3 grid, unreadable
files, the `eval` command, and BVLC GoogLeNet on real photos with 1 and 10 crops."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from goingdeeper.cli.evaluate import add_parser
from goingdeeper.data import ClassMap, discover
from goingdeeper.data.imagenet import imagenet_classes
from goingdeeper.errors import DataError, EvalError
from goingdeeper.evaluate import (
    VIEW_FUNCTIONS,
    crop_offsets,
    crops_144,
    crops_150,
    dense_scores,
    distinct_views,
    evaluate,
    grid_offsets,
    one_crop,
    scales_144,
    scales_150,
    ten_crops,
    ten_crops_rect,
    ten_crops_warp,
)
from goingdeeper.images import load_image
from goingdeeper.preprocess import CAFFE_BGR, IMAGENET_RGB, Preprocessing
from goingdeeper.registry import build_model
from goingdeeper.results import (
    PAPER_TABLE3,
    EvalResult,
    RealTop1,
    format_grid,
    grid_rows,
    paper_rows,
)
from goingdeeper.weights import WeightsCard, save_weights

# --- images whose pixel values are their coordinates -----------------------------------------

# Raw pixel values through the views (scale 1, no mean, no std); nearest-neighbour resizing
# copies source pixels, so every view pixel still names the source pixel it came from.
RAW = dict(channel_order="RGB", scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def raw(resize: int, crop: int) -> Preprocessing:
    return Preprocessing(resize=resize, crop=crop, interpolation="nearest", **RAW)


def coord_image(width: int, height: int) -> Image.Image:
    """R, G = low bytes of x, y; B = their high nibbles: exact for images up to 4096 px."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x & 255, y & 255, (x >> 8) << 4 | (y >> 8)], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def coords(view: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The source (x, y) of every pixel of a 3 x h x w raw view."""
    r, g, b = (view[i].round().long().numpy() for i in range(3))
    return r + 256 * (b >> 4), g + 256 * (b & 15)


def span(view: torch.Tensor) -> tuple[int, int, int, int]:
    """(first x, last x, first y, last y) of a view, read along its middle row and column."""
    xs, ys = coords(view)
    h, w = xs.shape
    return int(xs[h // 2, 0]), int(xs[h // 2, -1]), int(ys[0, w // 2]), int(ys[-1, w // 2])


# --- geometry: 1 and 10 crops ----------------------------------------------------------------


def expected_ten(variant: str, w: int, h: int, c: int) -> list[tuple[int, int]]:
    """(left, top) of the five unmirrored views, for an image whose shorter side is already
    the resize (so no resampling): center, top-left, top-right, bottom-left, bottom-right."""
    center = ((w - c) // 2, (h - c) // 2)
    if variant == "10-rect":  # the corners of the whole rectangle
        x0, y0, x1, y1 = 0, 0, w - c, h - c
    else:  # AlexNet: the corners of the central square
        side = min(w, h)
        x0, y0 = (w - side) // 2, (h - side) // 2
        x1, y1 = x0 + side - c, y0 + side - c
    return [center, (x0, y0), (x1, y0), (x0, y1), (x1, y1)]


@pytest.mark.parametrize("variant", ["10", "10-rect"])
@pytest.mark.parametrize("size", [(64, 40), (40, 64), (65, 40)], ids=["land", "port", "odd"])
def test_ten_crops_are_where_each_reading_puts_them(variant, size):
    """Shorter side already at `resize`: no resampling, so view pixels are exact coordinates."""
    w, h = size
    c = 32
    views = VIEW_FUNCTIONS[variant](coord_image(w, h), raw(40, c))
    assert views.shape == (10, 3, c, c)
    for k, (left, top) in enumerate(expected_ten(variant, w, h, c)):
        xs, ys = coords(views[k])
        assert (xs == np.arange(left, left + c)[None, :]).all(), (k, span(views[k]))
        assert (ys == np.arange(top, top + c)[:, None]).all(), (k, span(views[k]))
        mx, my = coords(views[k + 5])
        assert (mx == xs[:, ::-1]).all() and (my == ys).all()
    if variant == "10-rect":
        assert [crop_offsets(w, h, c)[k] for k in range(5)] == expected_ten(variant, w, h, c)


@pytest.mark.parametrize("size", [(40, 64), (40, 100)], ids=["portrait", "tall"])
def test_ten_crops_warp_squeezes_the_whole_image_to_a_square(size):
    """Caffe's oversample: the whole image warped to 40x40 (the width is already 40, so x
    stays exact and only y is squeezed), then center and corners of that square."""
    w, h = size
    c, r = 32, 40
    views = ten_crops_warp(coord_image(w, h), raw(r, c))
    boxes = [(4, 4), (0, 0), (8, 0), (0, 8), (8, 8)]  # in the 40x40 warped image
    for k, (left, top) in enumerate(boxes):
        xs, ys = coords(views[k])
        assert (xs == np.arange(left, left + c)[None, :]).all()
        # every row of the crop comes from one source row, within a pixel of where the
        # squeeze puts it, and the rows cover top*h/r .. (top+c)*h/r of the source
        assert (ys == ys[:, :1]).all()
        rows = ys[:, 0]
        assert abs(rows[0] - top * h / r) <= 1.5 and abs(rows[-1] - ((top + c) * h / r - 1)) <= 1.5
        assert torch.equal(views[k + 5], views[k].flip(-1))
    assert ten_crops_warp(coord_image(w, h), raw(r, c))[1:].shape == (9, 3, c, c)


def expected_150(w: int, h: int, crop: int) -> list[tuple[float, float, float, float]]:
    """VGG section 4.3 stated in source coordinates: (x0, x1, y0, y1) of the 75 unmirrored
    crops: per scale Q (256, 384, 512 x crop/224), a 5x5 grid whose outer crops touch the
    borders of the image rescaled to shorter side Q, row by row."""
    out = []
    for q in (256, 384, 512):
        f = round(q * crop / 224) / min(w, h)  # scaled pixels per source pixel
        width, height = w * f, h * f
        for j in range(5):
            for i in range(5):
                left, top = i * (width - crop) / 4, j * (height - crop) / 4
                out.append((left / f, (left + crop) / f, top / f, (top + crop) / f))
    return out


@pytest.mark.parametrize("size", [(40, 30), (30, 40)], ids=["land", "port"])
def test_crops_150_are_vggs_grid(size):
    w, h = size
    crop = 32
    views = crops_150(coord_image(w, h), raw(37, crop))
    assert views.shape == (150, 3, crop, crop)
    want = expected_150(w, h, crop)
    for s in range(3):
        for g in range(25):
            x0, x1, y0, y1 = want[25 * s + g]
            view = views[50 * s + g]
            first_x, last_x, first_y, last_y = span(view)
            assert abs(first_x - x0) <= 1.5 and abs(last_x - (x1 - 1)) <= 1.5, (s, g, span(view))
            assert abs(first_y - y0) <= 1.5 and abs(last_y - (y1 - 1)) <= 1.5, (s, g, span(view))
            assert torch.equal(views[50 * s + 25 + g], view.flip(-1))
    assert scales_150(Preprocessing()) == (256, 384, 512)
    assert grid_offsets(100, 50, 20) == [
        (x, y) for y in (0, 8, 15, 22, 30) for x in (0, 20, 40, 60, 80)
    ]


def test_one_crop_is_the_weights_transform_and_the_first_of_ten():
    for pre in (CAFFE_BGR, IMAGENET_RGB, raw(40, 32)):
        for w, h in ((500, 375), (375, 500), (20, 12)):
            img = coord_image(w, h)
            one = one_crop(img, pre)
            assert one.shape == (1, 3, pre.crop, pre.crop)
            assert torch.equal(one[0], pre(img))
            assert torch.equal(ten_crops(img, pre)[0], one[0])  # bit for bit


def test_views_normalise_exactly_like_to_tensor():
    img = coord_image(300, 200)
    pixels = np.asarray(img)[None]
    for pre in (CAFFE_BGR, IMAGENET_RGB):
        assert torch.equal(pre.normalize(pixels)[0], pre.to_tensor(img))


# --- geometry: 144 crops (section 7) ---------------------------------------------------------


def expected_144(w: int, h: int, crop: int) -> list[tuple[float, float, float, float, bool]]:
    """Section 7 stated in source coordinates: (x0, x1, y0, y1, mirrored) for all 144 views.

    Written independently of views.py: per scale the crop covers crop/f source pixels,
    f = shorter/min(w, h); squares are the full shorter side at the left/center/right (or
    top/center/bottom) of the image."""
    out = []
    side = min(w, h)
    for s in (256, 288, 320, 352):
        f = round(s * crop / 224) / side  # scaled pixels per source pixel
        c = crop / f  # the crop's extent in source pixels
        if w >= h:
            squares = [(0, 0), ((w - side) / 2, 0), (w - side, 0)]
        else:
            squares = [(0, 0), (0, (h - side) / 2), (0, h - side)]
        for sx, sy in squares:
            mid = (side - c) / 2
            five = [(mid, mid), (0, 0), (side - c, 0), (0, side - c), (side - c, side - c)]
            boxes = [(sx + dx, sx + dx + c, sy + dy, sy + dy + c) for dx, dy in five]
            boxes.append((sx, sx + side, sy, sy + side))  # the whole square, resized
            out += [(*b, False) for b in boxes] + [(*b, True) for b in boxes]
    return out


@pytest.mark.parametrize("size", [(40, 30), (30, 40), (30, 30)], ids=["land", "port", "sq"])
def test_crops_144_are_where_the_paper_puts_them(size):
    w, h = size
    crop = 32
    views = crops_144(coord_image(w, h), raw(37, crop))
    assert views.shape == (144, 3, crop, crop)
    for k, (x0, x1, y0, y1, mirrored) in enumerate(expected_144(w, h, crop)):
        first_x, last_x, first_y, last_y = span(views[k])
        if mirrored:
            first_x, last_x = last_x, first_x
        # nearest neighbour: within one source pixel of the exact box (plus rounding of sizes)
        assert abs(first_x - x0) <= 1.5 and abs(last_x - (x1 - 1)) <= 1.5, (k, span(views[k]))
        assert abs(first_y - y0) <= 1.5 and abs(last_y - (y1 - 1)) <= 1.5, (k, span(views[k]))
    # mirrors are exact flips of the six views before them
    for start in range(0, 144, 12):
        assert torch.equal(views[start + 6 : start + 12], views[start : start + 6].flip(-1))


def test_a_padding_card_borders_every_view():
    """LeNet-5's card: a 28x28 digit centred in a 32x32 field with a black border, in the
    transform, in the 10 views, and (scaled with the shorter side) in the 144 views."""
    pre = Preprocessing(resize=28, crop=32, pad=2, mean=(0, 0, 0), std=(1, 1, 1), scale=1.0)
    digit = Image.new("RGB", (28, 28), (255, 255, 255))
    x = pre(digit)
    assert x.shape == (3, 32, 32)
    assert x[:, 2:30, 2:30].min() == 255 and x[:, :2].max() == 0 and x[:, :, 30:].max() == 0
    for variant in ("10", "10-rect", "10-warp"):  # the field is the crop: all ten alike
        assert torch.equal(VIEW_FUNCTIONS[variant](digit, pre)[0], x)
    views = crops_144(digit, pre)
    assert views.shape == (144, 3, 32, 32)
    darkest = views.amin((1, 2, 3)).view(24, 6)  # per square: center, 4 corners, whole square
    assert darkest[:, 1:].max() == 0  # the corners and the whole square reach the border
    assert pre.scaled(64).pad == 4 and pre.scaled(64).resize == 56


def test_scales_follow_the_crop_size():
    assert scales_144(Preprocessing()) == (256, 288, 320, 352)
    assert scales_144(Preprocessing(resize=342, crop=299)) == (342, 384, 427, 470)


def test_small_images_are_upscaled_for_every_protocol():
    img = coord_image(20, 12)
    pre = raw(40, 32)
    for views, n in ((one_crop, 1), (ten_crops, 10), (ten_crops_rect, 10), (crops_144, 144)):
        out = views(img, pre)
        assert out.shape == (n, 3, 32, 32)
        xs, ys = coords(out[0])
        assert xs.max() <= 19 and ys.max() <= 11 and xs.min() >= 0


# --- the engine on toy models ----------------------------------------------------------------


class MeanColour(nn.Module):
    """Logits from the mean colour of the input: each view of an image scores differently."""

    def __init__(self, num_classes: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(3, num_classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(num_classes, 3, generator=g) * 3)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))


class Constant(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def photos(n: int = 6) -> list[tuple[Image.Image, int]]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        w, h = (48 + 7 * i, 40) if i % 2 else (40, 52 + 5 * i)
        out.append((Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), i % 4))
    return out


PRE = Preprocessing(resize=40, crop=32)


def test_one_view_equals_a_direct_call():
    model, data = MeanColour(), photos()
    r = evaluate([(model, PRE)], data, "1", keep_scores=True, batch_size=4)
    with torch.no_grad():
        direct = torch.cat([model(PRE(img)[None]).softmax(1) for img, _ in data])
    torch.testing.assert_close(r.scores, direct, rtol=0, atol=1e-6)
    labels = torch.tensor([label for _, label in data])
    assert r.correct_top1 == int((direct.argmax(1) == labels).sum())
    assert r.images == 6 and r.crops == 1 and r.cost == 1 and r.skipped == 0
    assert r.top1_error == pytest.approx(1 - r.top1_accuracy)


@pytest.mark.parametrize("views, make", [("10", ten_crops), ("144", crops_144)])
def test_softmax_is_averaged_over_views_and_models(views, make):
    a, b = MeanColour(seed=1), MeanColour(seed=2)
    pre_b = Preprocessing(resize=36, crop=24, channel_order="BGR")  # each its own transform
    data = photos(3)
    r = evaluate([(a, PRE), (b, pre_b)], data, views, keep_scores=True, batch_size=50)
    with torch.no_grad():
        expected = torch.stack(
            [
                (a(make(img, PRE)).softmax(1).mean(0) + b(make(img, pre_b)).softmax(1).mean(0)) / 2
                for img, _ in data
            ]
        )
    torch.testing.assert_close(r.scores, expected, rtol=0, atol=1e-6)
    assert r.models == 2 and r.cost == 2 * int(views)


class Counting(MeanColour):
    """MeanColour that counts the views it is given."""

    seen = 0

    def forward(self, x):
        self.seen += len(x)
        return super().forward(x)


def test_coinciding_views_go_through_the_model_once():
    square = [
        (Image.fromarray(np.random.default_rng(i).integers(0, 256, (24, 24, 3), np.uint8)), i)
        for i in range(3)
    ]
    pre = Preprocessing(resize=24, crop=24)  # the crop is the whole image
    for views, make, distinct in (("10", ten_crops, 2), ("144", crops_144, 48)):
        model = Counting(seed=3)
        r = evaluate([(model, pre)], square, views, keep_scores=True, batch_size=64)
        assert model.seen == distinct * len(square)  # one crop + mirror; 4 scales x 12 views
        with torch.no_grad():
            full = torch.stack([model(make(img, pre)).softmax(1).mean(0) for img, _ in square])
        torch.testing.assert_close(r.scores, full, rtol=0, atol=1e-6)


def test_distinct_views_compare_every_value():
    x = torch.rand(6, 3, 8, 8)
    x[3] = x[1]
    x[4] = x[1]
    x[4, 2, 7, 7] += 1.0  # same strided sample as view 1, different elsewhere
    x[5] = x[0]
    distinct, where = distinct_views(x, stride=97)
    assert distinct.tolist() == [0, 1, 2, 4]
    assert where.tolist() == [0, 1, 2, 1, 3, 0]
    assert torch.equal(x[distinct][where], x)
    ten = ten_crops(photos(1)[0][0], PRE)  # a real 40 px photo at resize 40, crop 32
    assert len(distinct_views(ten)[0]) == 10


def test_aggregates_differ_as_they_should():
    """Softmax averaging (the paper) can pick another class than logit averaging or max."""
    members = [
        (Constant([0.0, 20.0]), PRE),
        (Constant([2.0, 0.0]), PRE),
        (Constant([2.0, 0.0]), PRE),
    ]
    data = photos(2)
    top1 = {
        agg: evaluate(members, data, "1", agg, keep_scores=True).scores.argmax(1).tolist()
        for agg in ("softmax", "logits", "max")
    }
    assert top1 == {"softmax": [0, 0], "logits": [1, 1], "max": [1, 1]}


def test_per_model_results_and_grid_rows():
    members = [(MeanColour(seed=1), PRE), (MeanColour(seed=2), PRE)]
    r = evaluate(members, photos(), "10", per_model=True, names=["a", "b"])
    singles = [evaluate([m], photos(), "10", names=[n]) for m, n in zip(members, "ab", strict=True)]
    for got, want in zip(r.member_results(), singles, strict=True):
        assert got.correct_top1 == want.correct_top1
        assert got.per_class_top1 == want.per_class_top1
        assert got.models == 1 and got.cost == 10
    assert r.cost == 20


def test_real_top1_is_counted_for_the_ensemble_and_for_each_model():
    members = [(MeanColour(seed=1), PRE), (MeanColour(seed=2), PRE)]
    data = photos()
    sets = [[label] for _, label in data[:3]] + [[], None, [0, 1, 2, 3]]  # 2 without a class
    r = evaluate(members, data, "1", per_model=True, real=sets, keep_scores=True)
    top = r.scores.argmax(1).tolist()
    hits = [top[i] in s for i, s in enumerate(sets) if s]
    assert r.real == RealTop1(images=4, accuracy=sum(hits) / 4)
    singles = [evaluate([m], data, "1", real=sets) for m in members]
    assert [m.real for m in r.members] == [s.real for s in singles]
    assert [m.real for m in r.member_results()] == [s.real for s in singles]


def test_batches_do_not_change_the_result():
    model, data = MeanColour(), photos()
    ref = evaluate([(model, PRE)], data, "10", keep_scores=True, batch_size=1000).scores
    for batch_size in (1, 7, 10, 33):
        got = evaluate([(model, PRE)], data, "10", keep_scores=True, batch_size=batch_size)
        torch.testing.assert_close(got.scores, ref, rtol=0, atol=1e-6)


def test_metrics_per_class_and_confusion():
    data = [(img, 1) for img, _ in photos(3)] + [(photos(1)[0][0], 0)]
    r = evaluate([(Constant([0.0, 1.0, 0.5]), PRE)], data, confusion=True)
    assert r.top1_accuracy == 0.75 and r.top5_accuracy == 1.0
    assert r.per_class_top1 == [0.0, 1.0, None]
    assert r.confusion == [[0, 1, 0], [0, 3, 0], [0, 0, 0]]


def test_mistakes_are_one_line_errors():
    model = MeanColour()
    with pytest.raises(EvalError, match="views must be one of"):
        evaluate([(model, PRE)], photos(1), "12")
    with pytest.raises(EvalError, match="aggregate must be"):
        evaluate([(model, PRE)], photos(1), "1", "mean")
    with pytest.raises(EvalError, match="disagree on the number of classes"):
        evaluate([(model, PRE), (MeanColour(num_classes=5), PRE)], photos(1))
    with pytest.raises(EvalError, match="out of range"):
        evaluate([(model, PRE)], [(photos(1)[0][0], 9)])
    with pytest.raises(EvalError, match="Preprocessing or a WeightsCard"):
        evaluate([(model, "resize 256")], photos(1))


def test_training_mode_is_restored():
    model = MeanColour().train()
    evaluate([(model, PRE)], photos(1))
    assert model.training


# --- unreadable files ------------------------------------------------------------------------


def _write_tree(root, classes=("a", "b"), per_class=2):
    root.mkdir(parents=True, exist_ok=True)
    for ci, name in enumerate(classes):
        (root / name).mkdir()
        for i, (img, _) in enumerate(photos(per_class)):
            img.save(root / name / f"{ci}_{i}.png")
    return root


def test_unreadable_files_are_skipped_counted_and_named_once(tmp_path, caplog):
    root = _write_tree(tmp_path / "tree")
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "b" / "empty.png").write_bytes(b"")
    (root / "b" / "notes.txt").write_text("not an image, not listed")
    split = discover(root).split("all")
    samples = split.samples
    assert len(samples) == 6 and {label for _, label in samples} == {0, 1}
    members = [(MeanColour(seed=1), PRE), (MeanColour(seed=2), PRE)]
    r = evaluate(members, split, "10", per_model=True)
    assert r.images == 4 and r.skipped == 2
    assert sorted(p.rsplit("/", 1)[1] for p in r.skipped_files) == ["broken.jpg", "empty.png"]
    assert all(m.images == 4 for m in r.members)
    assert sum("skipped" in rec.message for rec in caplog.records) == 2


def test_all_unreadable_gives_an_empty_result(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"junk")
    r = evaluate([(MeanColour(), PRE)], [(tmp_path / "x.jpg", 0)])
    assert r.images == 0 and r.skipped == 1


def test_folder_layouts(tmp_path):
    root = _write_tree(tmp_path / "tree", classes=("x", "y", "z"), per_class=1)
    found = discover(root)
    assert found.classes.names == ("x", "y", "z") and found.layout == "class folders"
    assert [label for _, label in found.split("all").samples] == [0, 1, 2]
    mapped = discover(root, known=ClassMap(("q", "z", "r", "y", "s", "x"))).split("all")
    assert [label for _, label in mapped.samples] == [5, 3, 1]
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("n01443537_goldfish.JPEG", "n01440764_tench.JPEG", "n01484850_x.png"):
        photos(1)[0][0].save(flat / name, format="PNG")
    found = discover(flat)
    assert found.layout == "flat, WordNet-id file names"
    assert [(Path(p).name, label) for p, label in found.split("all").samples] == [
        ("n01440764_tench.JPEG", 0),
        ("n01443537_goldfish.JPEG", 1),
        ("n01484850_x.png", 2),
    ]
    with pytest.raises(DataError, match="no such file or folder"):
        discover(tmp_path / "missing")
    with pytest.raises(DataError, match="'y' is not one of the 1 classes"):
        discover(root, known=ClassMap(("x",))).split("all")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        discover(tmp_path / "empty")


# --- VGG dense evaluation --------------------------------------------------------------------


class TinyFCN(nn.Module):
    """Fully convolutional: a class-score map whose size follows the input's."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.features = nn.Conv2d(3, 8, 3, stride=2)
        self.classifier = nn.Conv2d(8, num_classes, 3)  # an FC layer turned into a conv

    def forward(self, x):
        return self.classifier(torch.relu(self.features(x)))

    def fully_convolutional(self):
        return self


def test_dense_scores_average_the_score_map_over_scales_and_mirrors():
    model, img = TinyFCN().eval(), photos(2)[1][0]
    scales = (32, 48)
    rows = dense_scores(model, img, PRE, scales)
    assert rows.shape == (4, 5)
    with torch.no_grad():
        for i, q in enumerate(scales):
            x = PRE.to_tensor(PRE.resize_shorter(img, q))[None]
            assert model(x).shape[-1] > 1  # a real map, not one score
            torch.testing.assert_close(rows[2 * i], model(x).mean((2, 3))[0])
            torch.testing.assert_close(rows[2 * i + 1], model(x.flip(-1)).mean((2, 3))[0])
    r = evaluate([(model, PRE)], photos(3), "dense", dense_scales=scales, keep_scores=True)
    assert r.crops == 4 and r.cost == 4
    expected = torch.stack(
        [dense_scores(model, im, PRE, scales).softmax(1).mean(0) for im, _ in photos(3)]
    )
    torch.testing.assert_close(r.scores, expected, rtol=0, atol=1e-6)


def test_dense_and_multi_crop_combined_average_the_two_posteriors():
    """VGG Table 5: dense evaluation and the 150 crops, each averaged, then the two averaged."""
    model, data, scales = TinyFCN().eval(), photos(2), (32, 40)
    both = evaluate([(model, PRE)], data, "dense+150", dense_scales=scales, keep_scores=True)
    dense = evaluate([(model, PRE)], data, "dense", dense_scales=scales, keep_scores=True)
    crops = evaluate([(model, PRE)], data, "150", keep_scores=True)
    want = (dense.scores + crops.scores) / 2
    torch.testing.assert_close(both.scores, want, rtol=0, atol=1e-6)
    assert both.crops == 154 and crops.crops == 150
    assert grid_rows([both])[0].crops == "dense+150"


def test_dense_evaluation_refuses_a_model_without_a_fully_convolutional_form():
    plain = build_model("googlenet", num_classes=3, aux_logits=False)
    with pytest.raises(EvalError, match="googlenet has no fully convolutional form"):
        evaluate([(plain, PRE)], photos(1), "dense", dense_scales=(32,))
    with pytest.raises(EvalError, match="needs a class score map N x C x h x w, got shape"):
        dense_scores(MeanColour(), photos(1)[0][0], PRE, (32,))


# --- the grid --------------------------------------------------------------------------------


def _fake(models: int, views: str, top1: float, top5: float) -> EvalResult:
    """A result of 1,000 images with these error rates."""
    return EvalResult(
        images=1000,
        correct_top1=round(1000 * (1 - top1)),
        correct_top5=round(1000 * (1 - top5)),
        per_class_top1=[],
        model_names=[f"m{i}" for i in range(models)],
        num_classes=1000,
        views=views,
        crops=int(views),
        cost=models * int(views),
        aggregate="softmax",
        seconds=1.0,
    )


def test_grid_formats():
    results = [_fake(1, "1", 0.30, 0.10), _fake(1, "10", 0.28, 0.09), _fake(2, "144", 0.25, 0.07)]
    rows = grid_rows(results)
    assert [r.cost for r in rows] == [1, 10, 288]
    assert rows[2].compared_to_base == pytest.approx(-3.0)
    table = format_grid(rows)
    assert "number of crops" in table and "base" in table and "-3.00%" in table
    md = format_grid(rows, "markdown").splitlines()
    assert md[0].startswith("| model | number of models | number of crops | cost |")
    assert len(md) == 5 and "| m0+m1 | 2 | 144 | 288 | 25.00% | 7.00% | -3.00% | 1,000 |" in md
    parsed = list(csv.DictReader(io.StringIO(format_grid(rows, "csv"))))
    assert float(parsed[1]["top5_error"]) == pytest.approx(9.0) and parsed[2]["crops"] == "144"
    assert json.loads(format_grid(rows, "json"))[0]["top1_error"] == pytest.approx(30.0)
    with pytest.raises(ValueError, match="format must be one of"):
        format_grid(rows, "xml")


def test_paper_rows_are_table3():
    rows = paper_rows()
    assert [(r.models, r.crops, r.cost, r.top5_error) for r in rows] == [
        (1, 1, 1, 10.07),
        (1, 10, 10, 9.15),
        (1, 144, 144, 7.89),
        (7, 1, 7, 8.09),
        (7, 10, 70, 7.62),
        (7, 144, 1008, 6.67),
    ]
    assert len(PAPER_TABLE3) == 6
    assert rows[-1].compared_to_base == pytest.approx(-3.40)
    assert "-3.40%" in format_grid(rows)


# --- the `eval` command ----------------------------------------------------------------------


def eval_command(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="goingdeeper")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A randomly initialised 3-class GoogLeNet in our weights format, on 64x64 crops."""
    kwargs = {"num_classes": 3, "aux_logits": False}
    card = WeightsCard(
        model="googlenet",
        model_kwargs=kwargs,
        num_classes=3,
        class_names=["red fox", "tabby cat", "goldfish"],
        preprocessing=Preprocessing(resize=73, crop=64),
    )
    folder = tmp_path_factory.mktemp("weights")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(save_weights(build_model("googlenet", **kwargs), card, folder / f"w{seed}"))
    return paths


def test_eval_command_prints_the_grid(tiny_weights, tmp_path, capsys):
    # two of the three classes, folders named after them: labels come from the card's names
    root = _write_tree(tmp_path / "val", classes=("goldfish", "red_fox"), per_class=1)
    (root / "goldfish" / "bad.jpg").write_bytes(b"junk")
    argv = ["--weights", *map(str, tiny_weights), "--data", str(root), "--views", "1,10"]
    assert eval_command(*argv, "--ensemble", "--format", "json") == 0
    out = capsys.readouterr()
    rows = json.loads(out.out)
    assert [(r["model"], r["models"], r["crops"], r["cost"]) for r in rows] == [
        ("w0", 1, 1, 1),
        ("w0", 1, 10, 10),
        ("w1", 1, 1, 1),
        ("w1", 1, 10, 10),
        ("w0+w1", 2, 1, 2),
        ("w0+w1", 2, 10, 20),
    ]
    assert all(r["images"] == 2 and r["skipped"] == 1 for r in rows)
    assert "skipped 1 unreadable images" in out.err and "bad.jpg" in out.err
    argv = ["--weights", str(tiny_weights[0]), "--data", str(root), "--limit", "1"]
    assert eval_command(*argv, "--format", "markdown", "--paper") == 0
    md = capsys.readouterr().out
    assert "| w0 | 1 | 1 | 1 |" in md and "GoogLeNet (paper, Table 3)" in md


def test_eval_command_with_onnxruntime_matches_torch(tiny_weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GOINGDEEPER_CACHE", str(tmp_path / "cache"))
    root = _write_tree(tmp_path / "val", classes=("goldfish", "red_fox", "tabby_cat"), per_class=2)
    argv = ["--weights", str(tiny_weights[0]), "--data", str(root), "--views", "1,10"]
    grids = {}
    for runtime in ("torch", "onnxruntime"):
        assert eval_command(*argv, "--runtime", runtime, "--format", "json") == 0
        grids[runtime] = json.loads(capsys.readouterr().out)
    assert list((tmp_path / "cache").rglob("*.onnx"))  # the exported graph, cached
    keys = ("crops", "images", "top1_error", "top5_error")
    for ours, theirs in zip(grids["torch"], grids["onnxruntime"], strict=True):
        assert {k: ours[k] for k in keys} == {k: theirs[k] for k in keys}
    with pytest.raises(ValueError, match="dense evaluation needs inputs of several sizes"):
        eval_command(*argv[:4], "--views", "dense", "--runtime", "onnxruntime")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--views", "1,12"], "--views takes 1, 10, 10-rect, 10-warp, 144, 150, dense"),
        (["--scales", "256,x", "--views", "dense"], "--scales expects"),
        (["--limit", "0"], "--limit must be"),
    ],
)
def test_eval_command_mistakes(tiny_weights, tmp_path, argv, message):
    root = _write_tree(tmp_path / "val", classes=("goldfish",), per_class=1)
    with pytest.raises(ValueError, match=message):
        eval_command("--weights", str(tiny_weights[0]), "--data", str(root), *argv)


def test_eval_command_needs_classes_it_can_map(tiny_weights, tmp_path):
    # the card has names but no WordNet ids: a WordNet-id folder means nothing to it
    root = _write_tree(tmp_path / "val", classes=("n01443537", "n02123045"), per_class=1)
    with pytest.raises(DataError, match="'n01443537' is not one of the 3 classes"):
        eval_command("--weights", str(tiny_weights[0]), "--data", str(root))
    wrong = _write_tree(tmp_path / "typo", classes=("goldfsh",), per_class=1)
    with pytest.raises(DataError, match="closest: 2 'goldfish'"):
        eval_command("--weights", str(tiny_weights[0]), "--data", str(wrong))


# --- real photos -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bvlc(shared_data):
    from goingdeeper.weights import import_bvlc

    return import_bvlc(shared_data / "bvlc-googlenet")


@pytest.mark.slow
def test_bvlc_googlenet_one_and_ten_crops_on_real_photos(shared_data, bvlc):
    """BVLC GoogLeNet on 60 imagenet-sample photos (every 16th class): 10 crops (AlexNet's
    protocol, Table 3's second row) must not lose against 1 crop by more than one image in
    top-5."""
    photos = discover(shared_data / "imagenet-sample", known=imagenet_classes()).split("all")
    samples = photos.samples[::16][:60]
    one = evaluate([bvlc], samples, "1", keep_scores=True)
    ten = evaluate([bvlc], samples, "10")
    # the 1-view path is the weights' own transform, fed to the model directly
    model, card = bvlc
    x = torch.stack([card.preprocessing(load_image(p)) for p, _ in samples[:8]])
    with torch.inference_mode():
        torch.testing.assert_close(one.scores[:8], model(x).softmax(1), rtol=0, atol=1e-5)
    print(
        f"1 crop: top-1 {one.correct_top1}/60, top-5 {one.correct_top5}/60; "
        f"10 crops: top-1 {ten.correct_top1}/60, top-5 {ten.correct_top5}/60"
    )
    assert one.skipped == ten.skipped == 0 and one.images == ten.images == 60
    assert one.correct_top1 >= 39 and one.correct_top5 >= 51
    assert ten.correct_top5 >= one.correct_top5 - 1
    assert ten.correct_top1 >= one.correct_top1 - 3


def test_eval_command_on_real_photos(shared_data, capsys):
    argv = ["--weights", str(shared_data / "bvlc-googlenet")]
    argv += ["--data", str(shared_data / "imagenet-sample"), "--limit", "4", "--format", "json"]
    assert eval_command(*argv) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["model"] == "bvlc-googlenet" and row["images"] == 4 and row["crops"] == 1
