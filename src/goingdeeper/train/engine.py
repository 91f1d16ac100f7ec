"""The training step and the epoch loops. Functions take objects and return typed results
(`goingdeeper.results`); nothing here parses arguments or prints. The trainer knows no model
family: a model declares its loss (`Classifier.training_loss`) and what follows each optimizer
step (`Classifier.after_step`)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.base import Classifier, TrainingLoss, classification_loss
from ..results import BatchReport, TestStats, TrainStats


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite."""


class TrainStep(nn.Module):
    """The model and its loss in one module, so that DistributedDataParallel wraps both.

    The loss is the model's own (`Classifier.training_loss`: GoogLeNet's adds its aux heads'
    losses, weighted as it declares); a bare module trains on the cross-entropy of its output.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        label_smoothing: float = 0.0,
        frozen: Sequence[str] = (),
    ):
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing
        self.frozen = list(frozen)

    def train(self, mode: bool = True) -> TrainStep:
        """Training mode everywhere but in the frozen modules, whose BatchNorm statistics and
        dropout stay as they are at inference."""
        super().train(mode)
        for name in self.frozen:
            self.model.get_submodule(name).eval()
        return self

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, main loss, main logits), the last two detached."""
        out = self.model(x)
        loss = self.loss(out, y)
        return loss.total, loss.main.detach(), loss.logits.detach()

    def loss(self, out: Tensor | tuple[Tensor, ...], y: Tensor) -> TrainingLoss:
        if isinstance(self.model, Classifier):
            return self.model.training_loss(out, y, label_smoothing=self.label_smoothing)
        return classification_loss(out, y, label_smoothing=self.label_smoothing)


