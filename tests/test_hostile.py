"""Careless and hostile input: every probe here was once a silent wrong answer, a traceback or a
lost run; each must now be one line and a non-zero exit, before any work is done."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from goingdeeper.cli import main
from goingdeeper.data import digits
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
        ('eval_views=["7"]', "eval_views takes 1, 10, 144, 150, dense, dense+150"),
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
                source.decode(i).save(folder / f"{i}.png")


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
    import struct
    import tracemalloc

    from goingdeeper.data.sources.mnist import read_idx

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
