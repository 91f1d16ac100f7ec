"""The configurations `inference_bench.py` times, one keyword row each: a runtime, a network,
a precision, a form. `ours` marks our paths; the rest are the peers they are compared with."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    name: str
    runtime: str  # torch, onnxruntime, openvino
    model: str  # torchvision, googlenet (BVLC layout), googlenet_torchvision
    precision: str  # fp32, bf16, fp16, int8
    ours: bool
    form: str = "eager"  # eager, channels-last, fused, compile, graphs, autocast-cl
    device: str = "cpu"
    note: str = ""


TV, GN, GT = "torchvision", "googlenet", "googlenet_torchvision"
ORT, OV = "onnxruntime", "openvino"

CPU_ROWS = [
    dict(
        name="torchvision eager",
        runtime="torch",
        model=TV,
        precision="fp32",
        ours=False,
        note="reference (1.0x)",
    ),
    dict(
        name="torchvision channels-last",
        runtime="torch",
        model=TV,
        precision="fp32",
        ours=False,
        form="channels-last",
    ),
    dict(
        name="torchvision torch.compile",
        runtime="torch",
        model=TV,
        precision="fp32",
        ours=False,
        form="compile",
    ),
    dict(
        name="ours googlenet eager",
        runtime="torch",
        model=GN,
        precision="fp32",
        ours=True,
        note="BVLC layout: LRN, 5x5",
    ),
    dict(
        name="ours googlenet fused",
        runtime="torch",
        model=GN,
        precision="fp32",
        ours=True,
        form="fused",
    ),
    dict(
        name="ours googlenet_torchvision fused",
        runtime="torch",
        model=GT,
        precision="fp32",
        ours=True,
        form="fused",
    ),
    dict(
        name="ours googlenet fused bf16",
        runtime="torch",
        model=GN,
        precision="bf16",
        ours=True,
        form="fused",
    ),
    dict(
        name="ours googlenet fused torch.compile",
        runtime="torch",
        model=GN,
        precision="fp32",
        ours=True,
        form="compile",
    ),
    # exported graphs: torchvision's own, and ours with BatchNorm folded
    *(
        dict(
            name=f"{label} {precision} {graph}",
            runtime=runtime,
            model=model,
            precision=precision,
            ours=model != TV,
        )
        for runtime, label, precisions in (
            (ORT, "ORT", ("fp32", "int8")),
            (OV, "OpenVINO", ("fp32", "bf16", "int8")),
        )
        for model, graph in (
            (TV, "torchvision graph"),
            (GN, "ours googlenet folded"),
            (GT, "ours googlenet_torchvision folded"),
        )
        for precision in precisions
    ),
]

CUDA_ROWS = [
    dict(
        name="cuda torchvision eager",
        runtime="torch",
        model=TV,
        precision="fp32",
        ours=False,
        device="cuda",
    ),
    dict(
        name="cuda torchvision channels-last fp16",
        runtime="torch",
        model=TV,
        precision="fp16",
        ours=False,
        form="autocast-cl",
        device="cuda",
    ),
    dict(
        name="cuda ours googlenet fused fp16",
        runtime="torch",
        model=GN,
        precision="fp16",
        ours=True,
        form="fused",
        device="cuda",
    ),
    dict(
        name="cuda ours googlenet fused bf16",
        runtime="torch",
        model=GN,
        precision="bf16",
        ours=True,
        form="fused",
        device="cuda",
    ),
    dict(
        name="cuda ours googlenet fused compile fp16",
        runtime="torch",
        model=GN,
        precision="fp16",
        ours=True,
        form="compile",
        device="cuda",
    ),
    dict(
        name="cuda ours googlenet fused CUDA graphs fp16",
        runtime="torch",
        model=GN,
        precision="fp16",
        ours=True,
        form="graphs",
        device="cuda",
    ),
]


def configs(cuda: bool, only: tuple[str, ...] = ()) -> list[Config]:
    """The rows to time (CUDA's where there is a GPU), those whose name contains one of
    `only` when it is given."""
    rows = [Config(**row) for row in CPU_ROWS + (CUDA_ROWS if cuda else [])]
    if not only:
        return rows
    return [c for c in rows if any(s.lower() in c.name.lower() for s in only)]


@dataclass(frozen=True)
class BenchOptions:
    batch_sizes: tuple[int, ...] = (1, 32)
    repeats: int = 5  # timed runs per configuration (the median is reported); batch 1: >= 20
    warmup: int = 2
    threads: int = 2
    only: tuple[str, ...] = ()  # substrings of configuration names; empty: all
    data: str | None = None  # ../shared/data: BVLC weights and imagenet-sample
    accuracy_images: int = 1000
    bf16_accuracy_images: int = 200  # torch bf16 runs ~6x slower than fp32 on AVX2
    train: bool = True
    train_batch: int = 32
    train_repeats: int = 5
    train_bf16_batch: int = 8  # bf16 autocast training is ~6x slower here: smaller batch
    train_bf16_repeats: int = 3
    profile: bool = True
