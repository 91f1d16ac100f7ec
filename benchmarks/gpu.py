"""GoogLeNet on one GPU, like against like, every row in its own process with its own time
limit, written as soon as it finishes (a row that runs out of time is written as such):

- ceiling: the device's bf16 matrix-product rate (8192^3 products), the arithmetic limit;
- train: a training step (SGD momentum, aux heads on, bf16 autocast, channels-last, batch 256,
  224 px) of torchvision's `googlenet`, our `googlenet_torchvision` (the same network) as
  `train` runs it (Inception 1x1s fused in the forward) and unfused, and our faithful
  `googlenet`, eager, then `torch.compile`d (inductor's default mode: it finishes inside a row);
- infer: inference at batch 256 (fp16, channels-last) of torchvision's `googlenet` and ours,
  eager, traced + frozen + `torch.jit.optimize_for_inference`, captured in a CUDA graph, and
  compiled: every way on both sides; our `googlenet` (fused) in bf16 beside fp16, at the run's
  batch and at 32;
- augment: the batched augmentation alone (JPEG bytes in memory -> augmented batch on the
  device, `data.pipelines.tensor`);
- pipeline: an epoch of each loader as `train` builds it (`make_loader`: tensor, the Pillow
  loader with a worker per CPU core and pinned memory, and DALI where it is installed).

Every ratio is between rows of the same settings (eager beside eager, compiled beside compiled,
the same precision), and every row prints its settings.

    bash benchmarks/gpu_files.sh                 # here, with the network: photos and wheels
    bash benchmarks/gpu.sh                       # on the GPU machine, at most 9 minutes
    PYTHON=.venv/bin/python bash benchmarks/gpu.sh --device cpu --quick --batch 4 --size 96 \
        --workers 1 --compile-backend eager      # a rehearsal of every row on a CPU

Writes benchmarks/results/gpu.md (and gpu.jsonl, one row per line). The photos come from
benchmarks/gpu_data/, which `benchmarks/gpu_files.sh` fills from ../shared/data.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.metadata
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from goingdeeper.data import ImageDataset, train_transform
from goingdeeper.data.pipelines.loader import make_loader
from goingdeeper.data.pipelines.tensor import BatchAugment, decode_batch
from goingdeeper.registry import list_models, model_card
from goingdeeper.train import TrainStep
from goingdeeper.train.config import TrainConfig
from goingdeeper.train.distributed import Distributed
from train_throughput import TorchvisionRecord, build

HERE = Path(__file__).parent
PHOTOS = HERE / "gpu_data"
RESULTS = HERE / "results"
# ours as `train` runs it (the Inception 1x1s fused in the forward, `Inception.fused`) and,
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
    return {"tflops": 2 * n**3 / rate["median_s"] / 1e12, "matrix": n, "matrix_dtype": str(dtype)}


def train_row(job: dict, device: torch.device) -> dict:
    name, batch, size, quick = job["model"], job["batch"], job["size"], job["quick"]
    torch.manual_seed(0)
    model = _build(name, size).to(device).to(memory_format=torch.channels_last)
    step = TrainStep(TorchvisionRecord(model) if name.startswith("torchvision") else model)
    step.train()
    run = _compiled(step, job) if job["how"] == "compile" else step
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    dtype = getattr(torch, job["dtype"])

    def one_step() -> None:
        with torch.autocast(device.type, dtype=dtype):
            out = run(x, y)
        loss = out[0] if isinstance(out, tuple) else out
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _median_rate(one_step, batch, 2 if quick else 10, device)


def _build(name: str, size: int) -> torch.nn.Module:
    """`train_throughput.build`, told the input size where the model declares it takes one (the
    faithful googlenet's aux heads pool a fixed window)."""
    base = name.partition("+")[0]
    takes = base in list_models() and model_card(base).takes_input_size
    return build(name, **({"input_size": size} if takes else {}))


def _compiled(module: torch.nn.Module, job: dict):
    """`torch.compile` with the row's backend and mode (the default mode: its autotuning is
    what finishes inside a row; max-autotune does not)."""
    if job["backend"] == "inductor":
        return torch.compile(module, backend="inductor", mode=job["mode"])
    return torch.compile(module, backend=job["backend"])


def infer_row(job: dict, device: torch.device) -> dict:
    name, how, batch, size, quick = (
        job["model"],
        job["how"],
        job["batch"],
        job["size"],
        job["quick"],
    )
    model = _build(name, size)
    if hasattr(model, "remove_aux_heads"):
        model.remove_aux_heads()
    elif hasattr(model, "aux1"):
        model.aux_logits, model.aux1, model.aux2 = False, None, None
    dtype = getattr(torch, job["dtype"])
    net = model.eval().to(device, dtype).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size, device=device, dtype=dtype).contiguous(
        memory_format=torch.channels_last
    )
    if how == "optimized":  # traced, frozen, then torch.jit.optimize_for_inference
        with torch.inference_mode():
            net = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, x)))
    if how == "compile":
        net = _compiled(net, job)
    if how == "cuda graph":
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


