"""`ShardStream`: a shard split read front to back, split across DDP ranks by shard and
across each rank's DataLoader workers by sample, so that each sample is yielded once.

The shards of an epoch (shuffled with the seed and the epoch, or in order) are dealt out to
the ranks, each next shard to the rank with the fewest images so far: a rank reads only its
own shards. Its workers all go through those shards in the same order and worker w reads
and decodes samples w, w + W, w + 2W, ... only (passing over the others costs a tar header
each), so the workers stay equally busy to the end. For evaluation every rank yields all it
was dealt: each sample exactly once. For training every rank must take the same number of
steps, so each yields as many images as the smallest rank holds; the rest wait for a later
epoch, when the shards are dealt anew (`left_out` counts them). A buffer (`buffer` samples,
seeded) shuffles what each worker yields, as streaming readers do.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import IterableDataset, get_worker_info

from ...errors import DataError, ImageError
from ...images import open_encoded
from .dataset import Skipped
from .shards import ShardSet, read_manifest, shard_images
from .tar import TarArchive

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """Who reads what in one epoch: `shards[rank]` (indices into the split's shards, in
    reading order) and `quota[rank]`, the number of images that rank yields."""

    shards: list[list[int]]
    quota: list[int]
    left_out: int

    def worker_quota(self, rank: int, worker: int, workers: int) -> int:
        """Images worker `worker` of `workers` yields: positions w, w + W, ... below the quota."""
        whole, extra = divmod(self.quota[rank], workers)
        return whole + (worker < extra)


class ShardStream(IterableDataset):
    """Samples `(transform(image), label)`, or a `Skipped` record for an image that cannot be
    decoded (for `collate_skip`), of one split of a shard folder."""

    streamed = True  # read front to back, split across the readers (not at random)

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
        self.shards = self.manifest.check_files(split)
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
        if len(self.shards) < world:
            raise DataError(
                f"{self.origin}: {len(self.shards)} shards cannot feed {world} processes; "
                f"write at least {world} (a smaller --shard-size)"
            )
        self.world, self.rank, self.workers, self.epoch = world, rank, workers, epoch
        return self

    def plan(self) -> Plan:
        order = list(range(len(self.shards)))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        shards: list[list[int]] = [[] for _ in range(self.world)]
        held = [0] * self.world
        for shard in order:
            rank = min(range(self.world), key=lambda r: (held[r], r))
            shards[rank].append(shard)
            held[rank] += self.shards[shard].images
        quota = [min(held)] * self.world if self.equal_ranks else held
        return Plan(shards, quota, sum(held) - sum(quota))

    def __len__(self) -> int:
        """The images this process reads in the configured epoch."""
        return self.plan().quota[self.rank]

    def batches(self, batch_size: int) -> int:
        """The batches this process's loader gives in the configured epoch (each worker ends
        with its own partial batch)."""
        plan, workers = self.plan(), max(1, self.workers)
        quotas = [plan.worker_quota(self.rank, w, workers) for w in range(workers)]
        return sum(-(-q // batch_size) for q in quotas)

    def __iter__(self) -> Iterator[tuple]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if info is not None and info.num_workers != max(1, self.workers):
            raise DataError(
                f"{self.origin}: configured for {self.workers} workers, "
                f"loaded by {info.num_workers}"
            )
        plan, workers = self.plan(), max(1, self.workers)
        slot = self.rank * workers + worker
        rng = random.Random((self.seed * 1_000_003 + self.epoch) * 4099 + slot)
        samples = self._read(plan.shards[self.rank], plan.quota[self.rank], worker, workers)
        if self.shuffle and self.buffer > 1:
            samples = _buffer_shuffle(samples, self.buffer, rng)
        for index, name, data, label in samples:
            yield self._sample(index, name, data, label)

    def _read(
        self, shards: list[int], quota: int, worker: int, workers: int
    ) -> Iterator[tuple[int, str, bytes, int]]:
        """This worker's samples among the first `quota` of the rank's shards: (index in the
        split, name, bytes, label)."""
        starts = [0]
        for shard in self.shards:
            starts.append(starts[-1] + shard.images)
        position = 0
        for index in shards:
            path = self.manifest.path(self.shards[index])
            if not path.is_file():
                raise DataError(f"{path}: shard missing (named in the manifest)")
            archive = TarArchive(path)
            shard = self.shards[index]
            images = shard_images(archive, shard, self.manifest.cls)
            for k, (member, label) in enumerate(zip(images, shard.labels, strict=True)):
                if position >= quota:
                    return
                if position % workers == worker:
                    yield starts[index] + k, archive.describe(member), archive.read(member), label
                position += 1

    def _sample(self, index: int, name: str, data: bytes, label: int) -> tuple | Skipped:
        if self.relabel is not None:
            label = self.relabel[label]
        if not self.decode:  # the sample's name instead of its image
            return name, label
        try:
            image = open_encoded(data, name)
            if getattr(self.transform, "takes_opened", False):  # it decodes what it needs
                return self.transform(image), label
            image = image.decode()
        except ImageError as e:
            return Skipped.of(index, name, e)
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
