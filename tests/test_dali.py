"""`loader=dali`: GoogLeNet's augmentation in an NVIDIA DALI pipeline, on the CPU here. Oracles:
Pillow's decoding and resizing of the same photos (nearest neighbour exactly, bilinear within
a level), images whose pixels encode their coordinates for the crops and flips, the sampler's
order for which photo and label come out where."""

from __future__ import annotations

import csv
import io
import os
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance
from torch.utils.data import DistributedSampler, Subset

from goingdeeper.cli import main
from goingdeeper.data.pipelines import dali
from goingdeeper.data.pipelines.dali import (
    MISSING,
    DaliBatches,
    DaliRecipe,
    _screen,
    dali_batches,
    photometric,
    require_dali,
)
from goingdeeper.data.recipes import RECIPES
from goingdeeper.data.sources.dataset import ImageDataset
from goingdeeper.errors import ConfigError, DataError
from goingdeeper.images import decode_image, image_pixel_limit
from goingdeeper.preprocess import INTERPOLATIONS
from goingdeeper.registry import model_card
from goingdeeper.train import config as cfg

try:
    import nvidia.dali  # noqa: F401  (the dali extra, in dev)
except ImportError:
    # in CI (and wherever the data is required) a skipped test would prove nothing
    if os.environ.get("CI") or os.environ.get("GOINGDEEPER_REQUIRE_DATA") == "1":
        raise
    pytest.skip("NVIDIA DALI is not installed: pip install -e '.[dali]'", allow_module_level=True)

CPU = torch.device("cpu")
# BVLC's card: BGR, 0..255 minus the mean, so a difference of inputs is one in pixel levels
BVLC = model_card("googlenet").preprocessing
GREY_PHOTO = "n02096051_Airedale.JPEG"  # one of the sample's 23 grayscale JPEGs


def _photos(shared_data, n: int) -> list:
    return sorted((shared_data / "imagenet-sample").glob("*.JPEG"))[:n]


def _dataset(paths, labels=None) -> ImageDataset:
    labels = list(range(len(paths))) if labels is None else labels
    return ImageDataset([(str(p), y) for p, y in zip(paths, labels, strict=True)], ["c"] * 1000)


def _epoch(ds, recipe: DaliRecipe, *, seed=0, batch=4, sampler=None, pre=BVLC) -> list:
    generator = torch.Generator().manual_seed(seed)
    return list(dali_batches(ds, batch, recipe, sampler, generator, CPU, pre))


def _simple(size: int, **changes) -> DaliRecipe:
    return DaliRecipe("simple", size, flip=False, photometric=False, **changes)


@pytest.mark.parametrize("interpolation, mean_levels", [("nearest", 0.0), ("bilinear", 1.0)])
def test_whole_photos_come_out_as_pillow_resizes_them(
    shared_data, tmp_path, interpolation, mean_levels
):
    """The simple recipe against Pillow's decoding and resize of the same files, a grayscale
    JPEG and a PNG (decoded by Pillow, passed on as a PPM) among them. Nearest neighbour
    samples the same pixels, so the batch is Pillow's to the bit: DALI decodes JPEGs with the
    same libjpeg-turbo. Bilinear: both shrink with a triangle filter widened by the scale
    factor, rounded differently (measured: at most 0.7 levels per image on average)."""
    png = tmp_path / "photo.png"
    decode_image(_photos(shared_data, 1)[0].read_bytes(), "p").save(png)
    paths = [*_photos(shared_data, 5), shared_data / "imagenet-sample" / GREY_PHOTO, png]
    recipe = _simple(48, interpolation=interpolation)
    batches = _epoch(_dataset(paths), recipe, batch=4)
    assert [len(labels) for _, labels, _ in batches] == [4, 3]
    images = torch.cat([x for x, _, _ in batches])
    assert images.dtype == torch.float32 and images.shape == (7, 3, 48, 48)
    assert torch.equal(torch.cat([y for _, y, _ in batches]), torch.arange(7))
    resample = INTERPOLATIONS[interpolation]
    pillow = [
        np.array(decode_image(p.read_bytes(), str(p)).resize((48, 48), resample)) for p in paths
    ]
    expected = BVLC.normalize(torch.from_numpy(np.stack(pillow)))
    per_image = (images - expected).abs().mean(dim=(1, 2, 3))
    assert per_image.max() <= mean_levels, per_image


