"""A run folder belongs to one run: a lock while it trains, and no silent overwrite after.

`run.lock` holds the process id, the host and the start time of the run that owns the folder.
A second run into the same folder stops with one line naming the owner; a lock left by a
process that no longer runs (on this host) is reported as stale, never taken over silently.
A folder that holds a finished or interrupted run is continued (`resume`), replaced
(`overwrite`: its run files are deleted once the lock is held, so old and new never mix, and a
run in progress loses nothing), or refused; a folder holding anything else (the user's own
files, a data set) is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import TrainingError
from ..files import temporary_files, writable

LOCK = "run.lock"
RUN_FILES = (
    "checkpoint.pt",
    "config.json",
    "log.csv",
    "steps.csv",
    "curves.png",
    "views.json",
    "model.safetensors",
    "model.json",
    "model_polyak.safetensors",
    "model_polyak.json",
)
RUN_FOLDERS = ("tensorboard",)
# what an earlier run leaves once it has trained an epoch: what an overwrite would lose
RESULTS = ("checkpoint.pt", "log.csv", "model.safetensors", "model_polyak.safetensors")


def run_files(out: Path, names: tuple[str, ...] = (*RUN_FILES, *RUN_FOLDERS)) -> list[str]:
    """The files of an earlier run in `out` (among `names`)."""
    return [n for n in names if (out / n).exists()]


def prepare(out: str | Path, *, resume: bool, overwrite: bool, data: str = "") -> Path:
    """Check that `out` may take this run, deleting nothing: it is empty or new, or holds a run
    that is continued (`resume`) or replaced (`overwrite`, done by `locked` once it holds the
    lock). A folder holding anything that is not a run's is refused whatever the flags, and so
    is a folder inside the data folder `data` trains on."""
    out = writable(out, folder=True)
    _outside_data(out, data)
    if not out.is_dir():
        return out
    ours = {*RUN_FILES, *RUN_FOLDERS, LOCK}
    temporary = {p.name for p in temporary_files(out, RUN_FILES)}
    foreign = sorted(p.name for p in out.iterdir() if p.name not in ours | temporary)
    found = run_files(out, RESULTS)
    if foreign and not (resume and found):
        raise TrainingError(
            f"--out {out} holds files that are not a run's ({', '.join(foreign[:3])}); give an "
            "empty or new folder as --out"
        )
    found = found or run_files(out)
    if resume or overwrite or not found:
        return out
    raise TrainingError(
        f"{out} holds a run ({', '.join(found[:3])}); continue it with --resume, replace it "
        "with --overwrite, or give another --out"
    )


def _outside_data(out: Path, data: str) -> None:
    """Refuse an `out` that is the data folder or inside it: the run's files (curves.png, say)
    would be read as training images the next time the data is opened."""
    folder = Path(data).expanduser() if data else None
    if folder is None or not folder.is_dir():
        return
    root, target = folder.resolve(), out.expanduser().resolve()
    if target == root or root in target.parents:
        raise TrainingError(
            f"--out {out} is inside the data folder {data}; the run's files would become "
            "training images: give an --out outside it"
        )


def _replace(out: Path, names: list[str] | None = None) -> None:
    """Delete the run files `names` (all of them by default), with the lock held."""
    for name in run_files(out) if names is None else names:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


@contextmanager
def locked(out: Path, *, replace: bool = False):
    """Hold `out/run.lock` while the body runs (created atomically; removed at the end). With
    the lock held, the temporary files of a killed run are removed, and with `replace` the
    earlier run's files. A run that fails before any result removes the files it wrote (a
    config, the first steps), and a folder made here is removed again when that leaves it
    empty."""
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise TrainingError(_held(out / LOCK)) from None
    except OSError as e:
        raise TrainingError(f"--out {out}: cannot write there ({e.strerror})") from None
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    with os.fdopen(fd, "w") as f:
        json.dump(owner, f)
    try:
        for path in temporary_files(out, RUN_FILES):
            path.unlink(missing_ok=True)
        if replace:
            _replace(out)
        before = set(run_files(out))
        try:
            yield
        except BaseException:
            if not run_files(out, RESULTS):  # it failed before any result: nothing to keep
                _replace(out, [n for n in run_files(out) if n not in before])
            raise
    finally:
        (out / LOCK).unlink(missing_ok=True)
        if made and not any(out.iterdir()):
            out.rmdir()


def _held(lock: Path) -> str:
    try:
        owner = json.loads(lock.read_text())
        pid, host, started = int(owner["pid"]), str(owner["host"]), float(owner["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return (
            f"{lock} exists but does not say which run holds it; delete it if no run uses "
            f"{lock.parent}"
        )
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    if host == socket.gethostname() and not _alive(pid):
        return (
            f"{lock.parent} has a stale lock: process {pid} on {host} (since {since}) is not "
            f"running; delete {lock} if its run is over, then --resume or --overwrite"
        )
    return f"{lock.parent} is in use by process {pid} on {host} since {since}; give another --out"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
