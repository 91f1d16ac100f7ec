"""The frozen-prefix cache: when fine-tuning with the first modules frozen, their output for
an input is computed once and looked up after (`cache_frozen_gb` in the training config)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..results import CacheStats


class CacheError(ConfigError):
    """The frozen-prefix cache cannot be used with this model (`cache_frozen_gb`)."""


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

    def stats(self) -> CacheStats:
        """Entries, their gigabytes, and the share of inputs looked up since the last call."""
        seen = self.hits + self.misses
        out = CacheStats(
            cache_entries=len(self.entries),
            cache_gb=self.bytes / 1e9,
            cache_hit_rate=self.hits / seen if seen else 0.0,
        )
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