def _coordinates(tmp_path) -> str:
    """A 256 x 256 PNG whose red is x and green is y."""
    x, y = np.meshgrid(np.arange(256), np.arange(256))
    pixels = np.stack([x, y, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    path = tmp_path / "coordinates.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def test_crops_take_8_to_100_percent_at_3_4_to_4_3_and_half_are_mirrored(tmp_path):
    """GoogLeNet section 6 on an image whose pixels say where they came from: each crop's
    box read back from its corners (nearest neighbour keeps the coordinates exact)."""
    ds = _dataset([_coordinates(tmp_path)] * 64, [0] * 64)
    recipe = DaliRecipe("googlenet", 32, photometric=False, interpolations=("nearest",))
    crops = torch.cat([x for x, _, _ in _epoch(ds, recipe, batch=16)])
    pixels = BVLC.denormalize(crops).round().long()  # N x 32 x 32 x RGB
    red, green = pixels[..., 0], pixels[..., 1]
    mirrored = red[:, 0, 0] > red[:, 0, -1]
    span = 32 / 31  # corner pixel centres are 31 output pixels apart
    w = (red[:, 0, -1] - red[:, 0, 0]).abs() * span  # +-1 pixel: nearest rounds down
    h = (green[:, -1, 0] - green[:, 0, 0]) * span
    area, ratio = w * h / 256**2, w / h
    assert area.min() > 0.07 and area.max() <= 1.05 and area.min() < 0.3 < 0.7 < area.max()
    assert ratio.min() > 0.75 - 0.05 and ratio.max() < 4 / 3 + 0.05
    assert 16 <= mirrored.sum() <= 48


def test_photometric_brightness_spans_half_to_one_and_a_half(tmp_path):
    """On a uniform grey, contrast (a blend with the mean grey) and colour (with the grey
    image) change nothing, and brightness scales every pixel by the same factor in [0.5, 1.5]."""
    path = tmp_path / "grey.png"
    Image.new("RGB", (40, 30), (128, 128, 128)).save(path)
    recipe = DaliRecipe("simple", 16, flip=False, photometric=True)
    out = torch.cat([x for x, _, _ in _epoch(_dataset([str(path)] * 64, [0] * 64), recipe)])
    pixels = BVLC.denormalize(out).round()
    level = pixels.flatten(1)
    assert torch.equal(level.min(1).values, level.max(1).values)  # each image uniform grey
    assert level.min() >= 64 and level.max() <= 192 and level.min() < 80 and level.max() > 176


def test_the_distortions_compute_what_pillow_computes(shared_data):
    """Howard's contrast, brightness and colour with given factors, against Pillow's
    `ImageEnhance` in the same order: within a level, as DALI's grey (the base of colour)
    rounds a level off Pillow's on some pixels; contrast and brightness alone to the bit."""
    dali = require_dali()
    photos = [
        decode_image(p.read_bytes(), str(p)).resize((48, 40)) for p in _photos(shared_data, 6)
    ]
    factors = [(0.5, 1.5, 0.7), (1.5, 0.5, 1.3), (1.2, 1.2, 0.5), (0.8, 0.9, 1.5), (1, 1, 1)]
    factors.append((1.4, 1.3, 1.0))  # no colour change: contrast and brightness exactly
    pipe = dali.Pipeline(
        batch_size=6, num_threads=1, device_id=None, exec_async=False, exec_pipelined=False
    )
    with pipe:
        images = dali.fn.external_source(name="images", batch=True, layout="HWC")
        c, b, s = (dali.fn.external_source(name=name, batch=True) for name in "cbs")
        pipe.set_outputs(photometric(dali, images, c, b, s))
    pipe.build()
    pipe.feed_input("images", [np.array(p) for p in photos])
    for k, name in enumerate("cbs"):
        pipe.feed_input(name, [np.float32(f[k]) for f in factors])
    (out,) = pipe.run()
    for i, (photo, (c, b, s)) in enumerate(zip(photos, factors, strict=True)):
        enhanced = ImageEnhance.Brightness(ImageEnhance.Contrast(photo).enhance(c)).enhance(b)
        enhanced = ImageEnhance.Color(enhanced).enhance(s)
        diff = np.abs(np.array(out[i]).astype(int) - np.array(enhanced).astype(int))
        assert diff.max() <= (0 if s == 1 else 1) and diff.mean() < 0.2, (i, diff.max())


def test_a_seed_repeats_its_crops_and_another_seed_does_not(shared_data):
    ds = _dataset(_photos(shared_data, 10))
    recipe = DaliRecipe("googlenet", 32)  # every draw: crop, filter, photometric, flip
    first, again, other = (_epoch(ds, recipe, seed=s) for s in (7, 7, 8))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0][0], other[0][0])


