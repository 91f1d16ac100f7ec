"""Careless and hostile input: every probe here was once a silent wrong answer, a traceback or a
lost run; each must now be one line and a non-zero exit, before any work is done."""

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

import numpy as np
import pytest
import torch
from PIL import Image

from goingdeeper.cli import main
from goingdeeper.data import digits
from goingdeeper.data.cifar import cifar_batches
from goingdeeper.data.labels import read_labels
from goingdeeper.errors import DataError
from goingdeeper.registry import build_model, model_card
from goingdeeper.train.runfolder import LOCK
from goingdeeper.weights import WeightsCard, save_weights

SMALL_RUN = [
    "--preset",
    "mnist-lenet5",
    "--data",
    "digits",
    "--epochs",
    "1",
    "--set",
    "workers=0",
    "--set",
    "limit_train=64",
    "--set",
    "limit_test=32",
    "--set",
    "eval_views=[]",
    "--set",
    "tensorboard=false",
    "--set",
    "plots=false",
    "--set",
    "progress=false",
]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("goingdeeper: error: "), err
    return err[0]


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("lr=nan", "lr: expected a finite number, got nan"),
        ("lr=-1", "lr must lie in (0, 10]"),
        ("momentum=-5", "momentum must lie in [0, 1)"),
        ("weight_decay=-1", "weight_decay must lie in [0, 1]"),
        ("label_smoothing=3", "label_smoothing must lie in [0, 1)"),
        ("workers=-1", "workers must lie in [0, 512]"),
        ("limit_train=-5", "limit_train must lie in [0, inf]"),
        ("input_size=-5", "input_size must lie in [8, 4096]"),
        ("input_size=100000", "input_size must lie in [8, 4096]"),
        ("eval_views=[2]", "eval_views: expected list[str]"),
        ('eval_views=["7"]', "eval_views takes 1, 10 and 144"),
    ],
)
def test_out_of_range_training_settings_stop_before_any_work(tmp_path, capsys, setting, named):
    out = tmp_path / "run"
    assert main(["train", *SMALL_RUN, "--out", str(out), "--set", setting]) == 2
    assert named in _one_line_error(capsys)
    assert not out.exists()


def test_a_config_file_value_of_the_wrong_type_names_its_field(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"lr": "fast"}))
    assert main(["train", *SMALL_RUN, "--out", str(tmp_path / "run"), "--config", str(config)]) == 2
    assert "lr: expected a finite number, got 'fast'" in _one_line_error(capsys)


def test_a_finished_run_is_not_overwritten_without_being_asked(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL_RUN, "--out", str(out)]) == 0
    weights = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", *SMALL_RUN, "--out", str(out), "--set", "seed=1"]) == 2
    line = _one_line_error(capsys)
    assert "holds a run" in line and "--resume" in line and "--overwrite" in line
    assert (out / "model.safetensors").read_bytes() == weights
    (out / "model_polyak.safetensors").write_bytes(b"left by an older run")
    more = ["--set", "seed=1", "--set", "polyak=false", "--overwrite"]
    assert main(["train", *SMALL_RUN, "--out", str(out), *more]) == 0
    assert (out / "model.safetensors").read_bytes() != weights
    assert not (out / "model_polyak.safetensors").exists()  # nothing of the old run is left
    assert not (out / LOCK).exists()


