"""Our inference paths against torchvision's googlenet, in one run: PyTorch, ONNX Runtime and
OpenVINO, fp32, bf16 and int8, batch 1 and 32; the training step; top-1 of the BVLC weights
on imagenet-sample for every path that changes the arithmetic; where the time goes.

    python benchmarks/inference_bench.py                 # ~15 min on two shared cores
    python benchmarks/inference_bench.py --only ORT --batch-sizes 1 --repeats 10

Writes benchmarks/results/inference.md and inference.json (`--out` for elsewhere). With
../shared/data present the accuracy columns use the BVLC GoogLeNet weights on
imagenet-sample; without it, speed only. Every configuration (`bench_rows.py`) is timed in a
fresh interpreter (`bench_child.py`); the report is `bench_report.py`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torchvision

from bench_child import INPUT_SIZE, ceiling, run_in_child, time_row, train_step
from bench_report import write_results
from bench_rows import BenchOptions, Config, configs
from goingdeeper import create_model, model_card
from goingdeeper.analysis import count_params_macs, training_step_macs
from goingdeeper.data import discover
from goingdeeper.evaluate import one_crop
from goingdeeper.images import load_image
from goingdeeper.inference import (
    OnnxRuntimeModel,
    OpenVINOModel,
    deployable,
    export_onnx,
    machine,
    optimize_for_inference,
    quantize_onnx,
)
from goingdeeper.weights import import_bvlc, import_torchvision

REPO = Path(__file__).resolve().parents[1]
CALIBRATION_EVERY = 5  # imagenet-sample images 0, 5, 10, ... calibrate int8; the rest are held out


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# --- the models and files, made once in the parent ----------------------------------------------


def our_model(options: BenchOptions):
    """BVLC GoogLeNet when the shared data is there (accuracy measurable), else random."""
    bvlc = Path(options.data) / "bvlc-googlenet" if options.data else None
    if bvlc is not None and bvlc.is_dir():
        model, card = import_bvlc(bvlc)
        return model.eval(), card.preprocessing, True
    torch.manual_seed(0)
    model = create_model("googlenet", aux_logits=False).eval()
    return model, model_card("googlenet").preprocessing, False


def sample_images(options: BenchOptions, preprocessing) -> tuple[torch.Tensor, torch.Tensor]:
    """imagenet-sample, one center crop each, with `preprocessing`: (images, labels)."""
    samples = discover(Path(options.data) / "imagenet-sample").split("all").samples
    samples = samples[: options.accuracy_images]
    images = torch.cat([one_crop(load_image(p), preprocessing) for p, _ in samples])
    return images, torch.tensor([label for _, label in samples])


def save_networks(options: BenchOptions, workdir: Path) -> dict:
    """Our BVLC googlenet, and torchvision's googlenet with our googlenet_torchvision holding
    the same random weights (timings that depend on the values, denormals, then compare like
    with like); each saved for the children."""
    ours, pre, real = our_model(options)
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    gt = import_torchvision(tv)[0]
    models = {"googlenet": ours, "torchvision": tv, "googlenet_torchvision": gt}
    for name, model in models.items():
        torch.save(model.state_dict(), workdir / f"{name}.pt")
    return {"models": models, "preprocessing": pre, "real_weights": real, "model": ours}


def calibration_set(options: BenchOptions, info: dict, log) -> torch.Tensor:
    """imagenet-sample photos (every 5th) when the real weights are there, else noise."""
    info["images"] = info["labels"] = None
    if info["real_weights"] and (Path(options.data) / "imagenet-sample").is_dir():
        log("preprocessing imagenet-sample (one center crop each)")
        images, labels = sample_images(options, info["preprocessing"])
        info["images"], info["labels"] = images, labels
        calibration = images[::CALIBRATION_EVERY]
        info["calibration"] = (
            f"{len(calibration)} imagenet-sample photos (every {CALIBRATION_EVERY}th); "
            f"accuracy on all {len(images)} and on the {len(images) - len(calibration)} others"
        )
        return calibration
    info["calibration"] = "200 random-normal batches (no shared data): int8 speed only"
    return torch.randn(200, 3, INPUT_SIZE, INPUT_SIZE)


def prepare(rows: list[Config], options: BenchOptions, workdir: Path, log) -> dict:
    """Weights for the torch children, ONNX files (fp32, int8) for the others."""
    info = save_networks(options, workdir)
    calibration = calibration_set(options, info, log)
    gt_pre = model_card("googlenet_torchvision").preprocessing
    for name, int8 in sorted(
        {(c.model, c.precision == "int8") for c in rows if c.runtime != "torch"}
    ):
        fp32 = workdir / f"{name}-fp32.onnx"
        if not fp32.is_file():
            log(f"exporting {name} to ONNX")
            model = info["models"][name]
            net = model if name == "torchvision" else deployable(model, INPUT_SIZE, fused=True)
            export_onnx(net, fp32, INPUT_SIZE)
        if not int8:
            continue
        log(f"quantizing {name} to int8")
        calib = calibration
        if name != "googlenet" and info["images"] is not None:  # their own input transform
            calib = gt_pre.normalize(info["preprocessing"].denormalize(calibration))
        quantize_onnx(fp32, workdir / f"{name}-int8.onnx", calib.split(20))
        wanted = any(
            c.model == name and c.runtime == "openvino" and c.precision == "int8" for c in rows
        )
        if wanted and have("nncf"):
            log(f"quantizing {name} to int8 with NNCF for OpenVINO")
            nncf_quantize(fp32, workdir / f"{name}-int8-nncf.xml", calib)
    info["openvino_int8"] = (
        "NNCF (nncf.quantize, OpenVINO's own post-training quantization), same calibration"
        if have("nncf")
        else "the ONNX Runtime QDQ file (nncf is not installed)"
    )
    return info


def nncf_quantize(source: Path, out: Path, calibration: torch.Tensor) -> None:
    """OpenVINO's own int8: NNCF's default post-training quantization (per-channel weights,
    min-max activations plus its bias correction), on the same calibration images."""
    import nncf  # optional: installed with goingdeeper[bench]
    import openvino as ov

    model = ov.Core().read_model(str(source))
    batches = [b.numpy() for b in calibration.split(1)]
    quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches))
    ov.save_model(quantized, str(out))


# --- accuracy and profile, in the parent ---------------------------------------------------------


def predictions(run: Callable, images: torch.Tensor, batch: int = 50) -> torch.Tensor:
    preds = []
    with torch.inference_mode():
        for xs in images.split(batch):
            preds.append(torch.as_tensor(np.asarray(run(xs))).argmax(1))
    return torch.cat(preds)


def accuracy(info: dict, options: BenchOptions, workdir: Path, log) -> dict:
    """Top-1 of our BVLC GoogLeNet paths. fp32 graphs equal the plain model to 1e-4 (the
    tests check it), so fp32 is measured once, on the plain model."""
    images, labels, model = info["images"], info["labels"], info["model"]
    held_out = torch.ones(len(labels), dtype=torch.bool)
    held_out[::CALIBRATION_EVERY] = False
    nncf = workdir / "googlenet-int8-nncf.xml"
    fp32_onnx, int8_onnx = workdir / "googlenet-fp32.onnx", workdir / "googlenet-int8.onnx"
    paths: dict[str, Callable[[], Callable]] = {
        "torch fp32 (plain)": lambda: model,
        "torch bf16 fused": lambda: optimize_for_inference(model, dtype=torch.bfloat16),
        "ORT int8 folded": lambda: OnnxRuntimeModel(int8_onnx, threads=options.threads),
        "OpenVINO bf16 folded": lambda: OpenVINOModel(fp32_onnx, precision="bf16"),
        "OpenVINO int8 folded": lambda: OpenVINOModel(nncf if nncf.is_file() else int8_onnx),
    }
    out, fp32 = {}, None
    for name, build in paths.items():
        if ("OpenVINO" in name and not (have("openvino") and fp32_onnx.is_file())) or (
            "ORT" in name and not int8_onnx.is_file()
        ):
            continue
        n = options.bf16_accuracy_images if name == "torch bf16 fused" else len(labels)
        log(f"top-1: {name} on {n} images")
        ok = predictions(build(), images[:n]) == labels[:n]
        row = {"images": n, "top1": ok.float().mean().item()}
        fp32 = ok if fp32 is None else fp32
        if n == len(labels):
            row["top1_held_out"] = ok[held_out].float().mean().item()
        else:  # the fp32 figure on the same subset, for a like-for-like difference
            row["top1_fp32_same_images"] = fp32[:n].float().mean().item()
        out[name] = row
    return out


def profile(workdir: Path, info: dict, threads: int) -> dict:
    """Time per operator type: ONNX Runtime int8 and fp32 (our folded graph), torch fused."""
    import onnxruntime as ort  # optional: installed with goingdeeper[onnx]

    out: dict[str, list] = {}
    x = torch.randn(32, 3, INPUT_SIZE, INPUT_SIZE)
    for precision in ("int8", "fp32"):
        path = workdir / f"googlenet-{precision}.onnx"
        if not path.is_file():
            continue
        session_options = ort.SessionOptions()
        session_options.enable_profiling = True
        session_options.profile_file_prefix = str(workdir / f"ort-{precision}")
        session_options.intra_op_num_threads = threads
        session = ort.InferenceSession(
            str(path), session_options, providers=["CPUExecutionProvider"]
        )
        for _ in range(3):
            session.run(None, {session.get_inputs()[0].name: x.numpy()})
        by_op: dict[str, float] = {}
        for event in json.loads(Path(session.end_profiling()).read_text()):
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                op = event.get("args", {}).get("op_name", "?")
                by_op[op] = by_op.get(op, 0.0) + event["dur"] / 3e3  # ms per run
        total = sum(by_op.values())
        top = sorted(by_op.items(), key=lambda kv: -kv[1])[:8]
        out[f"ORT {precision} ours googlenet folded, batch 32"] = [
            (op, ms, ms / total) for op, ms in top
        ]
    torch.set_num_threads(threads)
    net = optimize_for_inference(info["model"])
    with torch.inference_mode():
        net(x)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            net(x)
    rows = sorted(
        ((e.key, e.self_cpu_time_total / 1e3) for e in prof.key_averages()), key=lambda r: -r[1]
    )
    total = sum(ms for _, ms in rows)
    out["torch fp32 ours googlenet fused, batch 32"] = [(k, ms, ms / total) for k, ms in rows[:8]]
    return out


# --- targets ------------------------------------------------------------------------------------


def best(result: dict, batch: int, keep: Callable[[dict], bool]) -> tuple[str, float] | None:
    rows = [r for r in result["rows"] if r["batch"] == batch and "images_per_s" in r and keep(r)]
    if not rows:
        return None
    row = max(rows, key=lambda r: r["images_per_s"])
    return row["name"], row["images_per_s"]


def target(what: str, ours, peer, goal: float) -> dict:
    if ours is None or peer is None:
        return {"target": what, "goal": goal, "status": "not measured"}
    ratio = ours[1] / peer[1]
    return {
        "target": what,
        "goal": goal,
        "ours": ours[0],
        "ours_images_per_s": ours[1],
        "peer": peer[0],
        "peer_images_per_s": peer[1],
        "ratio": ratio,
        "status": "met" if ratio >= goal else f"missed by {100 * (goal - ratio) / goal:.0f}%",
    }


def targets(result: dict) -> list[dict]:
    """The deployment targets, each as measured in this run: our fastest fp32 path against
    the fastest peer (1.0x), our bf16 against OpenVINO bf16 (1.0x), our fastest against
    OpenVINO int8 on torchvision's graph (1.1x); with the top-1 each int8/bf16 path costs."""
    acc = result.get("accuracy", {})

    def drop(name: str) -> float | None:
        if name in acc and "torch fp32 (plain)" in acc:
            row = acc[name]
            return 100 * (
                row.get("top1_fp32_same_images", acc["torch fp32 (plain)"]["top1"]) - row["top1"]
            )
        return None

    def cpu(r: dict) -> bool:
        return r["device"] == "cpu"

    out = []
    for batch in sorted({r["batch"] for r in result["rows"]}):
        ours = best(result, batch, lambda r: cpu(r) and r["ours"] and r["precision"] == "fp32")
        peer = best(result, batch, lambda r: cpu(r) and not r["ours"] and r["precision"] == "fp32")
        out.append(target(f"fastest fp32, batch {batch}", ours, peer, 1.0))
        ours = best(result, batch, lambda r: cpu(r) and r["ours"] and r["precision"] == "bf16")
        peer = best(result, batch, lambda r: r["name"] == "OpenVINO bf16 torchvision graph")
        t = target(f"bf16 vs OpenVINO bf16, batch {batch}", ours, peer, 1.0)
        t["top1_drop_points"] = {n: drop(n) for n in ("torch bf16 fused", "OpenVINO bf16 folded")}
        out.append(t)
        ours = best(result, batch, lambda r: cpu(r) and r["ours"])
        peer = best(result, batch, lambda r: r["name"] == "OpenVINO int8 torchvision graph")
        t = target(f"fastest vs OpenVINO int8, batch {batch}", ours, peer, 1.1)
        t["top1_drop_points"] = {n: drop(n) for n in ("ORT int8 folded", "OpenVINO int8 folded")}
        out.append(t)
    return out