def _photos(job: dict) -> list[Path]:
    files = sorted(Path(job["photos"]).glob("*.JPEG"))
    if not files:
        raise SystemExit(f"{job['photos']}: no photos; run `bash benchmarks/gpu_files.sh` first")
    return files


def pipeline_row(job: dict, device: torch.device) -> dict:
    """An epoch of the loader `job["how"]` (pil, tensor, dali) as `train` builds it
    (`data.pipelines.loader.make_loader`: its workers, pinned memory on a GPU, prefetching for
    the loaders that work in the training process), JPEG files to normalised batches on
    `device`; DALI's built once and kept (a persistent pipeline). The epoch has two batches
    per worker, so that every worker is busy."""
    files, batch, workers = _photos(job), job["batch"], job["workers"]
    preprocessing = model_card("googlenet").preprocessing
    c = TrainConfig(loader=job["how"], workers=workers, input_size=job["size"])
    transform = None
    if job["how"] == "pil":
        transform = train_transform("googlenet", c.input_size, preprocessing, pixels=True)
    n = batch * 2 * max(1, workers)
    samples = [(str(f), 0) for f in files] * (n // len(files) + 1)
    ds = ImageDataset(samples[:n], ["x"], transform)

    def build():
        return make_loader(
            ds, batch, c, Distributed(), train=True, device=device, preprocessing=preprocessing
        )

    # DALI's pipeline (and its reader's workers) built once and kept, as DALI is meant to run;
    # the others built each epoch, as `train` builds them
    persistent = build() if job["how"] == "dali" else None

    def epoch() -> None:
        for x, _, _ in persistent or build():
            x.sum().item()

    return _median_rate(epoch, n, 2 if job["quick"] else 3, device) | {"photo_files": len(files)}


def augment_row(job: dict, device: torch.device) -> dict:
    """The batched augmentation alone: JPEG bytes already in memory to an augmented batch on
    `device` (`data.pipelines.tensor`), what the tensor loader adds to reading the files."""
    files, batch = _photos(job), job["batch"]
    data = [f.read_bytes() for f in files]
    data = (data * (batch // len(data) + 1))[:batch]
    names = [str(f) for f in files] * (batch // len(files) + 1)
    augment = BatchAugment(job["size"], model_card("googlenet").preprocessing)
    rate = _median_rate(
        lambda: augment(decode_batch(data, names, device)), batch, 2 if job["quick"] else 5, device
    )
    return rate | {"photo_files": len(files)}


ROWS = {
    "ceiling": lambda job, device: ceiling(device, job["quick"]),
    "train": train_row,
    "infer": infer_row,
    "augment": augment_row,
    "pipeline": pipeline_row,
}


def _child(job: dict, queue) -> None:
    # a spawned process inherits "spawn" as its start method, and its loaders would then start
    # each worker as a fresh interpreter that imports torch again (seconds per epoch); `train`
    # runs in a process of its own whose loaders fork, as these now do
    if "fork" in mp.get_all_start_methods():
        mp.set_start_method("fork", force=True)
    try:
        result = ROWS[job["kind"]](job, torch.device(job["device"]))
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


def jobs(args: argparse.Namespace) -> list[dict]:
    """The rows, most telling first: if the time runs out, what is left are compiled variants.
    Each row carries all its settings; rows compared in a ratio differ only in the model."""
    cuda = args.device == "cuda"
    common = {"device": args.device, "batch": args.batch, "size": args.size, "quick": args.quick}
    common["photos"] = str(args.photos)
    train = {**common, "dtype": "bfloat16"}  # autocast, channels-last
    infer = {**common, "dtype": "float16" if cuda else "float32"}  # weights and input, ch-last
    compiled = {"backend": args.compile_backend, "mode": args.compile_mode}
    workers = {"workers": args.workers}
    rows = [{"kind": "ceiling", **common}, {"kind": "augment", **common}]
    rows.append({"kind": "pipeline", "how": "tensor", **common, **workers})
    rows += [{"kind": "train", "model": m, "how": "eager", **train} for m in TRAIN_MODELS]
    for how in ("eager", "optimized", *(("cuda graph",) if cuda else ())):
        rows += [{"kind": "infer", "model": m, "how": how, **infer} for m in INFER_MODELS]
    # bf16 beside fp16, at the full batch and at 32 (where a dtype's overheads would show)
    rows.append(
        {"kind": "infer", "model": "googlenet+fused", "how": "eager", **common, "dtype": "bfloat16"}
    )
    for dtype in (infer["dtype"], "bfloat16"):
        rows.append(
            {
                "kind": "infer",
                "model": "googlenet+fused",
                "how": "eager",
                **common,
                "dtype": dtype,
                "batch": 32,
            }
        )
    rows.append({"kind": "pipeline", "how": "pil", **common, **workers})
    rows.append({"kind": "pipeline", "how": "dali", **common, **workers})
    rows += [
        {"kind": "train", "model": m, "how": "compile", **train, **compiled} for m in TRAIN_MODELS
    ]
    rows += [
        {"kind": "infer", "model": m, "how": "compile", **infer, **compiled} for m in INFER_MODELS
    ]
    return rows


def label(job: dict) -> str:
    """kind/how/model, as `--only` matches it: "train/compile/googlenet"."""
    return "/".join(job[k] for k in ("kind", "how", "model") if k in job)


def settings(job: dict) -> str:
    """What a row ran with, beyond its model and how: dtype, input size, compile backend and
    mode, loader workers."""
    parts = [job[k] for k in ("dtype",) if k in job] + [f"{job['size']} px"]
    if job["kind"] in ("train", "infer"):
        parts.append("channels-last")
    if "backend" in job:
        parts.append(
            f"{job['backend']} {job['mode']}"
            if job["backend"] == "inductor"
            else f"backend {job['backend']}"
        )
    if "workers" in job:
        parts.append(f"{job['workers']} workers")
    return ", ".join(parts)


def _rate(rows: list[dict], kind: str, model: str | None, how: str | None = None) -> float | None:
    """The rate of a row at the run's batch size (the first row's) in its first dtype."""
    for r in rows:
        if r["batch"] != rows[0]["batch"] or r.get("dtype") == "bfloat16" and kind == "infer":
            continue
        if r["kind"] == kind and r.get("model") == model and r.get("how") == how:
            return r.get("images_per_s")
    return None


def render(rows: list[dict], meta: dict) -> str:
    lines = [
        f"# GoogLeNet on {meta['device_name']}",
        "",
        f"`{meta['command']}`, {meta['when']}, torch {meta['torch']}, batch {meta['batch']}; "
        f"{meta.get('libraries', '')}",
        "",
        "| row | model | how | settings | batch | images/s | median s | status |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        rate = f"{r['images_per_s']:,.0f}" if "images_per_s" in r else ""
        median = f"{r['median_s']:.4f}" if "median_s" in r else ""
        if r["kind"] == "ceiling" and "tflops" in r:
            rate = f"{r['tflops']:.1f} TFLOP/s ({r['matrix_dtype']}, {r['matrix']}^3)"
        lines.append(
            f"| {r['kind']} | {r.get('model', '')} | {r.get('how', '')} | {settings(r)} | "
            f"{r['batch']} | {rate} | {median} | {r['status']} |"
        )
    lines += ["", "Ratios, like against like (targets in brackets):", ""]
    for what, ours, ref, goal in _ratios(rows):
        shown = f"{ours / ref:.2f}x" if ours and ref else "n/a"
        lines.append(f"- {what}: {shown} [>= {goal}x]")
    return "\n".join(lines) + "\n"


def _ratios(rows: list[dict]) -> list[tuple]:
    """Each ratio between two rows of the same settings: eager beside eager, compiled beside
    compiled; the input pipeline beside the fastest step of the model it feeds."""
    found = []
    for how in ("eager", "compile"):
        tv = _rate(rows, "train", "torchvision googlenet", how)
        ours = _rate(rows, "train", "googlenet_torchvision", how)
        found.append((f"train googlenet_torchvision / torchvision googlenet, {how}", ours, tv, 1.5))
        faithful = _rate(rows, "train", "googlenet", how)
        found.append((f"train googlenet / googlenet_torchvision, {how}", faithful, ours, 0.9))
    for how in ("eager", "optimized", "compile", "cuda graph"):
        tv = _rate(rows, "infer", "torchvision googlenet", how)
        ours = _rate(rows, "infer", "googlenet_torchvision+fused", how)
        if tv or ours:
            found.append(
                (f"infer googlenet_torchvision / torchvision googlenet, {how}", ours, tv, 1.5)
            )
    steps = [_rate(rows, "train", "googlenet", how) for how in ("eager", "compile")]
    step = max(filter(None, steps), default=None)
    found.append(
        (
            "input pipeline (tensor loader) / fastest googlenet step",
            _rate(rows, "pipeline", None, "tensor"),
            step,
            1.2,
        )
    )
    return found


def _libraries() -> str:
    """The versions of the libraries a row may need that a bare machine lacks."""
    versions = []
    for name in ("webdataset", "captum", "nvidia-dali-cuda130"):
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"no {name}")
    return ", ".join(versions)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=224, help="input side in pixels")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="loader workers")
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--compile-mode", default="default", help="inductor's mode")
    p.add_argument("--row-limit", type=float, default=90.0, help="seconds per row at most")
    p.add_argument("--budget", type=float, default=510.0, help="seconds for all rows")
    p.add_argument("--quick", action="store_true", help="few repeats, small products (a check)")
    p.add_argument("--out", type=Path, default=RESULTS / "gpu.md")
    p.add_argument("--photos", type=Path, default=PHOTOS, help="a folder of JPEGs")
    p.add_argument(
        "--only", default="*", help="rows whose kind/how/model matches one of these patterns"
    )
    args = p.parse_args(argv)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "the CPU"
    meta = {
        "device_name": name,
        "torch": torch.__version__,
        "batch": args.batch,
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "command": "bash benchmarks/gpu.sh " + " ".join(argv if argv is not None else sys.argv[1:]),
        "libraries": _libraries(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with args.out.with_suffix(".jsonl").open("w") as log:
        deadline = time.perf_counter() + args.budget
        patterns = args.only.split(",")
        for job in jobs(args):
            if not any(fnmatch.fnmatchcase(label(job), p) for p in patterns):
                continue
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