def test_a_folder_in_use_is_refused_and_a_stale_lock_reported(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    host = os.uname().nodename
    (out / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": host, "started": 0}))
    assert main(["train", *SMALL_RUN, "--out", str(out)]) == 2
    assert f"is in use by process {os.getpid()} on {host}" in _one_line_error(capsys)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    (out / LOCK).write_text(json.dumps({"pid": pid, "host": host, "started": 0}))
    assert main(["train", *SMALL_RUN, "--out", str(out)]) == 2
    line = _one_line_error(capsys)
    assert f"stale lock: process {pid}" in line and "is not running" in line
    assert (out / LOCK).exists()  # reported, not taken


def _digit_folder(root, unreadable: bool) -> None:
    source = digits("train")
    for split in ("train", "test"):
        for i in range(20):
            folder = root / split / source.classes[source.targets[i]]
            folder.mkdir(parents=True, exist_ok=True)
            if unreadable and split == "train":
                (folder / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n but nothing after")
            else:
                source.load(i).save(folder / f"{i}.png")


def test_training_on_unreadable_images_fails_instead_of_saving_untrained_weights(tmp_path, capsys):
    _digit_folder(tmp_path / "data", unreadable=True)
    out = tmp_path / "run"
    run = [*SMALL_RUN, "--set", "limit_train=0", "--set", "limit_test=0"]
    assert main(["train", *run, "--data", str(tmp_path / "data"), "--out", str(out)]) == 2
    assert "epoch 1 trained on no image: 20 were unreadable" in _one_line_error(capsys)
    assert not (out / "model.safetensors").exists() and not (out / LOCK).exists()


def test_evaluating_nothing_or_nan_is_not_a_result(tmp_path, capsys):
    _digit_folder(tmp_path / "data", unreadable=False)
    model = build_model("lenet5")
    card = WeightsCard(
        model="lenet5",
        num_classes=10,
        class_names=[str(d) for d in range(10)],
        preprocessing=model_card("lenet5").preprocessing,
    )
    good = save_weights(model, card, tmp_path / "good")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    broken = save_weights(model, card, tmp_path / "nan")
    test = str(tmp_path / "data" / "test")
    assert main(["eval", "--weights", str(good), "--data", test]) == 0
    for views in ("10", "144"):  # a one-plane network takes the paper's views too
        assert main(["eval", "--weights", str(good), "--data", test, "--views", views]) == 0
    capsys.readouterr()
    assert main(["eval", "--weights", str(broken), "--data", test]) == 2
    assert "gives scores that are not finite" in _one_line_error(capsys)
    for f in (tmp_path / "data" / "test").rglob("*.png"):
        f.write_bytes(b"not an image")
    assert main(["eval", "--weights", str(good), "--data", test]) == 2
    assert "none of the 20 images could be read" in capsys.readouterr().err


def test_a_tiny_file_of_a_long_thin_image_is_refused_without_the_memory(tmp_path):
    """A 138-byte 20000 x 1 PNG once took 6 GB: resized to a shorter side of 256 it is
    5,120,000 x 256 pixels. It is refused from its header, in a process that stays small."""
    from PIL import Image

    thin = tmp_path / "thin.png"
    Image.new("RGB", (20000, 1)).save(thin)
    assert thin.stat().st_size < 200
    model = build_model("lenet5")
    card = WeightsCard(
        model="lenet5", num_classes=10, preprocessing=model_card("lenet5").preprocessing
    )
    weights = save_weights(model, card, tmp_path / "w")
    child = (
        "import resource, sys; from goingdeeper.cli import main; code = main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)"
    )
    command = [sys.executable, "-c", child, "predict", str(thin), "--weights", str(weights)]
    r = subprocess.run(command, capture_output=True, text=True, timeout=300)
    peak_mb = int(r.stdout.split()[-1]) / 1024
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"goingdeeper: error: {thin}: a 20000 x 1 image; sides more unequal than 64:1 are not "
        "taken (resized for a network it would take gigabytes)"
    )
    # the interpreter and its libraries take 0.9-1.7 GB; the resize alone would take 3.9 GB
    assert peak_mb < 3000


def test_resume_refuses_changed_settings_and_follows_the_schedule_for_more_epochs(tmp_path, capsys):
    import csv
    import math

    out = tmp_path / "run"
    run = [*SMALL_RUN, "--out", str(out), "--set", "log_every=1", "--set", "batch_size=8"]
    assert main(["train", *run]) == 0
    checkpoint = (out / "checkpoint.pt").read_bytes()
    for change in (["--lr", "0.5"], ["--set", "optimizer=sgd"], ["--set", "polyak=false"]):
        capsys.readouterr()
        assert main(["train", *run, "--epochs", "2", "--resume", *change]) == 2
        assert "--resume continues the run as it was set up" in _one_line_error(capsys)
        assert (out / "checkpoint.pt").read_bytes() == checkpoint  # the folder as it was
        assert not (out / LOCK).exists()
    assert main(["train", *run, "--resume"]) == 2
    assert "trained 1 epochs already and epochs=1" in _one_line_error(capsys)
    # two epochs in all: the cosine schedule for 2 epochs, from the step the run is at
    assert main(["train", *run, "--epochs", "2", "--resume"]) == 0
    with open(out / "steps.csv") as f:
        rows = [(float(r["epoch"]), float(r["lr"])) for r in csv.DictReader(f)]
    first = [lr for e, lr in rows if e <= 1.0]
    second = [(e, lr) for e, lr in rows if e > 1.0]
    assert len(first) >= 2 and len(second) == len(first)
    for e, lr in second:  # the preset's lr 0.002, cosine over the 2 epochs it now has
        assert lr == pytest.approx(0.002 * 0.5 * (1 + math.cos(math.pi * e / 2)), rel=1e-3)
    assert second[0][1] > 0.3 * 0.002  # not the 0 the finished 1-epoch schedule ended at


def test_a_zero_byte_checkpoint_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"")
    assert main(["train", *SMALL_RUN, "--out", str(out), "--resume"]) == 2
    assert "not a readable checkpoint" in _one_line_error(capsys)


def _card_file(tmp_path, name: str, text: str):
    from safetensors.torch import save_file

    from goingdeeper.weights.format import CARD_KEY

    path = tmp_path / f"{name}.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={CARD_KEY: text})
    return path


def _card(**changes) -> str:
    card = WeightsCard(
        model="lenet5",
        num_classes=10,
        model_kwargs={},
        preprocessing=model_card("lenet5").preprocessing,
    ).to_dict()
    for key, value in changes.items():
        if key in card["preprocessing"]:
            card["preprocessing"][key] = value
        elif value is None:
            del card[key]
        else:
            card[key] = value
    return json.dumps(card)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "its card is not valid JSON"),
        (_card(preprocessing=None), "the weights card has no 'preprocessing'"),
        (_card(crop=-5), "crop must be a whole number of pixels from 1 to 4096, got -5"),
        (_card(crop=100000), "crop must be a whole number of pixels from 1 to 4096, got 100000"),
        (_card(std=[0.0, 0.0, 0.0]), "a zero std divides by zero"),
        (_card(class_names=["a", "b", "c", "d", "e"]), "5 class_names for 10 outputs"),
        (_card(num_classes=5_000_000), "num_classes must be from 1 to 100,000, got 5000000"),
        (_card(model_kwargs={"num_classes": 5_000_000}), "model_kwargs num_classes=5000000"),
    ],
)
def test_broken_weight_cards_are_one_line_before_anything_is_built(tmp_path, capsys, text, message):
    path = _card_file(tmp_path, "w", text)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(image)
    assert main(["predict", str(image), "--weights", str(path)]) == 2
    line = _one_line_error(capsys)
    assert str(path) in line and message in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with a GPU has cuda")
