"""`goingdeeper bench`: our GoogLeNet inference paths against torchvision's, timed on this
machine in one run, with the same weights in both.

A quick comparison in one process. The full benchmark (every path in a fresh interpreter,
OpenVINO, int8 calibration, accuracy, profiles, the results files) is
`python benchmarks/inference_bench.py`; both time with `goingdeeper.inference.time_call`.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

from ..errors import UsageError
from ..factory import create_model
from ..files import writable
from ..inference import OnnxRuntimeModel, export_onnx, machine, optimize_for_inference, time_call
from ..inference.optimize import deployable
from ..models.googlenet import from_torchvision_key
from ..tables import render_table
from ..weights import import_torchvision
from .common import HELP_FORMAT, WEIGHTS_HELP, load_any_weights, positive

INPUT_SIZE = 224
REFERENCE = "torchvision googlenet eager"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="time our GoogLeNet inference paths against torchvision's on this machine",
        epilog="examples:\n"
        "  goingdeeper bench\n"
        "  goingdeeper bench --batch-sizes 1 --repeats 20 --only fused\n"
        "  goingdeeper bench --weights googlenet_torchvision.tv_in1k\n"
        "  python benchmarks/inference_bench.py    # the full benchmark, its results files",
        formatter_class=HELP_FORMAT,
    )
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    p.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    p.add_argument("--only", nargs="+", help="the paths whose name contains one of these")
    p.add_argument("--out", type=Path, help="also write the results as JSON")
    p.add_argument(
        "--weights",
        metavar="W",
        help="real weights instead of random ones: googlenet_torchvision's go into torchvision's "
        "model and ours, googlenet's into the BVLC-layout one; " + WEIGHTS_HELP,
    )
    p.set_defaults(func=run)


def paths(
    device: torch.device, weights: str | None = None
) -> dict[str, Callable[[], Callable[[torch.Tensor], object]]]:
    """Name -> builder of a callable on a batch. torchvision's model and our
    `googlenet_torchvision` hold the same weights (random, or `weights`), so value-dependent
    costs (denormals) are alike."""
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    ours = import_torchvision(tv)[0]
    bvlc = None  # built when its path is timed, unless the weights are for it
    if weights is not None:
        bvlc = create_model("googlenet", aux_logits=False)
        _load_same_weights(weights, tv, ours, bvlc)
    cuda = device.type == "cuda"
    half, tag = (torch.float16, "fp16") if cuda else (torch.bfloat16, "bf16")
    out: dict[str, Callable[[], Callable[[torch.Tensor], object]]] = {
        REFERENCE: lambda: tv.to(device),
        "torchvision googlenet channels-last": lambda: _channels_last(tv, device),
        "ours googlenet_torchvision fused": lambda: optimize_for_inference(ours, device=device),
        "ours googlenet (BVLC layout) fused": lambda: optimize_for_inference(
            bvlc if bvlc is not None else create_model("googlenet", aux_logits=False),
            device=device,
        ),
        # the lower precision on both sides: each row's ratio is against torchvision's row in
        # its own precision (`_reference`)
        f"torchvision googlenet channels-last {tag}": lambda: _channels_last(tv, device, half),
        f"ours googlenet_torchvision fused {tag}": lambda: optimize_for_inference(
            ours, dtype=half, device=device
        ),
    }
    if not cuda and importlib.util.find_spec("onnxruntime") is not None:
        out["ONNX Runtime ours googlenet_torchvision folded"] = lambda: _onnxruntime(ours)
    return out


def _load_same_weights(weights: str, tv, ours, bvlc) -> None:
    """`weights` (main head) into the models that take them: torchvision's `googlenet` and our
    `googlenet_torchvision` for weights of the latter, our BVLC-layout `googlenet` for its."""
    model, card = load_any_weights(weights)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(("aux1.", "aux2."))}
    if card.model == "googlenet_torchvision":
        names = {from_torchvision_key(k): k for k in tv.state_dict()}
        tv.load_state_dict({names[k]: v for k, v in state.items()})
        ours.load_state_dict(state)
    elif card.model == "googlenet":
        bvlc.load_state_dict(state)
    else:
        raise UsageError(
            f"--weights {weights}: weights of {card.model}; bench times googlenet_torchvision "
            "and googlenet"
        )


def _channels_last(model: torch.nn.Module, device: torch.device, dtype=torch.float32):
    model = copy.deepcopy(model).to(device=device, dtype=dtype, memory_format=torch.channels_last)
    return lambda x: model(x.to(dtype).contiguous(memory_format=torch.channels_last))


def _reference(path: str) -> str:
    """The torchvision row a path is compared with: the same precision."""
    for tag in ("fp16", "bf16"):
        if path.endswith(f" {tag}"):
            return f"torchvision googlenet channels-last {tag}"
    return REFERENCE


def _onnxruntime(model: torch.nn.Module):
    folder = tempfile.mkdtemp(prefix="goingdeeper-bench-")
    path = export_onnx(deployable(model, INPUT_SIZE, fused=True), Path(folder) / "g.onnx")
    return OnnxRuntimeModel(path)


def run(args: argparse.Namespace) -> int:
    for value, option in ((args.repeats, "--repeats"), (args.warmup, "--warmup")):
        positive(value, option)
    for batch in args.batch_sizes:
        positive(batch, "--batch-sizes")
    positive(args.threads, "--threads")
    if args.out:
        writable(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    every = paths(device, args.weights)
    chosen = {
        name for name in every if not args.only or any(s.lower() in name.lower() for s in args.only)
    }
    if not chosen:
        raise UsageError(f"--only {' '.join(args.only)} matches no path; see `goingdeeper bench`")
    chosen |= {_reference(name) for name in chosen}  # so that every row has its ratio
    chosen = {name: build for name, build in every.items() if name in chosen}
    rows = []
    for name, build in chosen.items():
        model = build()
        for batch in args.batch_sizes:
            t = _time(model, batch, device, args.repeats, args.warmup)
            rows.append({"path": name, "batch": batch, **t, "images_per_s": batch / t["median_s"]})
    print(_table(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)  # known to be possible
        args.out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def _time(model, batch: int, device: torch.device, repeats: int, warmup: int) -> dict:
    x = torch.randn(batch, 3, INPUT_SIZE, INPUT_SIZE, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    with torch.inference_mode():
        return time_call(lambda: model(x), repeats=repeats, warmup=warmup, sync=sync)


def _table(rows: list[dict]) -> str:
    rate = {(r["path"], r["batch"]): r["images_per_s"] for r in rows}
    body = []
    for r in rows:
        ref = rate.get((_reference(r["path"]), r["batch"]))
        ratio = f"{r['images_per_s'] / ref:.2f}x" if ref else ""
        body.append(
            [r["path"], str(r["batch"]), f"{r['images_per_s']:.1f}", f"{1e3 * r['median_s']:.1f}"]
            + [ratio]
        )
    header = ["path", "batch", "images/s", "latency ms", "vs torchvision, same precision"]
    return render_table(header, body, 1)