def freeze(model: nn.Module, names: Sequence[str]) -> int:
    """Fix the parameters of the named modules (`model.named_modules()` names, e.g. "conv1",
    "inception3b"): no gradients, so autograd also skips their backward pass when they come
    first. Returns how many parameters stay trainable."""
    known = dict(model.named_modules())
    unknown = [n for n in names if n not in known or not n]
    if unknown:
        tops = ", ".join(n for n, _ in model.named_children())
        raise ConfigError(f"freeze: no module named {', '.join(map(repr, unknown))}; top: {tops}")
    for name in names:
        for p in known[name].parameters():
            p.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def autocast_for(device: torch.device, amp: str):
    """One autocast path: bf16 on CPU or GPU, fp16 on GPU, or nothing."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _batch(batch, device: torch.device, channels_last: bool, skipped: list[str]):
    """A loader's batch on the device: (x, y), or None when every image of it was skipped;
    the skipped images' messages are added to `skipped`."""
    x, y, bad = batch if len(batch) == 3 else (*batch, [])
    skipped.extend(bad)
    if x is None or len(y) == 0:
        return None
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def _update(
    step: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss: Tensor,
    scaler: torch.amp.GradScaler | None,
    grad_clip: float,
) -> None:
    """Backward and one optimiser step, through the fp16 loss scaler when there is one."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(step.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


class _Running:
    """The epoch's figures accumulated on the device, read to the host only when asked: the
    step adds without waiting for the device. A non-finite loss is remembered (the image it
    came at and its value) and raised at the next read."""

    def __init__(self, device: torch.device) -> None:
        # loss sum, main loss sum, correct, the last loss, 1 + the image of the first
        # non-finite loss (0: none), its value
        self.sums = torch.zeros(6, dtype=torch.float64, device=device)
        self.seen = 0

    def add(self, loss: Tensor, main: Tensor, logits: Tensor, y: Tensor) -> None:
        n, loss = len(y), loss.detach().double()
        bad = ~torch.isfinite(loss) & (self.sums[4] == 0)
        finite = torch.nan_to_num(loss, nan=0.0, posinf=0.0, neginf=0.0)
        step = torch.stack(
            [
                loss * n,
                main.double() * n,
                (logits.argmax(1) == y).sum().double(),
                finite - torch.nan_to_num(self.sums[3]),  # holds the last loss, not a sum
                torch.where(bad, self.seen + 1.0, 0.0),
                torch.where(bad, loss, 0.0),
            ]
        )
        self.sums += step
        self.seen += n

    def read(self) -> _Figures:
        """The figures on the host (one wait for the device); a `NonFiniteLossError` if a loss
        since the start of the epoch was NaN or infinite."""
        loss, main, correct, last, bad_at, bad = self.sums.tolist()
        if bad_at > 0:
            raise NonFiniteLossError(
                f"the loss became {bad} at image {int(bad_at) - 1} (noticed at image {self.seen})"
            )
        seen = max(self.seen, 1)
        return _Figures(loss=loss / seen, main_loss=main / seen, acc=correct / seen, last=last)


@dataclass(frozen=True)
class _Figures:
    """The running figures of an epoch: mean loss, mean main loss, accuracy, the last loss."""

    loss: float
    main_loss: float
    acc: float
    last: float


def train_one_epoch(
    step: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable,
    *,
    device: torch.device,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    averaged: nn.Module | None = None,
    amp: str = "none",
    channels_last: bool = False,
    grad_clip: float = 0.0,
    on_batch: Callable[[BatchReport], None] | None = None,
    read_at: Callable[[int], bool] | None = None,
    batch_size: int = 0,
) -> TrainStats:
    """One pass over `loader`: mean loss, main loss, accuracy, images/s, skipped files.

    After each optimiser step: the learning-rate schedule, the model's own `after_step` (ZFNet's
    filter renormalisation), the Polyak average (`averaged`). The running figures stay on the device
    and are read to the host after the batches for which `read_at(batches)` holds (every batch
    when it is None) and at the end: then `on_batch` gets them, and a NaN or infinite loss
    since the epoch began raises `NonFiniteLossError`, so it stops the run some steps after
    it happened rather than at once.

    `batch_size` > 0: only batches of exactly that many images train, so that a compiled step
    sees one shape and compiles once; a shorter batch (the epoch's last, or one that lost
    unreadable images) is dropped, not padded, and its images counted in `dropped`."""
    step.train()
    running = _Running(device)
    skipped: list[str] = []
    told = dropped = 0  # images reported to on_batch; images of dropped batches
    start = time.perf_counter()
    model = step.module.model if hasattr(step, "module") else step.model
    after_step = model.after_step if isinstance(model, Classifier) else None
    for batches, batch in enumerate(loader, 1):
        if (xy := _batch(batch, device, channels_last, skipped)) is None:
            continue
        x, y = xy
        if batch_size and len(y) != batch_size:
            dropped += len(y)
            continue
        with autocast_for(device, amp):
            loss, main, logits = step(x, y)
        _update(step, optimizer, loss, scaler, grad_clip)
        if scheduler is not None:
            scheduler.step()
        if after_step is not None:
            after_step()
        if averaged is not None:
            averaged.update_parameters(model)
        running.add(loss, main, logits, y)
        if read_at is None or read_at(batches):
            figures = running.read()
            if on_batch is not None:
                rate = running.seen / max(time.perf_counter() - start, 1e-9)
                on_batch(
                    BatchReport(
                        loss=figures.last,
                        acc=figures.acc,
                        images_per_s=rate,
                        batches=batches,
                        n=running.seen - told,
                    )
                )
                told = running.seen
    figures = running.read()
    elapsed = time.perf_counter() - start
    return TrainStats(
        loss=figures.loss,
        main_loss=figures.main_loss,
        acc=figures.acc,
        images=running.seen,
        images_per_s=running.seen / max(elapsed, 1e-9),
        seconds=elapsed,
        skipped=skipped,
        dropped=dropped,
    )


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module,
    loader: Iterable,
    *,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = False,
) -> TestStats:
    """Top-1 and top-5 accuracy and mean loss of a model in eval mode (one view per image)."""
    was_training = model.training
    model.eval()
    loss_sum, top1, top5, seen = 0.0, 0, 0, 0
    skipped: list[str] = []
    for batch in loader:
        if (xy := _batch(batch, device, channels_last, skipped)) is None:
            continue
        x, y = xy
        with autocast_for(device, amp):
            logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        top1 += (top[:, 0] == y).sum().item()
        top5 += (top == y[:, None]).any(dim=1).sum().item()
        seen += len(y)
    model.train(was_training)
    seen_ = max(seen, 1)
    return TestStats(
        loss=loss_sum / seen_, acc=top1 / seen_, top5=top5 / seen_, images=seen, skipped=skipped
    )


def lr_factor(
    epoch: float,
    *,
    schedule: str,
    epochs: int,
    step_epochs: float,
    gamma: float,
    warmup_epochs: float,
) -> float:
    """The learning-rate multiplier at a (fractional) epoch. A plateau schedule is constant
    here: its divisions follow the validation error (`plateau_divisions`), not the clock."""
    warm = min(1.0, (epoch + 1e-12) / warmup_epochs) if warmup_epochs > 0 else 1.0
    if schedule == "step":  # section 6: x0.96 every 8 epochs
        return warm * gamma ** math.floor(epoch / step_epochs)
    if schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * min(epoch / epochs, 1.0)))
    return warm


def plateau_divisions(errors: Sequence[float], patience: int, limit: int = 0) -> int:
    """How many times the learning rate has been divided after epochs with these validation
    errors: once per `patience` epochs in a row that do not lower the lowest error yet seen
    (AlexNet section 5: "divide the learning rate by 10 when the validation error rate
    stopped improving with the current learning rate"; VGG section 3.1 and ZFNet section 3 the
    same), and no more than `limit` times (0: no limit; AlexNet and VGG: "reduced three
    times"). A function of the errors alone, so a resumed run divides as the first would have."""
    divisions, best, waited = 0, math.inf, 0
    for error in errors:
        if limit and divisions == limit:
            break
        if error < best:
            best, waited = error, 0
            continue
        waited += 1
        if waited == patience:
            divisions, waited = divisions + 1, 0
    return divisions