# --- the run -------------------------------------------------------------------------------------


def macs_per_image() -> dict[str, dict[str, int]]:
    """Multiply-adds per image of each timed network: the inference graph and a training step."""
    out = {}
    for name in ("torchvision", "googlenet", "googlenet_torchvision"):
        if name == "torchvision":
            model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
        else:
            model = create_model(name, init_weights=False)
        out[name] = {
            "inference": count_params_macs(model.eval(), INPUT_SIZE)[1],
            "training_step": training_step_macs(model, INPUT_SIZE)["total"],
        }
    return out


def time_rows(rows: list[Config], options: BenchOptions, workdir: Path, macs: dict, log) -> list:
    timed = []
    for config in rows:
        for batch in options.batch_sizes:
            log(f"timing {config.name}, batch {batch}")
            row = run_in_child(time_row, config, batch, options, workdir)
            if "images_per_s" in row:
                row["gmacs_per_s"] = row["images_per_s"] * macs[config.model]["inference"] / 1e9
            timed.append({**asdict(config), **row})
    return timed


def time_training(options: BenchOptions, workdir: Path, macs: dict, log) -> list:
    timed = []
    for name in ("torchvision", "ours fused 1x1"):
        for bf16 in (False, True):
            log(f"training step: {name}, {'bf16 autocast' if bf16 else 'fp32'}")
            row = run_in_child(train_step, name, bf16, options, workdir)
            if "images_per_s" in row:  # ours is googlenet_torchvision, fused
                network = "torchvision" if name == "torchvision" else "googlenet_torchvision"
                row["gmacs_per_s"] = row["images_per_s"] * macs[network]["training_step"] / 1e9
            timed.append({"model": name, "bf16": bf16, **row})
    return timed


