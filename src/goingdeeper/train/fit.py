"""`fit(config)`: a training run as three steps, `setup_run`, `run_epoch` for each epoch, and
`finish`, around one `Run` object that holds the data, the model, its Polyak average, the
optimizer and everything an epoch reads or writes.

The run folder gets: checkpoint.pt after every epoch (atomically), config.json, log.csv,
steps.csv, TensorBoard events, curves.png, and at the end the raw and the Polyak-averaged
weights in our format (model.safetensors, model_polyak.safetensors) with the test protocol's
results (views.json). The batch size in the config is the global one, split over the
processes of a distributed run (`train/distributed.py`). That run is synchronous data-parallel
SGD (DistributedDataParallel: every process applies the same averaged gradient each step); the
GoogLeNet paper (section 6) trained with asynchronous SGD on DistBelief, which has no exact
equivalent on one machine's GPUs.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..data import ClassMap, spread
from ..data.pipelines.loader import epoch_seed, make_loader, rank_batches, rank_images
from ..errors import ConfigError, TrainingError, WeightsError
from ..evaluate import dense_scales, evaluate
from ..preprocess import Preprocessing
from ..registry import check_arguments
from ..results import (
    BatchReport,
    EpochStats,
    FitResult,
    RunFiles,
    TestStats,
    TrainStats,
    ViewResult,
    record,
    write_log,
    write_views,
)
from ..weights import WeightsCard, read_card, save_weights
from . import config as cfg
from . import runfolder
from .build import (
    build_data,
    build_optimizer,
    build_scheduler,
    card_preprocessing,
    input_preprocessing,
    model_for_run,
    training_scale,
)
from .cache import FrozenPrefixCache
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import Distributed, check_device, pick_device, setup_distributed
from .engine import (
    NonFiniteLossError,
    TrainStep,
    evaluate_accuracy,
    freeze,
    plateau_divisions,
    train_one_epoch,
)
from .logs import StepLog, plot_curves, tensorboard_writer

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"

ProgressFactory = Callable[..., Any]


@dataclass
class Run:
    """One training run: what `setup_run` builds and every epoch reads and updates."""

    config: cfg.TrainConfig
    dist: Distributed
    device: torch.device
    out: Path
    train_ds: Any
    test_ds: Any
    classes: ClassMap
    model: nn.Module
    model_kwargs: dict
    preprocessing: Preprocessing  # what the model's input must look like
    step: nn.Module  # TrainStep (model and loss), inside DDP when distributed
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    per_rank: int  # batch size of one process
    steps_per_epoch: int
    averaged: AveragedModel | None = None
    scaler: torch.amp.GradScaler | None = None
    cache: FrozenPrefixCache | None = None
    history: list[EpochStats] = field(default_factory=list)
    start_epoch: int = 0
    writer: Any = None  # TensorBoard
    step_log: StepLog | None = None
    progress: ProgressFactory | None = None
    on_epoch: Callable[[EpochStats], None] | None = None


def fit(
    c: cfg.TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressFactory | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> FitResult:
    """Train as `c` says; returns the history, the final metrics and the paths written.

    The run folder `c.out` is locked while the run trains; one that holds an earlier run is
    continued (`resume`), emptied of it first (`overwrite`) or refused."""
    main = int(os.environ.get("RANK", "0")) == 0
    out = Path(c.out)
    check_device(c.device)  # before the run folder is touched
    check_arguments(c.model, c.model_args)
    if c.init_from:  # the shallower net's weights, readable, before any work
        try:
            read_card(c.init_from)
        except WeightsError as e:
            raise ConfigError(
                f"init_from: {e}; train that net first (VGG: the vgg_a preset)"
            ) from None
    if main:
        out = runfolder.prepare(c.out, resume=resume, overwrite=overwrite, data=c.data)
    replace = overwrite and not resume
    with runfolder.locked(out, replace=replace) if main else nullcontext():
        run = setup_run(c, resume=resume, progress=progress, on_epoch=on_epoch)
        for epoch in range(run.start_epoch, c.epochs):
            run_epoch(run, epoch)
        return finish(run)


# --- setup ---------------------------------------------------------------------------------------


def setup_run(
    c: cfg.TrainConfig,
    *,
    resume: bool = False,
    progress: ProgressFactory | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> Run:
    """Data, model, optimizer and logs for `c`; with `resume`, the state of out/checkpoint.pt."""
    d = setup_distributed()
    device = pick_device(c.device, d)
    _check_runtime(c, device, d)
    torch.manual_seed(c.seed)
    out = Path(c.out)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(out / CHECKPOINT) if resume else None
    if state is not None:  # checked before anything is built or written
        for change in cfg.resume_changes(state.get("config", {}), c, int(state["epoch"])):
            log.info("resumed with %s", change)
    # to a GPU, workers hand over 8-bit pixels, normalised there (a quarter of the bytes)
    train_ds, test_ds, classes = build_data(
        c, input_preprocessing(c), d, pixels=device.type == "cuda"
    )
    torch.manual_seed(c.seed)  # the same initial weights whatever ran before
    model, model_kwargs, preprocessing = model_for_run(c, len(classes))
    dense = any(v.startswith("dense") for v in c.eval_views)
    if dense and not hasattr(model, "fully_convolutional"):  # refused now, not after training
        raise ConfigError(
            f"eval_views: {c.model} has no fully convolutional form, so no dense evaluation "
            "(VGG section 3.2); leave dense out of eval_views"
        )
    model.to(device)
    if c.channels_last:
        model.to(memory_format=torch.channels_last)
    averaged = None
    if c.polyak:  # uniform: AveragedModel's own running mean of every update
        ema = get_ema_multi_avg_fn(c.polyak_decay) if c.polyak_average == "ema" else None
        averaged = AveragedModel(model, multi_avg_fn=ema, use_buffers=True)
    if c.freeze:
        trainable = freeze(model, c.freeze)
        log.info("frozen: %s; %s parameters train", ", ".join(c.freeze), f"{trainable:,}")
    cache = None
    if c.cache_frozen_gb:  # after AveragedModel's copy: the hooks stay on the trained model
        cache = FrozenPrefixCache(model, c.freeze, int(c.cache_frozen_gb * 1e9))
        log.info("cache_frozen: %s", ", ".join(name for name, _ in cache.prefix))
    optimizer = build_optimizer(c, model)
    per_rank = c.batch_size // d.world
    steps_per_epoch = rank_batches(train_ds, d, per_rank)
    run = Run(
        config=c,
        dist=d,
        device=device,
        out=out,
        train_ds=train_ds,
        test_ds=test_ds,
        classes=classes,
        model=model,
        model_kwargs=model_kwargs,
        preprocessing=preprocessing,
        step=_train_step(c, d, device, model),
        optimizer=optimizer,
        scheduler=build_scheduler(c, optimizer, steps_per_epoch),
        per_rank=per_rank,
        steps_per_epoch=steps_per_epoch,
        averaged=averaged,
        scaler=torch.amp.GradScaler("cuda") if c.amp == "fp16" else None,
        cache=cache,
        progress=progress,
        on_epoch=on_epoch,
    )
    if state is not None:
        _restore(run, state)
    run.writer = tensorboard_writer(out / "tensorboard") if c.tensorboard and d.main else None
    if d.main:
        cfg.save(c, out / "config.json")
    every = c.log_every if d.main else 0
    run.step_log = StepLog(out / "steps.csv", every, start=run.start_epoch * run.steps_per_epoch)
    return run


def _check_runtime(c: cfg.TrainConfig, device: torch.device, d: Distributed) -> None:
    if c.amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp=fp16 needs a CUDA device; use amp=bf16 on the CPU")
    if c.batch_size % d.world:
        raise ConfigError(f"batch_size {c.batch_size} does not split over {d.world} processes")
    if c.deterministic and device.type == "cuda":
        # refused rather than half kept: every model's head pools adaptively, whose CUDA
        # backward adds with atomics in any order (torch raises for it in deterministic mode)
        raise ConfigError(
            "deterministic=true holds on the CPU only: on CUDA the adaptive average pool's "
            "backward has no deterministic kernel; train on the CPU (device=cpu) for a "
            "bit-exact run, or set deterministic=false"
        )
    if c.deterministic:
        torch.use_deterministic_algorithms(True)
    if c.threads:
        torch.set_num_threads(c.threads)


def _train_step(c: cfg.TrainConfig, d: Distributed, device: torch.device, model) -> nn.Module:
    """The model and its loss in one module: inside DistributedDataParallel when the run is
    distributed, compiled when asked."""
    step: nn.Module = TrainStep(model, label_smoothing=c.label_smoothing, frozen=c.freeze)
    if d.world > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        step = nn.parallel.DistributedDataParallel(step, device_ids=device_ids)
    if c.compile:  # one shape: train_one_epoch drops batches of other sizes (run_epoch)
        step = torch.compile(step, dynamic=False)
    return step


def _restore(run: Run, state: dict) -> None:
    """Continue where the checkpoint stopped: weights, average, optimizer, schedule, loss
    scale, random state, history."""
    run.model.load_state_dict(state["model"])
    if run.averaged is not None and state.get("averaged") is not None:
        run.averaged.load_state_dict(state["averaged"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    # the schedule for this run's epochs, from the step it is at (the same when unchanged)
    for i, group in enumerate(run.optimizer.param_groups):
        factor = run.scheduler.lr_lambdas[i](run.scheduler.last_epoch)
        group["lr"] = run.scheduler.base_lrs[i] * factor
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    run.history = [EpochStats.from_record(row) for row in state["history"]]
    run.start_epoch = int(state["epoch"])
    log.info("resumed from %s at epoch %d", run.out / CHECKPOINT, run.start_epoch)


# --- one epoch -----------------------------------------------------------------------------------


def run_epoch(run: Run, epoch: int) -> EpochStats:
    """Train one epoch, evaluate, checkpoint and log; returns the epoch's row of log.csv."""
    c, d = run.config, run.dist
    torch.manual_seed(epoch_seed(c.seed, epoch, d.rank))
    loader = _train_loader(run, epoch)
    every = c.log_every or 50
    bar = None
    if run.progress and d.main and c.progress:
        total = rank_images(run.train_ds, d)
        bar = run.progress(total=total, desc=f"epoch {epoch + 1}/{c.epochs}", unit="img")
    try:
        stats = train_one_epoch(
            run.step,
            run.optimizer,
            loader,
            device=run.device,
            scheduler=run.scheduler,
            scaler=run.scaler,
            averaged=run.averaged if epoch >= c.polyak_start_epoch else None,
            amp=c.amp,
            channels_last=c.channels_last,
            grad_clip=c.grad_clip,
            on_batch=lambda info: _on_batch(run, epoch, info, bar),
            # the figures (steps.csv's rows, the bar, the check for a NaN loss) read from the
            # device every log_every steps and at the epoch's end, not at every step
            read_at=lambda batches: (epoch * run.steps_per_epoch + batches) % every == 0,
            batch_size=run.per_rank if c.compile else 0,
        )
    except NonFiniteLossError as e:
        kept = (
            f"the last good checkpoint ({run.out / CHECKPOINT}) is kept"
            if (run.out / CHECKPOINT).is_file()
            else "no epoch had finished, so there is no checkpoint to resume from"
        )
        raise TrainingError(
            f"{e} in epoch {epoch + 1}: training stopped; {kept}. Lower lr (now {c.lr}) or set "
            "grad_clip"
        ) from None
    finally:
        if bar is not None:
            bar.close()
    if stats.images == 0 and stats.dropped:
        raise TrainingError(
            f"epoch {epoch + 1} trained on no image: with compile=true only whole batches of "
            f"{run.per_rank} train, and its {stats.dropped} images came in shorter ones; "
            "lower batch_size or set compile=false"
        )
    if stats.images == 0:  # nothing trained is not an epoch
        first = f" (first: {stats.skipped[0]})" if stats.skipped else ""
        raise TrainingError(
            f"epoch {epoch + 1} trained on no image: {len(stats.skipped)} were unreadable"
            f"{first}; look at the data with `goingdeeper data info {c.data}`"
        )
    row = _epoch_row(run, epoch, stats)
    if d.main:
        row = _with_tests(row, *_evaluate(run))
    if c.lr_schedule == "plateau":
        _follow_plateau(run, row)
    if d.main:
        _record(run, row)
    if d.world > 1:
        dist.barrier()
    return row


