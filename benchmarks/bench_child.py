"""What `inference_bench.py` runs in a fresh interpreter, one configuration at a time, so that
one configuration's memory arenas, compiled kernels and threads do not colour the next and its
peak memory can be read: the process's high-water resident set (VmHWM in /proc/self/status)
when timing ends, minus its resident set after imports, before the model was built. On CUDA
the device's own peak (torch.cuda.max_memory_allocated) is reported too.

A plain subprocess (`run_in_child`), not multiprocessing's "spawn": in a spawned child that
imports torch while it starts, OpenVINO ran batch 1 at half its speed (24-31 against 54
images/s for the same file, threads and settings), which made its rows depend on the harness.

    python benchmarks/bench_child.py JOB RESULT    # JOB: pickled (function, args)
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

from bench_rows import Config
from goingdeeper import create_model
from goingdeeper.inference import (
    OnnxRuntimeModel,
    OpenVINOModel,
    fuse_inception_1x1,
    optimize_for_inference,
    sgemm_gmacs,
    time_call,
)
from goingdeeper.models import GoogLeNetOutputs
from goingdeeper.models.base import classification_loss
from goingdeeper.models.googlenet import AUX_WEIGHT

INPUT_SIZE = 224


def run_in_child(target: Callable, *args) -> dict:
    """`target(*args)` in a fresh interpreter; returns the dict it returned, or an error."""
    with tempfile.TemporaryDirectory() as tmp:
        job, result = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        job.write_bytes(pickle.dumps((target, args)))
        done = subprocess.run([sys.executable, __file__, str(job), str(result)])
        if result.is_file():
            return pickle.loads(result.read_bytes())
        return {
            "error": f"the benchmark process died (exit code {done.returncode}; out of memory?)"
        }


def _child_main(job: str, result: str) -> None:
    target, args = pickle.loads(Path(job).read_bytes())
    try:
        out = target(*args)
    except Exception as e:  # noqa: BLE001 - reported as a failed row with its reason
        out = {"error": f"{type(e).__name__}: {e}"[:400]}
    tmp = Path(result).with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(out))
    tmp.replace(result)


def rss_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


# --- inference ---------------------------------------------------------------------------------


def torch_model(config: Config, workdir: Path, batch: int) -> Callable:
    device = torch.device(config.device)
    if config.model == "torchvision":
        model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    else:
        model = create_model(config.model, aux_logits=False, init_weights=False)
    model.load_state_dict(torch.load(workdir / f"{config.model}.pt", weights_only=True))
    model.eval()
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.precision]
    if config.form in ("fused", "compile", "graphs") and config.ours:
        compiled = config.form == "compile"
        net = optimize_for_inference(model, dtype=dtype, compile=compiled, device=device)
        return cuda_graph(net, batch) if config.form == "graphs" else net
    memory_format = torch.contiguous_format
    if config.form in ("channels-last", "compile", "autocast-cl"):
        memory_format = torch.channels_last
    model = model.to(device=device, memory_format=memory_format)
    if config.form == "compile":
        model = torch.compile(model)
    autocast = config.form == "autocast-cl" and dtype is not None

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=device, memory_format=memory_format)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=autocast):
            return model(x)

    return run


def cuda_graph(net: torch.nn.Module, batch: int) -> Callable:
    """Capture one forward at a fixed batch in a CUDA graph; replay it per call."""
    static_in = torch.zeros(batch, 3, INPUT_SIZE, INPUT_SIZE, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):  # warm up allocations and autotuning outside the graph
            net(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        static_out = net(static_in)

    def run(x: torch.Tensor) -> torch.Tensor:
        static_in.copy_(x, non_blocking=True)
        graph.replay()
        return static_out

    return run


def file_model(config: Config, workdir: Path, threads: int) -> Callable:
    path = workdir / f"{config.model}-{'int8' if config.precision == 'int8' else 'fp32'}.onnx"
    nncf = workdir / f"{config.model}-int8-nncf.xml"
    if config.runtime == "openvino" and config.precision == "int8" and nncf.is_file():
        path = nncf  # OpenVINO's own int8 (NNCF); else it runs the ONNX Runtime QDQ file
    if config.runtime == "onnxruntime":
        model = OnnxRuntimeModel(path, threads=threads)
    else:
        precision = "bf16" if config.precision == "bf16" else "f32"
        model = OpenVINOModel(path, precision=precision, threads=threads)
    return lambda x: model.numpy(x.numpy())


def time_row(config: Config, batch: int, options, workdir: Path) -> dict:
    """Build, warm up and time one configuration at one batch size (random input)."""
    torch.set_num_threads(options.threads)
    # random weights (torchvision's rows) can drive activations into denormals, which x86 runs
    # many times slower: flushed to zero in every torch row alike
    torch.set_flush_denormal(True)
    base = rss_kib("VmRSS")
    cuda = config.device == "cuda"
    if config.runtime == "torch":
        run = torch_model(config, workdir, batch)
    else:
        run = file_model(config, workdir, options.threads)
    x = torch.randn(batch, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    if cuda:
        x = x.cuda()
        torch.cuda.reset_peak_memory_stats()
    repeats = max(options.repeats, 20) if batch == 1 else options.repeats
    sync = torch.cuda.synchronize if cuda else None
    with torch.inference_mode():
        t = time_call(lambda: run(x), repeats=repeats, warmup=options.warmup, sync=sync)
    result = {
        "batch": batch,
        "median_s": t["median_s"],
        "times_s": t["times_s"],
        "images_per_s": batch / t["median_s"],
        "latency_ms": 1e3 * t["median_s"],
        "first_run_s": t["first_call_s"],
        "peak_rss_mb": rss_kib("VmHWM") / 1024,
        "peak_rss_delta_mb": (rss_kib("VmHWM") - base) / 1024,
    }
    if cuda:
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


# --- training ----------------------------------------------------------------------------------


def train_step(name: str, bf16: bool, options, workdir: Path) -> dict:
    """One SGD step (forward, main + 0.3 aux losses, backward, update) at 224, channels-last:
    torchvision's googlenet, or our `googlenet_torchvision` with fused 1x1s."""
    torch.set_num_threads(options.threads)
    base = rss_kib("VmRSS")
    if name == "torchvision":
        model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    else:
        model = fuse_inception_1x1(create_model("googlenet_torchvision", init_weights=False))
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    b = options.train_bf16_batch if bf16 else options.train_batch
    x = torch.randn(b, 3, INPUT_SIZE, INPUT_SIZE, generator=g)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (b,), generator=g)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
            if name == "torchvision":  # its record is (logits, aux2, aux1): ours, reordered
                out = GoogLeNetOutputs(out.logits, out.aux_logits1, out.aux_logits2)
            loss = classification_loss(out, y, aux_weight=AUX_WEIGHT).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    repeats = options.train_bf16_repeats if bf16 else options.train_repeats
    t = time_call(step, repeats=repeats, warmup=1 if bf16 else options.warmup)
    return {
        "batch": b,
        "median_s": t["median_s"],
        "times_s": t["times_s"],
        "images_per_s": b / t["median_s"],
        "peak_rss_delta_mb": (rss_kib("VmHWM") - base) / 1024,
    }


def ceiling(threads: int) -> dict:
    return {"gmacs": sgemm_gmacs(threads)}


if __name__ == "__main__":
    _child_main(*sys.argv[1:])