def test_photos_and_labels_come_in_the_samplers_order(shared_data):
    """A subset of photos with their own labels, shuffled by the sampler of rank 1 of 2: every
    image of the epoch is the photo the sampler named (to the bit, with nearest neighbour),
    and its label is that photo's."""
    paths = _photos(shared_data, 12)
    labels = [(7 * i) % 5 for i in range(12)]
    ds = Subset(_dataset(paths, labels), [11, 3, 5, 0, 8, 2, 9, 6, 1, 10])
    sampler = DistributedSampler(ds, num_replicas=2, rank=1, shuffle=True, seed=4)
    sampler.set_epoch(3)
    order = [ds.indices[i] for i in sampler]
    batches = _epoch(ds, _simple(24, interpolation="nearest"), sampler=sampler, batch=2)
    images = torch.cat([x for x, _, _ in batches])
    resample = Image.Resampling.NEAREST
    pillow = [
        np.array(decode_image(p.read_bytes(), str(p)).resize((24, 24), resample)) for p in paths
    ]
    expected = BVLC.normalize(torch.from_numpy(np.stack(pillow)))
    found = [next(j for j in range(12) if torch.equal(x, expected[j])) for x in images]
    assert found == order and len(order) == 5
    assert torch.cat([y for _, y, _ in batches]).tolist() == [labels[i] for i in order]


