"""Published weights by name: fetched, checked, imported once, then read from the cache.

    model, card = load_pretrained("googlenet.bvlc_in1k")     # or a model name: its default
    path = pretrained_path("resnet50.tv2_in1k")               # our .safetensors, in the cache

Where the files live: `GOINGDEEPER_HOME`, else the user's cache folder (`~/.cache/goingdeeper`
on Linux), as

    weights/<name>/<the publisher's file name>     the download, as published
    weights/<name>/<name>.safetensors, .json       our file and its card, imported from it
    locks/<name>.lock                              one fetch of a name at a time

A file already in torch's hub cache (`$TORCH_HOME/hub/checkpoints/`) or the Hugging Face cache
is read where it is, after its hash is checked. The download goes through pooch (requests): a
progress bar on a terminal, a temporary file renamed into place, a lock that makes a second
process wait and then read the first one's file; a dropped connection is tried again, a hash
that differs from the published one leaves nothing behind. `GOINGDEEPER_OFFLINE=1` forbids the
network; `GOINGDEEPER_WEIGHTS_MIRROR=URL` puts the mirror's scheme and host (and path prefix)
in place of the publisher's, keeping the file's path.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import pooch
import requests
import torch
from filelock import FileLock
from torch import nn

from ..errors import WeightsError
from ..files import atomic_write, give_ordinary_mode
from .bvlc import import_bvlc
from .catalogue import WeightsEntry, find_entry, get_entry
from .format import WeightsCard, load_weights, save_weights
from .pretrainedmodels import import_pretrainedmodels
from .timm import import_timm
from .torchvision import import_torchvision

HOME_ENV = "GOINGDEEPER_HOME"
OFFLINE_ENV = "GOINGDEEPER_OFFLINE"
MIRROR_ENV = "GOINGDEEPER_WEIGHTS_MIRROR"
TIMEOUT = 30.0  # seconds without a byte before a download is given up
RETRIES = 3  # further tries after a dropped connection
CHUNK = 1 << 20  # bytes read at a time


def cache_home() -> Path:
    """`GOINGDEEPER_HOME`, else the user's cache folder for goingdeeper."""
    home = os.environ.get(HOME_ENV, "")
    return Path(home).expanduser() if home else Path(pooch.os_cache("goingdeeper")).expanduser()


def entry_folder(entry: WeightsEntry) -> Path:
    return cache_home() / "weights" / entry.name


def cached_path(entry: WeightsEntry) -> Path:
    """Where the imported weights of `entry` are (or will be) kept."""
    return entry_folder(entry) / f"{entry.name}.safetensors"


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def download_url(entry: WeightsEntry) -> str:
    """The URL a fetch asks: the publisher's, or its path on `GOINGDEEPER_WEIGHTS_MIRROR`."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return entry.url
    if urlsplit(mirror).scheme not in ("http", "https") or not urlsplit(mirror).netloc:
        raise WeightsError(
            f"{MIRROR_ENV}={mirror!r}: give an http(s) URL such as https://mirror.example.org"
        )
    official = urlsplit(entry.url)
    return mirror.rstrip("/") + official.path + (f"?{official.query}" if official.query else "")


def by_hand(entry: WeightsEntry) -> str:
    """How a person places a file fetched elsewhere, for the end of an error message."""
    return (
        f"download {entry.url} elsewhere and place it with "
        f"`goingdeeper weights import {entry.name} FILE`"
    )


def file_digests(path: Path, algorithms: Iterable[str]) -> dict[str, str]:
    """The hex digests of `path` in each of `algorithms`, from one read of the file."""
    digests = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            for digest in digests.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def check_hash(entry: WeightsEntry, path: Path) -> str:
    """The SHA-256 of `path`; a `WeightsError` when the published hash is not the file's."""
    digests = file_digests(path, {"sha256", entry.hash_algorithm or "sha256"})
    sha256 = digests["sha256"]
    if entry.hash_algorithm:
        got = digests[entry.hash_algorithm]
        if not got.startswith(entry.hash_value):
            raise WeightsError(
                f"{entry.name}: {path.name} has {entry.hash_algorithm} {got[:16]}..., not "
                f"{entry.hash_value[:16]}... as published; it is not kept. Try again (a proxy "
                "may have changed it), or " + by_hand(entry)
            )
    return sha256


