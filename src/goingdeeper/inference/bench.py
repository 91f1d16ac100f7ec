"""`goingdeeper bench`: our inference paths against torchvision's googlenet, in one run.

Every configuration is timed in a fresh Python interpreter (a subprocess), so that one
configuration's memory arenas, compiled kernels and threads do not colour the next, and so
that its peak memory can be read: the process's high-water resident set (VmHWM in
/proc/self/status) when timing ends, minus its resident set after imports, before the model
was built. That delta holds the weights, the runtime's buffers and arenas, and the input
batch; it is what running the configuration costs on top of an idle Python with the runtime
imported. On CUDA the device's own peak (torch.cuda.max_memory_allocated) is reported too.

Timing: `warmup` untimed runs, then `repeats` timed runs of one batch each (at batch 1 at
least 20); the median is reported as latency (ms per batch) and images/s = batch / median.
Accuracy (top-1 on imagenet-sample, one center crop) is measured for our paths with the BVLC
weights when the shared data is there; torchvision's graph has random weights here (no
internet for its download), so its rows have speed only.
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

INPUT_SIZE = 224
CALIBRATION_EVERY = 5  # imagenet-sample images 0, 5, 10, ... calibrate int8; the rest are held out


@dataclass(frozen=True)
class BenchOptions:
    batch_sizes: tuple[int, ...] = (1, 32)
    repeats: int = 5  # timed runs per configuration (the median is reported); batch 1: >= 20
    warmup: int = 2
    threads: int = 2
    only: tuple[str, ...] = ()  # substrings of configuration names; empty: all
    data: Path | None = None  # ../shared/data: BVLC weights and imagenet-sample
    accuracy_images: int = 1000
    bf16_accuracy_images: int = 200  # torch bf16 runs ~6x slower than fp32 on AVX2
    train: bool = True
    train_batch: int = 32
    train_repeats: int = 5
    train_bf16_batch: int = 8  # bf16 autocast training is ~6x slower here: smaller batch
    train_bf16_repeats: int = 3
    profile: bool = True


@dataclass(frozen=True)
class Config:
    name: str
    runtime: str  # torch, onnxruntime, openvino
    model: str  # torchvision, googlenet (BVLC layout), googlenet_torchvision
    precision: str  # fp32, bf16, fp16, int8
    ours: bool
    form: str = "eager"  # eager, channels-last, fused, compile, cuda-graphs; for files: graph
    device: str = "cpu"
    note: str = ""


def cpu_configs() -> list[Config]:
    tv, gn, gt = "torchvision", "googlenet", "googlenet_torchvision"
    c = Config
    return [
        c("torchvision eager", "torch", tv, "fp32", False, note="reference (1.0x)"),
        c("torchvision channels-last", "torch", tv, "fp32", False, "channels-last"),
        c("torchvision torch.compile", "torch", tv, "fp32", False, "compile"),
        c("ours googlenet eager", "torch", gn, "fp32", True, note="BVLC layout: LRN, 5x5"),
        c("ours googlenet fused", "torch", gn, "fp32", True, "fused"),
        c("ours googlenet_torchvision fused", "torch", gt, "fp32", True, "fused"),
        c("ours googlenet fused bf16", "torch", gn, "bf16", True, "fused"),
        c("ours googlenet fused torch.compile", "torch", gn, "fp32", True, "compile"),
        c("ORT fp32 torchvision graph", "onnxruntime", tv, "fp32", False),
        c("ORT int8 torchvision graph", "onnxruntime", tv, "int8", False),
        c("ORT fp32 ours googlenet folded", "onnxruntime", gn, "fp32", True),
        c("ORT int8 ours googlenet folded", "onnxruntime", gn, "int8", True),
        c("ORT fp32 ours googlenet_torchvision folded", "onnxruntime", gt, "fp32", True),
        c("ORT int8 ours googlenet_torchvision folded", "onnxruntime", gt, "int8", True),
        c("OpenVINO fp32 torchvision graph", "openvino", tv, "fp32", False),
        c("OpenVINO bf16 torchvision graph", "openvino", tv, "bf16", False),
        c("OpenVINO int8 torchvision graph", "openvino", tv, "int8", False),
        c("OpenVINO fp32 ours googlenet folded", "openvino", gn, "fp32", True),
        c("OpenVINO bf16 ours googlenet folded", "openvino", gn, "bf16", True),
        c("OpenVINO int8 ours googlenet folded", "openvino", gn, "int8", True),
        c("OpenVINO fp32 ours googlenet_torchvision folded", "openvino", gt, "fp32", True),
        c("OpenVINO bf16 ours googlenet_torchvision folded", "openvino", gt, "bf16", True),
        c("OpenVINO int8 ours googlenet_torchvision folded", "openvino", gt, "int8", True),
    ]


def cuda_configs() -> list[Config]:
    """GPU paths; measured only where CUDA is present."""
    tv, gn = "torchvision", "googlenet"
    c = Config
    return [
        c("cuda torchvision eager", "torch", tv, "fp32", False, device="cuda"),
        c("cuda torchvision channels-last fp16", "torch", tv, "fp16", False, "autocast-cl", "cuda"),
        c("cuda ours googlenet fused fp16", "torch", gn, "fp16", True, "fused", "cuda"),
        c("cuda ours googlenet fused bf16", "torch", gn, "bf16", True, "fused", "cuda"),
        c("cuda ours googlenet fused compile fp16", "torch", gn, "fp16", True, "compile", "cuda"),
        c(
            "cuda ours googlenet fused CUDA graphs fp16",
            "torch",
            gn,
            "fp16",
            True,
            "graphs",
            "cuda",
        ),
    ]


# --- building each configuration (in the child process) -------------------------------------


def _torch_model(config: Config, workdir: Path, batch: int) -> Callable:
    from ..registry import create_model
    from .runtime import optimize_for_inference

    device = torch.device(config.device)
    if config.model == "torchvision":
        import torchvision

        model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    else:
        model = create_model(config.model, aux_logits=False, init_weights=False)
    model.load_state_dict(torch.load(workdir / f"{config.model}.pt", weights_only=True))
    model.eval()
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.precision]
    if config.form in ("fused", "compile", "graphs") and config.ours:
        net = optimize_for_inference(
            model, dtype=dtype, compile=config.form == "compile", device=device
        )
        if config.form == "graphs":
            return _cuda_graph(net, batch)
        return net
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


def _cuda_graph(net: torch.nn.Module, batch: int) -> Callable:
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


def _file_model(config: Config, workdir: Path, threads: int) -> Callable:
    from .runtime import OnnxRuntimeModel, OpenVINOModel

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


def _rss_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def _time_child(config: Config, batch: int, options: BenchOptions, workdir: Path, conn) -> None:
    """Runs in a fresh process: build, warm up, time; send back a dict."""
    try:
        torch.set_num_threads(options.threads)
        # random weights (torchvision's rows) can drive activations into denormals, which
        # x86 runs many times slower: flushed to zero in every torch row alike
        torch.set_flush_denormal(True)
        base = _rss_kib("VmRSS")
        start = time.perf_counter()
        cuda = config.device == "cuda"
        if config.runtime == "torch":
            run = _torch_model(config, workdir, batch)
        else:
            run = _file_model(config, workdir, options.threads)
        x = torch.randn(
            batch, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0)
        )
        if cuda:
            x = x.cuda()
            torch.cuda.reset_peak_memory_stats()
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        with torch.inference_mode():
            run(x)  # first call: compilation, kernel selection
            sync()
            first = time.perf_counter() - start
            for _ in range(max(0, options.warmup - 1)):
                run(x)
            sync()
            times = []
            for _ in range(max(options.repeats, 20) if batch == 1 else options.repeats):
                t = time.perf_counter()
                run(x)
                sync()
                times.append(time.perf_counter() - t)
        median = statistics.median(times)
        result = {
            "batch": batch,
            "median_s": median,
            "times_s": times,
            "images_per_s": batch / median,
            "latency_ms": 1e3 * median,
            "build_and_first_run_s": first,
            "peak_rss_mb": _rss_kib("VmHWM") / 1024,
            "peak_rss_delta_mb": (_rss_kib("VmHWM") - base) / 1024,
        }
        if cuda:
            result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        conn.send(result)
    except Exception as e:  # reported as a skipped row with its reason
        conn.send({"batch": batch, "error": f"{type(e).__name__}: {e}"[:400]})
    finally:
        conn.close()


def _train_child(name: str, bf16: bool, options: BenchOptions, workdir: Path, conn) -> None:
    """One SGD step (forward, main + 0.3 aux losses, backward, update), batch 32 at 224."""
    try:
        import torch.nn.functional as F

        from ..models.googlenet import googlenet_loss
        from ..registry import create_model
        from .fuse import fuse_inception_1x1

        torch.set_num_threads(options.threads)
        base = _rss_kib("VmRSS")
        if name == "torchvision":
            import torchvision

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
                if name == "torchvision":  # (logits, aux2, aux1)
                    main, aux2, aux1 = out
                    loss = F.cross_entropy(main, y) + 0.3 * (
                        F.cross_entropy(aux1, y) + F.cross_entropy(aux2, y)
                    )
                else:
                    loss = googlenet_loss(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(options.warmup if not bf16 else 1):
            step()
        times = []
        for _ in range(options.train_bf16_repeats if bf16 else options.train_repeats):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        median = statistics.median(times)
        conn.send(
            {
                "batch": b,
                "median_s": median,
                "times_s": times,
                "images_per_s": b / median,
                "peak_rss_delta_mb": (_rss_kib("VmHWM") - base) / 1024,
            }
        )
    except Exception as e:
        conn.send({"error": f"{type(e).__name__}: {e}"[:400]})
    finally:
        conn.close()


def _peak_child(threads: int, conn) -> None:
    try:
        conn.send({"gmacs": sgemm_gmacs(threads)})
    except Exception as e:
        conn.send({"error": f"{type(e).__name__}: {e}"[:400]})
    finally:
        conn.close()


def _macs_per_image() -> dict[str, dict[str, int]]:
    """Multiply-adds per image of each timed network: the inference graph and a training step."""
    import torchvision

    from ..analysis import count_params_macs, training_step_macs
    from ..registry import create_model

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


class _ResultFile:
    """The child's end of `_in_child`: `send` writes the result where the parent reads it."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def send(self, result: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(result))
        tmp.replace(self.path)

    def close(self) -> None:
        pass


