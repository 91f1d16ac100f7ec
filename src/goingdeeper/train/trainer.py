"""`fit(config)`: data, model, optimizer, Polyak averaging, checkpoints, logs, plots.

Distributed: `torchrun --nproc_per_node=N -m goingdeeper train ...` starts N processes;
`setup_distributed` reads RANK / WORLD_SIZE / LOCAL_RANK from the environment and joins the
group (NCCL on GPUs, gloo on CPUs). The batch size in the config is the global one.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ..registry import create_model, model_card
from ..weights.format import WeightsCard, load_weights, read_card, save_weights
from . import config as cfg
from .checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .engine import (
    CacheError,
    FrozenPrefixCache,
    NonFiniteLossError,
    TrainStep,
    evaluate_accuracy,
    freeze,
    lr_factor,
    train_one_epoch,
)

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"


class TrainingError(RuntimeError):
    """Training stopped for a reason a person must act on (NaN loss, bad resume)."""


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return Distributed(rank, world, local)


def pick_device(name: str, d: Distributed) -> torch.device:
    if name == "auto":
        return (
            torch.device(f"cuda:{d.local_rank}")
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
    if name == "cuda" and d.world > 1:
        return torch.device(f"cuda:{d.local_rank}")
    return torch.device(name)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Every epoch starts from a seed of its own, so a resumed run repeats it exactly."""
    return (seed * 1_000_003 + epoch * 7919 + rank) % (2**63)


# --- building blocks ----------------------------------------------------------------------------


def build_data(c: cfg.TrainConfig, preprocessing, d: Distributed):
    from ..data import WHOLE_IMAGE_RECIPES, check_splits, open_dataset, train_transform
    from ..data import eval_transform as make_eval_transform

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
    )
    if c.recipe in WHOLE_IMAGE_RECIPES:  # small images: the whole image, as in training
        eval_tf = train_transform("none", c.input_size, preprocessing)
    else:  # photos: shorter side, center crop (the weights' own protocol, scaled)
        eval_tf = make_eval_transform(c.input_size, preprocessing)
    train_ds = open_dataset(c.data, "train", transform=train_tf)
    test_ds = open_dataset(c.data, "test", transform=eval_tf, classes=train_ds.classes)
    check_splits(train_ds, test_ds)
    classes = list(train_ds.classes)
    if c.limit_train:
        train_ds = Subset(train_ds, spread(c.limit_train, len(train_ds)))
    if c.limit_test:
        test_ds = Subset(test_ds, spread(c.limit_test, len(test_ds)))
    return train_ds, test_ds, classes


def spread(n: int, total: int) -> list[int]:
    """n indices spread evenly over range(total): folders and archives list their samples class
    by class, so the first n would hold only the first classes."""
    if n >= total:
        return list(range(total))
    return [i * total // n for i in range(n)]


def make_loader(
    ds, batch_size: int, c: cfg.TrainConfig, d: Distributed, *, train: bool, epoch: int = 0
) -> DataLoader:
    from ..data import collate_skip

    sampler = None
    if train:  # the same sampler for 1 or N processes: the same global order of samples
        sampler = DistributedSampler(
            ds, num_replicas=d.world, rank=d.rank, shuffle=True, seed=c.seed, drop_last=False
        )
        sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(epoch_seed(c.seed, epoch, d.rank))
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=c.workers,
        collate_fn=collate_skip,
        generator=generator,
        persistent_workers=False,
        pin_memory=False,
        drop_last=False,
    )


def build_model(c: cfg.TrainConfig, num_classes: int) -> tuple[nn.Module, dict, Any]:
    """The model, the constructor arguments to save in its card, and its preprocessing."""
    card = model_card(c.model)
    kwargs = dict(c.model_args)
    if card.family == "GoogLeNet":
        kwargs.setdefault("input_size", c.input_size)
    if c.init_weights:
        model, wcard = load_weights(c.init_weights, **kwargs)
        kwargs = {**wcard.model_kwargs, **kwargs}
        if c.new_head or wcard.num_classes != num_classes:
            if not c.new_head:
                raise cfg.ConfigError(
                    f"{c.init_weights} has {wcard.num_classes} classes, the data has "
                    f"{num_classes}: set new_head=true to fine-tune with a new classifier"
                )
            model.reset_classifier(num_classes)
        kwargs["num_classes"] = num_classes
        return model, kwargs, wcard.preprocessing
    kwargs["num_classes"] = num_classes
    return create_model(c.model, **kwargs), kwargs, card.preprocessing


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