def test_a_gpu_this_machine_lacks_and_a_device_that_is_none_are_one_line(tmp_path, capsys):
    for device, message in (("cuda", "this machine has no CUDA GPU"), ("gpu", "expected auto")):
        out = tmp_path / device
        assert main(["train", *SMALL_RUN, "--out", str(out), "--device", device]) == 2
        assert message in _one_line_error(capsys)
        assert not out.exists()


def test_bench_threads_zero_is_refused_before_any_timing(capsys):
    assert main(["bench", "--threads", "0"]) == 2
    assert "--threads must be at least 1, got 0" in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("dropout=2", "googlenet: dropout must lie in [0, 1), got 2"),
        ("num_classes=-3", "googlenet: num_classes must lie in [1, 100000], got -3"),
        ("num_classes=5000000", "googlenet: num_classes must lie in [1, 100000], got 5000000"),
        ("aux_logits=yes", "googlenet: aux_logits expects true or false, got 'yes'"),
        ("input_size=10.5", "googlenet: input_size expects a whole number, got 10.5"),
    ],
)
def test_model_arguments_are_checked_before_anything_is_built(capsys, argument, message):
    assert main(["summary", "googlenet", "--arg", argument]) == 2
    assert _one_line_error(capsys) == f"goingdeeper: error: {message}"