def _child_main(job: str, result: str) -> None:
    target, args = pickle.loads(Path(job).read_bytes())
    target(*args, _ResultFile(result))


def _in_child(target, *args) -> dict:
    """`target(*args, conn)` in a fresh interpreter; returns the dict it sent through `conn`.

    A plain subprocess, not multiprocessing's "spawn": in a spawned child that imports torch
    while it starts, OpenVINO ran batch 1 at half its speed (24-31 against 54 images/s for the
    same file, threads and settings), which made its rows depend on the harness."""
    with tempfile.TemporaryDirectory() as tmp:
        job, result = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        job.write_bytes(pickle.dumps((target, args)))
        code = (
            "import sys; from goingdeeper.inference import bench; bench._child_main(*sys.argv[1:])"
        )
        done = subprocess.run([sys.executable, "-c", code, str(job), str(result)])
        if result.is_file():
            return pickle.loads(result.read_bytes())
        return {
            "error": f"the benchmark process died (exit code {done.returncode}; out of memory?)"
        }


# --- preparing the models and files (in the parent) ------------------------------------------


def _our_model(options: BenchOptions):
    """BVLC GoogLeNet when the shared data is there (accuracy measurable), else random."""
    from ..registry import create_model

    bvlc = options.data / "bvlc-googlenet" if options.data else None
    if bvlc is not None and bvlc.is_dir():
        from ..weights.caffe import import_bvlc

        model, card = import_bvlc(bvlc)
        return model.eval(), card.preprocessing, True
    from ..registry import model_card

    torch.manual_seed(0)
    model = create_model("googlenet", aux_logits=False).eval()
    return model, model_card("googlenet").preprocessing, False


