"""The training step and the epoch loops. Functions take objects and return dicts; nothing
here parses arguments or prints."""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.googlenet import GoogLeNetOutputs


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite."""


class TrainStep(nn.Module):
    """The model and its loss in one module, so that DistributedDataParallel wraps both.

    The loss is main + aux_weight x (aux1 + aux2) when the model returns GoogLeNet's training
    record (section 5: discount weight 0.3), the main loss otherwise.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        aux_weight: float = 0.3,
        label_smoothing: float = 0.0,
        frozen: Sequence[str] = (),
    ):
        super().__init__()
        self.model = model
        self.aux_weight = aux_weight
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
        out = self.model(x)

        def ce(logits: Tensor) -> Tensor:
            return F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)

        if isinstance(out, GoogLeNetOutputs):
            main = ce(out.logits)
            aux = ce(out.aux1) + ce(out.aux2)
            return main + self.aux_weight * aux, main.detach(), out.logits.detach()
        main = ce(out)
        return main, main.detach(), out.detach()


def freeze(model: nn.Module, names: Sequence[str]) -> int:
    """Fix the parameters of the named modules (`model.named_modules()` names, e.g. "conv1",
    "inception3b"): no gradients, so autograd also skips their backward pass when they come
    first. Returns how many parameters stay trainable."""
    known = dict(model.named_modules())
    unknown = [n for n in names if n not in known or not n]
    if unknown:
        tops = ", ".join(n for n, _ in model.named_children())
        raise ValueError(f"freeze: no module named {', '.join(map(repr, unknown))}; top: {tops}")
    for name in names:
        for p in known[name].parameters():
            p.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class CacheError(RuntimeError):
    """The frozen-prefix cache cannot be used with this model."""


