"""Batches made one or two ahead in a thread of their own, so that a loader whose work happens in
the training process (the tensor and DALI loaders: collating bytes, decoding and augmenting on
the device) runs while the previous step does, instead of between steps.

On a CUDA device the thread issues its work on a stream of its own; each batch carries an event
recorded after it, the training stream waits for that event before it reads the batch, and the
batch's memory is marked as used by the training stream, so that the allocator does not hand it
back to the loader's stream while a step still reads it. The batches and their order are those
of the loader itself: its draws come from its own generators, never from the global one the
training step draws dropout from.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

_DONE = object()


class Prefetched:
    """`batches` (anything with `__len__` and `__iter__` yielding tuples whose tensors the
    training reads) made up to `depth` ahead in a background thread; an exception in the thread
    is raised in the reader, where the batch it stopped would have come."""

    def __init__(self, batches: Any, device: torch.device, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.batches, self.device, self.depth = batches, torch.device(device), depth

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple]:
        ready: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        # the reader's stream, which what the loader reads (a set held on the device) was
        # written on: the loader's stream starts after it
        after = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        worker = threading.Thread(target=self._fill, args=(ready, stop, after), daemon=True)
        worker.start()
        try:
            while (item := ready.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield self._take(*item)
        finally:
            stop.set()
            while worker.is_alive():  # unblock a thread waiting for room, then let it end
                try:
                    ready.get_nowait()
                except queue.Empty:
                    worker.join(timeout=0.05)

    def _fill(self, ready: queue.Queue, stop: threading.Event, after) -> None:
        stream = None
        if after is not None:
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(after)
        try:
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                for batch in self.batches:
                    event = None
                    if stream is not None:
                        event = torch.cuda.Event()
                        event.record(stream)
                    if not _put(ready, (batch, event), stop):
                        return
        except BaseException as e:  # noqa: BLE001 - handed to the reader, raised there
            _put(ready, e, stop)
            return
        _put(ready, _DONE, stop)

    def _take(self, batch: tuple, event) -> tuple:
        if event is None:
            return batch
        current = torch.cuda.current_stream(self.device)
        current.wait_event(event)
        for t in _tensors(batch):
            if t.is_cuda:
                t.record_stream(current)
        return batch


def _put(ready: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put `item` when there is room; False when the reader has stopped reading."""
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _tensors(batch: Iterable) -> Iterator[Tensor]:
    for item in batch:
        if isinstance(item, Tensor):
            yield item