class StepLog:
    """Every `every` steps, one row of steps.csv: the step, the epoch (fractional), that
    batch's loss, the epoch's running accuracy and images/s, the learning rate. Rows are
    appended and flushed as they come, so the curve survives a run that is stopped."""

    FIELDS = ("step", "epoch", "loss", "running_acc", "lr", "images_per_s")

    def __init__(self, path: Path, every: int, *, start: int = 0) -> None:
        """`start`: the step a resumed run continues from; rows logged after it (by a run
        stopped between checkpoints) are dropped, the ones before it kept."""
        self.every = every
        self.path = path
        if every <= 0:
            return
        kept: list[list[str]] = []
        if start and path.is_file():
            with path.open(newline="") as f:
                kept = [r for r in list(csv.reader(f))[1:] if r and int(r[0]) <= start]
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(self.FIELDS)
            writer.writerows(kept)

    def record(self, step: int, epoch: float, info: dict, lr: float) -> None:
        if self.every <= 0 or step % self.every:
            return
        row = (
            step,
            f"{epoch:.4f}",
            f"{info['loss']:.5f}",
            f"{info['acc']:.5f}",
            f"{lr:.6g}",
            f"{info['images_per_s']:.2f}",
        )
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow(row)


def write_csv(history: list[dict], path: Path) -> None:
    if not history:
        return
    keys = list(history[0])
    for row in history[1:]:
        keys += [k for k in row if k not in keys]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, path)


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train (main + 0.3 aux)")
    ax1.plot(epochs, [h["train_main_loss"] for h in history], label="train (main)")
    ax1.plot(epochs, [h["test_loss"] for h in history], label="test")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.set_title("loss")
    ax1.legend()
    ax2.plot(epochs, [h["train_acc"] for h in history], label="train")
    ax2.plot(epochs, [h["test_acc"] for h in history], label="test")
    if "polyak_test_acc" in history[0]:
        ax2.plot(epochs, [h["polyak_test_acc"] for h in history], label="test (Polyak average)")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("top-1 accuracy")
    ax2.set_title("accuracy")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- fit ----------------------------------------------------------------------------------------

ProgressFactory = Callable[..., Any]


