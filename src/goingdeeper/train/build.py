"""The pieces of a training run, built from its config: data and loaders, the model, the
optimizer and learning-rate schedule, and the input transforms the data and the saved weights
take."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

from ..data import check_splits, discover, spread
from ..data.imagenet.classes import ClassMap, imagenet_names_of
from ..data.pipelines.loader import loader_kind
from ..data.pipelines.pillow import eval_transform, train_transform, vgg_scales
from ..data.recipes import RECIPES, WHOLE_IMAGE_RECIPES, ScaleRange, SquareCrops
from ..data.sources import Source
from ..errors import ConfigError, DataError, ModelArgumentError
from ..factory import create_model
from ..models.base import Classifier
from ..preprocess import Preprocessing
from ..registry import model_card
from ..weights import load_weights, read_card, weights_file
from . import config as cfg
from .distributed import Distributed
from .engine import lr_factor

log = logging.getLogger(__name__)


def build_data(
    c: cfg.TrainConfig, preprocessing: Preprocessing, d: Distributed, *, pixels: bool = False
):
    """The training and test sets and the run's classes; with `pixels`, the training
    transform ends in 8-bit pixels that the batch is normalised from (`RecipeSteps.pixels`)."""
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
    source = discover(c.data)
    if c.holdout:
        source = source.with_holdout(c.holdout)
        log.info("%s", source.holdout)
    test = _test_split(source)
    train_ds = source.split("train", train_tf, stream=True)
    test_ds = source.split(test, eval_tf)
    check_splits(train_ds, test_ds)
    classes, relabel = run_classes(c, train_ds.classes)
    if relabel is not None:
        train_ds = train_ds.relabelled(classes.names, relabel)
        test_ds = test_ds.relabelled(classes.names, relabel)
    if train_ds.streamed:
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
        test_ds = test_ds.subset(spread(c.limit_test, len(test_ds)))
    loader_kind(c, train_ds, None)  # a tensor loader the data cannot feed: before any work
    return train_ds, test_ds, classes


def _test_split(source: Source) -> str:
    """The split a run is tested on (`test`, else ImageNet's `val`); a source of one split
    is divided only when asked (`holdout`)."""
    if "train" not in source.splits:
        raise DataError(
            f"{source.path} ({source.layout}) has no 'train' split, only "
            f"{', '.join(source.splits)}; give holdout=0.2 (--holdout 0.2) to hold out a "
            "stratified fifth of it as 'test' and train on the rest"
        )
    test = source.scored_split()
    if test == "train":
        raise DataError(
            f"{source.path}: only a 'train' split; give holdout=0.2 (--holdout 0.2) to hold "
            "out a stratified fifth of it as 'test'"
        )
    return test


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
    for key in cfg.MODEL_DECLARED:  # set in the config: replaces what the model declares
        if (value := getattr(c, key)) is not None:
            setattr(model, key, value)
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
    geometry = RECIPES[c.recipe].geometry
    if isinstance(geometry, ScaleRange):
        low, high = vgg_scales(c.input_size, c.scale_jitter, geometry)
        return [low] if low == high else [low, high]
    if isinstance(geometry, SquareCrops):
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