def _sample_images(options: BenchOptions, preprocessing) -> tuple[torch.Tensor, torch.Tensor]:
    """imagenet-sample, one center crop each, with `preprocessing`: (images, labels)."""
    from ..evaluate.samples import imagenet_sample_samples
    from ..evaluate.views import one_crop
    from ..preprocess import load_image

    samples = imagenet_sample_samples(options.data / "imagenet-sample")
    samples = samples[: options.accuracy_images]
    images = torch.cat([one_crop(load_image(p), preprocessing) for p, _ in samples])
    labels = torch.tensor([label for _, label in samples])
    return images, labels


def _prepare(configs: list[Config], options: BenchOptions, workdir: Path, log) -> dict:
    """Weights for the torch children, ONNX files (fp32, int8) for the others."""
    import torchvision

    from ..export import export_onnx
    from ..registry import create_model, model_card
    from ..weights.torchvision import convert_torchvision_state_dict
    from .deploy import deployable
    from .quantize import quantize_onnx

    info: dict = {}
    ours, pre, real = _our_model(options)
    info["real_weights"] = real
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    # the same network as torchvision's with the same (random) weights: timings that depend on
    # the values (denormals) then compare like with like
    gt = create_model("googlenet_torchvision", aux_logits=False, init_weights=False).eval()
    gt.load_state_dict(convert_torchvision_state_dict(tv.state_dict()))
    models = {"googlenet": ours, "torchvision": tv, "googlenet_torchvision": gt}
    for name, model in models.items():
        torch.save(model.state_dict(), workdir / f"{name}.pt")

    images = labels = None
    if real and options.data and (options.data / "imagenet-sample").is_dir():
        log("preprocessing imagenet-sample (one center crop each)")
        images, labels = _sample_images(options, pre)
        calibration = images[::CALIBRATION_EVERY]
        info["calibration"] = (
            f"{len(calibration)} imagenet-sample photos (every {CALIBRATION_EVERY}th); "
            f"accuracy on all {len(images)} and on the {len(images) - len(calibration)} others"
        )
    else:
        calibration = torch.randn(200, 3, INPUT_SIZE, INPUT_SIZE)
        info["calibration"] = "200 random-normal batches (no shared data): int8 speed only"
    gt_pre = model_card("googlenet_torchvision").preprocessing
    needed = {(c.model, c.precision == "int8") for c in configs if c.runtime != "torch"}
    for name, int8 in sorted(needed):
        fp32 = workdir / f"{name}-fp32.onnx"
        if not fp32.is_file():
            log(f"exporting {name} to ONNX")
            net = (
                models[name] if name == "torchvision" else deployable(models[name], 224, fused=True)
            )
            export_onnx(net, fp32, INPUT_SIZE)
        if int8:
            log(f"quantizing {name} to int8")
            calib = calibration
            if name != "googlenet" and images is not None:  # their own input transform
                calib = _retransform(calibration, pre, gt_pre)
            quantize_onnx(fp32, workdir / f"{name}-int8.onnx", calib.split(20))
            openvino_int8 = any(
                c.model == name and c.runtime == "openvino" and c.precision == "int8"
                for c in configs
            )
            if openvino_int8 and _have("nncf"):
                log(f"quantizing {name} to int8 with NNCF for OpenVINO")
                _nncf_quantize(fp32, workdir / f"{name}-int8-nncf.xml", calib)
    info["openvino_int8"] = (
        "NNCF (nncf.quantize, OpenVINO's own post-training quantization), same calibration"
        if _have("nncf")
        else "the ONNX Runtime QDQ file (nncf is not installed)"
    )
    info["images"], info["labels"] = images, labels
    info["model"], info["preprocessing"] = ours, pre
    return info


