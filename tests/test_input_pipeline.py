"""The CPU input pipeline's economies, each checked against the plain computation it replaces:
images opened before they are decoded (size as shown, EXIF quarter turns included; JPEGs
decoded in Pillow's draft mode only as small as the first resize allows), and 8-bit batches
normalised on the device equal to images normalised one by one; batches made ahead in a
thread (`Prefetched`) are the loader's own, in its order."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from goingdeeper.data import ImageDataset, Skipped, collate_skip, train_transform
from goingdeeper.data.pipelines.loader import make_loader
from goingdeeper.data.pipelines.pillow import RandomSizedCrop
from goingdeeper.data.pipelines.prefetch import Prefetched
from goingdeeper.data.pipelines.tensor import PixelBatches
from goingdeeper.errors import ImageError
from goingdeeper.images import OpenedImage, load_image, open_encoded, open_file
from goingdeeper.registry import model_card
from goingdeeper.train import config as cfg
from goingdeeper.train.build import build_data
from goingdeeper.train.distributed import Distributed

PREPROCESSING = model_card("googlenet").preprocessing


def _photos(shared_data: Path, large: bool) -> list[Path]:
    """Sample photos whose shorter side is at least 448 px (large) or under 448 (not)."""
    out = []
    for p in sorted((shared_data / "imagenet-sample").glob("*.JPEG")):
        with Image.open(p) as img:
            if (min(img.size) >= 448) == large:
                out.append(p)
    return out


def _jpeg(size: tuple[int, int], orientation: int | None = None) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def test_an_opened_image_knows_its_size_as_shown_before_decoding():
    turned = open_encoded(_jpeg((64, 40), orientation=6), "turned.jpg")  # a quarter turn
    assert turned.size == (40, 64)
    assert turned.decode().size == (40, 64)
    plain = open_encoded(_jpeg((64, 40)), "plain.jpg")
    assert plain.size == (64, 40)


def test_a_jpeg_is_decoded_no_smaller_than_asked_and_in_the_dct_when_it_can_be():
    data = _jpeg((800, 600))
    assert open_encoded(data, "a.jpg").decode((400, 300)).size == (400, 300)
    assert open_encoded(data, "a.jpg").decode((401, 300)).size == (800, 600)
    assert open_encoded(data, "a.jpg").decode((100, 60)).size == (100, 75)  # 1/8
    assert open_encoded(data, "a.jpg").decode().size == (800, 600)
    turned = open_encoded(_jpeg((800, 600), orientation=8), "t.jpg")  # shown 600 x 800
    assert turned.decode((300, 400)).size == (300, 400)
    png = io.BytesIO()
    Image.new("RGB", (800, 600)).save(png, "PNG")  # no draft mode: decoded whole
    assert open_encoded(png.getvalue(), "a.png").decode((100, 75)).size == (800, 600)


def test_a_truncated_jpeg_fails_at_decoding_with_one_line_naming_it():
    data = _jpeg((300, 200))
    opened = open_encoded(data[: len(data) // 3], "cut.jpg")  # the header is whole
    assert opened.size == (300, 200)
    with pytest.raises(ImageError, match=r"^cut\.jpg: "):
        opened.decode()


def test_crops_of_photos_too_small_for_draft_are_those_of_the_whole_decode(shared_data):
    """The same draws, the same pixels: decoding only as large as needed changes nothing
    when nothing can be saved."""
    transform = train_transform("googlenet", 224, PREPROCESSING)
    assert transform.takes_opened
    for photo in _photos(shared_data, large=False)[:12]:
        torch.manual_seed(3)
        drafted = transform(open_file(photo))
        torch.manual_seed(3)
        whole = transform(load_image(photo))
        assert torch.equal(drafted, whole), photo.name


def test_crops_of_large_photos_are_decoded_smaller_and_look_the_same(shared_data, monkeypatch):
    """A patch that will shrink by 2 or more is cut from a JPEG decoded at 1/2 (or less) in the
    DCT: the same patch (same draws), close to the whole decode's."""
    decoded_sizes = []
    real_decode = OpenedImage.decode

    def spy(self, at_least=None):
        img = real_decode(self, at_least)
        decoded_sizes.append((self.size, img.size))
        return img

    monkeypatch.setattr(OpenedImage, "decode", spy)
    crop = RandomSizedCrop(112)  # a small output: most patches can be decoded smaller
    photos = _photos(shared_data, large=True)[:10]
    assert len(photos) == 10
    differences = []
    for photo in photos:
        torch.manual_seed(5)
        drafted = np.asarray(crop(open_file(photo)), dtype=np.float32)
        torch.manual_seed(5)
        whole = np.asarray(crop(load_image(photo)), dtype=np.float32)
        # pixel by pixel, a detailed patch differs by a few levels (the DCT's scaling is not
        # Pillow's filter; nearest-neighbour samples other pixels); 8 x 8 blocks agree closely
        differences.append(np.abs(drafted - whole).mean())
        assert np.abs(_blocks(drafted) - _blocks(whole)).mean() < 3.0, photo.name
    assert np.median(differences) < 2.0, differences
    reduced = [shown for shown, got in decoded_sizes if got[0] < shown[0]]
    assert len(reduced) >= 5, decoded_sizes


