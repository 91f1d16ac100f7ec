"""GoogLeNet on one GPU, like against like, every row in its own process with its own time
limit, written as soon as it finishes (a row that runs out of time is written as such):

- ceiling: the device's bf16 matrix-product rate (8192^3 products), the arithmetic limit;
- train: a training step (SGD momentum, aux heads on, bf16 autocast, channels-last, batch 256,
  224 px) of torchvision's `googlenet`, our `googlenet_torchvision` (the same network) as
  `train` runs it (Inception 1x1s fused in the forward) and unfused, and our faithful
  `googlenet`, eager and `torch.compile`d;
- infer: inference at batch 256 (fp16, channels-last) of torchvision's `googlenet` and ours,
  eager, compiled, and captured in a CUDA graph;
- infer bf16: our `googlenet` (fused) in bf16 beside fp16, at the run's batch and at 32;
- pipeline: the input pipeline alone (JPEG bytes -> augmented batch on the GPU,
  `data.batch_augment`), beside the training step's images/s; and the Pillow loader (a
  worker per CPU core, draft decoding, 8-bit batches normalised on the GPU), and the DALI
  loader where DALI is installed.

    bash benchmarks/gpu.sh                       # on the GPU machine, at most 8 minutes
    PYTHONPATH=src python benchmarks/gpu.py --device cpu --quick   # the same code on a CPU

Writes benchmarks/results/gpu.md (and gpu.jsonl, one row per line). The photos come from
benchmarks/gpu_data/, which `benchmarks/gpu_files.sh` fills from ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from goingdeeper.data import ImageDataset, collate_skip, train_transform
from goingdeeper.data.batch_augment import BatchAugment, PixelBatches, decode_batch
from goingdeeper.data.dali import DaliRecipe, dali_batches
from goingdeeper.registry import model_card
from goingdeeper.train import TrainStep
from train_throughput import TorchvisionRecord, build

HERE = Path(__file__).parent
PHOTOS = HERE / "gpu_data"
RESULTS = HERE / "results"
# ours as `train` runs it (the Inception 1x1s fused in the forward, `Inception.fuse_1x1`) and,
# to see what that fusion gives, with it off
TRAIN_MODELS = (
    "torchvision googlenet",
    "googlenet_torchvision+unfused",
    "googlenet_torchvision",
    "googlenet",
)
INFER_MODELS = ("torchvision googlenet", "googlenet_torchvision+fused", "googlenet+fused")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_rate(fn, images: int, repeats: int, device: torch.device) -> dict:
    fn()  # warm-up (compilation, autotuning, allocations)
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"median_s": median, "images_per_s": images / median, "repeats": repeats}


def ceiling(device: torch.device, quick: bool) -> dict:
    n = 1024 if quick else 8192
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    rate = _median_rate(lambda: a @ b, 1, 5, device)
    return {"tflops": 2 * n**3 / rate["median_s"] / 1e12, "size": n, "dtype": str(dtype)}


def train_row(name: str, compiled: bool, device: torch.device, batch: int, quick: bool) -> dict:
    torch.manual_seed(0)
    model = build(name).to(device).to(memory_format=torch.channels_last)
    step = TrainStep(TorchvisionRecord(model) if name.startswith("torchvision") else model)
    step.train()
    run = torch.compile(step) if compiled else step
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    def one_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = run(x, y)
        loss = out[0] if isinstance(out, tuple) else out
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _median_rate(one_step, batch, 2 if quick else 10, device)


def infer_row(name: str, how: str, device: torch.device, batch: int, quick: bool) -> dict:
    model = build(name)
    if hasattr(model, "remove_aux_heads"):
        model.remove_aux_heads()
    elif hasattr(model, "aux1"):
        model.aux_logits, model.aux1, model.aux2 = False, None, None
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    if how.endswith("bf16"):
        dtype = torch.bfloat16
    net = model.eval().to(device, dtype).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 224, 224, device=device, dtype=dtype).contiguous(
        memory_format=torch.channels_last
    )
    if how.startswith("compile"):
        net = torch.compile(net, mode="max-autotune-no-cudagraphs")
    if how.startswith("cuda graph"):
        graph = _captured(net, x)
        return _median_rate(graph.replay, batch, 3 if quick else 20, device)

    def forward() -> None:
        with torch.inference_mode():
            net(x)

    return _median_rate(forward, batch, 3 if quick else 20, device)


def _captured(net: torch.nn.Module, x: torch.Tensor):
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):
            net(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        net(x)  # its output stays in the graph's memory, rewritten at each replay
    return graph


def pipeline_row(device: torch.device, batch: int, quick: bool) -> dict:
    """JPEG bytes to an augmented, normalised batch on `device`: the loader's work alone."""
    files = sorted(PHOTOS.glob("*.JPEG"))
    if not files:
        raise SystemExit(f"{PHOTOS}: no photos; run `bash benchmarks/gpu_files.sh` first")
    data = [f.read_bytes() for f in files]
    data = (data * (batch // len(data) + 1))[:batch]
    names = [str(f) for f in files] * (batch // len(files) + 1)
    augment = BatchAugment(224, model_card("googlenet").preprocessing)
    rate = _median_rate(
        lambda: augment(decode_batch(data, names, device)), batch, 2 if quick else 5, device
    )
    return rate | {"photos": len(files)}


def pipeline_pil_row(device: torch.device, batch: int, quick: bool) -> dict:
    """The Pillow loader (a DataLoader worker per CPU core, draft decoding, 8-bit batches
    normalised on `device`): what feeds a run whose data the tensor loader cannot take."""
    files = sorted(PHOTOS.glob("*.JPEG"))
    if not files:
        raise SystemExit(f"{PHOTOS}: no photos; run `bash benchmarks/gpu_files.sh` first")
    preprocessing = model_card("googlenet").preprocessing
    transform = train_transform("googlenet", 224, preprocessing, pixels=True)
    samples = [(str(f), 0) for f in files] * max(1, (4 * batch) // len(files))
    ds = ImageDataset(samples, ["x"], transform)
    workers = os.cpu_count() or 1
    loader = DataLoader(
        ds, batch_size=batch, num_workers=workers, collate_fn=collate_skip, persistent_workers=True
    )
    batches = PixelBatches(loader, preprocessing, device)

    def epoch() -> None:
        for x, _, _ in batches:
            x.sum().item()

    rate = _median_rate(epoch, len(samples), 2 if quick else 3, device)
    return rate | {"photos": len(files), "workers": workers}


def pipeline_dali_row(device: torch.device, batch: int, quick: bool) -> dict:
    """The DALI loader (`loader=dali`: "mixed" decoding on the GPU), where DALI is installed;
    a row that says so where it is not."""
    files = sorted(PHOTOS.glob("*.JPEG"))
    if not files:
        raise SystemExit(f"{PHOTOS}: no photos; run `bash benchmarks/gpu_files.sh` first")
    preprocessing = model_card("googlenet").preprocessing
    samples = [(str(f), 0) for f in files] * max(1, (4 * batch) // len(files))
    ds = ImageDataset(samples, ["x"])
    recipe = DaliRecipe.of("googlenet", 224, preprocessing)
    workers = os.cpu_count() or 1
    generator = torch.Generator().manual_seed(0)

    def epoch() -> None:
        batches = dali_batches(ds, batch, recipe, None, generator, device, preprocessing, workers)
        for x, _, _ in batches:
            x.sum().item()

    rate = _median_rate(epoch, len(samples), 2 if quick else 3, device)
    return rate | {"photos": len(files), "workers": workers}


def _child(job: dict, queue) -> None:
    try:
        device = torch.device(job["device"])
        kind = job["kind"]
        if kind == "ceiling":
            result = ceiling(device, job["quick"])
        elif kind == "train":
            result = train_row(
                job["model"], job["how"] == "compile", device, job["batch"], job["quick"]
            )
        elif kind == "infer":
            result = infer_row(job["model"], job["how"], device, job["batch"], job["quick"])
        elif job.get("how") == "pil":
            result = pipeline_pil_row(device, job["batch"], job["quick"])
        elif job.get("how") == "dali":
            result = pipeline_dali_row(device, job["batch"], job["quick"])
        else:
            result = pipeline_row(device, job["batch"], job["quick"])
        queue.put({"status": "ok", **result})
    except Exception as e:  # noqa: BLE001 - a failed row is reported, the others still run
        queue.put({"status": f"failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}"})


def run_job(job: dict, limit: float) -> dict:
    """One row in a fresh process, stopped after `limit` seconds."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(job, queue))
    start = time.perf_counter()
    process.start()
    process.join(limit)
    if process.is_alive():
        process.kill()
        process.join()
        return {**job, "status": f"over its limit of {limit:.0f} s"}
    result = queue.get() if not queue.empty() else {"status": f"exit code {process.exitcode}"}
    return {**job, **result, "wall_s": round(time.perf_counter() - start, 1)}


def jobs(device: str, batch: int, quick: bool) -> list[dict]:
    """The rows, most telling first: if the time runs out, what is left are compiled variants."""
    common = {"device": device, "batch": batch, "quick": quick}
    graphs = ("cuda graph",) if device == "cuda" else ()
    rows = [{"kind": "ceiling", **common}, {"kind": "pipeline", **common}]
    rows += [{"kind": "train", "model": m, "how": "eager", **common} for m in TRAIN_MODELS]
    for how in ("eager", *graphs):
        rows += [{"kind": "infer", "model": m, "how": how, **common} for m in INFER_MODELS]
    # bf16 beside fp16, at the full batch and at 32 (where a dtype's overheads would show)
    rows.append({"kind": "infer", "model": "googlenet+fused", "how": "eager bf16", **common})
    for how in ("eager", "eager bf16"):
        rows.append(
            {"kind": "infer", "model": "googlenet+fused", "how": how, **common, "batch": 32}
        )
    rows.append({"kind": "pipeline", "how": "pil", **common})
    rows.append({"kind": "pipeline", "how": "dali", **common})
    rows += [{"kind": "train", "model": m, "how": "compile", **common} for m in TRAIN_MODELS]
    rows += [{"kind": "infer", "model": m, "how": "compile", **common} for m in INFER_MODELS]
    return rows


def _rate(rows: list[dict], kind: str, model: str | None, how: str | None = None) -> float | None:
    """The rate of a row at the run's batch size (the first row's)."""
    for r in rows:
        if r["batch"] != rows[0]["batch"]:
            continue
        if r["kind"] == kind and r.get("model") == model and r.get("how") == how:
            return r.get("images_per_s")
    return None


def render(rows: list[dict], meta: dict) -> str:
    lines = [
        f"# GoogLeNet on {meta['device_name']}",
        "",
        f"`{meta['command']}`, {meta['when']}, torch {meta['torch']}, batch {meta['batch']}",
        "",
        "| row | model | how | batch | images/s | median s | status |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        rate = f"{r['images_per_s']:,.0f}" if "images_per_s" in r else ""
        median = f"{r['median_s']:.4f}" if "median_s" in r else ""
        if r["kind"] == "ceiling" and "tflops" in r:
            rate = f"{r['tflops']:.1f} TFLOP/s ({r['dtype']})"
        lines.append(
            f"| {r['kind']} | {r.get('model', '')} | {r.get('how', '')} | {r['batch']} | {rate} | "
            f"{median} | {r['status']} |"
        )
    lines += ["", "Ratios (targets in brackets):", ""]
    for what, ours, ref, goal in _ratios(rows):
        shown = f"{ours / ref:.2f}x" if ours and ref else "n/a"
        lines.append(f"- {what}: {shown} [>= {goal}x]")
    return "\n".join(lines) + "\n"


def _ratios(rows: list[dict]) -> list[tuple]:
    best = {
        m: max(
            filter(None, (_rate(rows, "train", m, h) for h in ("eager", "compile"))), default=None
        )
        for m in TRAIN_MODELS
    }
    infer = {
        m: max(
            filter(None, (_rate(rows, "infer", m, h) for h in ("eager", "compile", "cuda graph"))),
            default=None,
        )
        for m in INFER_MODELS
    }
    step = max(
        filter(None, (best["googlenet_torchvision"], best["googlenet_torchvision+unfused"])),
        default=None,
    )
    return [
        (
            "train googlenet_torchvision / torchvision googlenet",
            step,
            best["torchvision googlenet"],
            1.5,
        ),
        ("train googlenet / googlenet_torchvision", best["googlenet"], step, 0.9),
        (
            "infer ours / torchvision fp16 channels-last",
            infer["googlenet_torchvision+fused"],
            _rate(rows, "infer", "torchvision googlenet", "eager"),
            1.5,
        ),
        (
            "input pipeline / training step (googlenet)",
            _rate(rows, "pipeline", None),
            best["googlenet"],
            1.2,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--row-limit", type=float, default=90.0, help="seconds per row at most")
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all rows")
    p.add_argument("--quick", action="store_true", help="few repeats, small products (a check)")
    p.add_argument("--out", type=Path, default=RESULTS / "gpu.md")
    args = p.parse_args(argv)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "the CPU"
    meta = {
        "device_name": name,
        "torch": torch.__version__,
        "batch": args.batch,
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "command": "bash benchmarks/gpu.sh",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with args.out.with_suffix(".jsonl").open("w") as log:
        deadline = time.perf_counter() + args.budget
        for job in jobs(args.device, args.batch, args.quick):
            left = deadline - time.perf_counter()
            if left < 5:
                rows.append({**job, "status": "not run: the budget was spent"})
            else:
                rows.append(run_job(job, min(args.row_limit, left)))
            log.write(json.dumps(rows[-1]) + "\n")
            log.flush()
            args.out.write_text(render(rows, meta))
            print(json.dumps(rows[-1]), flush=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
