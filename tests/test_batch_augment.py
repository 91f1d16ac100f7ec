"""The batch (GPU-capable) augmentation against the PIL recipe it reproduces: the same draws
from the same seed, Pillow's enhancement arithmetic exactly, its resampling closely, JPEGs
decoded by torchvision exactly as Pillow decodes them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from goingdeeper.data.pipelines.pillow import (
    PhotometricDistort,
    RandomHorizontalFlip,
    RandomSizedCrop,
    ToModelInput,
)
from goingdeeper.data.pipelines.tensor import BatchAugment, decode_batch, enhance
from goingdeeper.errors import ImageError
from goingdeeper.images import decode_image
from goingdeeper.preprocess import INTERPOLATIONS
from goingdeeper.registry import model_card

CPU = torch.device("cpu")


def _photos(shared_data, n: int) -> list[tuple[str, bytes]]:
    files = sorted((shared_data / "imagenet-sample").glob("*.JPEG"))[:n]
    return [(str(f), f.read_bytes()) for f in files]


def _pixels(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)


def test_jpegs_decode_as_pillow_decodes_them_and_other_files_are_read_too(shared_data):
    photos = _photos(shared_data, 6)
    png = io.BytesIO()
    Image.new("RGB", (20, 10), (200, 30, 40)).save(png, "PNG")
    names = [n for n, _ in photos] + ["red.png"]
    decoded = decode_batch([d for _, d in photos] + [png.getvalue()], names, CPU)
    for (name, data), image in zip(photos, decoded, strict=False):
        assert torch.equal(image, _pixels(decode_image(data, name)))
    assert decoded[-1].shape == (3, 10, 20) and decoded[-1][:, 0, 0].tolist() == [200, 30, 40]
    with pytest.raises(ImageError, match="broken.jpg: not a readable image"):
        decode_batch([photos[0][1], b"\xff\xd8\xff\xe0 not a jpeg"], ["a.jpg", "broken.jpg"], CPU)


@pytest.mark.parametrize(
    "name, enhancer",
    [
        ("brightness", ImageEnhance.Brightness),
        ("contrast", ImageEnhance.Contrast),
        ("saturation", ImageEnhance.Color),
    ],
)
def test_enhancements_compute_what_pillow_computes(name, enhancer):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    for factor in (0.5, 0.83, 1.0, 1.27, 1.5):
        ours = enhance(_pixels(img).float(), [(name, factor)])
        assert torch.equal(ours.to(torch.uint8), _pixels(enhancer(img).enhance(factor))), factor
    with pytest.raises(ImageError, match="no 'hue' operation"):
        enhance(_pixels(img).float(), [("hue", 0.1)])


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic", "area", "lanczos"])
def test_a_seed_gives_the_pil_recipes_crops_flips_and_distortions(shared_data, interpolation):
    """Eight photos through both paths from one seed: the same boxes, interpolation, factors
    and flips, and the same 8-bit pixels, since the batch resamples as Pillow does (its taps,
    its fixed-point weights and 32-bit sums, its order of the two passes). What is left is the
    float32 normalisation: a few units in the last place of 0..255 values (< 1e-3)."""
    photos = _photos(shared_data, 8)
    pre = model_card("googlenet").preprocessing
    ours_seed, pil_seed = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    augment = BatchAugment(224, pre, interpolations=(interpolation,), generator=ours_seed)
    ours = augment(decode_batch([d for _, d in photos], [n for n, _ in photos], CPU))
    steps = [
        RandomSizedCrop(224, interpolations=(interpolation,), generator=pil_seed),
        PhotometricDistort(generator=pil_seed),
        RandomHorizontalFlip(generator=pil_seed),
        ToModelInput(pre),
    ]
    expected = []
    for name, data in photos:
        x = decode_image(data, name)
        for step in steps:
            x = step(x)
        expected.append(x)
    assert ours.shape == (8, 3, 224, 224) and ours.dtype == torch.float32
    levels = (pre.denormalize(ours) - pre.denormalize(torch.stack(expected))).abs()
    assert levels.max().item() < 1e-3, levels.max().item()
    assert torch.equal(ours_seed.get_state(), pil_seed.get_state())  # the same draws, in order


def test_each_pass_order_and_nearest_pixel_pillow_takes_to_the_bit():
    """Crops that take each path, resized in one batch: rows shrunk more than twice the
    columns (Pillow resizes rows first), the other way round, enlarged, and nearest neighbour
    sample points on pixel edges (8/7 input pixels a step: Pillow sums the steps)."""
    rng = np.random.default_rng(0)
    cases = [((333, 500), (0, 0, 333, 500)), ((500, 333), (10, 5, 470, 315))]
    cases += [((40, 30), (3, 2, 30, 25)), ((300, 256), (22, 0, 256, 256))]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for (w, h), _ in cases]
    boxes = iter([box for _, box in cases] * 4)
    pre = model_card("googlenet").preprocessing
    for interpolation in ("nearest", "bicubic", "lanczos"):
        augment = BatchAugment(
            224, pre, interpolations=(interpolation,), flip=False, photometric=False
        )
        augment.crop.box = lambda width, height: next(boxes)  # the cases' boxes, in order
        ours = pre.denormalize(augment([_pixels(Image.fromarray(im)) for im in images]))
        for im, (_, (left, top, bw, bh)), got in zip(images, cases, ours, strict=True):
            box = (left, top, left + bw, top + bh)
            resample = INTERPOLATIONS[interpolation]
            expected = Image.fromarray(im).resize((224, 224), resample, box=box)
            levels = (got - torch.from_numpy(np.array(expected)).float()).abs().max()
            assert levels < 1e-3, (interpolation, box, levels)
    assert augment.draw([size for size, _ in cases]).vertical_first == [True, False, False, False]


def test_an_empty_batch_is_refused():
    with pytest.raises(ImageError, match="an empty batch"):
        BatchAugment(224, model_card("googlenet").preprocessing)([])


def _photo_tree(shared_data, root):
    """Three ImageNet classes, three training copies and one test copy of each photo, and a
    broken file among the training images."""
    for wnid in ("n01440764", "n01443537", "n01484850"):
        (photo,) = (shared_data / "imagenet-sample").glob(f"{wnid}_*.JPEG")
        for split, names in (("train", ("a", "b", "c")), ("test", ("t",))):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for name in names:
                (folder / f"{name}.JPEG").write_bytes(photo.read_bytes())
    (root / "train" / "n01440764" / "broken.JPEG").write_bytes(b"\xff\xd8\xff not a photo")
    return root


QUIET = ("workers=0", "eval_views=[]", "tensorboard=false", "plots=false", "progress=false")


def _first_epoch(out, argv: list[str], settings: tuple[str, ...]) -> dict:
    """Train one epoch through the command; the row log.csv holds for it."""
    import csv

    from goingdeeper.cli import main

    for setting in (*QUIET, *settings):
        argv = [*argv, "--set", setting]
    assert main([*argv, "--epochs", "1", "--out", str(out)]) == 0
    with open(out / "log.csv") as f:
        return next(csv.DictReader(f))


def _train_row(tmp_path, data, loader: str, name: str) -> dict:
    argv = ["train", "--model", "lenet5_modern", "--data", str(data)]
    settings = ("recipe=googlenet", "input_size=32", "batch_size=4", f"loader={loader}")
    return _first_epoch(tmp_path / name, argv, settings)


def test_the_tensor_loader_trains_on_every_readable_photo_and_repeats_under_a_seed(
    shared_data, tmp_path
):
    """`loader=tensor`: the loader workers read bytes and the batch is decoded and augmented
    on the training device (here the CPU); the broken file is skipped and counted as by the
    PIL loader, and a second run with the same seed gives the same losses."""
    data = _photo_tree(shared_data, tmp_path / "data")
    tensor = _train_row(tmp_path, data, "tensor", "tensor")
    again = _train_row(tmp_path, data, "tensor", "again")
    pil = _train_row(tmp_path, data, "pil", "pil")
    assert tensor["skipped"] == pil["skipped"] == "1"
    assert tensor["train_loss"] == again["train_loss"] and tensor["test_loss"] == again["test_loss"]
    assert tensor["train_loss"] != pil["train_loss"]  # other draws, other pixels


def test_a_tensor_loader_the_recipe_cannot_run_is_one_line(tmp_path, capsys):
    from goingdeeper.cli import main

    out = tmp_path / "run"
    argv = ["train", "--preset", "mnist-lenet5", "--data", "digits", "--epochs", "1"]
    assert main([*argv, "--set", "recipe=lenet", "--set", "loader=tensor", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loader=tensor runs the googlenet and simple recipes" in err[0], err
    assert not out.exists()


def test_loader_and_compile_are_options_of_train(monkeypatch, capsys):
    from goingdeeper.cli import main
    from goingdeeper.cli import train as train_command
    from goingdeeper.results import FitResult

    seen = []

    def fit(config, **_):  # what a process other than the main one gets: nothing to print
        seen.append(config)
        return FitResult(history=[], out=config.out, model=torch.nn.Identity())

    monkeypatch.setattr(train_command, "fit", fit)
    assert main(["train", "--loader", "pil", "--compile"]) == 0
    assert main(["train"]) == 0
    assert (seen[0].loader, seen[0].compile) == ("pil", True)
    assert (seen[1].loader, seen[1].compile) == ("auto", False)
    with pytest.raises(SystemExit) as stop:
        main(["train", "--loader", "fast"])
    assert stop.value.code == 2 and "invalid choice: 'fast'" in capsys.readouterr().err


def _tiny_run(tmp_path, data: str, loader: str, name: str, *extra: str) -> dict:
    argv = ["train", "--preset", "mnist-lenet5", "--data", data]
    settings = ("recipe=simple", "limit_test=64", f"loader={loader}", *extra)
    return _first_epoch(tmp_path / name, argv, settings)


def test_a_small_set_is_held_decoded_and_cut_into_batches_where_it_trains(tmp_path):
    """The digits (a pixel array) and a tar of 32 x 32 JPEGs with a broken member: held as one
    tensor, each epoch's batches cut from it in the sampler's order; every readable image
    trains once, the broken one is counted, and the seed repeats the run."""
    import io
    import tarfile

    from PIL import Image

    from goingdeeper.data import discover
    from goingdeeper.data.pipelines.held import held

    digits = discover("digits").split("train")
    data = held(digits, CPU)
    assert data.pixels.shape == (len(digits), 3, 8, 8) and data.readable.all()
    assert torch.equal(data.pixels[5].permute(1, 2, 0), _pixels(digits.decode(5)).permute(1, 2, 0))
    first = _tiny_run(tmp_path, "digits", "tensor", "a")
    assert first == _tiny_run(tmp_path, "digits", "tensor", "b") | {
        k: first[k] for k in ("images_per_s", "seconds")
    }
    archive = tmp_path / "small.tar"
    rng = np.random.default_rng(0)
    with tarfile.open(archive, "w") as tar:
        for split, n in (("train", 12), ("test", 4)):
            for i in range(n):
                png = io.BytesIO()
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(png, "JPEG")
                member = tarfile.TarInfo(f"{split}/{'cat' if i % 2 else 'dog'}/{i}.jpg")
                member.size = len(png.getvalue())
                tar.addfile(member, io.BytesIO(png.getvalue()))
        broken = tarfile.TarInfo("train/cat/broken.jpg")
        broken.size = 5
        tar.addfile(broken, io.BytesIO(b"\xff\xd8\xffxx"))
    row = _tiny_run(tmp_path, str(archive), "tensor", "tar", "limit_test=0")
    assert row["skipped"] == "1"
