"""`ShardStream`: a shard split read front to back, split across DDP ranks and DataLoader
workers by shard, so that each sample is read by one reader only.

The shards of an epoch (shuffled with the seed and the epoch, or in order) are dealt out to
ranks x workers reader slots, each next shard to the slot with the fewest images so far. For
evaluation every slot reads all it was dealt: each sample exactly once. For training every
rank must take the same number of steps, so worker w of each rank reads as many images as
the smallest worker w of any rank holds; the rest wait for a later epoch, where the shards are
dealt anew (how many is in `left_out`). Within a slot, a buffer shuffles the samples
(`buffer` of them, seeded), as streaming readers do.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import IterableDataset, get_worker_info

from ..errors import DataError, ImageError
from ..images import decode_image
from .shards import ShardSet, iter_shard, read_manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """Who reads what in one epoch: `shards[rank][worker]` (indices into the split's shards)
    and `quota[rank][worker]`, the number of images that reader yields."""

    shards: list[list[list[int]]]
    quota: list[list[int]]
    left_out: int


class ShardStream(IterableDataset):
    """Samples `(transform(image), label)`, or `(None, label, message)` for an image that
    cannot be decoded (for `collate_skip`), of one split of a shard folder."""

    def __init__(
        self,
        folder: str | Path,
        split: str,
        transform: Callable | None = None,
        *,
        shuffle: bool = True,
        seed: int = 0,
        buffer: int = 1000,
        equal_ranks: bool = True,
    ) -> None:
        self.manifest: ShardSet = read_manifest(folder)
        self.split = split
        self.shards = self.manifest.shards(split)
        self.classes = list(self.manifest.classes)
        self.transform = transform
        self.shuffle, self.seed, self.buffer = shuffle, seed, buffer
        self.equal_ranks = equal_ranks
        self.origin = f"{folder}:{split}"
        self.world, self.rank, self.workers, self.epoch = 1, 0, 0, 0
        self.relabel: dict[int, int] | None = None
        self.decode = True

    def relabelled(self, classes: list[str] | tuple[str, ...], labels: dict[int, int]):
        """This stream with its labels as classes of a longer list: l becomes `labels[l]`."""
        self.classes, self.relabel = list(classes), dict(labels)
        return self

    def configure(
        self,
        *,
        world: int,
        rank: int,
        workers: int,
        epoch: int,
        shuffle: bool | None = None,
        seed: int | None = None,
    ) -> ShardStream:
        """Set the readers this stream is split across and the epoch (before iterating)."""
        if shuffle is not None:
            self.shuffle = shuffle
        if seed is not None:
            self.seed = seed
        slots = world * max(1, workers)
        if len(self.shards) < slots:
            raise DataError(
                f"{self.origin}: {len(self.shards)} shards cannot feed {world} processes x "
                f"{max(1, workers)} loader workers; write at least {slots} (a smaller "
                "--shard-size) or use fewer workers"
            )
        self.world, self.rank, self.workers, self.epoch = world, rank, workers, epoch
        return self

    def plan(self) -> Plan:
        order = list(range(len(self.shards)))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        workers = max(1, self.workers)
        slots = [[] for _ in range(self.world * workers)]
        counts = [0] * len(slots)
        for shard in order:
            slot = min(range(len(slots)), key=lambda s: (counts[s], s))
            slots[slot].append(shard)
            counts[slot] += self.shards[shard].images
        shards = [slots[r * workers : (r + 1) * workers] for r in range(self.world)]
        held = [counts[r * workers : (r + 1) * workers] for r in range(self.world)]
        if self.equal_ranks:
            least = [min(held[r][w] for r in range(self.world)) for w in range(workers)]
            quota = [list(least) for _ in range(self.world)]
        else:
            quota = held
        left_out = sum(counts) - sum(map(sum, quota))
        return Plan(shards, quota, left_out)

    def __len__(self) -> int:
        """The images this process reads in the configured epoch."""
        return sum(self.plan().quota[self.rank])

    def batches(self, batch_size: int) -> int:
        """The batches this process's loader gives in the configured epoch (each worker ends
        with its own partial batch)."""
        return sum(-(-q // batch_size) for q in self.plan().quota[self.rank])

    def __iter__(self) -> Iterator[tuple]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if info is not None and info.num_workers != max(1, self.workers):
            raise DataError(
                f"{self.origin}: configured for {self.workers} workers, "
                f"loaded by {info.num_workers}"
            )
        plan = self.plan()
        mine = plan.shards[self.rank][worker]
        quota = plan.quota[self.rank][worker]
        slot = self.rank * max(1, self.workers) + worker
        rng = random.Random((self.seed * 1_000_003 + self.epoch) * 4099 + slot)
        samples = self._read(mine)
        if self.shuffle and self.buffer > 1:
            samples = _buffer_shuffle(samples, self.buffer, rng)
        for n, (name, data, label) in enumerate(samples):
            if n >= quota:
                break
            yield self._sample(name, data, label)

    def _read(self, shards: list[int]) -> Iterator[tuple[str, bytes, int]]:
        for index in shards:
            path = self.manifest.path(self.shards[index])
            if not path.is_file():
                raise DataError(f"{path}: shard missing (named in the manifest)")
            for key, data, ext, label in iter_shard(path):
                yield f"{path}:{key}.{ext}", data, label

    def _sample(self, name: str, data: bytes, label: int) -> tuple:
        if self.relabel is not None:
            label = self.relabel[label]
        if not self.decode:  # the sample's name instead of its image
            return name, label
        try:
            image = decode_image(data, name)
        except ImageError as e:
            return None, label, str(e)
        return (self.transform(image) if self.transform is not None else image), label


def _buffer_shuffle(items: Iterator, size: int, rng: random.Random) -> Iterator:
    """Items in a random order drawn from a window of `size` (streaming shuffle)."""
    window = []
    for item in items:
        if len(window) < size:
            window.append(item)
            continue
        k = rng.randrange(size)
        yield window[k]
        window[k] = item
    rng.shuffle(window)
    yield from window