def _blocks(img: np.ndarray, side: int = 8) -> np.ndarray:
    h, w, c = img.shape
    return img.reshape(h // side, side, w // side, side, c).mean(axis=(1, 3))


def test_without_draft_the_recipe_takes_decoded_images():
    assert not train_transform("googlenet", 224, PREPROCESSING, draft=False).takes_opened
    for recipe in ("googlenet", "vgg", "alexnet", "simple", "lenet", "none"):
        assert train_transform(recipe, 224, PREPROCESSING).takes_opened, recipe


def test_a_broken_file_is_still_skipped_with_its_name(tmp_path, shared_data):
    good = _photos(shared_data, large=False)[0]
    broken = tmp_path / "broken.jpg"
    data = good.read_bytes()
    broken.write_bytes(data[: len(data) // 4])
    ds = ImageDataset(
        [(str(good), 0), (str(broken), 0)], ["x"], train_transform("googlenet", 224, PREPROCESSING)
    )
    assert ds[0][0].shape == (3, 224, 224)
    skipped = ds[1]
    assert isinstance(skipped, Skipped) and skipped.index == 1
    assert str(skipped).startswith(str(broken)) and skipped.name == str(broken)


def test_eight_bit_batches_normalised_on_the_device_equal_images_normalised_one_by_one(
    shared_data,
):
    photos = [(str(p), i % 3) for i, p in enumerate(_photos(shared_data, large=False)[:10])]
    floats = ImageDataset(photos, ["a", "b", "c"], train_transform("vgg", 64, PREPROCESSING))
    pixels_tf = train_transform("googlenet", 64, PREPROCESSING, pixels=True)
    assert pixels_tf.pixels
    assert not train_transform("vgg", 64, PREPROCESSING, pixels=True).pixels  # lighting
    float_tf = train_transform("googlenet", 64, PREPROCESSING)
    batches = []
    for tf in (pixels_tf, float_tf):
        floats.transform = tf
        torch.manual_seed(11)
        loader = DataLoader(floats, batch_size=4, collate_fn=collate_skip)
        if tf.pixels:
            loader = PixelBatches(loader, PREPROCESSING, torch.device("cpu"))
        batches.append(list(loader))
    assert len(batches[0]) == len(batches[1]) == 3
    for (x8, y8, _), (xf, yf, _) in zip(*batches, strict=True):
        assert x8.dtype == torch.float32 and x8.shape == xf.shape
        torch.testing.assert_close(x8, xf, rtol=0, atol=1e-5)
        assert torch.equal(y8, yf)


class _Batches:
    """A loader's epoch of batches drawn from its own generator (as the device loaders draw)."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        draws = torch.Generator().manual_seed(7)
        for k in range(self.n):
            if k == self.fail_at:
                raise ImageError(f"batch {k}: broken")
            yield torch.rand(4, 3, generator=draws), torch.full((4,), k), [f"skipped {k}"]


def test_prefetched_batches_are_the_loaders_own_in_its_order():
    plain = list(_Batches(9))
    torch.manual_seed(0)  # the step's global draws, taken while the thread makes batches
    ahead = []
    for batch in Prefetched(_Batches(9), torch.device("cpu")):
        torch.rand(1000)
        ahead.append(batch)
    assert len(Prefetched(_Batches(9), torch.device("cpu"))) == 9 and len(ahead) == 9
    for (x, y, s), (xa, ya, sa) in zip(plain, ahead, strict=True):
        assert torch.equal(x, xa) and torch.equal(y, ya) and s == sa


def test_an_error_in_the_loader_thread_is_raised_where_its_batch_would_come():
    seen = []
    with pytest.raises(ImageError, match="batch 3: broken"):
        for _, y, _ in Prefetched(_Batches(6, fail_at=3), torch.device("cpu"), depth=1):
            seen.append(int(y[0]))
    assert seen == [0, 1, 2]


def test_a_reader_that_stops_early_leaves_no_thread_behind():
    before = threading.active_count()
    for _ in Prefetched(_Batches(50), torch.device("cpu"), depth=2):
        break
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before
    with pytest.raises(ValueError, match="depth"):
        Prefetched(_Batches(1), torch.device("cpu"), depth=0)


def test_training_data_decodes_in_draft_mode_unless_told_not_to(tmp_path, shared_data):
    """`draft_decode` reaches the training transform; with a GPU the workers' transform ends
    in 8-bit pixels and the loader normalises the batch (here asked of the loader directly)."""
    folder = tmp_path / "photos"
    for photo in _photos(shared_data, large=False)[:4]:
        wnid = photo.name.split("_")[0]
        (folder / "train" / wnid).mkdir(parents=True)
        (folder / "test" / wnid).mkdir(parents=True)
        (folder / "train" / wnid / photo.name).symlink_to(photo)
        (folder / "test" / wnid / photo.name).symlink_to(photo)
    base = {"data": str(folder), "recipe": "googlenet", "input_size": 64, "workers": 0}
    for draft in (True, False):
        c = cfg.from_dict({**base, "draft_decode": draft, "out": str(tmp_path / "run")})
        train_ds, _, _ = build_data(c, PREPROCESSING, Distributed(), pixels=True)
        assert train_ds.transform.takes_opened is draft and train_ds.transform.pixels
        loader = make_loader(
            train_ds,
            2,
            c,
            Distributed(),
            train=True,
            device=torch.device("cpu"),
            preprocessing=PREPROCESSING,
        )
        assert isinstance(loader, PixelBatches)
        x, y, skipped = next(iter(loader))
        assert x.dtype == torch.float32 and x.shape == (2, 3, 64, 64) and not skipped
