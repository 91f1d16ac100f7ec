"""The batched augmentation on the CPU, images/s at one batch: `data.pipelines.tensor` (the whole
batch in one call) against the per-image loop it replaced (that module as of `--old`, loaded
from git) and against the Pillow pipeline (`train_transform`, what a loader worker runs), on
whole decoded images and with the draft decoding train's workers use. All from the same JPEG
bytes (decoding included), one thread each: a per-core rate; the median of `--repeats`
timings, all in one run.

    PYTHONPATH=src python benchmarks/batch_augment_cpu.py       # -> results/batch_augment_cpu.md
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from goingdeeper.data import train_transform
from goingdeeper.data.pipelines import pillow
from goingdeeper.data.pipelines.tensor import BatchAugment, decode_batch
from goingdeeper.images import decode_image, open_encoded
from goingdeeper.registry import model_card

HERE = Path(__file__).parent
# the commit whose data/batch_augment.py (now data/pipelines/tensor.py) still worked image by image
OLD = "1cf8a54"


def _old_module(ref: str):
    """data/batch_augment.py as of `ref`, imported as a module of the package."""
    source = subprocess.run(
        ["git", "show", f"{ref}:src/goingdeeper/data/batch_augment.py"],
        cwd=HERE.parent, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "batch_augment_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("goingdeeper.data.batch_augment_old", path)
    # it imports the Pillow steps from where they lived then (data/transforms.py, colour.py)
    for moved in ("transforms", "colour"):
        sys.modules.setdefault(f"goingdeeper.data.{moved}", pillow)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _median(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", type=Path, default=HERE / "gpu_data")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--old", default=OLD, help="git ref of the per-image loop")
    p.add_argument("--out", type=Path, default=HERE / "results" / "batch_augment_cpu.md")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    files = sorted(args.photos.glob("*.JPEG"))
    if not files:
        raise SystemExit(f"{args.photos}: no photos; run `bash benchmarks/gpu_files.sh` first")
    data = [f.read_bytes() for f in files] * (args.batch // len(files) + 1)
    names = [str(f) for f in files] * (args.batch // len(files) + 1)
    data, names = data[: args.batch], names[: args.batch]
    pre = model_card("googlenet").preprocessing
    cpu = torch.device("cpu")
    batched = BatchAugment(224, pre, generator=torch.Generator().manual_seed(0))
    old = _old_module(args.old).BatchAugment(224, pre, generator=torch.Generator().manual_seed(0))
    pil = train_transform("googlenet", 224, pre)
    rows = {
        "batched (data.pipelines.tensor)": lambda: batched(decode_batch(data, names, cpu)),
        f"per-image loop (as of {args.old})": lambda: old(decode_batch(data, names, cpu)),
        "Pillow, whole decode (train_transform)": lambda: [
            pil(decode_image(d, n)) for d, n in zip(data, names, strict=True)
        ],
        "Pillow, draft decode (as train's workers)": lambda: [
            pil(open_encoded(d, n)) for d, n in zip(data, names, strict=True)
        ],
    }
    lines = [
        "# The batched augmentation on the CPU",
        "",
        f"`PYTHONPATH=src python benchmarks/batch_augment_cpu.py`, {time.strftime('%Y-%m-%d')}, "
        f"torch {torch.__version__}, one thread, batch {args.batch} of {len(files)} ImageNet "
        f"photos (JPEG bytes to 224 x 224 network input), median of {args.repeats}",
        "",
        "| path | images/s per core | s per batch |",
        "|---|---:|---:|",
    ]
    for name, fn in rows.items():
        median = _median(fn, args.repeats)
        lines.append(f"| {name} | {args.batch / median:,.1f} | {median:.2f} |")
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
