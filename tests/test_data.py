"""Data sets (SPEC part 3) and training augmentation (SPEC part 4, GoogLeNet section 6).

Bad images are made here with Pillow, one per case; the official formats (IDX, CIFAR
batches) are written byte for byte as their authors document them; the real archives come
from ../shared/data.
"""

from __future__ import annotations

import collections
import gzip
import io
import pickle
import struct
import tarfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from goingdeeper import images as images_module
from goingdeeper.data import (
    AffineDistort,
    ClassMap,
    ImageDataset,
    PCALighting,
    PhotometricDistort,
    RandomSizedCrop,
    ScaleJitter,
    Skipped,
    check_splits,
    cifar_batches,
    collate_skip,
    digits,
    discover,
    eval_transform,
    image_folder,
    mnist_idx,
    read_idx,
    tar_images,
    torchvision_dataset,
    train_transform,
)
from goingdeeper.data.pipelines.pillow import ToModelInput, to_unit_tensor
from goingdeeper.data.recipes import IMAGENET_EIGVAL, IMAGENET_EIGVEC, RECIPES
from goingdeeper.data.sources.tar import scan_tar_headers
from goingdeeper.errors import DataError
from goingdeeper.preprocess import CAFFE_BGR, IMAGENET_RGB, Preprocessing

TINY = Preprocessing(resize=8, crop=8)  # maps any image to 3 x 8 x 8
BAD = {"empty.jpg", "truncated.jpg", "text.jpg", "bomb.png"}


# ---------------------------------------------------------------------------------------------
# Files, good and bad


