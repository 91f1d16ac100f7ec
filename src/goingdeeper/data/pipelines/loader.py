"""The loader of a training or test epoch, and which of the pipelines makes it: the Pillow
transforms in DataLoader workers (`pil`), the tensor batches decoded and augmented on the
device (`tensor`, from a set held decoded when it is small), or NVIDIA DALI (`dali`); on a
GPU the device loaders run a batch or two ahead in a thread (`Prefetched`).

The run's config (`train.config.TrainConfig`) and processes (`train.distributed.Distributed`)
are read for the fields named here; every epoch's draws start from its own seed
(`epoch_seed`), so that a resumed run repeats them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, DistributedSampler

from ...errors import ConfigError
from ...preprocess import Preprocessing
from ..recipes.catalogue import RECIPES, TENSOR_RECIPES
from ..sources.dataset import ArrayReader, collate_skip
from .dali import DaliRecipe, dali_batches, require_dali
from .held import HeldBatches, WholeImageAugment, held
from .prefetch import Prefetched
from .tensor import BatchAugment, DeviceBatches, EncodedImages, PixelBatches, collate_encoded

if TYPE_CHECKING:  # the run's types, which import this module
    from ...train.config import TrainConfig
    from ...train.distributed import Distributed


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Every epoch starts from a seed of its own, so a resumed run repeats it exactly."""
    return (seed * 1_000_003 + epoch * 7919 + rank) % (2**63)


def loader_kind(c: TrainConfig, ds, device: torch.device | None) -> str:
    """Which loader trains (`TrainConfig.loader`), "pil", "tensor" or "dali": auto takes the
    tensor loader on a CUDA device for the recipes it runs, over images stored as files or tar
    members or held as arrays; dali needs DALI installed and images stored encoded."""
    base = getattr(ds, "dataset", ds)
    stored = getattr(base, "stores_encoded", False)
    fed = stored or isinstance(getattr(base, "reader", None), ArrayReader)
    if c.loader == "tensor" and not fed:
        raise ConfigError(
            f"loader=tensor cuts batches from images as stored or held in arrays, and {c.data} "
            f"is {'streamed from shards' if getattr(ds, 'streamed', False) else 'neither'}; use "
            "loader=pil"
        )
    if c.loader == "dali":
        require_dali()  # one line when it is missing, before any work
        if not stored:
            raise ConfigError(
                f"loader=dali decodes images as stored (files, tar members), and {c.data} is "
                f"{'streamed from shards' if getattr(ds, 'streamed', False) else 'held as arrays'}"
                "; use loader=pil"
            )
    if c.loader == "auto":
        on_gpu = device is not None and device.type == "cuda"
        return "tensor" if on_gpu and fed and c.recipe in TENSOR_RECIPES else "pil"
    return c.loader


def make_loader(
    ds,
    batch_size: int,
    c: TrainConfig,
    d: Distributed,
    *,
    train: bool,
    epoch: int = 0,
    device: torch.device | None = None,
    preprocessing: Preprocessing | None = None,
):
    """The loader of one epoch: a training loader (`train`) in the order of the run's seed,
    every process its share; with the tensor or DALI loader, batches decoded and augmented on
    `device` (with `preprocessing`)."""
    sampler = None
    if getattr(ds, "streamed", False):  # split by shard across the processes and the workers
        ds.configure(world=d.world, rank=d.rank, workers=c.workers, epoch=epoch)
    elif train:  # the same sampler for 1 or N processes: the same global order of samples
        sampler = DistributedSampler(
            ds, num_replicas=d.world, rank=d.rank, shuffle=c.shuffle, seed=c.seed, drop_last=False
        )
        sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(epoch_seed(c.seed, epoch, d.rank))
    kind = loader_kind(c, ds, device) if train else "pil"
    if kind in ("tensor", "dali"):  # batches made in the training process, on its device
        if kind == "tensor":
            batches = _tensor_batches(ds, batch_size, c, sampler, generator, device, preprocessing)
        else:
            recipe = DaliRecipe.of(
                c.recipe, c.input_size, preprocessing, c.flip, c.photometric, c.interpolations
            )
            batches = dali_batches(
                ds, batch_size, recipe, sampler, generator, device, preprocessing, c.workers
            )
        # on a GPU, the next batches are made in a thread while the step runs
        on_gpu = device is not None and device.type == "cuda"
        return Prefetched(batches, device) if on_gpu else batches
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=c.workers,
        collate_fn=collate_skip,
        generator=generator,
        persistent_workers=False,
        # to a GPU from page-locked memory: the copy can overlap the step (non_blocking)
        pin_memory=device is not None and device.type == "cuda",
        drop_last=False,
    )
    transform = getattr(getattr(ds, "dataset", ds), "transform", None)
    if getattr(transform, "pixels", False):  # 8-bit pixels: normalised on the device
        return PixelBatches(loader, preprocessing, device)
    return loader


def _tensor_batches(ds, batch_size, c, sampler, generator, device, preprocessing):
    """The tensor loader's epoch: batches cut from the set held decoded on `device` when it is
    small and of one image size (CIFAR, MNIST, the digits), else read by the workers as stored
    and decoded on `device` batch by batch; augmented there with draws from the run's seed."""
    draws = torch.Generator().manual_seed(generator.initial_seed() + 1)
    spec = RECIPES[c.recipe]  # googlenet or simple (`TENSOR_RECIPES`)
    if spec.whole_image:
        augment = WholeImageAugment(c.input_size, preprocessing, flip=c.flip, generator=draws)
    else:
        augment = BatchAugment(
            c.input_size,
            preprocessing,
            flip=c.flip,
            photometric=spec.photometric_on if c.photometric is None else c.photometric,
            interpolations=tuple(c.interpolations),
            generator=draws,
        )
    data = held(ds, device)
    if data is not None:
        return HeldBatches(data, list(sampler), batch_size, augment)
    if spec.whole_image:
        raise ConfigError(
            f"loader=tensor runs the {c.recipe} recipe on sets held decoded, and {c.data} is too "
            "large or of mixed sizes for that; use loader=pil"
        )
    reader = DataLoader(
        EncodedImages(ds),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=c.workers,
        collate_fn=collate_encoded,
        generator=generator,
    )
    return DeviceBatches(reader, augment, device)


def rank_images(ds, d: Distributed) -> int:
    """The training images one process reads in an epoch."""
    return len(ds) if getattr(ds, "streamed", False) else math.ceil(len(ds) / d.world)


def rank_batches(ds, d: Distributed, per_rank: int) -> int:
    """The optimizer steps of an epoch."""
    if getattr(ds, "streamed", False):
        return ds.batches(per_rank)
    return math.ceil(rank_images(ds, d) / per_rank)