def _bad_files(shared_data, folder) -> dict:
    photo = _photos(shared_data, 1)[0].read_bytes()
    table = photo.index(b"\xff\xc4") + 5  # a Huffman table's code counts: bogus
    bad = {
        "cut.JPEG": photo[: len(photo) // 2],  # no end marker: Pillow decodes it, and fails
        "huffman.JPEG": photo[:table] + b"\xff" * 16 + photo[table + 16 :],  # DALI fails
        "empty.JPEG": b"",
        "notes.JPEG": b"\xff\xd8\xff not a photo",
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    return {name: str(folder / name) for name in bad}


def test_bad_photos_are_skipped_and_named_and_a_batch_of_none_is_empty(
    shared_data, tmp_path, monkeypatch
):
    """A truncated JPEG, one whose header is sound and whose data DALI cannot decode (its
    batch runs again without it), an empty file, a non-image, and a photo over the pixel
    limit: each skipped with its name; the batch where nothing is left comes out empty."""
    good = _photos(shared_data, 4)
    large = max((shared_data / "imagenet-sample").glob("*.JPEG"), key=lambda p: p.stat().st_size)
    bad = _bad_files(shared_data, tmp_path)
    paths = [good[0], bad["cut.JPEG"], good[1], bad["huffman.JPEG"]]
    paths += [bad["empty.JPEG"], large, bad["notes.JPEG"], good[2], good[3]]
    limit = max(Image.open(p).size[0] * Image.open(p).size[1] for p in good)
    screened = []
    monkeypatch.setattr(dali, "_screen", lambda *a: screened.append(a[1]) or _screen(*a))
    with image_pixel_limit(limit):
        batches = _epoch(_dataset(paths), DaliRecipe("googlenet", 32), batch=4)
    assert [y.tolist() for _, y, _ in batches] == [[0, 2], [7], [8]]
    assert screened == [[str(good[0]), str(good[1]), bad["huffman.JPEG"]]]  # DALI failed once
    assert batches[0][0].shape == (2, 3, 32, 32)
    messages = [m for _, _, skipped in batches for m in skipped]
    assert len(messages) == 5
    for path in (*bad.values(), large):
        assert sum(str(path) in m for m in messages) == 1, path
    assert any("too large to decode" in m for m in messages)
    assert any("empty file" in m for m in messages)
    with image_pixel_limit(limit):
        batches = _epoch(_dataset(paths[4:7]), DaliRecipe("googlenet", 32), batch=4)
    assert batches[0][0].numel() == 0 and len(batches[0][1]) == 0 and len(batches[0][2]) == 3


def test_a_batch_dali_cannot_decode_though_pillow_can_is_one_error(shared_data, monkeypatch):
    def fails(self, pipe, data):
        raise RuntimeError("Critical error in pipeline:\nFailed to decode sample #0\n")

    monkeypatch.setattr(DaliBatches, "_run", fails)
    with pytest.raises(DataError, match="DALI cannot decode a batch that Pillow reads .*JPEG"):
        _epoch(_dataset(_photos(shared_data, 2)), DaliRecipe("googlenet", 32))


def _tree(shared_data, root):
    """Three classes of three copies of a photo for training and one for testing, and a file
    that is not a photo among the training images."""
    for wnid in ("n01440764", "n01443537", "n01484850"):
        (photo,) = (shared_data / "imagenet-sample").glob(f"{wnid}_*.JPEG")
        for split, names in (("train", "abc"), ("test", "t")):
            (root / split / wnid).mkdir(parents=True)
            for name in names:
                shutil.copy(photo, root / split / wnid / f"{name}.JPEG")
    (root / "train" / "n01440764" / "broken.JPEG").write_bytes(b"\xff\xd8\xff not a photo")
    return root


QUIET = ("workers=0", "eval_views=[]", "tensorboard=false", "plots=false", "progress=false")


def _train(data, out, *settings: str) -> int:
    argv = ["train", "--model", "lenet5_modern", "--data", str(data), "--epochs", "1"]
    for setting in (*QUIET, "input_size=32", "batch_size=4", *settings):
        argv += ["--set", setting]
    return main([*argv, "--out", str(out)])


def test_training_with_loader_dali_skips_the_broken_photo_and_repeats(shared_data, tmp_path):
    data = _tree(shared_data, tmp_path / "data")
    rows = []
    for name in ("a", "b"):
        assert _train(data, tmp_path / name, "loader=dali") == 0
        with open(tmp_path / name / "log.csv") as f:
            rows.append(next(csv.DictReader(f)))
    assert rows[0]["skipped"] == "1"
    assert rows[0]["train_loss"] == rows[1]["train_loss"]
    assert rows[0]["test_loss"] == rows[1]["test_loss"]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_without_dali_loader_dali_says_how_to_install_it(
    shared_data, tmp_path, monkeypatch, capsys
):
    data = _tree(shared_data, tmp_path / "data")
    for name in [m for m in sys.modules if m == "nvidia.dali" or m.startswith("nvidia.dali.")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import` now fails as if not installed
    assert _train(data, tmp_path / "run", "loader=dali") == 2
    assert _one_line(capsys) == f"goingdeeper: error: {MISSING}"


def test_what_dali_cannot_run_is_one_line(shared_data, tmp_path, capsys):
    """Recipes the pipeline does not run, PCA lighting, and data not stored as image files:
    pixel arrays (the digits) and shards."""
    assert cfg.DALI_RECIPES == dali.DALI_RECIPES  # the config's check, the pipeline's own
    for name in RECIPES:  # and the recipes' declared backends, which both read
        if name in cfg.DALI_RECIPES:
            assert DaliRecipe(name, 32).spec is RECIPES[name]
        else:
            with pytest.raises(ConfigError, match=f"loader=dali runs .*, got '{name}'"):
                DaliRecipe(name, 32)
    for recipe in ("vgg", "alexnet", "lenet", "none"):
        with pytest.raises(ConfigError, match=f"loader=dali runs .*; recipe '{recipe}' runs"):
            cfg.resolve(overrides=["loader=dali", f"recipe={recipe}"])
    with pytest.raises(ConfigError, match="without PCA lighting"):
        cfg.resolve(overrides=["loader=dali", "pca_lighting=true"])
    with pytest.raises(ConfigError, match="interpolates with"):
        DaliRecipe("googlenet", 32, interpolations=("hamming",))
    assert _train("digits", tmp_path / "digits", "loader=dali", "recipe=simple") == 2
    assert "loader=dali decodes images as stored" in _one_line(capsys)
    shards = tmp_path / "shards"
    data = _tree(shared_data, tmp_path / "data")
    assert main(["data", "shard", str(data), "--out", str(shards)]) == 0
    capsys.readouterr()
    assert _train(shards, tmp_path / "run", "loader=dali") == 2
    assert "is streamed from shards; use loader=pil" in _one_line(capsys)


def test_a_png_is_passed_on_as_pillow_decodes_it(tmp_path):
    """Alpha on white, as every reader of the package makes it (`images.to_rgb`)."""
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4] = (200, 10, 10, 255)  # the top half opaque red, the bottom half transparent
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
    (tmp_path / "a.png").write_bytes(buffer.getvalue())
    (out,) = _epoch(_dataset([tmp_path / "a.png"]), _simple(8, interpolation="nearest"))
    pixels = BVLC.denormalize(out[0])[0].round()
    assert pixels[0, 0].tolist() == [200, 10, 10] and pixels[-1, 0].tolist() == [255, 255, 255]


def test_a_second_pass_runs_on_the_pipeline_the_first_built(shared_data, monkeypatch):
    """A loader read twice (a persistent pipeline, as the GPU benchmark runs DALI) builds its
    pipeline once; the second pass's draws go on from the first's, so its crops differ."""
    built = []
    build = dali.build_pipeline

    def counting(*args, **kwargs):
        built.append(1)
        return build(*args, **kwargs)

    monkeypatch.setattr(dali, "build_pipeline", counting)
    ds = _dataset(_photos(shared_data, 4))
    batches = dali_batches(
        ds, 4, DaliRecipe("googlenet", 32), None, torch.Generator().manual_seed(0), CPU, BVLC
    )
    first, second = list(batches), list(batches)
    assert len(built) == 1 and len(first) == len(second) == 1
    assert not torch.equal(first[0][0], second[0][0])