def _train_loader(run: Run, epoch: int):
    """The epoch's training batches (decoded and augmented on the run's device with the tensor
    loader)."""
    c, d, device, pre = run.config, run.dist, run.device, run.preprocessing
    return make_loader(
        run.train_ds, run.per_rank, c, d, train=True, epoch=epoch, device=device, preprocessing=pre
    )


def _follow_plateau(run: Run, row: EpochStats) -> None:
    """Divide the learning rate by 1 / lr_gamma once more when the validation error has
    stopped improving (up to `lr_plateau_divisions` times), before the checkpoint is written.
    The main process, which evaluates, decides for every process."""
    c, sched = run.config, run.scheduler
    divisions = [0]
    if run.dist.main:
        errors = [1 - r.test_acc for r in [*run.history, row]]
        divisions[0] = plateau_divisions(errors, c.lr_patience, c.lr_plateau_divisions)
    if run.dist.world > 1:
        dist.broadcast_object_list(divisions, src=0)
    for i, group in enumerate(run.optimizer.param_groups):
        sched.base_lrs[i] = group["initial_lr"] * c.lr_gamma ** divisions[0]
        group["lr"] = sched.base_lrs[i] * sched.lr_lambdas[i](sched.last_epoch)


def _on_batch(run: Run, epoch: int, info: BatchReport, bar) -> None:
    step = epoch * run.steps_per_epoch + info.batches
    lr = run.optimizer.param_groups[0]["lr"]
    run.step_log.record(step, epoch + info.batches / run.steps_per_epoch, info, lr)
    if bar is not None:
        bar.update(info.n)
        loss, acc, rate = info.loss, info.acc, info.images_per_s
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", img_s=f"{rate:.1f}")


