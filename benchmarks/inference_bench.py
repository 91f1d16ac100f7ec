"""Issue 7's speed table: our inference paths against torchvision's googlenet, one run.

    python benchmarks/inference_bench.py                 # ~15 min on two shared cores
    python benchmarks/inference_bench.py --repeats 10    # any `goingdeeper bench` option

Writes benchmarks/results/inference.md and inference.json. With ../shared/data present the
accuracy columns use the BVLC GoogLeNet weights on imagenet-sample; without it, speed only.
"""

from __future__ import annotations

import sys
from pathlib import Path

from goingdeeper.cli import main

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = [
    "bench",
    "--data",
    str(REPO.parent / "shared" / "data"),
    "--out",
    str(REPO / "benchmarks" / "results" / "inference"),
]

if __name__ == "__main__":
    raise SystemExit(main(DEFAULTS + sys.argv[1:]))