def _nncf_quantize(source: Path, out: Path, calibration: torch.Tensor) -> None:
    """OpenVINO's own int8: NNCF's default post-training quantization (per-channel weights,
    min-max activations plus its bias correction), on the same calibration images."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(source))
    batches = [b.numpy() for b in calibration.split(1)]
    quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches))
    ov.save_model(quantized, str(out))


def _retransform(x: torch.Tensor, source, target) -> torch.Tensor:
    """Inputs normalised for `source` re-normalised for `target` (same crop): back to 0..255
    pixels in RGB, then the target's scale, mean, std and channel order."""

    def planes(p) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.tensor(p.mean).view(1, 3, 1, 1), torch.tensor(p.std).view(1, 3, 1, 1))

    mean, std = planes(source)
    pixels = (x * std + mean) / source.scale
    if source.channel_order == "BGR":
        pixels = pixels.flip(1)
    mean, std = planes(target)
    out = (pixels * target.scale - mean) / std
    return out.flip(1) if target.channel_order == "BGR" else out


# --- accuracy (in the parent) ----------------------------------------------------------------


def _predictions(run: Callable, images: torch.Tensor, batch: int = 50) -> torch.Tensor:
    preds = []
    with torch.inference_mode():
        for xs in images.split(batch):
            out = run(xs)
            preds.append(torch.as_tensor(np.asarray(out)).argmax(1))
    return torch.cat(preds)