def _epoch_row(run: Run, epoch: int, stats: TrainStats) -> EpochStats:
    cache = run.cache.stats() if run.cache is not None else None
    if stats.skipped and run.dist.main:
        log.warning(
            "epoch %d: skipped %d unreadable images: %s",
            epoch + 1,
            len(stats.skipped),
            ", ".join(sorted(set(stats.skipped))[:10]),
        )
    return EpochStats(
        epoch=epoch + 1,
        lr=run.optimizer.param_groups[0]["lr"],
        train_loss=stats.loss,
        train_main_loss=stats.main_loss,
        train_acc=stats.acc,
        images_per_s=stats.images_per_s,
        seconds=stats.seconds,
        skipped=len(stats.skipped),
        cache_entries=cache.cache_entries if cache else None,
        cache_gb=cache.cache_gb if cache else None,
        cache_hit_rate=cache.cache_hit_rate if cache else None,
    )


def _evaluate(run: Run) -> tuple[TestStats, TestStats | None]:
    """Test loss, top-1 and top-5 of the raw weights and of the Polyak average (one view)."""
    c = run.config
    loader = make_loader(run.test_ds, run.per_rank, c, run.dist, train=False)
    kwargs = dict(device=run.device, amp=c.amp, channels_last=c.channels_last)
    m = evaluate_accuracy(run.model, loader, **kwargs)
    if m.images == 0:
        raise TrainingError(
            f"none of the {len(run.test_ds)} test images could be read "
            f"(first: {m.skipped[0] if m.skipped else '?'}); nothing to measure"
        )
    if run.averaged is None:
        return m, None
    if run.averaged.n_averaged == 0:  # before the average starts
        return m, TestStats(loss=math.nan, acc=math.nan, top5=math.nan, images=0)
    return m, evaluate_accuracy(run.averaged.module, loader, **kwargs)


