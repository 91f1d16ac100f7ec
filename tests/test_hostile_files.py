"""Careless and hostile users, round two: files and folders. Nothing is deleted before every
check has passed and the lock is taken; every parser is bounded; labels are checked where two
sources state them; a full disk is one line; what is printed is safe. Each test failed before
its fix."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from goingdeeper.cli import main
from goingdeeper.data.imagenet.labels import read_labels
from goingdeeper.data.sources.cifar import cifar_batches
from goingdeeper.errors import DataError
from goingdeeper.registry import build_model, model_card
from goingdeeper.train.runfolder import LOCK
from goingdeeper.weights import WeightsCard, save_weights

sys.path.insert(0, str(Path(__file__).parent))
from test_hostile import SMALL_RUN, _lenet_weights, _one_line_error  # noqa: E402

# --- round two: nothing deleted before every check has passed and the lock is taken -----------


def test_overwrite_into_a_folder_in_use_deletes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL_RUN, "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    host = os.uname().nodename
    (out / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": host, "started": 0}))
    capsys.readouterr()
    assert main(["train", *SMALL_RUN, "--out", str(out), "--overwrite"]) == 2
    assert "is in use by process" in _one_line_error(capsys)
    for name, data in before.items():
        assert (out / name).read_bytes() == data, name


@pytest.mark.parametrize("own", ["config.json", "model.json", "curves.png", "cat.jpg"])
def test_a_folder_of_the_users_own_files_is_not_a_run_folder(tmp_path, capsys, own):
    out = tmp_path / "mine"
    out.mkdir()
    (out / own).write_bytes(b"the user's own")
    assert main(["train", *SMALL_RUN, "--out", str(out)]) == 2
    line = _one_line_error(capsys)
    assert own in line and "--out" in line
    assert [p.name for p in out.iterdir()] == [own]
    assert (out / own).read_bytes() == b"the user's own"


def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *SMALL_RUN, "--out", ""]) == 2
    assert "--out is empty" in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_temporary_files_of_a_killed_run_are_cleaned_on_the_next_start(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *SMALL_RUN, "--out", str(out)]) == 0
    stale = [out / ".checkpoint.pt.k1ll3d.tmp", out / ".model.safetensors.x.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    assert main(["train", *SMALL_RUN, "--out", str(out), "--resume", "--epochs", "2"]) == 0
    assert not any(path.exists() for path in stale)


# --- round two: every parser bounded, every loop makes progress ---------------------------------


@contextmanager
def _within(seconds: float):
    """Fail (instead of hanging the suite) when the body runs longer than `seconds`."""

    def stop(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _tar_header(name: bytes, size: int, kind: bytes) -> bytes:
    block = bytearray(512)
    block[: len(name)] = name
    block[100:108] = b"0000644\0"
    block[124:136] = f"{size:011o}\0".encode()
    block[156:157] = kind
    block[257:263] = b"ustar\0"
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}\0 ".encode()
    return bytes(block)


def test_a_pax_record_of_length_zero_does_not_loop(tmp_path, capsys):
    record = b"0 path=x\n"
    body = record + b"\0" * (512 - len(record))
    photo = _tar_header(b"train/cat/a.jpg", 3, b"0") + b"abc".ljust(512, b"\0")
    archive = tmp_path / "zero.tar.gz"
    tar = _tar_header(b"pax", len(record), b"x") + body + photo + b"\0" * 1024
    archive.write_bytes(gzip.compress(tar))
    with _within(20):
        code = main(["data", "info", str(archive)])
    assert code == 2
    assert str(archive) in _one_line_error(capsys)


def test_an_endless_varint_is_cut_at_ten_bytes(tmp_path, capsys):
    model = tmp_path / "ff.caffemodel"
    model.write_bytes(b"\xff" * (1 << 20))
    with _within(10):
        code = main(["weights", "import", "bvlc", str(model), "--out", str(tmp_path / "w")])
    assert code == 2
    assert "varint" in _one_line_error(capsys)


def test_a_devkit_archive_of_empty_headers_is_refused_by_its_member_count(tmp_path, capsys):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(30_000):
            tar.addfile(tarfile.TarInfo(f"d/{i}"))
    archive = tmp_path / "ILSVRC2012_devkit_t12.tar.gz"
    archive.write_bytes(gzip.compress(raw.getvalue(), compresslevel=1))
    with _within(20), pytest.raises(DataError, match="members"):
        read_labels(archive)


def test_a_cifar_pickle_cannot_declare_an_array_larger_than_its_bytes(tmp_path, capsys):
    import pickle

    class Huge:  # pickles as numpy's _reconstruct(ndarray, (2M, 3072), "B")
        def __reduce__(self):
            from numpy._core.multiarray import _reconstruct

            return _reconstruct, (np.ndarray, (2_000_000, 3072), b"B")

    folder = tmp_path / "cifar"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Huge(), b"labels": [0]}, 2))
    assert len((folder / "test_batch").read_bytes()) < 200
    start = time.perf_counter()
    with pytest.raises(DataError, match="test_batch"):
        cifar_batches(folder, "test")
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--channels", "0-99999999"], "--channels"),
        (["--fv-size", "100000"], "--fv-size"),
        (["--fv-lr", "nan"], "--fv-lr"),
        (["--fv-lr", "-1"], "--fv-lr"),
    ],
)
def test_microscope_sizes_are_bounded_before_anything_is_built(tmp_path, capsys, argv, message):
    weights = _lenet_weights(tmp_path)
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (40, 40), "red").save(tmp_path / "photos" / "red.png")
    out = tmp_path / "site"
    with _within(20):
        code = main(
            [
                "microscope",
                "--weights",
                str(weights),
                "--data",
                str(tmp_path / "photos"),
                "--out",
                str(out),
                *argv,
            ]
        )
    assert code == 2
    assert message in _one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("ILSVRC2012_validation_ground_truth.txt", "1\n²\n", "not a label file"),
        ("val.txt", "ILSVRC2012_val_00000001.JPEG ²\n", "not a label file"),
        ("LOC_val_solution.csv", "ImageId,PredictionString\na," + "x" * 140_000, "CSV"),
        ("real.json", "[" * 100_000, "JSON"),
    ],
)
def test_label_files_of_odd_digits_long_fields_and_deep_nesting_are_one_line(
    tmp_path, name, text, message
):
    from goingdeeper.data.imagenet.labels import real_labels

    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        (real_labels if name == "real.json" else read_labels)(path)


def test_a_devkit_archive_of_junk_is_one_line(tmp_path):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in (
            ("meta.mat", b"MATLAB junk" * 50),
            ("ILSVRC2012_validation_ground_truth.txt", b"1\nabc\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "ILSVRC2012_devkit_t12.tar.gz"
    archive.write_bytes(gzip.compress(raw.getvalue()))
    with pytest.raises(DataError, match="'abc' where a number belongs"):
        read_labels(archive)
    truth_ok = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    truth_ok.write_text("1\n2\n")
    (tmp_path / "meta.mat").write_bytes(b"MATLAB junk" * 50)
    with pytest.raises(DataError, match="not the ILSVRC2012 devkit's meta.mat"):
        read_labels(truth_ok)


# --- round two: no silent wrong answer; what is printed is one line, and safe ------------------


def test_predict_refuses_weights_whose_scores_are_not_finite(tmp_path, capsys):
    model = build_model("lenet5")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    card = WeightsCard(
        model="lenet5", num_classes=10, preprocessing=model_card("lenet5").preprocessing
    )
    weights = save_weights(model, card, tmp_path / "nan")
    Image.new("L", (32, 32), 128).save(tmp_path / "grey.png")
    assert main(["predict", str(tmp_path / "grey.png"), "--weights", str(weights)]) == 2
    out, err = capsys.readouterr()
    assert "nan" not in out.lower()
    assert "not finite" in err and str(weights) in err and len(err.strip().splitlines()) == 1


def test_class_names_with_escapes_and_newlines_are_printed_escaped(tmp_path, capsys):
    names = [f"digit{i}" for i in range(10)]
    names[0] = "zero\x1b[2J\nFAKE 100.00% line"
    model = build_model("lenet5")
    card = WeightsCard(
        model="lenet5",
        num_classes=10,
        preprocessing=model_card("lenet5").preprocessing,
        class_names=names,
    )
    weights = save_weights(model, card, tmp_path / "w")
    Image.new("L", (32, 32), 128).save(tmp_path / "grey.png")
    top = ["--top", "10"]
    assert main(["predict", str(tmp_path / "grey.png"), "--weights", str(weights), *top]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\nFAKE" not in out and "\\x1b[2J\\nFAKE" in out


def test_a_huge_error_message_is_cut_to_one_readable_line(tmp_path, capsys):
    freeze = ",".join(f"layer{i}" for i in range(200_000))
    out = tmp_path / "run"
    assert main(["train", *SMALL_RUN, "--out", str(out), "--set", f"freeze=[{freeze}]"]) == 2
    line = _one_line_error(capsys)
    assert len(line) < 1200 and "more characters" in line


def test_shard_labels_are_checked_against_each_samples_cls(tmp_path):
    from goingdeeper.data.sources.shards import MANIFEST, shard_dataset

    out = tmp_path / "shards"
    assert main(["data", "shard", "digits", "--out", str(out)]) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    labels = manifest["splits"]["test"]["shards"][0]["labels"]
    shifted = labels[1:] + labels[:1]  # shifted by one: each sample gets its neighbour's
    assert shifted != labels
    labels[:] = shifted
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"\.cls"):
        shard_dataset(out, "test")


def test_a_link_back_up_the_tree_is_not_followed(tmp_path):
    from goingdeeper.data.sources.folder import image_folder

    root = tmp_path / "pets"
    for cls, count in (("cat", 2), ("dog", 3)):
        (root / cls).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (8, 8)).save(root / cls / f"{i}.png")
    (root / "cat" / "up").symlink_to("..")  # cat/up/dog/ would be dogs labelled cat
    (root / "dog" / "self").symlink_to(".")
    outside = tmp_path / "more_dogs"
    outside.mkdir()
    Image.new("RGB", (8, 8)).save(outside / "x.png")
    (root / "dog" / "more").symlink_to(outside)  # a link out of the tree is followed
    (root / "cat" / "sub").mkdir()  # and a plain subfolder, of course
    Image.new("RGB", (8, 8)).save(root / "cat" / "sub" / "y.png")
    with _within(20):
        ds = image_folder(root)
    assert sorted(Counter(label for _, label in ds.samples).items()) == [(0, 3), (1, 4)]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("list.yaml", b"- lr\n- 0.1\n", "holds a list"),
        ("scalar.yaml", b"fast\n", "holds a str"),
        ("null.json", b"null", "holds a NoneType"),
        ("latin.toml", b'model = "caf\\xe9"\n'.replace(b"\\xe9", bytes([0xE9])), "cannot parse"),
        ("deep.json", b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
        ("deep.toml", b"a = " + b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
        ("folder.toml", None, "is a folder"),
    ],
)
def test_config_files_that_are_no_table_are_one_line(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    out = tmp_path / "run"
    assert main(["train", *SMALL_RUN, "--out", str(out), "--config", str(path)]) == 2
    line = _one_line_error(capsys)
    assert message in line and str(path) in line
    assert not out.exists()


# --- round two: a full disk is one line, and leaves nothing half-written ------------------------

_FULL_DISK = """
import contextlib, io, json, resource, signal, sys, traceback
from goingdeeper.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
results = {}
for what, argv in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except BaseException:
            code, err = "traceback", io.StringIO(traceback.format_exc())
    results[what] = [code, err.getvalue()]