def _accuracy(info: dict, options: BenchOptions, workdir: Path, log) -> dict:
    """Top-1 of our BVLC GoogLeNet paths. fp32 graphs equal the plain model to 1e-4 (see
    tests/test_inference.py), so fp32 is measured once, on the plain model."""
    from .runtime import OnnxRuntimeModel, OpenVINOModel, optimize_for_inference

    images, labels = info["images"], info["labels"]
    held_out = torch.ones(len(labels), dtype=torch.bool)
    held_out[::CALIBRATION_EVERY] = False
    model = info["model"]
    nncf = workdir / "googlenet-int8-nncf.xml"
    fp32_onnx, int8_onnx = workdir / "googlenet-fp32.onnx", workdir / "googlenet-int8.onnx"
    paths: dict[str, Callable[[], Callable]] = {
        "torch fp32 (plain)": lambda: model,
        "torch bf16 fused": lambda: optimize_for_inference(model, dtype=torch.bfloat16),
        "ORT int8 folded": lambda: OnnxRuntimeModel(int8_onnx, threads=options.threads),
        "OpenVINO bf16 folded": lambda: OpenVINOModel(fp32_onnx, precision="bf16"),
        "OpenVINO int8 folded": lambda: OpenVINOModel(nncf if nncf.is_file() else int8_onnx),
    }
    out = {}
    fp32 = None
    for name, build in paths.items():
        if "OpenVINO" in name and not (_have("openvino") and fp32_onnx.is_file()):
            continue
        if "ORT" in name and not int8_onnx.is_file():
            continue
        n = options.bf16_accuracy_images if name == "torch bf16 fused" else len(labels)
        log(f"top-1: {name} on {n} images")
        pred = _predictions(build(), images[:n])
        ok = pred == labels[:n]
        row = {"images": n, "top1": ok.float().mean().item()}
        if fp32 is None:
            fp32 = pred == labels
        if n == len(labels):
            row["top1_held_out"] = ok[held_out].float().mean().item()
        else:  # the fp32 figure on the same subset, for a like-for-like difference
            row["top1_fp32_same_images"] = fp32[:n].float().mean().item()
        out[name] = row
    return out


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# --- profile: where the time goes ------------------------------------------------------------


def _profile(workdir: Path, info: dict, threads: int) -> dict:
    """Time per operator type: ONNX Runtime int8 and fp32 (our folded graph), torch fused."""
    import onnxruntime as ort

    from .runtime import optimize_for_inference

    out: dict[str, list] = {}
    x = torch.randn(32, 3, INPUT_SIZE, INPUT_SIZE)
    for precision in ("int8", "fp32"):
        path = workdir / f"googlenet-{precision}.onnx"
        if not path.is_file():
            continue
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(workdir / f"ort-{precision}")
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(3):
            session.run(None, {session.get_inputs()[0].name: x.numpy()})
        trace = json.loads(Path(session.end_profiling()).read_text())
        by_op: dict[str, float] = {}
        for event in trace:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                op = event.get("args", {}).get("op_name", "?")
                by_op[op] = by_op.get(op, 0.0) + event["dur"] / 3e3  # ms per run
        total = sum(by_op.values())
        out[f"ORT {precision} ours googlenet folded, batch 32"] = [
            (op, ms, ms / total) for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])[:8]
        ]
    torch.set_num_threads(threads)
    net = optimize_for_inference(info["model"])
    with torch.inference_mode():
        net(x)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            net(x)
    rows = [(e.key, e.self_cpu_time_total / 1e3) for e in prof.key_averages()]
    total = sum(ms for _, ms in rows)
    rows.sort(key=lambda r: -r[1])
    out["torch fp32 ours googlenet fused, batch 32"] = [(k, ms, ms / total) for k, ms in rows[:8]]
    return out


# --- the run ---------------------------------------------------------------------------------


def _selected(configs: list[Config], options: BenchOptions) -> list[Config]:
    if not options.only:
        return configs
    return [c for c in configs if any(s.lower() in c.name.lower() for s in options.only)]