def _with_tests(row: EpochStats, test: TestStats, polyak: TestStats | None) -> EpochStats:
    """The epoch's row with the test figures of the raw weights and of the Polyak average."""
    row = replace(row, test_loss=test.loss, test_acc=test.acc, test_top5=test.top5)
    if polyak is None:
        return row
    return replace(
        row, polyak_test_loss=polyak.loss, polyak_test_acc=polyak.acc, polyak_test_top5=polyak.top5
    )


def _record(run: Run, row: EpochStats) -> None:
    """The epoch into the history, the checkpoint, log.csv and TensorBoard (main process)."""
    run.history.append(row)
    state = {
        "model": run.model.state_dict(),
        "averaged": run.averaged.state_dict() if run.averaged is not None else None,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "epoch": row.epoch,
        "history": [record(h) for h in run.history],
        "rng": rng_state(),
        "config": run.config.to_dict(),
    }
    save_checkpoint(state, run.out / CHECKPOINT)
    write_log(run.history, run.out / "log.csv")
    if run.writer is not None:
        for key, value in record(row).items():
            if key != "epoch":
                run.writer.add_scalar(key, value, row.epoch)
        run.writer.flush()
    if run.on_epoch is not None:
        run.on_epoch(row)


# --- the end -------------------------------------------------------------------------------------


