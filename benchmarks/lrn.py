"""Local response normalisation: `goingdeeper.models.lrn.LocalResponseNorm` against PyTorch's
`nn.LocalResponseNorm`, forward (inference) and forward + backward, on the shapes GoogLeNet's
two LRN layers see at batch 32 (224x224 and the 112x112 of the CIFAR-10 fine-tune), both
memory layouts; median of several repeats, measured in one run.

    python benchmarks/lrn.py [--repeats 7] [--threads 2]

Writes benchmarks/results/lrn.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from goingdeeper.models.googlenet import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE
from goingdeeper.models.lrn import LocalResponseNorm

RESULTS = Path(__file__).parent / "results"
SHAPES = {  # GoogLeNet's lrn1 (after pool1) and lrn2 (after conv2), batch 32
    "lrn1 at 224": (32, 64, 56, 56),
    "lrn2 at 224": (32, 192, 56, 56),
    "lrn1 at 112": (32, 64, 28, 28),
    "lrn2 at 112": (32, 192, 28, 28),
}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    layers = {
        "torch": nn.LocalResponseNorm(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K),
        "ours": LocalResponseNorm(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K),
    }
    rows = []
    for label, shape in SHAPES.items():
        for channels_last in (False, True):
            torch.manual_seed(0)
            x = torch.relu(torch.randn(shape) * 30)  # post-ReLU activations
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            grad = torch.randn(shape)
            row = {"layer": label, "shape": list(shape), "channels_last": channels_last}
            for name, layer in layers.items():

                def forward(layer=layer, x=x):
                    with torch.no_grad():
                        layer(x)

                def both(layer=layer, x=x, grad=grad):
                    leaf = x.detach().requires_grad_(True)
                    layer(leaf).backward(grad)

                row[f"{name}_forward_ms"] = 1e3 * median_seconds(forward, args.repeats)
                row[f"{name}_train_ms"] = 1e3 * median_seconds(both, args.repeats)
            rows.append(row)
    machine = f"{platform.machine()}, {args.threads} threads, torch {torch.__version__}"
    lines = [
        "# Local response normalisation: ours against nn.LocalResponseNorm\n",
        f"`python benchmarks/lrn.py --repeats {args.repeats} --threads {args.threads}` on "
        f"{machine}; GoogLeNet's LRN (size {LRN_SIZE}, alpha {LRN_ALPHA}, beta {LRN_BETA}, "
        f"k {LRN_K}); median of {args.repeats} after a warm-up, ms.\n",
        "| layer | shape | channels-last | forward: torch | ours | speed-up "
        "| forward + backward: torch | ours | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {'x'.join(map(str, r['shape']))} | {r['channels_last']} "
            f"| {r['torch_forward_ms']:.1f} | {r['ours_forward_ms']:.1f} "
            f"| {r['torch_forward_ms'] / r['ours_forward_ms']:.2f}x "
            f"| {r['torch_train_ms']:.1f} | {r['ours_train_ms']:.1f} "
            f"| {r['torch_train_ms'] / r['ours_train_ms']:.2f}x |"
        )
    markdown = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lrn.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    (RESULTS / "lrn.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