def found_elsewhere(entry: WeightsEntry) -> Path | None:
    """The file in torch's hub cache or the Hugging Face cache, where either holds it."""
    if entry.hf_repo:  # the hub's layout: models--org--name/snapshots/<revision>/<file>
        hf_home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser()
        hub = Path(os.environ.get("HF_HUB_CACHE", hf_home / "hub")).expanduser()
        repo = hub / ("models--" + entry.hf_repo.replace("/", "--"))
        main = repo / "refs" / "main"  # the revision `main` named when it was fetched
        if main.is_file() and (repo / "snapshots" / main.read_text().strip()).is_dir():
            path = repo / "snapshots" / main.read_text().strip() / entry.filename
            return path if path.is_file() else None
        files = sorted(repo.glob(f"snapshots/*/{entry.filename}"))
        return files[0] if files else None
    path = Path(torch.hub.get_dir()) / "checkpoints" / entry.filename
    return path if path.is_file() else None


@contextlib.contextmanager
def _quiet_pooch():
    """pooch logs each download and, for files without a known hash, advises pinning the one
    it got; our errors and progress bar say what a person needs."""
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def download(
    entry: WeightsEntry, folder: Path, *, progress: bool, timeout: float, retries: int
) -> Path:
    """`entry`'s file fetched into `folder` (a temporary file, renamed when whole); a dropped
    connection is tried `retries` times more; any failure is a one-line `WeightsError`."""
    url = download_url(entry)
    downloader = pooch.HTTPDownloader(progressbar=progress, chunk_size=CHUNK, timeout=timeout)
    for attempt in range(retries + 1):
        try:
            with _quiet_pooch():
                pooch.retrieve(url, None, fname=entry.filename, path=folder, downloader=downloader)
            give_ordinary_mode(folder / entry.filename)  # pooch's temporary file was private
            return folder / entry.filename
        except requests.exceptions.Timeout:
            raise WeightsError(
                f"{entry.name}: {url} sent nothing for {timeout:g} s; try again later, or "
                + by_hand(entry)
            ) from None
        except requests.exceptions.HTTPError as e:
            status = e.response.status_code if e.response is not None else "?"
            reason = e.response.reason if e.response is not None else ""
            raise WeightsError(
                f"{entry.name}: {url} answered HTTP {status} {reason}; " + by_hand(entry)
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError):
            if attempt == retries:
                raise WeightsError(
                    f"{entry.name}: the connection to {url} failed {retries + 1} times; "
                    "check the network, or " + by_hand(entry)
                ) from None
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def import_file(entry: WeightsEntry, path: Path, sha256: str) -> tuple[nn.Module, WeightsCard]:
    """The published file at `path` imported by its publisher's importer, the card telling
    which catalogue entry it is, its URL, hash, licence and reported accuracy."""
    if entry.source == "bvlc":
        model, card = import_bvlc(path)
    elif entry.source == "torchvision":
        model, card = import_torchvision(path, tag=entry.upstream or None)
    elif entry.source == "pretrainedmodels":
        model, card = import_pretrainedmodels(path)
    else:
        model, card = import_timm(path, tag=entry.tag)
    if card.model != entry.model:
        raise WeightsError(f"{entry.name}: {path.name} holds weights of {card.model}")
    card.provenance.update(
        weights=entry.name,
        url=entry.url,
        sha256=sha256,
        license=entry.licence,
        reported=entry.reported,
    )
    return model, card


def _import_into_cache(entry: WeightsEntry, path: Path) -> Path:
    try:
        sha256 = check_hash(entry, path)
    except WeightsError:
        if path.parent == entry_folder(entry):  # ours: nothing is kept of a file that differs
            path.unlink(missing_ok=True)
        raise
    model, card = import_file(entry, path, sha256)
    return save_weights(model, card, cached_path(entry))