def finish(run: Run) -> FitResult:
    """Close the run: the raw and averaged weights, the curves, the paper's test protocol on
    the finished weights; returns the history, the models and the paths written."""
    if run.cache is not None:
        run.cache.close()
    result = FitResult(
        history=run.history,
        out=str(run.out),
        model=run.model,
        averaged=run.averaged.module if run.averaged is not None else None,
    )
    if run.dist.main and run.history:
        paths, views = _final_outputs(run)
        result = replace(result, final=run.history[-1], paths=paths, views=views)
    if run.writer is not None:
        run.writer.close()
    return result


def _final_outputs(run: Run) -> tuple[RunFiles, list[ViewResult]]:
    """Save the raw and the averaged weights in our format, the curves, and the views."""
    c, last = run.config, run.history[-1]
    pre = card_preprocessing(run.preprocessing, c)
    base = dict(
        model=c.model,
        model_kwargs=run.model_kwargs,
        num_classes=len(run.classes),
        class_names=list(run.classes.names),
        class_ids=list(run.classes.ids),
        preprocessing=pre,
        training_scale=training_scale(c, pre),
    )
    provenance = {"trained_by": "goingdeeper train", "data": c.data, "epochs": last.epoch}
    for key in ("init_weights", "init_from"):
        if getattr(c, key):
            provenance[key] = getattr(c, key)
    provenance["config"] = c.to_dict()
    metrics = {"test_acc": last.test_acc, "test_top5": last.test_top5}
    card = WeightsCard(**base, provenance=provenance, metrics=metrics)
    weights = str(save_weights(run.model, card, run.out / "model"))
    polyak_weights = curves = views_file = None
    if run.averaged is not None:
        metrics = {"test_acc": last.polyak_test_acc, "test_top5": last.polyak_test_top5}
        provenance = {**provenance, "polyak_average": c.polyak_average}
        if c.polyak_average == "ema":
            provenance["polyak_decay"] = c.polyak_decay
        provenance["polyak_from_epoch"] = c.polyak_start_epoch + 1
        card = WeightsCard(**base, provenance=provenance, metrics=metrics)
        polyak_weights = str(save_weights(run.averaged.module, card, run.out / "model_polyak"))
    if c.plots:
        plot_curves(run.history, run.out / "curves.png")
        curves = str(run.out / "curves.png")
    views = []
    if c.eval_views:
        final = [("Polyak average", run.averaged.module)] if run.averaged is not None else []
        _warn_young_average(run, c)
        views = evaluate_views(final or [("raw weights", run.model)], pre, run.test_ds, c)
        write_views(views, run.out / "views.json")
        views_file = str(run.out / "views.json")
    paths = RunFiles(
        weights=weights,
        log=str(run.out / "log.csv"),
        checkpoint=str(run.out / CHECKPOINT),
        polyak_weights=polyak_weights,
        curves=curves,
        views=views_file,
    )
    return paths, views


def _warn_young_average(run: Run, c: cfg.TrainConfig) -> None:
    """An exponential average over fewer steps than its horizon, 1 / (1 - decay), is still
    mostly the weights it started from: say so where it is scored."""
    if run.averaged is None or c.polyak_average != "ema":
        return
    steps = (c.epochs - c.polyak_start_epoch) * run.steps_per_epoch
    horizon = 1 / (1 - c.polyak_decay)
    if steps < horizon:
        log.warning(
            "the test protocol scores the Polyak average (EMA, decay %g), which has seen %d "
            "steps, fewer than its horizon of %.0f: it is still close to the starting weights; "
            "compare the raw weights' row, or lower polyak_decay",
            c.polyak_decay,
            steps,
            horizon,
        )


def evaluate_views(
    models: list[tuple[str, nn.Module]], pre, test_ds, c: cfg.TrainConfig
) -> list[ViewResult]:
    """The papers' test protocols (`eval_views`) on the test set, for each finished model;
    dense evaluation at the scales that the training scale calls for (VGG section 4.2)."""
    rows = []
    scales = dense_scales(training_scale(c, pre), pre.crop)
    for views in c.eval_views:
        limit = c.eval_limit if views != "1" else 0
        items = test_ds.subset(spread(limit, len(test_ds))) if limit else test_ds
        for name, model in models:
            r = evaluate(
                [(model.eval(), pre)], items, views=views, batch_size=128, dense_scales=scales
            )
            rows.append(
                ViewResult(
                    model=name,
                    views=views,
                    images=r.images,
                    top1_accuracy=r.top1_accuracy,
                    top5_accuracy=r.top5_accuracy,
                    cost=r.cost,
                    seconds=r.seconds,
                )
            )
    return rows
