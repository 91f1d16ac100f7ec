"""The speed measurements, run small: the benchmark harness in benchmarks/ (each configuration
timed in a process of its own, the targets computed from the measured rates, the arithmetic
rate against this run's matrix-product ceiling, the results files) and the library's quick
`goingdeeper bench` (its table's ratios against its own JSON, and a bad `--only` as one line
and exit code 2). Timings are not checked against numbers, only against each other."""

from __future__ import annotations

import importlib
import json
import re
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
def gpu_script(monkeypatch, tmp_path, shared_data):
    """benchmarks/gpu.py with a few sample photos where `gpu_files.sh` would put them."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    gpu = importlib.import_module("gpu")
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in sorted((shared_data / "imagenet-sample").glob("*.JPEG"))[:8]:
        (photos / photo.name).symlink_to(photo)
    monkeypatch.setattr(gpu, "PHOTOS", photos)
    return gpu


def test_gpu_benchmark_rows_run_on_the_cpu_and_report_like_with_like(gpu_script, tmp_path):
    """The GPU benchmark's loader rows run (here on the CPU: the same code), a row over its
    time limit is written as such, and the report's ratios come from rows of the run's batch."""
    cpu = torch.device("cpu")
    for row in (gpu_script.pipeline_row, gpu_script.pipeline_pil_row):
        result = row(cpu, 8, True)
        assert result["images_per_s"] > 0 and result["photos"] == 8
    job = {"kind": "ceiling", "device": "cpu", "batch": 8, "quick": False}
    assert gpu_script.run_job(job, 0.5)["status"] == "over its limit of 0 s"
    kinds = {(j["kind"], j.get("how"), j["batch"]) for j in gpu_script.jobs("cpu", 256, True)}
    assert ("infer", "eager bf16", 32) in kinds and ("pipeline", "pil", 256) in kinds
    rows = [
        {
            "kind": "train",
            "model": m,
            "how": "eager",
            "batch": 256,
            "status": "ok",
            "images_per_s": rate,
        }
        for m, rate in zip(gpu_script.TRAIN_MODELS, (100.0, 120.0, 160.0, 150.0), strict=True)
    ]
    rows.append({"kind": "pipeline", "batch": 256, "status": "ok", "images_per_s": 200.0})
    rows.append(
        {
            "kind": "train",
            "model": "googlenet",
            "how": "eager",
            "batch": 32,
            "status": "ok",
            "images_per_s": 999.0,
        }
    )  # another batch: not compared
    text = gpu_script.render(
        rows, {"device_name": "x", "command": "c", "when": "w", "torch": "t", "batch": 256}
    )
    assert "train googlenet_torchvision / torchvision googlenet: 1.60x" in text
    assert "train googlenet / googlenet_torchvision: 0.94x" in text
    assert "input pipeline / training step (googlenet): 1.33x" in text
