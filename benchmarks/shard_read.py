"""Reading training images: a class-folder tree against the same photos as WebDataset shards.

    python benchmarks/shard_read.py [--repeats 3] [--workers 2] [--shard-size 16MB]

The 1,000 photos of ../shared/data/imagenet-sample (or GOINGDEEPER_DATA) are linked into a
class-folder tree (one WordNet-id folder per class) and written as shards with `data shard`'s
writer, in a temporary folder. Each repeat reads every image once through a DataLoader with
GoogLeNet's training transform (random-resized crop to 224, flip, photometric distortion),
batch 32: the folder as a map-style data set (DistributedSampler order, as `train` reads it),
the shards streamed (`ShardStream`, as `train` reads them) and the shards read in place at
their offsets. Reported: images/s per reader, median of the repeats (the readers take turns
going first), and the ratio shards / folder. Results: benchmarks/results/shard_read.md
and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from goingdeeper.data import collate_skip, discover, train_transform
from goingdeeper.data.sources.shards import parse_size, write_shards
from goingdeeper.data.sources.stream import ShardStream
from goingdeeper.preprocess import Preprocessing

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("GOINGDEEPER_DATA", ROOT.parent / "shared" / "data"))
RESULTS = Path(__file__).parent / "results"


def _tree(photos: Path, root: Path) -> Path:
    for photo in sorted(photos.iterdir()):
        folder = root / "train" / photo.name.split("_", 1)[0]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / photo.name).symlink_to(photo.resolve())
    return root


def _decoded(image) -> int:
    return image.width


def _rate(loader, expected: int) -> float:
    start = time.perf_counter()
    seen = 0
    for _, y, skipped in loader:
        seen += len(y) + len(skipped)
    seconds = time.perf_counter() - start
    if seen != expected:
        sys.exit(f"error: read {seen} images, expected {expected}")
    return seen / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--shard-size", default="16MB")
    p.add_argument(
        "--decode-only",
        action="store_true",
        help="decode each image and nothing more (the reading itself, without the transform)",
    )
    args = p.parse_args()
    photos = DATA / "imagenet-sample"
    if not photos.is_dir():
        sys.exit(f"error: {photos} not found; set GOINGDEEPER_DATA to the folder holding it")
    torch.set_num_threads(1)
    transform = _decoded if args.decode_only else train_transform("googlenet", 224, Preprocessing())
    with tempfile.TemporaryDirectory() as tmp:
        tree = _tree(photos, Path(tmp) / "tree")
        folder = discover(tree).split("train", transform)
        write_shards({"train": folder}, Path(tmp) / "shards", parse_size(args.shard_size))
        rates = _measure(folder, Path(tmp) / "shards", transform, args)
    _report(rates, len(folder), args)


def _measure(folder, shards: Path, transform, args) -> dict[str, list[float]]:
    n = len(folder)
    common = dict(batch_size=32, num_workers=args.workers, collate_fn=collate_skip)
    rates: dict[str, list[float]] = {"folder": [], "shards, streamed": [], "shards, in place": []}
    in_place = discover(shards).split("train", transform)
    for repeat in range(args.repeats):
        loaders = {
            "folder": DataLoader(folder, sampler=_order(folder, repeat), **common),
            "shards, streamed": DataLoader(_stream(shards, transform, repeat, args), **common),
            "shards, in place": DataLoader(in_place, sampler=_order(in_place, repeat), **common),
        }
        names = list(loaders)
        for name in names[repeat % 3 :] + names[: repeat % 3]:  # each goes first in turn
            rates[name].append(_rate(loaders[name], n))
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()))
    return rates


def _order(ds, repeat: int) -> DistributedSampler:
    """The order `train` reads a map-style data set in (one process)."""
    return DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=repeat)


def _stream(shards: Path, transform, repeat: int, args) -> ShardStream:
    stream = ShardStream(shards, "train", transform, seed=repeat)
    return stream.configure(world=1, rank=0, workers=args.workers, epoch=repeat)


def _report(rates: dict[str, list[float]], images: int, args) -> None:
    base = statistics.median(rates["folder"])
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    command = "python benchmarks/shard_read.py " + " ".join(sys.argv[1:])
    lines = [
        "# Reading training images: class folders against WebDataset shards",
        "",
        f"`{command.strip()}` on {machine}: {images} imagenet-sample photos, "
        + ("decoded only" if args.decode_only else "GoogLeNet's training transform at 224")
        + f", batch 32, {args.workers} loader workers, {args.shard_size} shards; median of "
        f"{args.repeats} repeats.",
        "",
        "| reader | images/s (median) | repeats | against the folder |",
        "|---|---:|---|---:|",
    ]
    for name, values in rates.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:.1f}" for v in values)
        lines.append(f"| {name} | {median:.1f} | {runs} | {median / base:.2f}x |")
    markdown = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    payload = {"command": command.strip(), "machine": machine, "images": images, "rates": rates}
    name = "shard_read_decode" if args.decode_only else "shard_read"
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