print(json.dumps(results))
"""


def test_every_command_that_writes_says_so_on_a_full_disk_and_leaves_no_part(tmp_path):
    import torchvision

    weights = _lenet_weights(tmp_path)
    source = tmp_path / "googlenet.pth"  # torchvision's layout, untrained
    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    torch.save(net.state_dict(), source)
    out = tmp_path / "out"
    onnx = ["export", "onnx", "--weights", str(weights), "--out", str(out / "m.onnx")]
    pictures = ["visualize", "filters", "--weights", str(weights), "--tile", "200"]
    imported = ["weights", "import", "torchvision", str(source)]
    commands = {
        "train": ["train", *SMALL_RUN, "--out", str(out / "run")],
        "export": onnx,
        "shard": ["data", "shard", "digits", "--out", str(out / "shards")],
        "visualize": [*pictures, "--out", str(out / "pictures")],
        "weights import": [*imported, "--out", str(out / "imported" / "g.safetensors")],
    }
    r = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, json.dumps(commands)], capture_output=True, text=True
    )
    results = json.loads(r.stdout.strip().splitlines()[-1])
    for what, (code, err) in results.items():
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, (what, err[-2000:])
        assert "File too large" in lines[0], (what, lines)
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []
    assert left == []


@pytest.mark.parametrize("device", ["meta", "mps"])
def test_a_device_that_holds_no_numbers_or_is_not_supported_is_one_line(tmp_path, capsys, device):
    out = tmp_path / "run"
    assert main(["train", *SMALL_RUN, "--out", str(out), "--device", device]) == 2
    assert f"device {device!r}" in _one_line_error(capsys)
    assert not out.exists()


def test_a_tile_of_zero_pixels_is_refused_instead_of_a_blank_picture(tmp_path, capsys):
    weights = _lenet_weights(tmp_path)
    out = tmp_path / "pictures"
    argv = ["visualize", "filters", "--weights", str(weights), "--out", str(out), "--tile", "0"]
    assert main(argv) == 2
    assert "--tile must be at least 1" in _one_line_error(capsys)
    assert not out.exists()


def _proto_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _proto_field(number: int, payload: bytes) -> bytes:  # length-delimited (wire type 2)
    return _proto_varint(number << 3 | 2) + _proto_varint(len(payload)) + payload


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (_proto_field(5, b"\0\0\0"), "not whole 4-byte values"),  # 3 bytes of float32 data
        (_proto_field(7, _proto_field(1, _proto_varint(1 << 32) * 2)), "holds 0 values"),
    ],
)
def test_caffemodel_fields_of_wrong_length_or_wrapping_dims_are_one_line(
    tmp_path, capsys, blob, message
):
    layer = _proto_field(1, b"conv1/7x7_s2") + _proto_field(7, blob)
    model = tmp_path / "odd.caffemodel"
    model.write_bytes(_proto_field(100, layer))
    assert main(["weights", "import", "bvlc", str(model), "--out", str(tmp_path / "w")]) == 2
    assert message in _one_line_error(capsys)


def test_weights_whose_card_and_tensors_disagree_or_are_integers_are_one_line(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    weights = _lenet_weights(tmp_path)  # a 10-class LeNet-5
    card = json.loads(weights.with_suffix(".json").read_text())
    card["num_classes"], card["model_kwargs"], card["class_names"] = 5, {}, []
    weights.with_suffix(".json").write_text(json.dumps(card))
    save_file(
        load_file(str(weights)), str(weights), metadata={"goingdeeper.card": json.dumps(card)}
    )
    Image.new("L", (32, 32), 128).save(tmp_path / "grey.png")
    assert main(["predict", str(tmp_path / "grey.png"), "--weights", str(weights)]) == 2
    assert "the card says 5 classes but its tensors give 10" in _one_line_error(capsys)
    state = {k: v.to(torch.int8) for k, v in build_model("lenet5").state_dict().items()}
    ints = _lenet_weights(tmp_path / "ints")
    save_file(
        state, str(ints), metadata={"goingdeeper.card": ints.with_suffix(".json").read_text()}
    )
    assert main(["predict", str(tmp_path / "grey.png"), "--weights", str(ints)]) == 2
    assert "torch.int8" in _one_line_error(capsys)


def test_a_fine_tune_says_whether_it_built_a_new_head(tmp_path, caplog):
    weights = _lenet_weights(tmp_path)
    start = ["--set", f"init_weights={weights}"]
    caplog.set_level("INFO", logger="goingdeeper.train.build")
    assert main(["train", *SMALL_RUN, "--out", str(tmp_path / "kept"), *start]) == 0
    assert "its own 10-way classifier kept (new_head=false)" in caplog.text
    caplog.clear()
    new = [*start, "--set", "new_head=true"]
    assert main(["train", *SMALL_RUN, "--out", str(tmp_path / "new"), *new]) == 0
    assert "a new 10-way classifier (its 10-way one dropped)" in caplog.text


def test_a_short_run_warns_that_its_polyak_average_is_still_the_start(tmp_path, caplog):
    caplog.set_level("WARNING", logger="goingdeeper.train.fit")
    views = ["--set", 'eval_views=["1"]', "--set", "eval_limit=16"]
    assert main(["train", *SMALL_RUN, "--out", str(tmp_path / "run"), *views]) == 0
    assert "fewer than its horizon of 1000" in caplog.text


def test_train_takes_weights_as_eval_and_predict_do(tmp_path, caplog):
    weights = _lenet_weights(tmp_path)
    caplog.set_level("INFO", logger="goingdeeper.train.build")
    assert (
        main(["train", *SMALL_RUN, "--out", str(tmp_path / "run"), "--weights", str(weights)]) == 0
    )
    assert f"init_weights {weights}" in caplog.text


def test_a_fifo_and_a_link_loop_are_named_as_what_they_are(tmp_path):
    from goingdeeper.errors import ImageError
    from goingdeeper.images import load_image

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with _within(10), pytest.raises(ImageError, match="not a regular file"):
        load_image(fifo)
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(ImageError, match="many levels of symbolic links"):
        load_image(loop)


def test_a_shard_changed_in_place_is_refused_by_its_sha256(tmp_path):
    from goingdeeper.data.sources.shards import MANIFEST, read_manifest, shard_dataset
    from goingdeeper.data.sources.stream import ShardStream

    out = tmp_path / "shards"
    assert main(["data", "shard", "digits", "--out", str(out)]) == 0
    shard = read_manifest(out).shards("test")[0]
    path = out / shard.name
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the tar's closing zero blocks: same size, every member still reads
    path.write_bytes(bytes(data))
    assert (out / MANIFEST).is_file()
    with pytest.raises(DataError, match=rf"{shard.name}: SHA-256"):
        shard_dataset(out, "test")
    with pytest.raises(DataError, match=rf"{shard.name}: SHA-256"):
        ShardStream(out, "test")


def test_the_tensor_loader_turns_photos_by_their_exif_orientation_as_pillow_does():
    from goingdeeper.data.pipelines.tensor import decode_batch
    from goingdeeper.images import decode_image

    pixels = np.zeros((32, 48, 3), np.uint8)  # no turn or mirror maps this onto itself
    pixels[:, 24:] = 255
    pixels[:8, :12] = (255, 0, 0)
    photos = []
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
        photos.append(buffer.getvalue())
    names = [f"turned{o}.jpg" for o in range(1, 9)]
    tensors = decode_batch(photos, names, torch.device("cpu"))
    pillow = [
        np.asarray(decode_image(data, name)) for data, name in zip(photos, names, strict=True)
    ]
    # both decode with libjpeg: what they may differ by is what they differ by untouched
    upright = np.abs(tensors[0].permute(1, 2, 0).numpy().astype(int) - pillow[0]).max()
    assert upright <= 2
    for name, tensor, expected in zip(names, tensors, pillow, strict=True):
        got = tensor.permute(1, 2, 0).numpy()
        assert got.shape == expected.shape, name
        assert np.abs(got.astype(int) - expected).max() <= upright, name


def test_only_the_base_row_is_labelled_base_not_one_that_merely_equals_it():
    from goingdeeper.results import EvalResult, format_grid, grid_rows

    def result(views: str, top5: float) -> EvalResult:
        return EvalResult(
            images=100,
            correct_top1=70,
            correct_top5=round(100 * (1 - top5)),
            per_class_top1=[],
            model_names=["m"],
            num_classes=1000,
            views=views,
            crops=int(views),
            cost=int(views),
            aggregate="softmax",
            seconds=1.0,
        )

    rows = grid_rows([result("1", 0.1), result("10", 0.1), result("144", 0.09)])
    cells = [line.split("|")[-3].strip() for line in format_grid(rows, "markdown").splitlines()]
    assert cells[2:] == ["base", "+0.00%", "-1.00%"]


def _jpeg(pixels: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def test_a_jpeg_cut_short_under_a_huge_header_is_not_predicted_as_if_whole(tmp_path, capsys):
    from goingdeeper.images import load_image

    rng = np.random.default_rng(0)
    data = bytearray(_jpeg(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), quality=90))
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = (13000).to_bytes(2, "big") * 2  # height, width
    scan = data.index(b"\xff\xda")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(bytes(data[: scan + 1500]) + b"\xff\xd9")  # 1.5 kB of scan, then its end
    good = tmp_path / "good.png"
    Image.new("L", (32, 32), 128).save(good)
    weights = _lenet_weights(tmp_path)
    assert main(["predict", str(cut), str(good), "--weights", str(weights)]) == 1
    out, err = capsys.readouterr()
    assert "good.png" in out and "cut.jpg" not in out
    assert "cut.jpg" in err and "cut short" in err
    # the bound is one bit a block: flat photos, baseline or progressive, are well above it
    flat = np.full((2048, 2048, 3), 128, np.uint8)
    for options in ({"optimize": True}, {"progressive": True, "optimize": True}):
        (tmp_path / "flat.jpg").write_bytes(_jpeg(flat, quality=50, **options))
        assert load_image(tmp_path / "flat.jpg").size == (2048, 2048)


def test_an_out_inside_the_data_folder_is_refused_before_any_work(tmp_path, capsys):
    data = tmp_path / "pets"
    for cls in ("cat", "dog"):
        for split in ("train", "val"):
            (data / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(data / split / cls / f"{i}.png")
    before = sorted(str(p.relative_to(data)) for p in data.rglob("*"))
    run = ["--preset", "mnist-lenet5", "--data", str(data), "--epochs", "1", "--set", "workers=0"]
    for out in (data / "train" / "cat", data / "runs" / "new", data):
        assert main(["train", *run, "--out", str(out)]) == 2
        line = _one_line_error(capsys)
        assert "inside the data folder" in line and str(out) in line
    assert sorted(str(p.relative_to(data)) for p in data.rglob("*")) == before