def test_a_training_with_a_bad_model_argument_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    bad = ["--set", 'model_args={"in_channels": 0}']
    assert main(["train", *SMALL_RUN, *bad, "--out", str(out)]) == 2
    assert "lenet5: in_channels must lie in [1, 64], got 0" in _one_line_error(capsys)
    assert not out.exists()


def _lenet_weights(tmp_path):
    model = build_model("lenet5")
    card = WeightsCard(
        model="lenet5", num_classes=10, preprocessing=model_card("lenet5").preprocessing
    )
    return save_weights(model, card, tmp_path / "w")


def _memory_growth(argv: list[str]) -> tuple[int, str, float]:
    """Run the command in a fresh process: (exit code, stderr, MB its peak memory grew by once
    the package was imported)."""
    child = (
        "import resource, sys; from goingdeeper.cli import main; "
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; code = main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base); sys.exit(code)"
    )
    r = subprocess.run([sys.executable, "-c", child, *argv], capture_output=True, text=True)
    return r.returncode, r.stderr.strip(), int(r.stdout.split()[-1]) / 1024


def test_a_large_16_bit_image_is_converted_within_its_own_size(tmp_path):
    """An 8000 x 8000 16-bit PNG (a few hundred KB) holds 128 MB of pixels; converting it to
    8 bits through float copies once took 2 GB. Band by band it takes about its 8-bit copies;
    with --max-image-pixels below its size it is refused from its header."""
    import numpy as np
    from PIL import Image

    pixels = np.zeros((8000, 8000), np.uint16)
    pixels[::7, ::5] = 60000
    image = tmp_path / "deep.png"
    Image.fromarray(pixels).save(image)
    del pixels
    weights = _lenet_weights(tmp_path)
    code, err, grown = _memory_growth(["predict", str(image), "--weights", str(weights)])
    assert code == 0, err
    assert grown < 900, f"grew by {grown:.0f} MB"
    limited = ["predict", str(image), "--weights", str(weights), "--max-image-pixels", "1000000"]
    code, err, grown = _memory_growth(limited)
    assert code == 1 and err.splitlines()[-1] == (
        f"goingdeeper: error: {image}: too large to decode: over 1,000,000 pixels "
        "(--max-image-pixels N sets another limit)"
    )
    assert grown < 100


def test_a_decompression_bomb_is_stopped_as_it_grows(tmp_path):
    """128 MB of zeros in a 130 KB .tar.gz: stopped once it outgrows 20 times its file, not
    held in memory (twice) up to the 4 GiB limit first."""
    import gzip
    import tarfile

    bomb = tmp_path / "bomb.tar.gz"
    with gzip.open(bomb, "wb") as f:
        member = tarfile.TarInfo("train/cat/zeros.png")
        member.size = 128 << 20
        f.write(member.tobuf())
        for _ in range(8):
            f.write(bytes(16 << 20))
        f.write(bytes(1024))
    code, err, grown = _memory_growth(["data", "info", str(bomb)])
    assert code == 2 and err == (
        f"goingdeeper: error: {bomb}: decompresses to more than 20 times its "
        f"{bomb.stat().st_size:,} bytes (a decompression bomb?); if it is real data, decompress "
        "it once to a plain .tar (for example `gunzip -k`), which is read in place"
    )
    assert grown < 120, f"grew by {grown:.0f} MB"


def test_an_idx_file_is_read_no_further_than_its_header_says(tmp_path):
    """64 MB of zeros after two 28 x 28 images in a 70 KB .gz: refused, having read a byte past
    what the header declares (Python's allocations are what `tracemalloc` counts)."""
    import gzip
    import struct
    import tracemalloc

    from goingdeeper.data.mnist import read_idx
    from goingdeeper.errors import DataError

    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 28, 28) + bytes(2 * 28 * 28))
        f.write(bytes(64 << 20))  # what no header declares
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as refused:
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(refused.value) == (
        f"{path}: its header (2, 28, 28) needs 1,568 bytes of data, found more bytes"
    )
    assert peak < 4 << 20, peak