def _encode(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def _noise(size: tuple[int, int] = (32, 32), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG whose header declares width x height pixels (10^10: a decompression bomb)."""
    png = _encode(Image.new("L", (1, 1)), "PNG")
    ihdr = bytearray(png[8:33])  # length, b"IHDR", 13 bytes of data, CRC of type + data
    ihdr[8:16] = struct.pack(">II", width, height)
    ihdr[21:25] = struct.pack(">I", zlib.crc32(bytes(ihdr[4:21])))
    return png[:8] + bytes(ihdr) + png[33:]


def _odd_files() -> dict[str, bytes]:
    jpeg = _encode(_noise(), "JPEG")
    return {
        "rgb.jpg": jpeg,
        "gray.png": _encode(Image.new("L", (12, 10), 77), "PNG"),
        "cmyk.jpg": _encode(Image.new("CMYK", (12, 10), (0, 255, 255, 0)), "JPEG"),  # red
        "gray16.png": _encode(Image.fromarray(np.full((10, 12), 65535, np.uint16)), "PNG"),
        "rgba.png": _encode(Image.new("RGBA", (12, 10), (0, 0, 0, 0)), "PNG"),  # transparent
        "palette.png": _encode(_noise((12, 10)).convert("P"), "PNG"),
        "empty.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "text.jpg": b"this is not an image\n",
        "bomb.png": _bomb_png(),
        "notes.txt": b"not an image by its extension: ignored",
        ".hidden.jpg": jpeg,
    }


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/{train,test}/{cat,dog}/: every odd and bad file in train/cat."""
    root = tmp_path / "tree"
    for name, data in _odd_files().items():
        _write(root / "train" / "cat" / name, data)
    for split, n in (("train", 2), ("test", 2)):
        for i in range(n):
            _write(root / split / "dog" / f"{i}.jpg", _encode(_noise(seed=10 + i), "JPEG"))
    _write(root / "test" / "cat" / "0.png", _encode(_noise(seed=20), "PNG"))
    return root


def _tar(tree: Path, archive: Path, top: str = "") -> Path:
    mode = "w:gz" if archive.name.endswith(".gz") else "w"
    with tarfile.open(archive, mode) as tar:
        for split in ("train", "test"):
            tar.add(tree / split, arcname=f"{top}{split}")
    return archive


def _skipped(dataset: ImageDataset) -> dict[str, str]:
    """File name -> message, for each sample that __getitem__ skips."""
    out = {}
    for i in range(len(dataset)):
        item = dataset[i]
        if isinstance(item, Skipped):
            assert item.index == i and item.name == dataset.describe(i)
            assert isinstance(dataset.load(i), Skipped)  # the item protocol, untransformed
            out[Path(dataset.describe(i)).name] = str(item)
    return out


# ---------------------------------------------------------------------------------------------
# ImageFolder trees


def test_image_folder_converts_odd_images_and_skips_bad_ones(tree):
    ds = image_folder(tree / "train", transform=TINY)
    assert ds.classes == ["cat", "dog"]
    names = [Path(source).name for source, _ in ds.samples]
    assert "notes.txt" not in names and ".hidden.jpg" not in names
    assert len(ds) == 10 + 2 and ds.targets == [0] * 10 + [1] * 2
    skipped = _skipped(ds)
    assert set(skipped) == BAD
    for name, message in skipped.items():
        assert message.startswith(str(tree / "train" / "cat" / name)) and "\n" not in message
    assert "empty file" in skipped["empty.jpg"] and "too large" in skipped["bomb.png"]
    for i in range(len(ds)):
        if Path(ds.describe(i)).name not in BAD:
            x, label = ds[i]
            assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and label == ds.targets[i]
    good = [i for i in range(len(ds)) if Path(ds.describe(i)).name not in BAD]
    pixel = {Path(ds.describe(i)).name: ds.decode(i).getpixel((0, 0)) for i in good}
    assert pixel["rgba.png"] == (255, 255, 255)  # transparent on white
    assert pixel["gray16.png"] == (255, 255, 255)  # 65535 of 16 bits
    assert pixel["gray.png"] == (77, 77, 77)
    assert pixel["cmyk.jpg"][0] > 200 and max(pixel["cmyk.jpg"][1:]) < 60
    assert ds.decode(names.index("palette.png")).mode == "RGB"
    image, label = ds.load(names.index("palette.png"))
    assert image.mode == "RGB" and label == ds.targets[names.index("palette.png")]


def test_decompression_limit_is_the_one_in_images(tree, tmp_path, monkeypatch):
    monkeypatch.setattr(images_module, "MAX_IMAGE_PIXELS", 50)  # rgb.jpg has 32 x 32 pixels
    folder = image_folder(tree / "train")
    archive = tar_images(_tar(tree, tmp_path / "a.tar"), "train")
    for ds in (folder, archive):
        assert "too large" in _skipped(ds)["rgb.jpg"]


@pytest.mark.parametrize(
    "layout, classes, message",
    [
        (None, None, "no such folder"),
        ({}, None, "it is empty"),
        ({"a.jpg": b"x"}, None, "no class folders"),
        ({"cat/a.jpg": b"x", "dog/notes.txt": b"x"}, None, "without image files"),
        ({"cat/a.jpg": b"x"}, ["cat", "dog"], "only in the expected class list: 'dog'"),
    ],
)
def test_image_folder_errors(tmp_path, layout, classes, message):
    root = tmp_path / "root"
    if layout is not None:
        root.mkdir()
        for name, data in layout.items():
            _write(root / name, data)
    with pytest.raises(DataError, match=message):
        image_folder(root, classes=classes)


def test_image_folder_takes_the_given_class_order(tree):
    ds = image_folder(tree / "test", classes=["dog", "cat"])
    assert ds.classes == ["dog", "cat"] and ds.targets == [0, 0, 1]


def test_collate_skip():
    good = (torch.ones(3, 2, 2), 1)
    images, labels, skipped = collate_skip([good, Skipped(1, "a.jpg", "bad"), good])
    assert images.shape == (2, 3, 2, 2) and labels.tolist() == [1, 1]
    assert skipped == ["a.jpg: bad"]
    images, labels, skipped = collate_skip([Skipped(0, "a", "bad"), Skipped(1, "b", "bad")])
    assert len(labels) == 0 and images.numel() == 0 and skipped == ["a: bad", "b: bad"]


# ---------------------------------------------------------------------------------------------
# Tar archives


@pytest.mark.parametrize("name, top", [("data.tar.gz", "cifar/"), ("data.tar", "")])
def test_tar_images_reads_in_place_like_the_folder(tree, tmp_path, name, top):
    archive = _tar(tree, tmp_path / name, top)
    before = sorted(tmp_path.rglob("*"))
    for split in ("train", "test"):
        folder = image_folder(tree / split, transform=TINY)
        packed = tar_images(archive, split, transform=TINY)
        assert packed.classes == folder.classes and packed.targets == folder.targets
        assert [Path(packed.describe(i)).name for i in range(len(packed))] == [
            Path(folder.describe(i)).name for i in range(len(folder))
        ]
        assert set(_skipped(packed)) == set(_skipped(folder))
        for i in range(len(folder)):
            if not isinstance(folder[i], Skipped):
                assert torch.equal(packed[i][0], folder[i][0])
    assert sorted(tmp_path.rglob("*")) == before  # nothing unpacked


def test_tar_images_errors(tree, tmp_path):
    archive = _tar(tree, tmp_path / "a.tar.gz")
    with pytest.raises(DataError, match=r"no images under 'val/<class>/'.*'test', 'train'"):
        tar_images(archive, "val")
    with pytest.raises(DataError, match="only in the expected class list: 'bird'"):
        tar_images(archive, "test", classes=["bird", "cat", "dog"])
    with pytest.raises(DataError, match="no such file"):
        tar_images(tmp_path / "missing.tar", "train")
    (tmp_path / "junk.tar").write_bytes(b"\x01" * 2048)
    with pytest.raises(DataError, match="not a readable tar archive"):
        tar_images(tmp_path / "junk.tar", "train")
    with tarfile.open(tmp_path / "two.tar", "w") as tar:
        tar.add(tree / "train", arcname="a/train")
        tar.add(tree / "train", arcname="b/train")
    with pytest.raises(DataError, match="several 'train' folders"):
        tar_images(tmp_path / "two.tar", "train")


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_header_scanner_agrees_with_tarfile(tmp_path, fmt):
    names = ["train/cat/a.jpg", "./train/dog/b.png", "train/" + "long" * 30 + "/c.jpg"]
    if fmt == tarfile.PAX_FORMAT:
        names.append("train/café/é" * 12 + ".jpg")  # non-ASCII and long: pax records
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w", format=fmt) as tar:
        for i, name in enumerate(names):
            data = bytes([i]) * (700 * i + 1)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("train/empty")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    data = path.read_bytes()
    scanned = scan_tar_headers(lambda offset, n: data[offset : offset + n])
    with tarfile.open(path) as tar:
        expected = [(m.offset_data, m.size) for m in tar if m.isfile()]
    assert [(m.offset, m.size) for m in scanned] == expected
    assert [m.name for m in scanned] == [n.removeprefix("./") for n in names]
    damaged = bytearray(data)
    damaged[0] ^= 0xFF  # the first header's checksum no longer holds: leave it to tarfile
    assert scan_tar_headers(lambda offset, n: bytes(damaged[offset : offset + n])) is None


@pytest.mark.parametrize("name", ["data.tar.gz", "data.tar"])
def test_dataloader_workers_run_to_the_end_and_name_bad_files(tree, tmp_path, name):
    ds = tar_images(_tar(tree, tmp_path / name), "train", transform=TINY)
    # the parent reads first: workers need their own handles
    assert not isinstance(ds[len(ds) - 1], Skipped)
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_skip)
    seen, skipped = 0, []
    for images, labels, bad in loader:
        assert len(images) == len(labels)
        seen += len(labels)
        skipped += bad
    assert seen == len(ds) - len(BAD)
    assert {message.split(":")[1].split("/")[-1] for message in skipped} == BAD


def test_tar_dataset_pickles_without_the_archive(tree, tmp_path):
    ds = tar_images(_tar(tree, tmp_path / "a.tar.gz"), "test", transform=TINY)
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000  # the path and the index, not the decompressed archive
    copy = pickle.loads(blob)
    assert all(torch.equal(copy[i][0], ds[i][0]) for i in range(len(ds)))


# ---------------------------------------------------------------------------------------------
# MNIST IDX files, CIFAR batches


def _idx(array: np.ndarray) -> bytes:
    """LeCun's IDX format: 0, 0, type 0x08 (unsigned byte), ndim, sizes big-endian, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _mnist_folder(root: Path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 9, 9, 5], dtype=np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
    (root / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    (root / "t10k-images-idx3-ubyte").write_bytes(_idx(images[:3]))
    (root / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels[:3]))
    return images, labels


def test_mnist_idx(tmp_path):
    images, labels = _mnist_folder(tmp_path)
    assert struct.unpack(">I", _idx(images)[:4])[0] == 2051  # the official magic numbers
    assert struct.unpack(">I", _idx(labels)[:4])[0] == 2049
    train, test = mnist_idx(tmp_path, "train"), mnist_idx(tmp_path, "test")
    assert len(train) == 7 and len(test) == 3 and train.targets == labels.tolist()
    assert train.classes == [str(d) for d in range(10)] and test.classes == train.classes
    image = np.asarray(train.decode(4))
    assert image.shape == (5, 4, 3) and (image == images[4][..., None]).all()
    np.testing.assert_array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte"), images[:3])


def test_mnist_idx_errors(tmp_path):
    images, labels = _mnist_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels[:2]))
    with pytest.raises(DataError, match="3 test images but 2 labels"):
        mnist_idx(tmp_path, "test")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels[:3])[:-1])
    with pytest.raises(DataError, match="header .* needs"):
        mnist_idx(tmp_path, "test")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x1f\x8b\x08\x00")
    with pytest.raises(DataError, match="not an IDX file"):
        mnist_idx(tmp_path, "test")
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="no MNIST test t10k-labels-idx1-ubyte"):
        mnist_idx(tmp_path, "test")
    with pytest.raises(DataError, match="splits 'train' and 'test'"):
        mnist_idx(tmp_path, "val")


def _cifar_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def _cifar_folder(root: Path) -> dict[str, np.ndarray]:
    """The official "python version" layout, pickled with bytes keys as the originals are."""
    root.mkdir(parents=True, exist_ok=True)
    rows = {}
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        rows[name] = _cifar_rows(3 if name == "test_batch" else 2, seed=i)
        labels = [(i + j) % 10 for j in range(len(rows[name]))]
        batch = {b"batch_label": name.encode(), b"data": rows[name], b"labels": labels}
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return rows


def test_cifar_batches(tmp_path):
    rows = _cifar_folder(tmp_path / "cifar-10-batches-py")
    train, test = cifar_batches(tmp_path, "train"), cifar_batches(tmp_path, "test")
    assert len(train) == 10 and len(test) == 3 and train.classes[0] == "airplane"
    assert train.targets[:4] == [0, 1, 1, 2] and test.targets == [5, 6, 7]
    # row layout: 1024 red, then 1024 green, then 1024 blue values, each 32 x 32 row-major
    row = rows["data_batch_2"][1]
    image = train.decode(3)
    for x, y in ((0, 0), (31, 0), (5, 17)):
        expected = tuple(int(row[c * 1024 + y * 32 + x]) for c in range(3))
        assert image.getpixel((x, y)) == expected


def test_cifar_100_and_errors(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    for split, n in (("train", 4), ("test", 2)):
        batch = {b"data": _cifar_rows(n, 0), b"fine_labels": list(range(n))}
        (root / split).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"fine_label_names": [f"c{i}".encode() for i in range(100)]}
    (root / "meta").write_bytes(pickle.dumps(meta))
    ds = cifar_batches(tmp_path, "train")
    assert len(ds) == 4 and len(ds.classes) == 100 and ds.classes[3] == "c3"

    class Payload:  # a tampered batch: unpickling it would call a function
        def __reduce__(self):
            return (int, ("1",))

    _cifar_folder(tmp_path / "c10")
    (tmp_path / "c10" / "test_batch").write_bytes(pickle.dumps({b"data": Payload()}))
    with pytest.raises(DataError, match="refusing to load builtins.int"):
        cifar_batches(tmp_path / "c10", "test")
    (tmp_path / "c10" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3: no such file"):
        cifar_batches(tmp_path / "c10", "train")


# ---------------------------------------------------------------------------------------------
# digits, torchvision, discover, check_splits


def test_digits_split_is_stratified_and_deterministic():
    train, test = digits("train"), digits("test")
    assert len(train) + len(test) == 1797 and train.classes == [str(d) for d in range(10)]
    indices = [{i for i, _ in ds.samples} for ds in (train, test)]
    assert not indices[0] & indices[1] and len(indices[0] | indices[1]) == 1797
    total = collections.Counter(train.targets) + collections.Counter(test.targets)
    held_out = collections.Counter(test.targets)
    for c, n in total.items():
        assert abs(held_out[c] - 0.2 * n) <= 1
    assert digits("test").samples == test.samples
    assert digits("test", seed=1).samples != test.samples
    image = np.asarray(test.decode(0))
    assert image.shape == (8, 8, 3) and (image[..., 0] == image[..., 2]).all()
    assert test.reader.images.max() == 255  # 16 ink strokes of 16


def test_digits_are_scikit_learns():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    train = digits("train")
    expected = np.rint(bunch.images * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(train.reader.images, expected)
    assert train.targets == [int(bunch.target[i]) for i, _ in train.samples]


def test_torchvision_dataset_needs_its_files(tmp_path):
    with pytest.raises(DataError, match="download=True"):
        torchvision_dataset("MNIST", tmp_path, "train")
    with pytest.raises(DataError, match="download=True"):
        discover(f"torchvision:cifar10:{tmp_path}").split("test")
    with pytest.raises(DataError, match="unknown torchvision data set 'ImageNet21k'"):
        torchvision_dataset("ImageNet21k", tmp_path, "train")


def test_discover_finds_each_kind(tree, tmp_path):
    assert len(discover("digits").split("test")) == len(digits("test"))
    assert discover(str(tree)).split("test").origin == str(tree / "test")
    archive = _tar(tree, tmp_path / "a.tgz")
    assert discover(str(archive)).split("test").origin == f"{archive}:test"
    assert discover(archive).splits == ("train", "test")
    _mnist_folder(tmp_path / "mnist")
    assert len(discover(str(tmp_path / "mnist")).split("train")) == 7
    _cifar_folder(tmp_path / "cifar" / "cifar-10-batches-py")
    assert len(discover(str(tmp_path / "cifar")).split("test")) == 3
    flat = tmp_path / "flat"  # one class tree, no split folders: one split until asked
    for c in ("a", "b"):
        for i in range(10):
            _write(flat / c / f"{i}.png", _encode(Image.new("L", (2, 2), i), "PNG"))
    source = discover(str(flat))
    assert source.splits == ("all",) and source.holdout == ""
    held = source.with_holdout(0.2)  # a stratified fifth is 'test', and it is said
    train, test = held.split("train"), held.split("test")
    assert len(train) == 16 and collections.Counter(test.targets) == {0: 2, 1: 2}
    assert "held out a stratified 0.2 of each class of 'all'" in held.holdout


@pytest.mark.parametrize(
    "spec, split, message",
    [
        ("nowhere/at/all", "train", "no such file or folder"),
        ("{tree}/train/cat/text.jpg", "train", "unknown format"),
        ("{tree}", "val", r"no 'val' split \(found: train, test\)"),
        ("torchvision:MNIST", "train", "expected torchvision:<Name>:<root>"),
        ("digits", "val", r"no 'val' split \(found: train, test\)"),
    ],
)
def test_discover_errors(tree, spec, split, message):
    with pytest.raises(DataError, match=message):
        discover(spec.format(tree=tree)).split(split)


def test_discover_labels_splits_in_the_known_classes(tree):
    nine = ClassMap([str(d) for d in range(9)])
    with pytest.raises(DataError, match="'9' is not one of the 9 classes"):
        discover("digits", known=nine).split("train")
    ds = discover(str(tree), known=ClassMap(["dog", "cat"])).split("train")
    assert ds.classes == ["dog", "cat"] and ds.targets == [1] * 10 + [0] * 2


def test_check_splits(tree):
    train, test = image_folder(tree / "train"), image_folder(tree / "test")
    check_splits(train, test)
    with pytest.raises(DataError, match="the test split is empty"):
        check_splits(train, test.subset([]))
    with pytest.raises(DataError, match="train has 2 classes, test has 10: only in train: 'cat'"):
        check_splits(train, digits("test"))
    with pytest.raises(DataError, match="different order"):
        check_splits(train, image_folder(tree / "test", classes=["dog", "cat"]))


# ---------------------------------------------------------------------------------------------
# Real data


@pytest.mark.data
def test_real_mnist_archive(shared_data):
    ds = tar_images(shared_data / "mnist-png.tar.gz", "test")
    assert len(ds) == 10_000 and ds.classes == [str(d) for d in range(10)]
    assert sorted(collections.Counter(ds.targets)) == list(range(10))
    for i in (0, 1, len(ds) - 1):
        image = ds.decode(i)
        assert image.size == (28, 28) and image.mode == "RGB"


@pytest.mark.data
def test_real_cifar_archive_index_takes_seconds(shared_data):
    start = time.perf_counter()
    ds = tar_images(shared_data / "cifar10-jpg.tar.gz", "train")
    seconds = time.perf_counter() - start
    assert len(ds) == 50_000 and len(ds.classes) == 10 and ds.classes[0] == "airplane"
    assert collections.Counter(ds.targets) == {c: 5_000 for c in range(10)}
    assert ds.decode(0).size == (32, 32)
    assert seconds < 20, f"index took {seconds:.1f} s"  # ~1.5 s on an idle 2-core machine


# ---------------------------------------------------------------------------------------------
# Transforms


def test_random_sized_crop_follows_section_6():
    crop = RandomSizedCrop(224)
    boxes = torch.tensor([crop.box(500, 375) for _ in range(4000)], dtype=torch.float64)
    left, top, w, h = boxes.unbind(1)
    assert (left >= 0).all() and (top >= 0).all()
    assert (left + w <= 500).all() and (top + h <= 375).all()
    area, ratio = w * h / (500 * 375), w / h
    assert area.min() >= 0.08 * 0.98 and area.max() <= 1.0
    assert ratio.min() >= 0.75 * 0.99 and ratio.max() <= 4 / 3 * 1.01
    assert area.min() < 0.1 and area.max() > 0.9 and ratio.min() < 0.77 and ratio.max() > 1.3
    assert 0.35 < area.mean() < 0.6  # uniform in area, less the large patches that do not fit
    assert crop(Image.new("RGB", (300, 200))).size == (224, 224)
    w, h = crop.box(1000, 10)[2:]  # nothing fits: the largest central patch in the ratio range
    assert (w, h) == (13, 10)


def test_random_sized_crop_is_reproducible_and_uses_every_interpolation():
    crop = RandomSizedCrop(32)
    torch.manual_seed(7)
    first = [(crop.box(64, 48), crop.interpolation()) for _ in range(400)]
    torch.manual_seed(7)
    assert [(crop.box(64, 48), crop.interpolation()) for _ in range(400)] == first
    counts = collections.Counter(name for _, name in first)
    assert set(counts) == {"bilinear", "area", "nearest", "bicubic"}
    assert min(counts.values()) > 60
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    image = _noise((64, 48))
    a = RandomSizedCrop(16, generator=g1)(image)
    assert a.tobytes() == RandomSizedCrop(16, generator=g2)(image).tobytes()
    stripes = np.zeros((48, 64, 3), np.uint8)
    stripes[:, ::2] = 255
    nearest = RandomSizedCrop(16, interpolations=("nearest",))(Image.fromarray(stripes))
    assert set(np.unique(np.asarray(nearest))) <= {0, 255}


def test_photometric_distortions():
    distort = PhotometricDistort()
    torch.manual_seed(0)
    draws = [distort.draw() for _ in range(300)]
    assert {ops[0][0] for ops in draws} == {"brightness", "contrast", "saturation"}
    names = ["brightness", "contrast", "saturation"]
    assert all(sorted(n for n, _ in ops) == names for ops in draws)
    factors = [f for ops in draws for _, f in ops]
    assert 0.5 <= min(factors) < 0.55 and 1.45 < max(factors) <= 1.5  # Howard: 0.5..1.5
    image = _noise((16, 16))
    torch.manual_seed(1)
    once = distort(image)
    torch.manual_seed(1)
    assert distort(image).tobytes() == once.tobytes() != image.tobytes()
    brighter = PhotometricDistort.apply(image, [("brightness", 1.5)])
    assert np.asarray(brighter).mean() > np.asarray(image).mean()
    off = PhotometricDistort(brightness=0, contrast=0, saturation=0)
    assert off(image).tobytes() == image.tobytes()
    red = Image.new("RGB", (2, 2), (255, 0, 0))
    shifted = PhotometricDistort.apply(red, [("hue", 1 / 3)])
    assert np.argmax(shifted.getpixel((0, 0))) == 1  # a third of a turn: red -> green


def test_pca_lighting_moves_colours_along_the_eigenvectors():
    eigvec = torch.tensor(IMAGENET_EIGVEC)
    assert torch.allclose(eigvec.T @ eigvec, torch.eye(3), atol=2e-3)  # columns orthonormal
    lighting = PCALighting()
    for j in range(3):
        offset = lighting.offset(torch.eye(3)[j])
        assert torch.allclose(offset, eigvec[:, j] * IMAGENET_EIGVAL[j])
    grey = torch.full((3, 4, 4), 0.5)
    lighting = PCALighting(generator=torch.Generator().manual_seed(0))
    deltas = torch.stack([(lighting(grey) - grey)[:, 0, 0] for _ in range(3000)])
    shift = lighting(grey) - grey
    assert torch.equal(shift, shift[:, :1, :1].expand_as(shift))  # the same for every pixel
    alphas = deltas @ eigvec / torch.tensor(IMAGENET_EIGVAL)  # back to alpha_i ~ N(0, 0.1)
    assert torch.allclose(alphas.std(0), torch.full((3,), 0.1), rtol=0.1)
    assert alphas.mean(0).abs().max() < 0.01


def test_scale_jitter_draws_vgg_scales():
    jitter = ScaleJitter(224)
    scales = torch.tensor([jitter.draw_scale() for _ in range(3000)], dtype=torch.float64)
    assert scales.min() == 256 and scales.max() == 512 and abs(scales.mean() - 384) < 6
    assert ScaleJitter(32, (36, 72))(_noise((40, 30))).size == (32, 32)
    with pytest.raises(ValueError, match="size <= s_min"):
        ScaleJitter(224, (200, 512))


def _digit_field() -> Image.Image:
    """A 32 x 32 black field holding a white 8 x 16 bar in its middle (a "1")."""
    pixels = np.zeros((32, 32), np.uint8)
    pixels[8:24, 12:20] = 255
    return Image.fromarray(pixels, "L")


def test_affine_distort_maps_pixels_where_its_matrix_says():
    field = _digit_field()
    still = AffineDistort(shift=0, scale=0, squeeze=0, shear=0)
    assert np.array_equal(np.asarray(still(field)), np.asarray(field))
    # a pure translation by (+3, -2) pixels: output (x, y) holds input (x - 3, y + 2)
    moved = np.asarray(AffineDistort.apply(field, np.array([[1.0, 0, 3], [0, 1.0, -2]])))
    assert np.array_equal(moved[6:22, 15:23], np.asarray(field)[8:24, 12:20])
    assert moved.sum() == np.asarray(field).sum()  # nothing left the field
    # a horizontal shear about the centre (16, 16): the ink of the row whose pixel centres
    # lie at y moves right by 0.25 * (y - 16) pixels (PIL's pixel centres are at +0.5)
    shear = np.array([[1.0, 0.25, -4], [0, 1.0, 0]])
    sheared = np.asarray(AffineDistort.apply(field, shear), np.float64)
    columns = np.arange(32) + 0.5
    for row in range(8, 24):
        centroid = (sheared[row] * columns).sum() / sheared[row].sum()
        assert centroid == pytest.approx(16 + 0.25 * (row + 0.5 - 16), abs=0.02)
    # squeezing: wider and shorter (x times 1.25, y divided by 1.25) about the centre
    squeeze = np.array([[1.25, 0, 16 - 1.25 * 16], [0, 0.8, 16 - 0.8 * 16]])
    wide = np.asarray(AffineDistort.apply(field, squeeze)) > 127
    columns, rows = np.flatnonzero(wide.any(0)), np.flatnonzero(wide.any(1))
    assert columns[-1] - columns[0] + 1 == 10 and rows[-1] - rows[0] + 1 in (12, 13)


def test_affine_distort_draws_within_its_ranges_and_keeps_the_digit():
    distort = AffineDistort(generator=torch.Generator().manual_seed(0))
    field = _digit_field()
    ink = np.asarray(field, np.float64).sum()
    for _ in range(200):
        m = distort.draw(32, 32)
        s_x, s_y = m[0, 0], m[1, 1]  # s * q and s / q
        assert 0.8 <= s_x <= 1.23 and 0.8 <= s_y <= 1.23 and m[1, 0] == 0
        assert abs(m[0, 1] / s_x) <= 0.15  # the shear k
        centre = m[:, :2] @ [16, 16] + m[:, 2]
        assert np.all(np.abs(centre - 16) <= 2 + 1e-9)  # the shift, at most 2 pixels
        out = np.asarray(AffineDistort.apply(field, m), np.float64)
        assert 0.6 < out.sum() / ink < 1.45  # the digit moved and changed size, inside the field
    first = [AffineDistort(generator=torch.Generator().manual_seed(3)).draw(32, 32) for _ in "ab"]
    assert np.array_equal(*first)
    big = AffineDistort(generator=torch.Generator().manual_seed(1)).draw(64, 64)
    assert np.all(np.abs(big[:, :2] @ [32, 32] + big[:, 2] - 32) <= 4 + 1e-9)  # scaled shift
    rgb = AffineDistort()(Image.new("RGB", (32, 32), (255, 255, 255)))
    assert rgb.mode == "RGB" and rgb.getpixel((16, 16)) == (255, 255, 255)
    with pytest.raises(ValueError, match="interpolation must be nearest, bilinear or bicubic"):
        AffineDistort(interpolation="area")
    with pytest.raises(ValueError, match="scale must lie in"):
        AffineDistort(scale=1.5)


def test_lenet_recipe_pads_then_distorts():
    lenet_card = Preprocessing(resize=28, crop=32, pad=2, mean=(0, 0, 0), std=(1, 1, 1))
    transform = train_transform("lenet", 32, lenet_card, flip=False)
    shown = repr(transform)
    assert shown.index("Resize(size=28") < shown.index("Border(pad=2)")
    assert shown.index("Border(pad=2)") < shown.index("AffineDistort(")
    assert "Flip" not in shown
    digit = Image.new("L", (28, 28), 255)
    torch.manual_seed(0)
    outs = [transform(digit) for _ in range(5)]
    assert all(x.shape == (3, 32, 32) for x in outs)
    assert not all(torch.equal(outs[0], x) for x in outs[1:])  # a new distortion each time
    plain = train_transform("simple", 32, lenet_card, flip=False)(digit)
    assert plain[:, 2:30, 2:30].min() > 0.99 and plain[:, :2].max() == 0  # simple: no warp
    half = repr(train_transform("lenet", 32, lenet_card, distortion=0.5))
    assert "AffineDistort(shift=1.0, scale=0.05, squeeze=0.05, shear=0.075" in half
    assert "AffineDistort" not in repr(train_transform("lenet", 32, lenet_card, distortion=0))
    with pytest.raises(ValueError, match="distortion must be >= 0"):
        train_transform("lenet", 32, lenet_card, distortion=-1)


@pytest.mark.parametrize("recipe", RECIPES)
def test_train_transform_shapes_and_steps(recipe):
    transform = train_transform(recipe, 32, IMAGENET_RGB)
    for image in (_noise((45, 37)), Image.new("L", (8, 8), 9)):
        x = transform(image)
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    shown = repr(transform)  # every step is visible: no hidden transform
    # zfnet's mirrors are among its ten sub-crops
    flips = "RandomHorizontalFlip" in shown or "FixedSubCrops(size=32, flip=True)" in shown
    assert "ToModelInput" in shown and flips == (recipe != "none")
    assert ("PCALighting" in shown) == (recipe in ("alexnet", "vgg"))
    assert ("PhotometricDistort" in shown) == (recipe == "googlenet")


def test_train_transform_options():
    assert "scale=(256, 512)" in repr(train_transform("vgg", 224, IMAGENET_RGB))
    assert "scale=(384, 384)" in repr(train_transform("vgg", 224, IMAGENET_RGB, scale_jitter=384))
    shown = repr(train_transform("googlenet", 224, IMAGENET_RGB, interpolations=["bilinear"]))
    assert "interpolations=('bilinear',)" in shown
    bare = repr(train_transform("alexnet", 32, IMAGENET_RGB, flip=False, pca_lighting=False))
    assert "Flip" not in bare and "PCALighting" not in bare and "CenterSquare(size=37" in bare
    with pytest.raises(ValueError, match="unknown recipe 'inception'"):
        train_transform("inception", 224, IMAGENET_RGB)


def test_train_transform_normalises_and_is_reproducible():
    grey = Image.new("RGB", (20, 20), (51, 102, 204))
    x = train_transform("none", 8, IMAGENET_RGB)(grey)
    mean, std = torch.tensor(IMAGENET_RGB.mean), torch.tensor(IMAGENET_RGB.std)
    expected = (torch.tensor([51, 102, 204]) / 255 - mean) / std
    assert torch.allclose(x[:, 3, 3], expected, atol=1e-5)
    transform = train_transform("googlenet", 32, CAFFE_BGR, pca_lighting=True)
    image = _noise((50, 40))
    torch.manual_seed(5)
    a = transform(image)
    torch.manual_seed(5)
    assert torch.equal(transform(image), a)
    assert not torch.equal(transform(image), a)


@pytest.mark.parametrize("preprocessing", [IMAGENET_RGB, CAFFE_BGR])
def test_lighting_path_normalises_like_preprocessing(preprocessing):
    image = _noise((6, 5))
    expected = preprocessing.to_tensor(image)
    pixels = to_unit_tensor(image).permute(1, 2, 0) * 255  # the lighting path's 0..1 values
    assert torch.allclose(preprocessing.normalize(pixels), expected, atol=1e-4)
    no_noise = ToModelInput(preprocessing, PCALighting(std=0.0))
    assert torch.allclose(no_noise(image), expected, atol=1e-4)


def test_eval_transform():
    assert eval_transform(224, IMAGENET_RGB) is IMAGENET_RGB
    small = eval_transform(32, IMAGENET_RGB)
    assert (small.resize, small.crop, small.mean) == (37, 32, IMAGENET_RGB.mean)
    assert small(_noise((40, 60))).shape == (3, 32, 32)


def test_dataset_with_transform_feeds_a_loader_in_the_main_process(tree):
    ds = image_folder(tree / "train", transform=train_transform("simple", 16, IMAGENET_RGB))
    batches = list(DataLoader(ds, batch_size=4, collate_fn=collate_skip))
    assert sum(len(labels) for _, labels, _ in batches) == len(ds) - len(BAD)
    assert all(images.shape[1:] == (3, 16, 16) for images, _, _ in batches if len(images))
