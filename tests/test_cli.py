"""The command line, run as a user runs it: a real process, its output and exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from goingdeeper.errors import ImageError
from goingdeeper.images import load_image


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "goingdeeper", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_help_has_examples():
    out = run("--help")
    assert out.returncode == 0 and "examples:" in out.stdout and "summary googlenet" in out.stdout


def test_models_lists_counts():
    out = run("models", "googlenet*", "--format", "json")
    assert out.returncode == 0
    cards = {c["name"]: c for c in json.loads(out.stdout)}
    assert cards["googlenet"]["params"] == 6_998_552
    assert cards["googlenet_torchvision"]["params"] == 6_624_904


def test_summary_paper_mode():
    out = run("summary", "googlenet", "--paper")
    assert out.returncode == 0
    assert "inception4c" in out.stdout and "off" in out.stdout and "1,582,671,872" in out.stdout


def test_summary_bottleneck():
    out = run("summary", "googlenet", "--bottleneck")
    assert out.returncode == 0
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("inception4a  branch5x5"))
    assert "112.9M" in line and "5.3M" in line


@pytest.mark.parametrize(
    "args, message",
    [
        (("summary", "googlenett"), "did you mean googlenet"),
        (("summary", "googlenet", "--input-size", "20"), "smallest that works is 31x31"),
        (("summary", "googlenet", "--arg", "nope=1"), "unexpected keyword argument 'nope'"),
        (("summary", "googlenet", "--arg", "conv1=round"), "conv1 must be"),
        (("predict", "x.jpg", "--weights", "missing.safetensors"), "no such weights file"),
        (("weights", "import", "bvlc", "missing.caffemodel", "--out", "w"), "no such"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(args, message, tmp_path):
    out = run(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


@pytest.fixture(scope="module")
def bvlc_weights(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("weights") / "bvlc_googlenet"
    result = run(
        "weights", "import", "bvlc", str(shared_data / "bvlc-googlenet"), "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    return out.with_suffix(".safetensors")


def _odd_images(folder, photo):
    rgb = Image.open(photo).convert("RGB")
    paths = {}
    paths["gray"] = folder / "gray.png"
    rgb.convert("L").save(paths["gray"])
    paths["cmyk"] = folder / "cmyk.jpg"
    rgb.convert("CMYK").save(paths["cmyk"])
    paths["alpha"] = folder / "alpha.png"
    rgba = rgb.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(paths["alpha"])
    paths["sixteen"] = folder / "sixteen.png"
    arr16 = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(arr16).save(paths["sixteen"])
    paths["palette"] = folder / "palette.png"
    rgb.convert("P").save(paths["palette"])
    return paths


def test_image_modes_convert_to_rgb(shared_data, tmp_path):
    photo = shared_data / "imagenet-sample" / "n01443537_goldfish.JPEG"
    for name, path in _odd_images(tmp_path, photo).items():
        img = load_image(path)
        assert img.mode == "RGB" and img.size == Image.open(photo).size, name
    sixteen = np.asarray(load_image(tmp_path / "sixteen.png"))
    gray = np.asarray(load_image(tmp_path / "gray.png"))
    assert np.abs(sixteen.astype(int) - gray.astype(int)).max() <= 1  # 16-bit scaled, not clipped
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        load_image(tmp_path / "empty.jpg")
    data = photo.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(tmp_path / "truncated.jpg")


def test_predict_classifies_real_photos_and_reports_bad_files(shared_data, bvlc_weights, tmp_path):
    photo = shared_data / "imagenet-sample" / "n01443537_goldfish.JPEG"
    odd = _odd_images(tmp_path, photo)
    (tmp_path / "notes.txt").write_text("not an image")
    args = [
        str(photo),
        str(tmp_path / "missing.jpg"),
        str(tmp_path / "notes.txt"),
        *[str(p) for p in odd.values()],
    ]
    out = run("predict", *args, "--weights", str(bvlc_weights))
    assert out.returncode == 1  # some inputs failed, the rest were classified
    err = out.stderr.strip().splitlines()
    assert len(err) == 2 and "missing.jpg: no such file" in err[0] and "notes.txt" in err[1]
    blocks = out.stdout.split("\n" + str(tmp_path))
    assert out.stdout.startswith(str(photo))
    first = out.stdout.splitlines()[1]
    assert first.split()[-1] == "goldfish"
    assert len(blocks) == 1 + len(odd)  # every odd image was classified
    assert out.stdout.count("goldfish") >= 4


def test_weights_show(bvlc_weights):
    out = run("weights", "show", str(bvlc_weights))
    assert out.returncode == 0
    card = json.loads(out.stdout)
    assert card["preprocessing"]["channel_order"] == "BGR" and card["model"] == "googlenet"


def test_a_reader_that_stops_early_ends_the_command_quietly():
    """`goingdeeper weights list | head -1`: the reader is gone before the table is written;
    the command ends with the shell's SIGPIPE status and says nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # no reader: the first write fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "goingdeeper", "weights", "list"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, "")
