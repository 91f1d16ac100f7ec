"""Files the package writes: where they go is checked before any work starts, and each is
written whole (a reader sees the old file or the new one, never half of one) with the
permissions any other file of the user's would get.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import UsageError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once: setting the umask to read it is not safe while other threads create files.
_FILE_MODE = 0o666 & ~_umask()


def give_ordinary_mode(path: str | Path) -> None:
    """The mode an ordinary `open` would give `path` (for a file another library wrote as a
    private temporary file)."""
    os.chmod(path, _FILE_MODE)


def atomic_write(path: Path, write: Callable[[str], None], *, sync: bool = False) -> None:
    """`write(temporary path)` beside `path`, then a rename over it. The file gets the mode an
    ordinary `open` would give it (a temporary file is private to its owner); with `sync`, its
    bytes reach the disk before the rename. When the write fails (a full disk), the temporary
    file and the folders made for it are removed."""
    made = []  # the folders made here, deepest first: removed again if the write fails
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)
        if sync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        for folder in made:
            with contextlib.suppress(OSError):  # not empty: another file went there meanwhile
                folder.rmdir()
        raise


def temporary_files(folder: Path, names: tuple[str, ...]) -> list[Path]:
    """The temporary files `atomic_write` leaves in `folder` for the files `names` when the
    process is killed before its rename."""
    return [p for name in names for p in folder.glob(f".{glob.escape(name)}.*.tmp") if p.is_file()]


def writable(path: str | Path, option: str = "--out", *, folder: bool = False) -> Path:
    """`path` as the place a command will write a file (or, with `folder`, a folder of files):
    a `UsageError` naming `option` when it cannot be, found before any work is done. Folders
    that do not exist yet are not made here; a probe file in the nearest existing one tells
    whether they can be (a read-only disk, a folder without write permission, a file where a
    folder must be)."""
    if not str(path).strip():
        raise UsageError(f"{option} is empty; give a {'folder' if folder else 'file name'}")
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: exists and is not a folder")
    if not folder and path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name")
    nearest = path if folder else path.parent
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir():
        raise UsageError(f"{option} {path}: {nearest} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=nearest):
            pass
    except OSError as e:
        raise UsageError(f"{option} {path}: cannot write in {nearest} ({e.strerror})") from None
    return path