def _lock(entry: WeightsEntry) -> FileLock:
    """The lock of `entry`'s files; the cache's folders made first (a one-line error when
    they cannot be)."""
    locks = cache_home() / "locks"
    try:
        locks.mkdir(parents=True, exist_ok=True)
        entry_folder(entry).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsError(
            f"cannot write the weights cache {cache_home()} ({e.strerror}); set {HOME_ENV} "
            "to a folder you can write"
        ) from None
    return FileLock(str(locks / f"{entry.name}.lock"))


def pretrained_path(
    name: str | WeightsEntry,
    *,
    progress: bool | None = None,
    timeout: float = TIMEOUT,
    retries: int = RETRIES,
) -> Path:
    """Our .safetensors of the catalogue's weights `name` (`model.tag`, or a model name for
    its default weights), fetched and imported on the first call, from the cache after.
    `progress`: a progress bar on stderr (default: when stderr is a terminal)."""
    entry = name if isinstance(name, WeightsEntry) else get_entry(name)
    ours = cached_path(entry)
    if ours.is_file():
        return ours
    with _lock(entry):
        if ours.is_file():  # another process fetched it while this one waited
            return ours
        try:
            return _fetch(entry, progress=progress, timeout=timeout, retries=retries)
        except WeightsError:
            with contextlib.suppress(OSError):  # no empty folder is left behind either
                entry_folder(entry).rmdir()
            raise


def _fetch(entry: WeightsEntry, *, progress: bool | None, timeout: float, retries: int) -> Path:
    """`pretrained_path`'s work once it holds the lock: the file from the cache, torch's or
    the Hugging Face cache, or the network; checked and imported."""
    downloaded = entry_folder(entry) / entry.filename
    if downloaded.is_file():
        return _import_into_cache(entry, downloaded)
    elsewhere = found_elsewhere(entry)
    if elsewhere is not None:
        return _import_into_cache(entry, elsewhere)
    if offline():
        raise WeightsError(
            f"{entry.name}: not in the cache ({cache_home()}) and {OFFLINE_ENV} is set; "
            + by_hand(entry)
        )
    shown = sys.stderr.isatty() if progress is None else progress
    path = download(entry, entry_folder(entry), progress=shown, timeout=timeout, retries=retries)
    return _import_into_cache(entry, path)


def load_pretrained(name: str | WeightsEntry, **overrides) -> tuple[nn.Module, WeightsCard]:
    """The model and card of the catalogue's weights `name` (`pretrained_path`); `overrides`
    are constructor arguments over the card's."""
    return load_weights(pretrained_path(name), **overrides)


def place_file(name: str, source: str | Path) -> Path:
    """A file of the catalogue's weights `name`, fetched by other means, checked against the
    published hash, copied into the cache and imported; our .safetensors in the cache."""
    entry = get_entry(name)
    source = Path(source)
    if not source.is_file():
        raise WeightsError(f"{source}: no such file; give the downloaded {entry.filename}")
    sha256 = check_hash(entry, source)  # before anything is written
    with _lock(entry):
        folder = entry_folder(entry)
        placed = folder / entry.filename
        atomic_write(placed, lambda tmp: shutil.copyfile(source, tmp))
        model, card = import_file(entry, placed, sha256)
        return save_weights(model, card, cached_path(entry))


def weights_file(source: str | Path) -> Path:
    """`source` as a weights file: the path itself when it exists, else the cached file of the
    catalogue's weights of that name (fetched on first use)."""
    if Path(source).exists() or find_entry(str(source)) is None:
        return Path(source)
    return pretrained_path(str(source))


def is_cached(entry: WeightsEntry) -> bool:
    return cached_path(entry).is_file()


def cache_state(entry: WeightsEntry) -> str:
    """Where `entry` is on this machine, in a word: "yes" (imported, ready), "downloaded" (the
    file, not yet imported), "torch hub" or "hugging face" (a cache of those), "no"."""
    if is_cached(entry):
        return "yes"
    if (entry_folder(entry) / entry.filename).is_file():
        return "downloaded"
    if found_elsewhere(entry) is not None:
        return "hugging face" if entry.hf_repo else "torch hub"
    return "no"
