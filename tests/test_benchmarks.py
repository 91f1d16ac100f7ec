"""The speed measurements, run small: the benchmark harness in benchmarks/ (each configuration
timed in a process of its own, the targets computed from the measured rates, the arithmetic
rate against this run's matrix-product ceiling, the results files) and the library's quick
`goingdeeper bench` (its table's ratios against its own JSON, and a bad `--only` as one line
and exit code 2). Timings are not checked against numbers, only against each other."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from goingdeeper.cli import main

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def harness():
    """The benchmark scripts' modules, imported as the scripts import each other: with
    benchmarks/ on sys.path."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))
        yield SimpleNamespace(
            **{
                name: importlib.import_module(name)
                for name in ("bench_rows", "bench_report", "inference_bench")
            }
        )


def test_bench_times_the_selected_paths_and_states_the_targets(harness, tmp_path):
    """A small benchmark run end to end: each configuration timed in its own process, our
    folded graph and torchvision's exported with the same weights, the target computed from
    the two measured rates, and the results written."""
    only = ("ORT fp32 torchvision graph", "ORT fp32 ours googlenet_torchvision folded")
    options = harness.bench_rows.BenchOptions(
        batch_sizes=(1,), repeats=1, warmup=1, threads=1, only=only, train=False, profile=False
    )
    assert options.data is None  # no photos: no accuracy section
    result = harness.inference_bench.run_benchmarks(options)
    rows = {row["name"]: row for row in result["rows"]}
    assert set(rows) == set(only)
    assert all(row["images_per_s"] > 0 and len(row["times_s"]) >= 20 for row in rows.values())
    fp32 = next(t for t in result["targets"] if t["target"] == "fastest fp32, batch 1")
    assert (fp32["ours"], fp32["peer"]) == (only[1], only[0])
    ratio = rows[only[1]]["images_per_s"] / rows[only[0]]["images_per_s"]
    assert fp32["ratio"] == pytest.approx(ratio)
    # arithmetic rate: images/s x the network's multiply-adds, against the ceiling of this run
    assert result["sgemm_gmacs"] > 0
    macs = result["macs_per_image"]
    assert macs["torchvision"]["inference"] == macs["googlenet_torchvision"]["inference"]
    for row in rows.values():
        rate = row["images_per_s"] * macs[row["model"]]["inference"] / 1e9
        assert row["gmacs_per_s"] == pytest.approx(rate)
    md, js = harness.bench_report.write_results(result, tmp_path / "bench")
    assert only[1] in md.read_text() and json.loads(js.read_text())["rows"]
    assert "fp32 arithmetic ceiling" in md.read_text()


# --- goingdeeper bench ----------------------------------------------------------------------------

ROW = re.compile(r"^(?P<path>\S.*?)\s{2,}(?P<batch>\d+)\s+[\d.]+\s+[\d.]+\s+(?P<ratio>[\d.]+)x$")


