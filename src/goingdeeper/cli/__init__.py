"""The `goingdeeper` command: one module per subcommand, each adding its parser and the
function it runs. Only this package parses arguments and prints; everything it calls takes
objects and returns values.

A mistake a person can fix raises a `GoingDeeperError`: `main` prints its message as one line
and returns 2. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import GoingDeeperError
from ..images import image_pixel_limit
from . import (
    bench,
    data,
    evaluate,
    export,
    microscope,
    models,
    predict,
    summary,
    train,
    visualize,
    weights,
)
from .common import printable

EXAMPLES = """\
examples:
  goingdeeper predict photo.jpg --weights googlenet.bvlc_in1k   # fetched once, then cached
  goingdeeper weights list
  goingdeeper models
  goingdeeper summary googlenet --paper
  goingdeeper summary googlenet --bottleneck
  goingdeeper summary googlenet_torchvision --input-size 299 --format markdown
  goingdeeper summary googlenet --arg conv1=separable --paper
  goingdeeper weights import bvlc ../shared/data/bvlc-googlenet --out weights/bvlc_googlenet
  goingdeeper weights show weights/bvlc_googlenet.safetensors
  goingdeeper predict photo.jpg --weights weights/bvlc_googlenet.safetensors
"""

# in the order `goingdeeper --help` lists them
COMMANDS = (
    models,
    summary,
    weights,
    data,
    train,
    evaluate,
    visualize,
    microscope,
    predict,
    export,
    bench,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="goingdeeper",
        description="GoogLeNet and the classic CNN line, exactly as published.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with image_pixel_limit(getattr(args, "max_image_pixels", None)):
            return args.func(args)
    except GoingDeeperError as e:
        return _error(str(e))
    except BrokenPipeError:  # the reader stopped early (`| head`): not a failure of ours
        _silence_stdout()
        return SIGPIPE_EXIT
    except OSError as e:  # the disk or the file system (full, read-only, no permission)
        where = f"{e.filename}: " if e.filename else ""
        return _error(f"{where}{e.strerror or e}; nothing was finished")
    except KeyboardInterrupt:
        print("goingdeeper: interrupted", file=sys.stderr)
        return 130


SIGPIPE_EXIT = 141  # what a shell reports for a program ended by SIGPIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush writes nowhere instead
    of printing a second broken-pipe error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


MAX_MESSAGE = 1000  # characters: a message naming a million settings is cut short


def _error(message: str) -> int:
    """Print `message` as the one line of an error (control characters escaped, a very long
    one cut) and give the exit code of a mistake, 2."""
    line = printable(message)
    if len(line) > MAX_MESSAGE:
        line = f"{line[:MAX_MESSAGE]}... ({len(line) - MAX_MESSAGE:,} more characters)"
    print(f"goingdeeper: error: {line}", file=sys.stderr)
    return 2


__all__ = ["build_parser", "main"]