def frozen_prefix(model: nn.Module, frozen: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """The model's leading children that never change during training: frozen ones (`freeze`
    names; TrainStep keeps them in eval mode) and ones without parameters, dropout or
    BatchNorm (pools, LRN). For GoogLeNet with conv1 ... inception3b frozen: conv1 ... pool3."""
    names = set(frozen)
    prefix = []
    for name, child in model.named_children():
        stateless = next(child.parameters(), None) is None and not any(
            isinstance(m, (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm))
            for m in child.modules()
        )
        if name not in names and not stateless:
            break
        prefix.append((name, child))
    if not any(name in names for name, _ in prefix):
        first = next(iter(model.named_children()), ("?", None))[0]
        raise CacheError(
            f"cache_frozen: the model's first module ({first}) is not frozen, so nothing can be "
            f"reused; freeze the first modules (e.g. freeze=[{first!r}]) or set cache_frozen_gb=0"
        )
    return prefix


class FrozenPrefixCache:
    """Computes the frozen first layers once per distinct input and looks their output up after.

    Fine-tuning with the first modules frozen (`freeze`) leaves their output for a given input
    fixed. With a whole-image recipe every training image comes back each epoch as itself or
    its mirror, so from the second epoch on most of that part of the step (the stem and
    inception 3a/3b are about 40% of a 112x112 fine-tuning step of GoogLeNet) is a look-up.
    The key is a digest of the input's bytes: a hit is the same input, so training is
    unchanged. Random crops make every input new: then the cache only costs the digests and
    memory up to `max_bytes`.

    It works through two hooks, so the model, its state dict and evaluation are untouched (the
    hooks act only while the model trains): before the prefix's first module it computes the
    missing rows by running the prefix modules one after the other and passes the rest of the
    prefix an empty batch; after its last module it returns the whole batch's rows. The first
    batch runs the model as usual and checks that running the modules one after the other gave
    the model's own output there (a forward that is not a chain of its children is refused).
    """

    def __init__(self, model: nn.Module, frozen: Sequence[str], max_bytes: int) -> None:
        self.model = model
        self.prefix = frozen_prefix(model, frozen)
        self.max_bytes = max_bytes
        self.entries: dict[bytes, Tensor] = {}
        self.bytes = self.hits = self.misses = 0
        self._rows: Tensor | None = None
        self._checked = False
        self._busy = False
        first, last = self.prefix[0][1], self.prefix[-1][1]
        self._handles = [
            first.register_forward_pre_hook(self._before),
            last.register_forward_hook(self._after),
        ]

    def close(self) -> None:
        """Remove the hooks (the model runs its prefix again) and free the entries."""
        for handle in self._handles:
            handle.remove()
        self.entries.clear()
        self.bytes = 0

    def stats(self) -> dict:
        """Entries, their gigabytes, and the share of inputs looked up since the last call."""
        seen = self.hits + self.misses
        out = {
            "cache_entries": len(self.entries),
            "cache_gb": self.bytes / 1e9,
            "cache_hit_rate": self.hits / seen if seen else 0.0,
        }
        self.hits = self.misses = 0
        return out

    def _active(self) -> bool:
        return self.model.training and not self._busy

    def _before(self, module: nn.Module, args: tuple) -> tuple | None:
        if not self._active():
            return None
        (x,) = args
        self._rows = self.lookup(x)
        if not self._checked:  # this batch runs the prefix as usual; _after compares
            return None
        return (x[:0],)

    def _after(self, module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
        if not self._active() or (self._checked and self._rows is None):
            return None
        rows, self._rows = self._rows, None
        if not self._checked:  # None: the last prefix module ran before the first
            if (
                rows is None
                or rows.shape != output.shape
                or not torch.allclose(rows, output, 1e-4, 1e-5)
            ):
                self.close()
                names = ", ".join(name for name, _ in self.prefix)
                raise CacheError(
                    f"cache_frozen: running {names} one after the other does not give "
                    f"{type(self.model).__name__}'s output after {self.prefix[-1][0]}; "
                    "set cache_frozen_gb=0 for this model"
                )
            self._checked = True
            return None
        return rows

    @torch.no_grad()
    def lookup(self, x: Tensor) -> Tensor:
        """The prefix's output for each input of the batch, computed only for new inputs."""
        keys = [_digest(sample) for sample in x]
        missing = [i for i, key in enumerate(keys) if key not in self.entries]
        fresh: dict[int, Tensor] = {}
        if missing:
            self._busy = True
            try:
                h = x if len(missing) == len(keys) else x[missing]
                for _, module in self.prefix:
                    h = module(h)
            finally:
                self._busy = False
            for j, i in enumerate(missing):
                fresh[i] = h[j]
                size = h[j].numel() * h[j].element_size()
                if keys[i] not in self.entries and self.bytes + size <= self.max_bytes:
                    self.entries[keys[i]] = h[j].clone()  # not a view that keeps the batch alive
                    self.bytes += size
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        rows = torch.stack(
            [fresh[i] if i in fresh else self.entries[k] for i, k in enumerate(keys)]
        )
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        return rows.contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format
        )


def _digest(sample: Tensor) -> bytes:
    """128-bit BLAKE2b of a tensor's values in logical order, with its dtype and shape."""
    values = sample.detach().cpu().contiguous().view(torch.uint8).numpy()  # any dtype, bf16 too
    h = hashlib.blake2b(values, digest_size=16)
    h.update(repr((sample.dtype, tuple(sample.shape))).encode())
    return h.digest()


def autocast_for(device: torch.device, amp: str):
    """One autocast path: bf16 on CPU or GPU, fp16 on GPU, or nothing."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def renormalize_filters(model: nn.Module, max_rms: float) -> None:
    """ZFNet section 3: a conv filter whose RMS exceeds `max_rms` is scaled back to it."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                w = m.weight
                rms = w.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
                w.mul_(torch.where(rms > max_rms, max_rms / rms, torch.ones_like(rms)))


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
    max_filter_rms: float = 0.0,
    on_batch: Callable[[dict], None] | None = None,
) -> dict:
    """One pass over `loader`; returns mean loss, main loss, accuracy, images/s, skipped files."""
    step.train()
    totals = {"loss": 0.0, "main_loss": 0.0, "correct": 0, "seen": 0}
    skipped: list[str] = []
    start = time.perf_counter()
    model = step.module.model if hasattr(step, "module") else step.model
    for batches, batch in enumerate(loader, 1):
        x, y, bad = batch if len(batch) == 3 else (*batch, [])
        skipped.extend(bad)
        if x is None or len(y) == 0:
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(device, amp):
            loss, main, logits = step(x, y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"the loss became {loss.item()} at image {totals['seen']}")
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
        if scheduler is not None:
            scheduler.step()
        if max_filter_rms > 0:
            renormalize_filters(model, max_filter_rms)
        if averaged is not None:
            averaged.update_parameters(model)
        n = len(y)
        totals["loss"] += loss.item() * n
        totals["main_loss"] += main.item() * n
        totals["correct"] += (logits.argmax(1) == y).sum().item()
        totals["seen"] += n
        if on_batch is not None:
            elapsed = time.perf_counter() - start
            on_batch(
                {
                    "loss": loss.item(),
                    "acc": totals["correct"] / totals["seen"],
                    "images_per_s": totals["seen"] / max(elapsed, 1e-9),
                    "n": n,
                    "batches": batches,
                }
            )
    seen = max(totals["seen"], 1)
    elapsed = time.perf_counter() - start
    return {
        "loss": totals["loss"] / seen,
        "main_loss": totals["main_loss"] / seen,
        "acc": totals["correct"] / seen,
        "images": totals["seen"],
        "images_per_s": totals["seen"] / max(elapsed, 1e-9),
        "seconds": elapsed,
        "skipped": skipped,
    }


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module,
    loader: Iterable,
    *,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = False,
) -> dict:
    """Top-1 and top-5 accuracy and mean loss of a model in eval mode (one view per image)."""
    was_training = model.training
    model.eval()
    loss_sum, top1, top5, seen = 0.0, 0, 0, 0
    skipped: list[str] = []
    for batch in loader:
        x, y, bad = batch if len(batch) == 3 else (*batch, [])
        skipped.extend(bad)
        if x is None or len(y) == 0:
            continue
        x, y = x.to(device), y.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
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
    return {
        "loss": loss_sum / seen_,
        "acc": top1 / seen_,
        "top5": top5 / seen_,
        "images": seen,
        "skipped": skipped,
    }


def lr_factor(
    epoch: float,
    *,
    schedule: str,
    epochs: int,
    step_epochs: float,
    gamma: float,
    warmup_epochs: float,
) -> float:
    """The learning-rate multiplier at a (fractional) epoch."""
    warm = min(1.0, (epoch + 1e-12) / warmup_epochs) if warmup_epochs > 0 else 1.0
    if schedule == "step":  # section 6: x0.96 every 8 epochs
        return warm * gamma ** math.floor(epoch / step_epochs)
    if schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * min(epoch / epochs, 1.0)))
    return warm