def test_cli_bench_times_both_paths_with_their_ratio(tmp_path, capsys):
    reference, ours = "torchvision googlenet eager", "ours googlenet_torchvision fused"
    out = tmp_path / "bench.json"
    argv = ["bench", "--only", reference, ours, "--batch-sizes", "1", "--repeats", "1"]
    assert main([*argv, "--warmup", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    ratios = {m["path"]: float(m["ratio"]) for m in map(ROW.match, printed.splitlines()) if m}
    assert reference in ratios and ours in ratios, printed
    rows = {r["path"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == set(ratios)  # every path timed is printed, with its ratio
    assert all(r["batch"] == 1 and r["images_per_s"] > 0 for r in rows.values())
    assert rows[ours]["images_per_s"] == pytest.approx(1 / rows[ours]["median_s"])
    assert ratios[reference] == 1.0
    measured = rows[ours]["images_per_s"] / rows[reference]["images_per_s"]
    assert ratios[ours] == pytest.approx(measured, abs=0.006)  # printed to 2 decimals


def test_cli_bench_with_no_matching_path_is_one_line_and_exit_2(capsys):
    assert main(["bench", "--only", "zzzz"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--only zzzz matches no path" in err and len(err.splitlines()) == 1


@pytest.fixture
def gpu_script(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("gpu")


def _wheel(folder: Path, name: str) -> Path:
    """A one-module pure-Python wheel, as `pip download` would bring one."""
    path = folder / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": "VERSION = '1.0'\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{f},,\n" for f in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for member, text in files.items():
            z.writestr(member, text)
    return path


@pytest.mark.slow
def test_gpu_sh_rehearsed_on_the_cpu(tmp_path, shared_data):
    """benchmarks/gpu.sh as the GPU machine runs it, here on the CPU with tiny inputs: the
    carried wheels installed into a folder of their own that PYTHONPATH keeps, then rows (each
    in its own process) written with their settings."""
    photos, wheels, site = tmp_path / "photos", tmp_path / "wheels", tmp_path / "site"
    photos.mkdir(), wheels.mkdir()
    for photo in sorted((shared_data / "imagenet-sample").glob("*.JPEG"))[:4]:
        (photos / photo.name).symlink_to(photo)
    _wheel(wheels, "gd_carried_probe")
    # three rows: the script's machinery (wheels, PYTHONPATH, a process per row, the report);
    # every row at once is `gpu.sh --device cpu --quick` by hand (minutes on two cores)
    only = "ceiling,augment,train/eager/googlenet_torchvision"
    out = tmp_path / "gpu.md"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_WHEELS": str(wheels),
        "GPU_SITE": str(site),
        "PYTHONPATH": "",
    }
    args = ["--device", "cpu", "--quick", "--batch", "2", "--size", "96", "--workers", "1"]
    args += ["--compile-backend", "eager", "--row-limit", "120", "--photos", str(photos)]
    args += ["--only", only, "--out", str(out)]
    done = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu.sh"), *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (site / "gd_carried_probe.py").is_file()  # installed into the target, not the venv
    rows = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert [(r["kind"], r["status"]) for r in rows] == [
        ("ceiling", "ok"), ("augment", "ok"), ("train", "ok")
    ], rows  # fmt: skip
    assert all(r["images_per_s"] > 0 for r in rows[1:])
    assert "| train | googlenet_torchvision | eager | bfloat16, 96 px, channels-last | 2 |" in (
        out.read_text()
    )  # the settings column


def test_gpu_benchmark_ratios_are_like_for_like(gpu_script):
    """Each ratio sets two rows of the same settings side by side (eager with eager, compiled
    with compiled), at the run's batch, never ours at its best against torchvision eager."""
    args = SimpleNamespace(
        device="cuda", batch=256, size=224, quick=False, photos="p", workers=16,
        compile_backend="inductor", compile_mode="default",
    )  # fmt: skip
    rows = gpu_script.jobs(args)
    kinds = {(r["kind"], r.get("how"), r.get("dtype"), r["batch"]) for r in rows}
    assert ("infer", "eager", "bfloat16", 32) in kinds and ("infer", "optimized", "float16", 256)
    for how in ("eager", "optimized", "cuda graph", "compile"):
        assert {"torchvision googlenet", "googlenet_torchvision+fused"} <= {
            r.get("model") for r in rows if r["kind"] == "infer" and r.get("how") == how
        }
    assert all(r["mode"] == "default" for r in rows if r.get("how") == "compile")
    rates = {
        ("train", "eager", "torchvision googlenet"): 100.0,
        ("train", "eager", "googlenet_torchvision"): 160.0,
        ("train", "eager", "googlenet"): 150.0,
        ("train", "compile", "torchvision googlenet"): 400.0,  # not set against eager ours
        ("train", "compile", "googlenet_torchvision"): 300.0,
        ("infer", "eager", "torchvision googlenet"): 1000.0,
        ("infer", "compile", "googlenet_torchvision+fused"): 5000.0,
        ("pipeline", "tensor", None): 450.0,
    }
    for r in rows:
        r["status"] = "ok"
        rate = rates.get((r["kind"], r.get("how"), r.get("model")))
        if rate and r["batch"] == 256 and not (r["kind"] == "infer" and r["dtype"] == "bfloat16"):
            r["images_per_s"] = rate
    text = gpu_script.render(rows, {"device_name": "x", "command": "c", "when": "w", "torch": "t",
                                    "batch": 256})  # fmt: skip
    assert "train googlenet_torchvision / torchvision googlenet, eager: 1.60x" in text
    assert "train googlenet_torchvision / torchvision googlenet, compile: 0.75x" in text
    assert "train googlenet / googlenet_torchvision, eager: 0.94x" in text
    assert "infer googlenet_torchvision / torchvision googlenet, eager: n/a" in text
    assert "infer googlenet_torchvision / torchvision googlenet, compile: n/a" in text
    assert "input pipeline (tensor loader) / fastest googlenet step: 3.00x" in text
    assert (
        "| train | googlenet | compile | bfloat16, 224 px, channels-last, inductor default |"
        in text
    )


def test_cli_bench_sets_each_row_against_torchvision_in_its_own_precision():
    from goingdeeper.cli.bench import _table, paths

    names = set(paths(torch.device("cpu")))
    assert {
        "torchvision googlenet channels-last bf16",
        "ours googlenet_torchvision fused bf16",
    } < names
    rows = [
        {"path": p, "batch": 1, "median_s": 1 / rate, "images_per_s": rate}
        for p, rate in [
            ("torchvision googlenet eager", 10.0),
            ("ours googlenet_torchvision fused", 30.0),
            ("torchvision googlenet channels-last bf16", 40.0),
            ("ours googlenet_torchvision fused bf16", 60.0),
        ]
    ]
    ratios = {m["path"]: m["ratio"] for m in map(ROW.match, _table(rows).splitlines()) if m}
    assert ratios["ours googlenet_torchvision fused"] == "3.00"  # against fp32 eager
    assert ratios["ours googlenet_torchvision fused bf16"] == "1.50"  # against torchvision bf16
