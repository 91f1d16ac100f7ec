"""BVLC GoogLeNet on the 1,000 imagenet-sample photos with 1, 10 and 144 crops: a Table 3 grid.

    .venv/bin/python benchmarks/eval_imagenet_sample.py              # all 1,000 photos
    .venv/bin/python benchmarks/eval_imagenet_sample.py --limit 50   # a quick check
    .venv/bin/python benchmarks/eval_imagenet_sample.py --subset-144 200  # 144 crops on 200
    .venv/bin/python benchmarks/eval_imagenet_sample.py --runtime onnxruntime  # the folded graph

Writes benchmarks/results/eval_imagenet_sample.md and .json: the grid (1 model x 1/10/144
crops, top-1 and top-5 error) beside the paper's Table 3, and the cost of our 144-crop
evaluation against 144 plain batched forward passes of the same crops (target: at most 1.1x).
On a 2-core CPU the full run takes well over an hour (144 x 1,000 forward passes at 25-40/s).
The data folder is $GOINGDEEPER_DATA, else ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import torch

from goingdeeper.data import discover
from goingdeeper.evaluate import crops_144, evaluate
from goingdeeper.images import load_image
from goingdeeper.inference import onnxruntime_model
from goingdeeper.results import EvalResult, format_grid, grid_rows, paper_rows, record
from goingdeeper.weights import import_bvlc

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GOINGDEEPER_DATA", REPO.parent / "shared" / "data"))
OUT = REPO / "benchmarks" / "results" / "eval_imagenet_sample"


def plain_forward_seconds(model, pre, samples, batch_size: int) -> float:
    """Seconds of the model alone on each image's 144 crops, batched as `evaluate` batches
    them; the crops are made beforehand and not timed."""
    total = 0.0
    for path, _ in samples:
        views = crops_144(load_image(path), pre)
        chunks = torch.tensor_split(views, math.ceil(len(views) / batch_size))
        start = time.perf_counter()
        with torch.inference_mode():
            for chunk in chunks:
                model(chunk)
        total += time.perf_counter() - start
    return total


def time_144(model, card, samples, batch_size: int, repeats: int) -> dict:
    """Our whole 144-crop evaluation (decode, resize, crop, forward, softmax average) against
    the forward passes alone, alternating, best of `repeats` each."""
    ours, plain = [], []
    for _ in range(repeats):
        plain.append(plain_forward_seconds(model, card.preprocessing, samples, batch_size))
        ours.append(evaluate([(model, card)], samples, "144", batch_size=batch_size).seconds)
    return {
        "images": len(samples),
        "batch_size": batch_size,
        "repeats": repeats,
        "evaluate_seconds": min(ours),
        "plain_forward_seconds": min(plain),
        "ratio": min(ours) / min(plain),
        "target_ratio": 1.1,
    }


def markdown(meta: dict, rows: list[dict], timing: dict) -> str:
    t = timing
    return "\n".join(
        [
            "# BVLC GoogLeNet on imagenet-sample: the Table 3 protocol",
            "",
            f"Command: `{meta['command']}`  ",
            f"Date: {meta['date']}; {meta['machine']}; torch {meta['torch']}, "
            f"{meta['threads']} threads, device {meta['device']}, runtime "
            f"{meta.get('runtime', 'torch')}.",
            "",
            f"{meta['images']} photos of `imagenet-sample/` (one per class, sorted = labels), "
            "resized as the weights' card says (BGR, 0-255, mean 104/117/123). These photos are "
            "easier than the ILSVRC 2012 validation set (BVLC center crop: about 75% top-1 "
            "here vs 68.7% published), so compare the steps between rows with the paper's, "
            "not the levels.",
            "",
            *(
                [
                    f"144 crops ran on {meta['subset_144']} photos spread evenly over the "
                    "classes; the rows naming that count compare 1, 10 and 144 crops on those "
                    "same photos.",
                    "",
                ]
                if meta.get("subset_144")
                else []
            ),
            format_grid(rows, "markdown"),
            "",
            "## Cost of 144-crop evaluation",
            "",
            f"{t['images']} photos, {t['batch_size']} views per forward pass, best of "
            f"{t['repeats']}: our `evaluate(..., views='144')` (decode, 4 resizes, 144 crops, "
            f"forward, softmax average) took {t['evaluate_seconds']:.1f} s; the same 144 crops "
            f"as plain batched forward passes took {t['plain_forward_seconds']:.1f} s: "
            f"**{t['ratio']:.3f}x** (target at most {t['target_ratio']}x).",
            "",
        ]
    )


def _progress(views: str):
    def report(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            print(f"  {views} crops: {done}/{total} images", file=sys.stderr, flush=True)

    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos")
    parser.add_argument("--views", default="1,10,144")
    parser.add_argument(
        "--subset-144",
        type=int,
        default=0,
        help="144 crops on N photos spread over the classes only (with 1 and 10 crops on the "
        "same N for comparison); the other views still on every photo",
    )
    parser.add_argument("--batch-size", type=int, default=48, help="views per forward pass")
    parser.add_argument("--timing-images", type=int, default=10, help="photos for the timing")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument(
        "--runtime",
        choices=["torch", "onnxruntime"],
        default="torch",
        help="onnxruntime: the BatchNorm-folded graph in ONNX (outputs within 1e-4 of torch's)",
    )
    parser.add_argument("--out", type=Path, default=OUT, help="path without suffix")
    args = parser.parse_args(argv)
    if args.threads:  # on a CPU shared with other jobs, 1 thread avoids threads waiting
        torch.set_num_threads(args.threads)

    blobs = args.data / "bvlc-googlenet"
    model, card = import_bvlc(blobs)
    model.to(args.device)
    if args.runtime == "onnxruntime":  # the folded graph, exported once and cached
        model = onnxruntime_model(model, card.preprocessing.crop, threads=args.threads)
    photos = discover(args.data / "imagenet-sample").split("all")
    samples = [(path, label) for path, label in photos.samples[: args.limit]]
    runs = [(views, samples, "BVLC GoogLeNet") for views in args.views.split(",")]
    if args.subset_144:
        n = min(args.subset_144, len(samples))
        subset = [samples[i * len(samples) // n] for i in range(n)]
        runs = [r for r in runs if r[0] != "144"]
        runs += [(views, subset, f"BVLC GoogLeNet, {n} photos") for views in ("1", "10", "144")]
    results = []
    for views, items, name in runs:
        r = evaluate(
            [(model, card)], items, views, batch_size=args.batch_size, progress=_progress(views)
        )
        r = replace(r, model_names=[name])
        print(
            f"{views:>4} crops: top-1 {r.top1_accuracy:.2%}  top-5 {r.top5_accuracy:.2%}  "
            f"({r.images} images, {r.seconds:.0f} s)",
            file=sys.stderr,
        )
        results.append(r)
    groups: dict[int, list[EvalResult]] = {}  # each set of photos against its own 1-crop base
    for r in results:
        groups.setdefault(r.images, []).append(r)
    rows = [row for group in groups.values() for row in grid_rows(group)] + paper_rows()
    timing = time_144(model, card, samples[: args.timing_images], args.batch_size, args.repeats)
    print(f"144-crop cost vs plain forward: {timing['ratio']:.3f}x", file=sys.stderr)
    meta = {
        "command": " ".join(
            ["python", "benchmarks/eval_imagenet_sample.py", *(argv or sys.argv[1:])]
        ),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "runtime": args.runtime,
        "images": len(samples),
        "subset_144": args.subset_144,
    }
    text = markdown(meta, rows, timing)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    summary = [{k: v for k, v in record(r).items() if k != "per_class_top1"} for r in results]
    grid = [record(row) for row in rows]
    payload = {"meta": meta, "grid": grid, "timing": timing, "results": summary}
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