def fit(
    c: cfg.TrainConfig,
    *,
    resume: bool = False,
    progress: ProgressFactory | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> dict:
    """Train as `c` says; returns the final metrics and the paths written."""
    d = setup_distributed()
    device = pick_device(c.device, d)
    if c.amp == "fp16" and device.type != "cuda":
        raise cfg.ConfigError("amp=fp16 needs a CUDA device; use amp=bf16 on the CPU")
    if c.deterministic:
        torch.use_deterministic_algorithms(True)
    if c.threads:
        torch.set_num_threads(c.threads)
    torch.manual_seed(c.seed)
    out = Path(c.out)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    if c.batch_size % d.world:
        raise cfg.ConfigError(f"batch_size {c.batch_size} does not split over {d.world} processes")

    train_ds, test_ds, classes = build_data(c, input_preprocessing(c), d)
    torch.manual_seed(c.seed)  # the same initial weights whatever ran before
    model, model_kwargs, preprocessing = build_model(c, len(classes))
    model.to(device)
    if c.channels_last:
        model.to(memory_format=torch.channels_last)
    averaged = None
    if c.polyak:
        averaged = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(c.polyak_decay), use_buffers=True
        )
    if c.freeze:
        try:
            trainable = freeze(model, c.freeze)
        except ValueError as e:
            raise cfg.ConfigError(str(e)) from None
        log.info("frozen: %s; %s parameters train", ", ".join(c.freeze), f"{trainable:,}")
    step: nn.Module = TrainStep(
        model, aux_weight=c.aux_weight, label_smoothing=c.label_smoothing, frozen=c.freeze
    )
    cache = None
    if c.cache_frozen_gb:  # after AveragedModel's copy: the hooks stay on the trained model
        try:
            cache = FrozenPrefixCache(model, c.freeze, int(c.cache_frozen_gb * 1e9))
        except CacheError as e:
            raise cfg.ConfigError(str(e)) from None
        log.info("cache_frozen: %s", ", ".join(name for name, _ in cache.prefix))
    if d.world > 1:
        step = nn.parallel.DistributedDataParallel(
            step, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = build_optimizer(c, model)
    per_rank = c.batch_size // d.world
    steps_per_epoch = math.ceil(math.ceil(len(train_ds) / d.world) / per_rank)
    scheduler = build_scheduler(c, optimizer, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda") if c.amp == "fp16" else None

    history: list[dict] = []
    start_epoch = 0
    if resume:
        state = load_checkpoint(out / CHECKPOINT)
        _check_resumable(state, c)
        model.load_state_dict(state["model"])
        if averaged is not None and state.get("averaged") is not None:
            averaged.load_state_dict(state["averaged"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
        log.info("resumed from %s at epoch %d", out / CHECKPOINT, start_epoch)

    writer = _tensorboard(c, out, d)
    if d.main:
        cfg.save(c, out / "config.json")
    steps = StepLog(
        out / "steps.csv", c.log_every if d.main else 0, start=start_epoch * steps_per_epoch
    )
    for epoch in range(start_epoch, c.epochs):
        torch.manual_seed(epoch_seed(c.seed, epoch, d.rank))
        loader = make_loader(train_ds, per_rank, c, d, train=True, epoch=epoch)
        bar = (
            progress(
                total=len(train_ds) // d.world, desc=f"epoch {epoch + 1}/{c.epochs}", unit="img"
            )
            if (progress and d.main and c.progress)
            else None
        )

        def on_batch(info: dict, bar=bar, epoch=epoch) -> None:
            step = epoch * steps_per_epoch + info["batches"]
            lr = optimizer.param_groups[0]["lr"]
            steps.record(step, epoch + info["batches"] / steps_per_epoch, info, lr)
            if bar is not None:
                bar.update(info["n"])
                bar.set_postfix(
                    loss=f"{info['loss']:.3f}",
                    acc=f"{info['acc']:.3f}",
                    img_s=f"{info['images_per_s']:.1f}",
                )

        try:
            stats = train_one_epoch(
                step,
                optimizer,
                loader,
                device=device,
                scheduler=scheduler,
                scaler=scaler,
                averaged=averaged,
                amp=c.amp,
                channels_last=c.channels_last,
                grad_clip=c.grad_clip,
                max_filter_rms=c.max_filter_rms,
                on_batch=on_batch,
            )
        except CacheError as e:  # raised by the first batch, before anything is written
            raise cfg.ConfigError(str(e)) from None
        except NonFiniteLossError as e:
            raise TrainingError(
                f"{e} in epoch {epoch + 1}: training stopped; the last good checkpoint "
                f"({out / CHECKPOINT}) is kept. Lower lr (now {c.lr}) or set grad_clip"
            ) from None
        finally:
            if bar is not None:
                bar.close()
        row = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": stats["loss"],
            "train_main_loss": stats["main_loss"],
            "train_acc": stats["acc"],
            "images_per_s": stats["images_per_s"],
            "seconds": stats["seconds"],
            "skipped": len(stats["skipped"]),
        }
        if cache is not None:
            row.update(cache.stats())
        if stats["skipped"] and d.main:
            log.warning(
                "epoch %d: skipped %d unreadable images: %s",
                epoch + 1,
                len(stats["skipped"]),
                ", ".join(sorted(set(stats["skipped"]))[:10]),
            )
        if d.main:
            row.update(_evaluate(model, averaged, test_ds, per_rank, c, d, device))
            history.append(row)
            _checkpoint(out, model, averaged, optimizer, scheduler, scaler, epoch + 1, history, c)
            write_csv(history, out / "log.csv")
            if writer is not None:
                for key, value in row.items():
                    if key != "epoch":
                        writer.add_scalar(key, value, epoch + 1)
                writer.flush()
            if on_epoch is not None:
                on_epoch(row)
        if d.world > 1:
            dist.barrier()

    if cache is not None:
        cache.close()
    result: dict[str, Any] = {
        "history": history,
        "out": str(out),
        "model": model,
        "averaged": averaged.module if averaged is not None else None,
    }
    if d.main and history:
        result.update(
            _finish(model, averaged, model_kwargs, classes, preprocessing, history, c, out, test_ds)
        )
    if writer is not None:
        writer.close()
    return result


def input_preprocessing(c: cfg.TrainConfig):
    """What the model's input must look like: the card of the weights fine-tuned from, or the
    model's own card for a model trained from scratch."""
    if c.init_weights:
        return read_card(c.init_weights).preprocessing
    return model_card(c.model).preprocessing


def _check_resumable(state: dict, c: cfg.TrainConfig) -> None:
    saved = state.get("config", {})
    for key in ("model", "data", "input_size", "batch_size", "seed"):
        if saved.get(key) != getattr(c, key):
            raise CheckpointError(
                f"the checkpoint was made with {key}={saved.get(key)!r}, this run has "
                f"{key}={getattr(c, key)!r}: resume with the same settings or start a new --out"
            )


def _tensorboard(c: cfg.TrainConfig, out: Path, d: Distributed):
    if not (c.tensorboard and d.main):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency; a broken install only loses this log
        log.warning("tensorboard is not importable; no TensorBoard log")
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


def _evaluate(model, averaged, test_ds, batch_size, c, d, device) -> dict:
    loader = make_loader(test_ds, batch_size, c, d, train=False)
    m = evaluate_accuracy(model, loader, device=device, amp=c.amp, channels_last=c.channels_last)
    row = {"test_loss": m["loss"], "test_acc": m["acc"], "test_top5": m["top5"]}
    if averaged is not None:
        p = evaluate_accuracy(
            averaged.module, loader, device=device, amp=c.amp, channels_last=c.channels_last
        )
        row.update(
            {
                "polyak_test_loss": p["loss"],
                "polyak_test_acc": p["acc"],
                "polyak_test_top5": p["top5"],
            }
        )
    return row


def _checkpoint(out, model, averaged, optimizer, scheduler, scaler, epoch, history, c) -> None:
    save_checkpoint(
        {
            "model": model.state_dict(),
            "averaged": averaged.state_dict() if averaged is not None else None,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "epoch": epoch,
            "history": history,
            "rng": rng_state(),
            "config": c.to_dict(),
        },
        out / CHECKPOINT,
    )


class TestImages:
    """(PIL image, label) pairs of a test set, decoded when asked for (slices too)."""

    def __init__(self, ds, limit: int = 0):
        indices = list(range(len(ds)))
        while isinstance(ds, Subset):
            indices = [ds.indices[i] for i in indices]
            ds = ds.dataset
        if limit:  # spread over the classes, like limit_test
            indices = [indices[i] for i in spread(limit, len(indices))]
        self.ds, self.indices = ds, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        k = self.indices[i]
        try:
            return self.ds.load(k), self.ds.targets[k]
        except Exception:  # noqa: BLE001 - the evaluator counts and names unreadable files
            return self.ds.describe(k), self.ds.targets[k]


def evaluate_views(models: list[tuple[str, nn.Module]], pre, test_ds, c: cfg.TrainConfig) -> list:
    """The paper's test protocol (section 7) on the test set, for each finished model."""
    from ..evaluate import evaluate

    rows = []
    for views in c.eval_views:
        items = TestImages(test_ds, c.eval_limit if views != "1" else 0)
        for name, model in models:
            r = evaluate([(model.eval(), pre)], items, views=views, batch_size=128)
            rows.append(
                {
                    "model": name,
                    "views": views,
                    "images": r["images"],
                    "top1_accuracy": r["top1_accuracy"],
                    "top5_accuracy": r["top5_accuracy"],
                    "cost": r["cost"],
                    "seconds": r["seconds"],
                }
            )
    return rows


def card_preprocessing(preprocessing, c: cfg.TrainConfig):
    """What the trained weights expect: the whole image resized for small-image recipes (as in
    training), else the weights' own protocol scaled to the training size."""
    from ..data import WHOLE_IMAGE_RECIPES
    from ..preprocess import Preprocessing

    if c.recipe in WHOLE_IMAGE_RECIPES:
        pad = preprocessing.pad_for(c.input_size)
        values = {
            **preprocessing.to_dict(),
            "resize": c.input_size - 2 * pad,
            "crop": c.input_size,
            "pad": pad,
        }
        values["mean"], values["std"] = preprocessing.mean, preprocessing.std
        return Preprocessing(**values)
    return (
        preprocessing.scaled(c.input_size) if preprocessing.crop != c.input_size else preprocessing
    )


def _finish(
    model, averaged, model_kwargs, classes, preprocessing, history, c, out, test_ds=None
) -> dict:
    """Save the raw and the averaged weights in our format, the curves, and return a summary."""
    last = history[-1]
    pre = card_preprocessing(preprocessing, c)
    base = {
        "model": c.model,
        "model_kwargs": model_kwargs,
        "num_classes": len(classes),
        "class_names": classes,
        "preprocessing": pre,
    }
    provenance = {
        "trained_by": "goingdeeper train",
        "data": c.data,
        "epochs": last["epoch"],
        "config": c.to_dict(),
    }
    paths = {
        "weights": str(
            save_weights(
                model,
                WeightsCard(
                    **base,
                    provenance=provenance,
                    metrics={"test_acc": last["test_acc"], "test_top5": last["test_top5"]},
                ),
                out / "model",
            )
        )
    }
    if averaged is not None:
        card = WeightsCard(
            **base,
            provenance={**provenance, "polyak_decay": c.polyak_decay},
            metrics={"test_acc": last["polyak_test_acc"], "test_top5": last["polyak_test_top5"]},
        )
        paths["polyak_weights"] = str(save_weights(averaged.module, card, out / "model_polyak"))
    if c.plots:
        plot_curves(history, out / "curves.png")
        paths["curves"] = str(out / "curves.png")
    paths["log"] = str(out / "log.csv")
    paths["checkpoint"] = str(out / CHECKPOINT)
    views = []
    if test_ds is not None and c.eval_views:
        final = [("Polyak average", averaged.module)] if averaged is not None else []
        views = evaluate_views(final or [("raw weights", model)], pre, test_ds, c)
        (out / "views.json").write_text(json.dumps(views, indent=2) + "\n")
        paths["views"] = str(out / "views.json")
    return {"final": last, "paths": paths, "views": views}
