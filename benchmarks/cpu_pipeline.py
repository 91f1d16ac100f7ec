"""The CPU input pipeline per core: GoogLeNet's training recipe from JPEG files to the batch the
training step takes, before and after draft decoding.

    python benchmarks/cpu_pipeline.py [--before 4641d1f] [--repeats 5] [--photos 400]

"before" is the package as of a git revision (by default the last one before those changes),
extracted with `git archive` into a temporary folder; "after" is this checkout. Each path runs
in its own process with one thread (a loader worker's share of the machine): every photo read
from its file, opened, decoded, cropped at random (8%..100% of the area, aspect 3/4..4/3,
one of four interpolations), distorted (brightness, contrast, saturation), flipped, made a
normalised float32 tensor, then batches of 32 stacked (what a loader worker does for a run on
the CPU).
torchvision's v2 transforms (RandomResizedCrop, ColorJitter, flip, normalise) are the
reference, timed in the same processes. Two photo sets: the ImageNet sample as it is (median
500 x 375) and its photos whose shorter side is at least 448 px (where draft decoding can
halve the decode). Reported: images/s per core, median of the repeats (the paths take turns),
and ratios. Results: benchmarks/results/cpu_pipeline.md and .json.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("GOINGDEEPER_DATA", ROOT.parent / "shared" / "data"))
RESULTS = Path(__file__).parent / "results"
BATCH = 32
DEFAULT_BEFORE = "4641d1f"  # the last revision before draft decoding


def _photo_sets(limit: int) -> dict[str, list[str]]:
    from PIL import Image

    photos = sorted((DATA / "imagenet-sample").glob("*.JPEG"))
    if not photos:
        sys.exit(f"error: no photos in {DATA / 'imagenet-sample'} (set GOINGDEEPER_DATA)")
    large = []
    for p in photos:
        with Image.open(p) as img:
            if min(img.size) >= 448:
                large.append(str(p))
    return {"sample": [str(p) for p in photos[:limit]], "shorter side >= 448": large}


# ---------------------------------------------------------------------------------------------
# the child: one tree's pipeline (and the reference), timed on one thread


def _ours(draft: bool):
    import torch

    from goingdeeper.data import ImageDataset, train_transform
    from goingdeeper.registry import model_card

    preprocessing = model_card("googlenet").preprocessing
    options = inspect.signature(train_transform).parameters
    extra = {"draft": draft} if "draft" in options else {}
    transform = train_transform("googlenet", 224, preprocessing, **extra)

    def run(files: list[str]) -> int:
        ds = ImageDataset([(f, 0) for f in files], ["x"], transform)
        done = 0
        for start in range(0, len(ds), BATCH):
            batch = torch.stack([ds[i][0] for i in range(start, min(start + BATCH, len(ds)))])
            done += len(batch)
        return done

    return run


def _torchvision():
    import torch
    from PIL import Image
    from torchvision.transforms import v2

    transform = v2.Compose(
        [
            v2.RandomResizedCrop(224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
            v2.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5),
            v2.RandomHorizontalFlip(),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )

    def run(files: list[str]) -> int:
        done = 0
        for start in range(0, len(files), BATCH):
            images = []
            for f in files[start : start + BATCH]:
                with Image.open(f) as img:
                    images.append(transform(img.convert("RGB")))
            done += len(torch.stack(images))
        return done

    return run


def child(paths: list[str], sets: dict[str, list[str]]) -> dict:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    runs = {
        "ours": lambda: _ours(draft=True),
        "ours, no draft": lambda: _ours(draft=False),
        "torchvision v2": _torchvision,
    }
    out = {}
    for path in paths:
        run = runs[path]()
        run(sets["sample"][:BATCH])  # imports, first allocations
        for name, files in sets.items():
            start = time.perf_counter()
            done = run(files)
            out[f"{path}|{name}"] = done / (time.perf_counter() - start)
    return out


# ---------------------------------------------------------------------------------------------
# the parent: trees, turns, medians


def _extract(revision: str, into: Path) -> Path:
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def _in_child(src: Path, paths: list[str], sets: dict[str, list[str]]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    job = json.dumps({"paths": paths, "sets": sets})
    done = subprocess.run(
        [sys.executable, __file__, "--child"], input=job, capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        sys.exit(f"error: a timing process failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default=DEFAULT_BEFORE, help="git revision of the 'before' tree")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--photos", type=int, default=400, help="photos of the sample set")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        job = json.loads(sys.stdin.read())
        print(json.dumps(child(job["paths"], job["sets"])))
        return
    sets = _photo_sets(args.photos)
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="goingdeeper-pipeline-") as tmp:
        before = _extract(args.before, Path(tmp))
        trees = [
            ("before", before, ["ours"]),
            ("after", ROOT / "src", ["ours", "ours, no draft", "torchvision v2"]),
        ]
        for repeat in range(args.repeats):
            for label, src, paths in trees[:: 1 if repeat % 2 == 0 else -1]:
                for key, rate in _in_child(src, paths, sets).items():
                    path, name = key.split("|")
                    rates.setdefault(f"{label}: {path}|{name}", []).append(rate)
            print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
    _report(rates, sets, args)


def _report(rates: dict[str, list[float]], sets: dict[str, list[str]], args) -> None:
    medians = {key: statistics.median(v) for key, v in rates.items()}
    lines = [
        "# CPU input pipeline per core: GoogLeNet's training recipe, JPEG file to batch",
        "",
        f"`python benchmarks/cpu_pipeline.py --before {args.before} --repeats {args.repeats} "
        f"--photos {args.photos}`; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, one thread per path, images/s, median of {args.repeats}.",
        "",
        "| path | "
        + " | ".join(f"{name} ({len(files)} photos)" for name, files in sets.items())
        + " |",
        "|---|" + "---:|" * len(sets),
    ]
    paths = sorted({key.split("|")[0] for key in medians}, key=lambda k: (k[0] != "b", k))
    for path in paths:
        cells = [f"{medians[f'{path}|{name}']:.0f}" for name in sets]
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    for label, num, den in (
        ("after / before", "after: ours", "before: ours"),
        ("after / torchvision v2", "after: ours", "after: torchvision v2"),
        ("draft / no draft", "after: ours", "after: ours, no draft"),
    ):
        cells = [f"{medians[f'{num}|{n}'] / medians[f'{den}|{n}']:.2f}x" for n in sets]
        lines.append(f"| **{label}** | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cpu_pipeline.md").write_text(text)
    (RESULTS / "cpu_pipeline.json").write_text(
        json.dumps({"rates": rates, "medians": medians, "photos": sets}, indent=1) + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