def run_benchmarks(options: BenchOptions, log: Callable[[str], None] = lambda s: None) -> dict:
    """Time every selected configuration at every batch size; top-1 where the data allows;
    the training step; the targets. Returns a dict (see `bench_report.write_results`)."""
    rows = configs(torch.cuda.is_available(), options.only)
    skipped = {}
    if not have("openvino"):
        why = "openvino is not installed (pip install 'goingdeeper[bench]')"
        skipped = {c.name: why for c in rows if c.runtime == "openvino"}
    rows = [c for c in rows if c.name not in skipped]
    torch.set_num_threads(options.threads)
    result: dict = {"machine": machine(), "options": asdict(options), "skipped": skipped}
    started = time.perf_counter()
    log("fp32 matrix-product ceiling")
    result["sgemm_gmacs"] = run_in_child(ceiling, options.threads).get("gmacs")
    result["macs_per_image"] = macs = macs_per_image()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        info = prepare(rows, options, workdir, log)
        for key in ("real_weights", "calibration", "openvino_int8"):
            result[key] = info[key]
        result["rows"] = time_rows(rows, options, workdir, macs, log)
        if options.train:
            result["train"] = time_training(options, workdir, macs, log)
        if info["images"] is not None:
            result["accuracy"] = accuracy(info, options, workdir, log)
        if options.profile:
            log("profiling")
            try:
                result["profile"] = profile(workdir, info, options.threads)
            except Exception as e:  # noqa: BLE001 - a failed profile loses only its section
                result["profile_error"] = f"{type(e).__name__}: {e}"
    result["seconds"] = time.perf_counter() - started
    result["machine"]["load_average_end"] = os.getloadavg()
    result["targets"] = targets(result)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    p.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every runtime")
    p.add_argument("--only", nargs="+", help="the configurations whose name contains one of these")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--accuracy-images", type=int, default=1000, help="imagenet-sample photos")
    p.add_argument("--no-train", action="store_true", help="skip the training-step benchmark")
    p.add_argument("--no-profile", action="store_true", help="skip the per-operator profile")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "inference")
    args = p.parse_args(argv)
    options = BenchOptions(
        batch_sizes=tuple(args.batch_sizes),
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        only=tuple(args.only or ()),
        data=str(args.data) if args.data.is_dir() else None,
        accuracy_images=args.accuracy_images,
        train=not args.no_train,
        profile=not args.no_profile,
    )
    result = run_benchmarks(options, log=lambda line: print(line, flush=True))
    md, js = write_results(result, args.out)
    print(md.read_text())
    print(f"wrote {md} and {js}")


if __name__ == "__main__":
    main()
