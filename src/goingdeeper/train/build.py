"""The pieces of a training run, built from its config: data and loaders, the model, the
optimizer and learning-rate schedule, and the input transforms the data and the saved weights
take."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ..data import (
    WHOLE_IMAGE_RECIPES,
    check_splits,
    collate_skip,
    eval_transform,
    open_dataset,
    spread,
    train_transform,
)
from ..data.batch_augment import (
    BatchAugment,
    DeviceBatches,
    EncodedImages,
    PixelBatches,
    collate_encoded,
)
from ..data.classes import ClassMap, imagenet_names_of
from ..data.dali import DaliRecipe, dali_batches, require_dali
from ..data.dataset import ArrayReader
from ..data.held import HeldBatches, WholeImageAugment, held
from ..data.prefetch import Prefetched
from ..data.stream import ShardStream
from ..data.transforms import vgg_scales
from ..errors import ConfigError, DataError, ModelArgumentError
from ..factory import create_model
from ..models.base import Classifier
from ..preprocess import Preprocessing
from ..registry import model_card
from ..weights import load_weights, read_card, weights_file
from . import config as cfg
from .distributed import Distributed, epoch_seed
from .engine import lr_factor

log = logging.getLogger(__name__)


def build_data(
    c: cfg.TrainConfig, preprocessing: Preprocessing, d: Distributed, *, pixels: bool = False
):
    """The training and test sets and the run's classes; with `pixels`, the training
    transform ends in 8-bit pixels that the batch is normalised from (`Recipe.pixels`)."""
    train_tf = train_transform(
        c.recipe,
        c.input_size,
        preprocessing,
        flip=c.flip,
        photometric=c.photometric,
        interpolations=tuple(c.interpolations),
        pca_lighting=c.pca_lighting,
        scale_jitter=tuple(c.scale_jitter) if c.scale_jitter else None,
        distortion=c.distortion,
        draft=c.draft_decode,
        pixels=pixels,
    )
    if c.recipe in WHOLE_IMAGE_RECIPES:  # small images: the whole image, as in training
        eval_tf = train_transform("none", c.input_size, preprocessing)
    else:  # photos: shorter side, center crop (the weights' own protocol, scaled)
        eval_tf = eval_transform(c.input_size, preprocessing)
    train_ds = open_dataset(c.data, "train", transform=train_tf, stream=True)
    test_ds = open_dataset(c.data, "test", transform=eval_tf, classes=train_ds.classes)
    check_splits(train_ds, test_ds)
    classes, relabel = run_classes(c, train_ds.classes)
    if relabel is not None:
        train_ds = train_ds.relabelled(classes.names, relabel)
        test_ds = test_ds.relabelled(classes.names, relabel)
    if isinstance(train_ds, ShardStream):
        if c.limit_train:
            raise ConfigError(
                f"limit_train picks images across the set, and {c.data} is streamed from "
                "shards; leave limit_train at 0 or write shards of the subset"
            )
        train_ds.configure(
            world=d.world, rank=d.rank, workers=c.workers, epoch=0, shuffle=c.shuffle, seed=c.seed
        )
    elif c.limit_train:
        train_ds = Subset(train_ds, spread(c.limit_train, len(train_ds)))
    if c.limit_test:
        test_ds = Subset(test_ds, spread(c.limit_test, len(test_ds)))
    loader_kind(c, train_ds, None)  # a tensor loader the data cannot feed: before any work
    return train_ds, test_ds, classes


def run_classes(c: cfg.TrainConfig, found: list[str]) -> tuple[ClassMap, dict[int, int] | None]:
    """The classes the trained weights will have, and how the data's labels map onto them.

    Fine-tuning weights without a new head keeps their classes: each class of the data (a
    WordNet id, a class name or an index) is found among them by identity, so ten ImageNet
    classes train the 1,000-way classifier they belong to. Otherwise the data's own classes,
    and ImageNet's names for folders named by WordNet id.
    """
    if c.init_weights and not c.new_head:
        known = ClassMap.for_card(read_card(weights_file(c.init_weights)))
        if list(known.names) == found:
            return known, None
        try:
            index = known.resolve_all(found, c.data)
        except DataError as e:
            raise ConfigError(
                f"{e}; or set new_head=true to train a new classifier on the data's classes"
            ) from None
        return known, {i: index[name] for i, name in enumerate(found)}
    names = imagenet_names_of(found)
    return (ClassMap(names, found) if names else ClassMap(found)), None


def loader_kind(c: cfg.TrainConfig, ds, device: torch.device | None) -> str:
    """Which loader trains (`TrainConfig.loader`), "pil", "tensor" or "dali": auto takes the
    tensor loader on a CUDA device for the recipes it runs, over images stored as files or tar
    members or held as arrays; dali needs DALI installed and images stored encoded."""
    base = getattr(ds, "dataset", ds)
    stored = getattr(base, "stores_encoded", False)
    fed = stored or isinstance(getattr(base, "reader", None), ArrayReader)
    if c.loader == "tensor" and not fed:
        raise ConfigError(
            f"loader=tensor cuts batches from images as stored or held in arrays, and {c.data} "
            f"is {'streamed from shards' if isinstance(ds, ShardStream) else 'neither'}; use "
            "loader=pil"
        )
    if c.loader == "dali":
        require_dali()  # one line when it is missing, before any work
        if not stored:
            raise ConfigError(
                f"loader=dali decodes images as stored (files, tar members), and {c.data} is "
                f"{'streamed from shards' if isinstance(ds, ShardStream) else 'held as arrays'}"
                "; use loader=pil"
            )
    if c.loader == "auto":
        on_gpu = device is not None and device.type == "cuda"
        return "tensor" if on_gpu and fed and c.recipe in cfg.TENSOR_RECIPES else "pil"
    return c.loader


def make_loader(
    ds,
    batch_size: int,
    c: cfg.TrainConfig,
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
    if isinstance(ds, ShardStream):  # split by shard across the processes and the workers
        ds.configure(world=d.world, rank=d.rank, workers=c.workers, epoch=epoch)
    elif train:  # the same sampler for 1 or N processes: the same global order of samples
        sampler = DistributedSampler(
            ds, num_replicas=d.world, rank=d.rank, shuffle=c.shuffle, seed=c.seed, drop_last=False
        )
        sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(epoch_seed(c.seed, epoch, d.rank))
    kind = loader_kind(c, ds, device) if train else "pil"
    if kind in ("tensor", "dali"):
        batches = _device_batches(
            kind, ds, batch_size, c, sampler, generator, device, preprocessing
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


def _device_batches(kind, ds, batch_size, c, sampler, generator, device, preprocessing):
    """The batches of the loaders that work in the training process, on its device."""
    if kind == "tensor":
        return _tensor_batches(ds, batch_size, c, sampler, generator, device, preprocessing)
    recipe = DaliRecipe.of(
        c.recipe, c.input_size, preprocessing, c.flip, c.photometric, c.interpolations
    )
    return dali_batches(
        ds, batch_size, recipe, sampler, generator, device, preprocessing, c.workers
    )


def _tensor_batches(ds, batch_size, c, sampler, generator, device, preprocessing):
    """The tensor loader's epoch: batches cut from the set held decoded on `device` when it is
    small and of one image size (CIFAR, MNIST, the digits), else read by the workers as stored
    and decoded on `device` batch by batch; augmented there with draws from the run's seed."""
    draws = torch.Generator().manual_seed(generator.initial_seed() + 1)
    if c.recipe == "simple":
        augment = WholeImageAugment(c.input_size, preprocessing, flip=c.flip, generator=draws)
    else:
        augment = BatchAugment(
            c.input_size,
            preprocessing,
            flip=c.flip,
            photometric=c.photometric is not False,
            interpolations=tuple(c.interpolations),
            generator=draws,
        )
    data = held(ds, device)
    if data is not None:
        return HeldBatches(data, list(sampler), batch_size, augment)
    if c.recipe == "simple":
        raise ConfigError(
            f"loader=tensor runs the simple recipe on sets held decoded, and {c.data} is too "
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
    return len(ds) if isinstance(ds, ShardStream) else math.ceil(len(ds) / d.world)


def rank_batches(ds, d: Distributed, per_rank: int) -> int:
    """The optimizer steps of an epoch."""
    if isinstance(ds, ShardStream):
        return ds.batches(per_rank)
    return math.ceil(rank_images(ds, d) / per_rank)


def model_for_run(c: cfg.TrainConfig, num_classes: int) -> tuple[Classifier, dict, Any]:
    """The model a run trains (built by `create_model`, fresh, from `init_weights` or partly
    from `init_from`), the constructor arguments to save in its card, and its preprocessing.
    The config's `aux_weight` and `max_filter_rms`, where set, replace what the model
    declares."""
    card = model_card(c.model)
    kwargs = dict(c.model_args)
    if card.takes_input_size:  # the aux heads are sized for the training input
        kwargs.setdefault("input_size", c.input_size)
    preprocessing = card.preprocessing
    if c.init_weights:
        model, wcard = load_weights(weights_file(c.init_weights), **kwargs)
        kwargs, preprocessing = {**wcard.model_kwargs, **kwargs}, wcard.preprocessing
        found = wcard.num_classes
        if c.new_head or found != num_classes:
            if not c.new_head:
                raise ConfigError(
                    f"{c.init_weights} has {found} classes, the data has "
                    f"{num_classes}: set new_head=true to fine-tune with a new classifier"
                )
            model.reset_classifier(num_classes)
            log.info(
                "init_weights %s: a new %d-way classifier (its %d-way one dropped)",
                c.init_weights,
                num_classes,
                found,
            )
        else:
            log.info(
                "init_weights %s: its own %d-way classifier kept (new_head=false)",
                c.init_weights,
                found,
            )
        kwargs["num_classes"] = num_classes
    else:
        kwargs["num_classes"] = num_classes
        model = create_model(c.model, **kwargs)
        if c.init_from:
            _init_from(model, c)
    if c.aux_weight is not None:
        model.aux_weight = c.aux_weight
    if c.max_filter_rms is not None:
        model.max_filter_rms = c.max_filter_rms
    if c.cache_frozen_gb and model.max_filter_rms > 0:
        raise ConfigError(
            f"cache_frozen_gb and {c.model}'s filter renormalisation (max_filter_rms "
            f"{model.max_filter_rms:g}) exclude each other: the renormalisation changes frozen "
            "filters too; set max_filter_rms=0 or leave cache_frozen_gb at 0"
        )
    return model, kwargs, preprocessing


def _init_from(model: nn.Module, c: cfg.TrainConfig) -> None:
    """Some of `model`'s layers from the trained net `c.init_from`, as the model declares
    (`init_from`: VGG's B-E from A, section 3.1); the others keep their fresh initialisation."""
    take = getattr(model, "init_from", None)
    if take is None:
        raise ConfigError(
            f"init_from: {c.model} declares no layers to take from another trained net; "
            "VGG's configurations B-E take net A's (use init_weights to fine-tune)"
        )
    source, _ = load_weights(c.init_from)
    try:
        copied = take(source)
    except ModelArgumentError as e:
        raise ConfigError(f"init_from {c.init_from}: {e}") from None
    log.info("initialised %s from %s", ", ".join(copied), c.init_from)


def build_optimizer(c: cfg.TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        if not p.requires_grad:  # frozen
            continue
        # Caffe's replication: decay_mult 0 on biases; BatchNorm scales and shifts too
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": c.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if c.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=c.lr)
    if c.optimizer == "rmsprop":  # PyTorch adds eps to the root of the mean square
        return torch.optim.RMSprop(
            groups, lr=c.lr, alpha=c.rms_decay, eps=c.rms_eps, momentum=c.momentum
        )
    return torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov)


def build_scheduler(c: cfg.TrainConfig, optimizer, steps_per_epoch: int):
    def factor(step: int) -> float:
        return lr_factor(
            step / steps_per_epoch,
            schedule=c.lr_schedule,
            epochs=c.epochs,
            step_epochs=c.lr_step_epochs,
            gamma=c.lr_gamma,
            warmup_epochs=c.warmup_epochs,
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --- logs ---------------------------------------------------------------------------------------


def input_preprocessing(c: cfg.TrainConfig) -> Preprocessing:
    """What the model's input must look like: the card of the weights fine-tuned from, or the
    model's own card for a model trained from scratch."""
    if c.init_weights:
        return read_card(c.init_weights).preprocessing
    return model_card(c.model).preprocessing


def training_scale(c: cfg.TrainConfig, card_pre: Preprocessing) -> list[int]:
    """The shorter side S of the training images, for the weights' card (`card_pre`: what it
    says the weights expect): [S_min, S_max] for the vgg recipe's jittering or [S] for a fixed
    S, [S] for the 256 x 256 squares of alexnet and zfnet (scaled with the crop); [] for
    recipes of no one scale (random-sized crops, whole small images)."""
    if c.recipe == "vgg":
        low, high = vgg_scales(c.input_size, c.scale_jitter)
        return [low] if low == high else [low, high]
    if c.recipe in ("alexnet", "zfnet"):
        return [card_pre.resize]
    return []


def card_preprocessing(preprocessing: Preprocessing, c: cfg.TrainConfig) -> Preprocessing:
    """What the trained weights expect: the whole image resized for small-image recipes (as in
    training), else the weights' own protocol scaled to the training size."""
    if c.recipe in WHOLE_IMAGE_RECIPES:
        pad = preprocessing.pad_for(c.input_size)
        return preprocessing.replace(resize=c.input_size - 2 * pad, crop=c.input_size, pad=pad)
    return (
        preprocessing.scaled(c.input_size) if preprocessing.crop != c.input_size else preprocessing
    )
