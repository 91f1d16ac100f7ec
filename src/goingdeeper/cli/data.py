"""`goingdeeper data info|shard`: what a data source is, and the same images as WebDataset
shards."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from ..data.sources import ImageDataset, Skipped, Source, discover
from ..data.sources.shards import MANIFEST, parse_size, verify_shards, write_shards
from ..errors import UsageError
from ..files import writable
from ..tables import render_markdown, render_table
from .common import HELP_FORMAT, add_image_limit, on_terminal

EXAMPLES = """\
examples:
  goingdeeper data info ~/imagenet/val
  goingdeeper data info ILSVRC2012_img_val/ --labels LOC_val_solution.csv
  goingdeeper data shard ~/imagenet --out ~/imagenet-shards --shard-size 1GB
  goingdeeper data shard ~/imagenet/val --as-split val --out ~/imagenet-shards-val
  goingdeeper data shard ~/photos --holdout 0.2 --out ~/photo-shards  # train + test
  goingdeeper train --data ~/imagenet-shards    # the train split streamed, test read in place
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "data",
        help="describe a data source; write it as WebDataset shards",
        epilog=EXAMPLES,
        formatter_class=HELP_FORMAT,
    )
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    info = dsub.add_parser(
        "info",
        help="layout, classes, images per class and unreadable files of a source",
        epilog=EXAMPLES,
        formatter_class=HELP_FORMAT,
    )
    _source_arguments(info)
    info.add_argument("--no-check", action="store_true", help="do not decode every image")
    info.add_argument("--format", choices=["table", "markdown", "json"], default="table")
    add_image_limit(info)
    info.set_defaults(func=run_info)
    shard = dsub.add_parser(
        "shard",
        help="write a source as WebDataset .tar shards with a manifest",
        epilog=EXAMPLES,
        formatter_class=HELP_FORMAT,
    )
    _source_arguments(shard)
    shard.add_argument("--out", required=True, type=Path, help="a new or empty folder")
    add_image_limit(shard)
    shard.add_argument(
        "--shard-size", default="1GB", help="largest shard, e.g. 1GB, 256MB (default: 1GB)"
    )
    shard.set_defaults(func=run_shard)


def _source_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source",
        help="anything `train --data` reads (folder, .tar, shards, digits, torchvision:...) "
        "or a folder of ImageNet validation photos (`eval --data`)",
    )
    p.add_argument(
        "--labels", type=Path, help="label file of a flat folder of ILSVRC2012_val_* photos"
    )
    p.add_argument(
        "--as-split",
        default="",
        metavar="NAME",
        help="take the whole folder as one split NAME, its classes found as `eval` finds them",
    )
    p.add_argument(
        "--holdout",
        type=float,
        default=0.0,
        metavar="F",
        help="divide a source of one split into 'train' and 'test', a stratified fraction F "
        "of each class held out as 'test' (seed 0); said when done",
    )


def source_of(args: argparse.Namespace) -> Source:
    """The source the arguments name, with its held-out split when asked for (said on
    stderr)."""
    source = discover(args.source, args.labels, as_split=args.as_split)
    if args.holdout:
        source = source.with_holdout(args.holdout)
        print(f"goingdeeper: {source.holdout}", file=sys.stderr)
    return source


def run_info(args: argparse.Namespace) -> int:
    source = source_of(args)
    splits = {name: source.split(name) for name in source.splits}
    bad = {} if args.no_check else _check(splits)
    if args.format == "json":
        print(json.dumps(_summary(source, splits, bad), indent=2))
        return 0
    print(f"source   {source.path}")
    print(f"layout   {source.layout}")
    print(f"classes  {len(source.classes)}")
    for split, ds in splits.items():
        state = "not checked" if args.no_check else f"{len(bad[split])} unreadable"
        print(f"{split:<8} {len(ds):,} images ({state})")
    header, body = _per_class_table(source, splits)
    print()
    print(
        render_markdown(header, body)
        if args.format == "markdown"
        else render_table(header, body, 3)
    )
    for split, messages in bad.items():
        for message in messages[:10]:
            print(f"unreadable ({split}): {message}", file=sys.stderr)
        if len(messages) > 10:
            print(f"unreadable ({split}): ... {len(messages) - 10} more", file=sys.stderr)
    return 0


def _check(splits: dict[str, ImageDataset]) -> dict[str, list[str]]:
    bad = {}
    for split, ds in splits.items():
        with tqdm(
            total=len(ds), desc=f"checking {split}", unit="img", disable=not on_terminal()
        ) as shown:
            bad[split] = unreadable(ds, progress=shown.update)
    return bad


def unreadable(
    ds: ImageDataset, progress: Callable[[int], None] | None = None, threads: int = 8
) -> list[str]:
    """The samples that cannot be decoded, each as one line (source: what is wrong)."""

    def check(i: int) -> str | None:
        item = ds.load(i)
        return str(item) if isinstance(item, Skipped) else None

    bad = []
    with ThreadPoolExecutor(threads) as pool:
        for message in pool.map(check, range(len(ds)), chunksize=64):
            if message is not None:
                bad.append(message)
            if progress is not None:
                progress(1)
    return bad


def _per_class_table(
    source: Source, splits: dict[str, ImageDataset]
) -> tuple[list[str], list[list[str]]]:
    counts = {split: Counter(ds.targets) for split, ds in splits.items()}
    header = ["index", "class", "wordnet id", *splits]
    body = []
    ids = source.classes.ids
    for i, name in enumerate(source.readable_names()):
        wnid = ids[i] if ids else "-"
        body.append([str(i), name, wnid, *(f"{counts[s].get(i, 0):,}" for s in splits)])
    total = [f"{len(ds):,}" for ds in splits.values()]
    body.append(["", "all", "", *total])
    return header, body


def _per_class(ds, classes: int) -> list[int]:
    counts = Counter(ds.targets)
    return [counts[i] for i in range(classes)]


def _summary(source: Source, splits: dict[str, ImageDataset], bad: dict[str, list[str]]) -> dict:
    return {
        "source": source.path,
        "layout": source.layout,
        "holdout": source.holdout,
        "classes": list(source.classes.names),
        "class_ids": list(source.classes.ids),
        "splits": {
            split: {
                "images": len(ds),
                "per_class": _per_class(ds, len(source.classes)),
                "unreadable": bad.get(split),
            }
            for split, ds in splits.items()
        },
    }


def run_shard(args: argparse.Namespace) -> int:
    size = parse_size(args.shard_size)
    out = writable(args.out, folder=True)
    if out.is_dir() and any(out.iterdir()):
        what = "already holds shards" if (out / MANIFEST).exists() else "is not empty"
        raise UsageError(f"--out {out}: {what}; give a new or empty folder")
    source = source_of(args)
    splits = {name: source.split(name) for name in source.splits}
    total = sum(len(ds) for ds in splits.values())
    with tqdm(total=total, desc="writing shards", unit="img", disable=not on_terminal()) as shown:
        manifest = write_shards(
            splits,
            out,
            size,
            classes=source.classes,
            source=str(args.source),
            progress=shown.update,
        )
    bad = verify_shards(manifest)
    if bad:
        raise UsageError(f"{out}: shards do not read back as written: {bad[0]}")
    for split, shards in manifest.splits.items():
        mb = sum(s.bytes for s in shards) / 1e6
        print(f"{split}: {manifest.images(split):,} images in {len(shards)} shards ({mb:,.1f} MB)")
    print(f"wrote {out / MANIFEST}")
    return 0
