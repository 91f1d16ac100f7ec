"""What several commands share: reading KEY=VALUE model arguments, loading weights from any
of the forms a user has, progress bars on a terminal, and numbers as the papers print them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..errors import UsageError
from ..images import MAX_IMAGE_PIXELS
from ..inference import onnxruntime_model
from ..weights import WeightsCard, open_weights

HELP_FORMAT = argparse.RawDescriptionHelpFormatter
# what `--weights` takes, in every command that takes weights (`load_any_weights` reads them)
WEIGHTS_HELP = (
    "a name of `goingdeeper weights list` (googlenet.bvlc_in1k: fetched once, then cached), "
    "our .safetensors, a hub folder, BVLC's blob folder or .caffemodel"
)


def model_args(pairs: list[str] | None) -> dict:
    """`--arg KEY=VALUE` pairs as constructor arguments, each value read as JSON when it is."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UsageError(f"--arg expects KEY=VALUE, got {pair!r} (e.g. --arg conv1=separable)")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(value.strip())
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()
    return out


def add_image_limit(parser: argparse.ArgumentParser) -> None:
    """`--max-image-pixels` for a command that decodes images (`main` applies it)."""
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        metavar="N",
        help=f"refuse images with more pixels than this (default {MAX_IMAGE_PIXELS:,})",
    )


def printable(text: object) -> str:
    """`text` (a class name, a path: read from a user's file) safe to print on one line of a
    terminal: control characters (an ANSI escape, a newline) shown as escapes."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text)
    )


def positive(value: int | None, option: str) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{option} must be at least 1, got {value}")


def load_any_weights(
    path: str | Path, *, device: str = "cpu", runtime: str = "torch"
) -> tuple[Any, WeightsCard]:
    """Weights in any form `weights.open_weights` reads (a name of the catalogue of published
    weights, fetched once and cached; ours; a hub folder; BVLC's blob folder or .caffemodel,
    imported on the fly); with `runtime="onnxruntime"`, the folded graph in
    ONNX Runtime (exported once, cached)."""
    p = Path(path)
    model, card = open_weights(p)
    if runtime == "onnxruntime":
        return onnxruntime_model(model, card.preprocessing.crop), card
    return model.to(torch.device(device)), card


def on_terminal() -> bool:
    return sys.stderr.isatty()


def bar(items: Iterable[Any], desc: str, unit: str = "img") -> Iterable[Any]:
    """`items` with a progress bar on stderr."""
    return tqdm(items, desc=desc, unit=unit)


def counting_bar(desc: str) -> Callable[[int, int], None] | None:
    """A `progress(done, total)` callback drawing a bar on stderr, when a person watches."""
    if not on_terminal():
        return None
    shown = tqdm(total=None, desc=desc, unit="img", leave=False)

    def progress(done: int, total: int) -> None:
        shown.total = total
        shown.update(done - shown.n)
        if done >= total:
            shown.close()

    return progress


def si(n: int) -> str:
    """Multiply-adds in G (10^9), M or K, as the papers print them."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3f} {unit}"
    return str(n)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
