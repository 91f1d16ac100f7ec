"""A run's logs: steps.csv (every few steps), TensorBoard, the curves as a PNG (log.csv, every
epoch, is written by `goingdeeper.results.write_log`). Everything is written as it comes, so a
stopped run keeps what it logged."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from matplotlib.figure import Figure

from ..files import atomic_write
from ..results import STEP_FIELDS, BatchReport, EpochStats, step_row

log = logging.getLogger(__name__)


class StepLog:
    """Every `every` steps, one row of steps.csv: the step, the epoch (fractional), that
    batch's loss, the epoch's running accuracy and images/s, the learning rate. Rows are
    appended and flushed as they come, so the curve survives a run that is stopped."""

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

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(STEP_FIELDS)
                writer.writerows(kept)

        atomic_write(path, write)

    def record(self, step: int, epoch: float, info: BatchReport, lr: float) -> None:
        if self.every <= 0 or step % self.every:
            return
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow(step_row(step, epoch, info, lr))


def plot_curves(history: list[EpochStats], path: Path) -> None:
    """Loss and top-1 accuracy per epoch, train and test (and the Polyak average's), as a PNG."""
    epochs = [h.epoch for h in history]
    fig = Figure(figsize=(11, 4))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [h.train_loss for h in history], label="train (main + aux)")
    ax1.plot(epochs, [h.train_main_loss for h in history], label="train (main)")
    ax1.plot(epochs, [h.test_loss for h in history], label="test")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.set_title("loss")
    ax1.legend()
    ax2.plot(epochs, [h.train_acc for h in history], label="train")
    ax2.plot(epochs, [h.test_acc for h in history], label="test")
    if history[0].polyak_test_acc is not None:
        ax2.plot(epochs, [h.polyak_test_acc for h in history], label="test (Polyak average)")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("top-1 accuracy")
    ax2.set_title("accuracy")
    ax2.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))


def tensorboard_writer(folder: Path):
    """A TensorBoard SummaryWriter in `folder`, or None where tensorboard cannot be imported:
    a broken install loses this one log, not the run."""
    try:  # imported here: seconds of start-up, for one optional log
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not importable; no TensorBoard log")
        return None
    return SummaryWriter(log_dir=str(folder))