def sgemm_gmacs(threads: int, size: int = 4096, repeats: int = 5) -> float:
    """This machine's fp32 arithmetic ceiling as PyTorch reaches it: multiply-adds per second
    (in billions) of a `size`-square fp32 matrix product on `threads` threads, the median of
    `repeats` after a warm-up product. Convolutions at this rate have no arithmetic left to
    gain; only doing less of it (lower precision, fewer multiply-adds) goes faster."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=g)
        b = torch.randn(size, size, generator=g)
        torch.mm(a, b)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        return size**3 / statistics.median(times) / 1e9
    finally:
        torch.set_num_threads(previous)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"torch": torch.__version__}
    for name in ("torchvision", "onnxruntime", "openvino", "nncf"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:
            versions[name] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average": os.getloadavg(),
        "versions": versions,
    }


def run_benchmarks(options: BenchOptions, log: Callable[[str], None] = lambda s: None) -> dict:
    """Time every selected configuration at every batch size; top-1 where the data allows;
    the training step; the targets of issue 7. Returns a dict (see `write_results`)."""
    configs = cpu_configs() + (cuda_configs() if torch.cuda.is_available() else [])
    configs = _selected(configs, options)
    skipped: dict[str, str] = {}
    if not _have("openvino"):
        for c in configs:
            if c.runtime == "openvino":
                skipped[c.name] = "openvino is not installed (pip install 'goingdeeper[bench]')"
    configs = [c for c in configs if c.name not in skipped]
    torch.set_num_threads(options.threads)
    result: dict = {"machine": machine(), "options": _jsonable(asdict(options)), "rows": []}
    started = time.perf_counter()
    log("fp32 matrix-product ceiling")
    peak = _in_child(_peak_child, options.threads)
    result["sgemm_gmacs"] = peak.get("gmacs")
    result["macs_per_image"] = macs = _macs_per_image()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        info = _prepare(configs, options, workdir, log)
        result["real_weights"] = info["real_weights"]
        result["calibration"] = info["calibration"]
        result["openvino_int8"] = info["openvino_int8"]
        for config in configs:
            for batch in options.batch_sizes:
                log(f"timing {config.name}, batch {batch}")
                row = _in_child(_time_child, config, batch, options, workdir)
                if "images_per_s" in row:
                    row["gmacs_per_s"] = row["images_per_s"] * macs[config.model]["inference"] / 1e9
                result["rows"].append({**asdict(config), **row})
        if options.train:
            result["train"] = []
            for name in ("torchvision", "ours fused 1x1"):
                for bf16 in (False, True):
                    log(f"training step: {name}, {'bf16 autocast' if bf16 else 'fp32'}")
                    row = _in_child(_train_child, name, bf16, options, workdir)
                    if "images_per_s" in row:  # ours is googlenet_torchvision, fused
                        network = (
                            "torchvision" if name == "torchvision" else "googlenet_torchvision"
                        )
                        step_macs = macs[network]["training_step"]
                        row["gmacs_per_s"] = row["images_per_s"] * step_macs / 1e9
                    result["train"].append({"model": name, "bf16": bf16, **row})
        if info["images"] is not None:
            result["accuracy"] = _accuracy(info, options, workdir, log)
        if options.profile:
            log("profiling")
            try:
                result["profile"] = _profile(workdir, info, options.threads)
            except Exception as e:
                result["profile_error"] = f"{type(e).__name__}: {e}"
    result["skipped"] = skipped
    result["seconds"] = time.perf_counter() - started
    result["machine"]["load_average_end"] = os.getloadavg()
    result["targets"] = targets(result)
    return result


def _jsonable(d: dict) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


# --- targets ---------------------------------------------------------------------------------


def _rate(result: dict, name: str, batch: int) -> float | None:
    for row in result["rows"]:
        if row["name"] == name and row["batch"] == batch and "images_per_s" in row:
            return row["images_per_s"]
    return None


def _best(result: dict, batch: int, keep: Callable[[dict], bool]) -> tuple[str, float] | None:
    rows = [r for r in result["rows"] if r["batch"] == batch and "images_per_s" in r and keep(r)]
    if not rows:
        return None
    row = max(rows, key=lambda r: r["images_per_s"])
    return row["name"], row["images_per_s"]


def targets(result: dict) -> list[dict]:
    """Issue 7's three targets, each as measured in this run: ratio, met or not."""
    out = []
    batches = sorted({r["batch"] for r in result["rows"]})
    acc = result.get("accuracy", {})

    def top1_drop(name: str) -> float | None:
        if name in acc and "torch fp32 (plain)" in acc:
            row = acc[name]
            ref = row.get("top1_fp32_same_images", acc["torch fp32 (plain)"]["top1"])
            return 100 * (ref - row["top1"])
        return None

    cpu = lambda r: r["device"] == "cpu"  # noqa: E731
    for batch in batches:
        ours = _best(result, batch, lambda r: cpu(r) and r["ours"] and r["precision"] == "fp32")
        peer = _best(result, batch, lambda r: cpu(r) and not r["ours"] and r["precision"] == "fp32")
        out.append(_target(f"fastest fp32, batch {batch}", ours, peer, 1.0))
        ours = _best(result, batch, lambda r: cpu(r) and r["ours"] and r["precision"] == "bf16")
        peer = _best(result, batch, lambda r: r["name"] == "OpenVINO bf16 torchvision graph")
        t = _target(f"bf16 vs OpenVINO bf16, batch {batch}", ours, peer, 1.0)
        t["top1_drop_points"] = {
            n: top1_drop(n) for n in ("torch bf16 fused", "OpenVINO bf16 folded")
        }
        out.append(t)
        ours = _best(result, batch, lambda r: cpu(r) and r["ours"])
        peer = _best(result, batch, lambda r: r["name"] == "OpenVINO int8 torchvision graph")
        t = _target(f"fastest vs OpenVINO int8, batch {batch}", ours, peer, 1.1)
        t["top1_drop_points"] = {
            n: top1_drop(n) for n in ("ORT int8 folded", "OpenVINO int8 folded")
        }
        out.append(t)
    return out


