"""Careless and hostile input: every probe here was once a silent wrong answer, a traceback or a
lost run; each must now be one line and a non-zero exit, before any work is done."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from goingdeeper.cli import main
from goingdeeper.data import digits
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
