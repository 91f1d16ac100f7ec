"""`goingdeeper data info|shard`: what a data source is, and the same images as WebDataset
shards."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from ..data.shards import MANIFEST, parse_size, verify_shards, write_shards
from ..data.sources import Source, open_source, unreadable
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


def run_info(args: argparse.Namespace) -> int:
    source = open_source(args.source, args.labels, args.as_split)
    bad = {} if args.no_check else _check(source)
    if args.format == "json":
        print(json.dumps(_summary(source, bad), indent=2))
        return 0
    print(f"source   {source.spec}")
    print(f"layout   {source.layout}")
    print(f"classes  {len(source.classes)}")
    for split, ds in source.splits.items():
        state = "not checked" if args.no_check else f"{len(bad[split])} unreadable"
        print(f"{split:<8} {len(ds):,} images ({state})")
    header, body = _per_class_table(source)
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


def _check(source: Source) -> dict[str, list[str]]:
    bad = {}
    for split, ds in source.splits.items():
        with tqdm(
            total=len(ds), desc=f"checking {split}", unit="img", disable=not on_terminal()
        ) as shown:
            bad[split] = unreadable(ds, progress=shown.update)
    return bad


def _per_class_table(source: Source) -> tuple[list[str], list[list[str]]]:
    counts = {split: Counter(ds.targets) for split, ds in source.splits.items()}
    header = ["index", "class", "wordnet id", *source.splits]
    body = []
    for i, name in enumerate(source.readable_names()):
        wnid = source.class_ids[i] if source.class_ids else "-"
        body.append([str(i), name, wnid, *(f"{counts[s].get(i, 0):,}" for s in source.splits)])
    total = [f"{len(ds):,}" for ds in source.splits.values()]
    body.append(["", "all", "", *total])
    return header, body


def _per_class(ds, classes: int) -> list[int]:
    counts = Counter(ds.targets)
    return [counts[i] for i in range(classes)]


def _summary(source: Source, bad: dict[str, list[str]]) -> dict:
    return {
        "source": source.spec,
        "layout": source.layout,
        "classes": source.classes,
        "class_ids": source.class_ids,
        "splits": {
            split: {
                "images": len(ds),
                "per_class": _per_class(ds, len(source.classes)),
                "unreadable": bad.get(split),
            }
            for split, ds in source.splits.items()
        },
    }


def run_shard(args: argparse.Namespace) -> int:
    size = parse_size(args.shard_size)
    out = writable(args.out, folder=True)
    if out.is_dir() and any(out.iterdir()):
        what = "already holds shards" if (out / MANIFEST).exists() else "is not empty"
        raise UsageError(f"--out {out}: {what}; give a new or empty folder")
    source = open_source(args.source, args.labels, args.as_split)
    total = sum(len(ds) for ds in source.splits.values())
    with tqdm(total=total, desc="writing shards", unit="img", disable=not on_terminal()) as shown:
        manifest = write_shards(
            source.splits,
            out,
            size,
            class_ids=source.class_ids,
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