def _target(what: str, ours, peer, goal: float) -> dict:
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


# --- writing ---------------------------------------------------------------------------------


def render_markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Inference benchmark",
        "",
        "Made by `python benchmarks/inference_bench.py` (= `goingdeeper bench --data "
        "../shared/data`). Input 224x224, random input batches for the timings; every row "
        "timed in a fresh process.",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores"
        + (f", CUDA {m['cuda']}" if m["cuda"] else ", no GPU")
        + f"; load average at start {m['load_average'][0]:.2f}, at end "
        f"{m['load_average_end'][0]:.2f}"
        + (
            " (other work was running when it started: absolute numbers are low and noisy, "
            "ratios within one run are what to read)"
            if m["load_average"][0] > 1.0
            else ""
        ),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
        f"- threads: {result['options']['threads']} for every runtime; "
        f"median of {result['options']['repeats']} timed runs (batch 1: at least 20) after "
        f"{result['options']['warmup']} warm-up runs",
        "- peak memory: the process's high-water resident set (VmHWM) minus its resident set "
        "after imports, i.e. weights + runtime buffers + the batch",
        f"- int8 calibration: {result['calibration']}",
        f"- OpenVINO int8 model: {result['openvino_int8']}",
        f"- total time: {result['seconds'] / 60:.1f} min",
    ]
    peak = result.get("sgemm_gmacs")
    if peak:
        lines.append(
            f"- fp32 arithmetic ceiling: a 4096x4096 fp32 matrix product runs at {peak:.1f} G "
            "multiply-adds/s on these threads; GMAC/s below = images/s x the network's "
            "multiply-adds per image, and its share of that ceiling (int8 and bf16 can pass it)"
        )
    lines.append("")

    def arithmetic(row: dict) -> str:
        rate = row.get("gmacs_per_s")
        if rate is None:
            return ""
        return f"{rate:.1f} ({rate / peak:.0%})" if peak else f"{rate:.1f}"

    ref = {b: _rate(result, "torchvision eager", b) for b in result["options"]["batch_sizes"]}
    header = "| configuration | ours | batch | images/s | latency ms | vs torchvision eager |"
    lines += [
        header + " GMAC/s (of ceiling) | peak RSS delta MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if "error" in row:
            lines.append(f"| {row['name']} | | {row['batch']} | failed: {row['error']} | | | | |")
            continue
        r = ref.get(row["batch"])
        ratio = f"{row['images_per_s'] / r:.2f}x" if r else ""
        lines.append(
            f"| {row['name']} | {'yes' if row['ours'] else ''} | {row['batch']} | "
            f"{row['images_per_s']:.1f} | {row['latency_ms']:.1f} | {ratio} | "
            f"{arithmetic(row)} | {row['peak_rss_delta_mb']:.0f} |"
        )
    for name, why in result["skipped"].items():
        lines.append(f"| {name} | | | skipped: {why} | | | | |")
    if result.get("train"):
        lines += [
            "",
            f"## Training step (batch {result['options']['train_batch']}, 224x224, "
            "channels-last, SGD, main + 0.3 aux losses)",
            "",
            "| model | precision | batch | images/s | s/step | vs torchvision (same precision) | "
            "GMAC/s (of ceiling) | peak RSS delta MB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        tv = {
            t["bf16"]: t.get("images_per_s") for t in result["train"] if t["model"] == "torchvision"
        }
        for t in result["train"]:
            prec = "bf16 autocast" if t["bf16"] else "fp32"
            if "error" in t:
                lines.append(f"| {t['model']} | {prec} | | failed: {t['error']} | | | | |")
                continue
            ratio = f"{t['images_per_s'] / tv[t['bf16']]:.2f}x" if tv.get(t["bf16"]) else ""
            lines.append(
                f"| {t['model']} | {prec} | {t['batch']} | {t['images_per_s']:.2f} | "
                f"{t['median_s']:.2f} | "
                f"{ratio} | {arithmetic(t)} | {t['peak_rss_delta_mb']:.0f} |"
            )
        lines.append("")
        lines.append(
            "torchvision: `googlenet(aux_logits=True)`; ours: `googlenet_torchvision` (the same "
            "network) with `fuse_inception_1x1`. Median of "
            f"{result['options']['train_repeats']} steps; bf16 autocast: batch "
            f"{result['options']['train_bf16_batch']}, median of "
            f"{result['options']['train_bf16_repeats']} (no native bf16 on this CPU)."
        )
    if result.get("accuracy"):
        lines += [
            "",
            "## Top-1 on imagenet-sample (BVLC GoogLeNet, one center crop)",
            "",
            "| path | images | top-1 | top-1 on held-out (not calibration) images | "
            "fp32 top-1 on the same images |",
            "|---|---|---|---|---|",
        ]
        for name, row in result["accuracy"].items():
            held = row.get("top1_held_out")
            same = row.get("top1_fp32_same_images")
            lines.append(
                f"| {name} | {row['images']} | {100 * row['top1']:.1f}% | "
                f"{'' if held is None else f'{100 * held:.1f}%'} | "
                f"{'' if same is None else f'{100 * same:.1f}%'} |"
            )
    lines += ["", "## Targets (issue 7)", ""]
    for t in result["targets"]:
        if t["status"] == "not measured":
            lines.append(f"- {t['target']}: not measured")
            continue
        acc = ""
        if t.get("top1_drop_points"):
            drops = [f"{n}: {d:+.1f}" for n, d in t["top1_drop_points"].items() if d is not None]
            acc = f"; top-1 drop vs fp32 in points: {', '.join(drops)}" if drops else ""
        lines.append(
            f"- {t['target']} (goal {t['goal']:.1f}x): {t['ours']} {t['ours_images_per_s']:.1f} "
            f"img/s vs {t['peer']} {t['peer_images_per_s']:.1f} img/s = {t['ratio']:.2f}x, "
            f"**{t['status']}**{acc}"
        )
    if result.get("profile"):
        lines += ["", "## Where the time goes (batch 32, 3 runs)", ""]
        for name, rows in result["profile"].items():
            lines.append(f"{name}:")
            lines.append("")
            for op, ms, share in rows:
                lines.append(f"- {op}: {ms:.1f} ms ({100 * share:.0f}%)")
            lines.append("")
    return "\n".join(lines) + "\n"


def write_results(result: dict, out: str | Path) -> tuple[Path, Path]:
    """`out`.md (tables) and `out`.json (everything, every timed run)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md, js = out.with_suffix(".md"), out.with_suffix(".json")
    md.write_text(render_markdown(result) + result.get("notes", ""))
    js.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return md, js


__all__ = [
    "BenchOptions",
    "Config",
    "run_benchmarks",
    "sgemm_gmacs",
    "targets",
    "write_results",
]