def _unwritable_outs(tmp_path) -> list[list[str]]:
    weights = str(_lenet_weights(tmp_path))
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    return [
        ["export", "onnx", "--weights", weights, "--out", f"{a_file}/x.onnx"],
        ["export", "torchscript", "--weights", weights, "--out", "/sys/x.pt"],
        ["weights", "import", "bvlc", str(tmp_path / "missing"), "--out", "/sys/w"],
        ["weights", "export-hub", weights, "--out", f"{a_file}/hub"],
        ["visualize", "filters", "--weights", weights, "--out", f"{a_file}/pictures"],
        ["bench", "--only", "zzz", "--out", f"{a_file}/bench.json"],
        ["bench", "--only", "zzz", "--out", str(tmp_path)],
        ["data", "shard", "digits", "--out", str(a_file)],
        ["train", *SMALL_RUN, "--out", f"{a_file}/run"],
    ]


def test_an_unwritable_out_is_one_line_before_any_work(tmp_path, capsys):
    """A file where a folder must be, a folder where a file must be, a place the user may not
    write (sysfs refuses even root): each is one line naming --out, before anything is read."""
    for argv in _unwritable_outs(tmp_path):
        assert main(argv) == 2, argv
        line = _one_line_error(capsys)
        assert line.startswith(f"goingdeeper: error: --out {argv[-1]}"), line
        assert any(
            what in line
            for what in ("is a file, not a folder", "is a folder", "not a folder", "Permission")
        ), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "w.json", "w.safetensors"]


def test_export_refuses_an_input_size_the_model_cannot_take(tmp_path, capsys):
    for size in ("10", "100000"):
        out = tmp_path / f"g{size}.onnx"
        argv = ["export", "onnx", "--model", "googlenet", "--input-size", size, "--out", str(out)]
        assert main(argv) == 2
        assert _one_line_error(capsys) == (
            f"goingdeeper: error: --input-size {size}: this GoogLeNet takes 31 to 4096 pixels"
        )
        assert not out.exists()


def test_a_loss_that_overflows_in_the_first_epoch_says_there_is_no_checkpoint(tmp_path, capsys):
    model = build_model("lenet5_modern")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1e20)  # finite weights whose products overflow
    card = WeightsCard(
        model="lenet5_modern",
        num_classes=10,
        preprocessing=model_card("lenet5_modern").preprocessing,
    )
    weights = save_weights(model, card, tmp_path / "huge")
    out = tmp_path / "run"
    start = ["--model", "lenet5_modern", "--set", f"init_weights={weights}"]
    assert main(["train", *SMALL_RUN, *start, "--out", str(out)]) == 2
    line = _one_line_error(capsys)
    assert "in epoch 1: training stopped; no epoch had finished" in line, line
    assert not (out / "checkpoint.pt").exists()


def test_weights_and_checkpoints_get_the_mode_of_every_other_run_file(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *SMALL_RUN, "--out", str(out)]) == 0
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir() if p.is_file()}
    assert modes["model.safetensors"] == modes["checkpoint.pt"] == modes["config.json"], modes
    assert len(set(modes.values())) == 1, modes


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
    from goingdeeper.data.labels import real_labels

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
    from goingdeeper.data.shards import MANIFEST, shard_dataset

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
    from goingdeeper.data.folder import image_folder

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
    weights = _lenet_weights(tmp_path)
    out = tmp_path / "out"
    onnx = ["export", "onnx", "--weights", str(weights), "--out", str(out / "m.onnx")]
    pictures = ["visualize", "filters", "--weights", str(weights), "--tile", "200"]
    commands = {
        "train": ["train", *SMALL_RUN, "--out", str(out / "run")],
        "export": onnx,
        "shard": ["data", "shard", "digits", "--out", str(out / "shards")],
        "visualize": [*pictures, "--out", str(out / "pictures")],
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
        (_proto_field(5, b"\0\0\0"), "length that does not fit"),  # 3 bytes of float32 data
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
