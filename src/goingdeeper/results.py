"""What evaluation and training return, as typed records, and the one place they are written.

`evaluate` returns an `EvalResult` (with a `MemberResult` per model of an ensemble when asked,
and ReaL's top-1 as `RealTop1`); `train_one_epoch` a `TrainStats` (and a `BatchReport` to its
`on_batch` now and then), `evaluate_accuracy` a `TestStats`, the frozen-prefix cache its
`CacheStats`, and every epoch of `fit` an `EpochStats` (one row of log.csv); `fit` a
`FitResult` with the paths of the run folder's files (`RunFiles`) and the test protocol's rows
(`ViewResult`, views.json).

Their serialised forms live here and nowhere else: `record` (the flat dict of each type, with
the keys the files and the JSON have always had), the Table 3 grid (`grid_rows`,
`format_grid`: an aligned table, markdown, CSV or JSON, as `goingdeeper eval --format` prints
it), log.csv (`write_log`, read back by `EpochStats.from_record`), the rows of steps.csv
(`step_row`; `train.logs.StepLog` keeps the file) and views.json (`write_views`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Self

from torch import Tensor, nn

from .errors import ArgumentError, CheckpointError
from .files import atomic_write
from .tables import render_markdown, render_table

# --- evaluation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealTop1:
    """ReaL top-1 (Beyer et al. 2020): the top class is right when it is any of the classes
    the re-assessment found; images in which it found no clear class are left out."""

    images: int  # the images with at least one ReaL class
    accuracy: float

    @property
    def error(self) -> float:
        return 1 - self.accuracy


def _share(count: int, images: int) -> float:
    return count / images if images else math.nan


@dataclass(frozen=True, kw_only=True)
class Accuracy:
    """Top-1 and top-5 of one set of predictions against their labels."""

    images: int
    correct_top1: int
    correct_top5: int
    per_class_top1: list[float | None]  # None for a class with no image
    confusion: list[list[int]] | None = None  # rows: true class, columns: top-1 prediction
    real: RealTop1 | None = None  # with ReaL's labels

    @classmethod
    def of(cls, accuracy: Accuracy, **more: Any) -> Self:
        """`accuracy`'s figures as this type, with the fields it adds or replaces (`more`)."""
        return cls(**{f.name: getattr(accuracy, f.name) for f in fields(Accuracy)} | more)

    @property
    def top1_accuracy(self) -> float:
        return _share(self.correct_top1, self.images)

    @property
    def top5_accuracy(self) -> float:
        return _share(self.correct_top5, self.images)

    @property
    def top1_error(self) -> float:
        return 1.0 - self.top1_accuracy

    @property
    def top5_error(self) -> float:
        return 1.0 - self.top5_accuracy


@dataclass(frozen=True, kw_only=True)
class MemberResult(Accuracy):
    """One model of an ensemble, scored on its own."""

    name: str


@dataclass(frozen=True, kw_only=True)
class EvalResult(Accuracy):
    """One view protocol on one model or an ensemble (softmax, logits or maxima combined)."""

    model_names: list[str]
    num_classes: int
    views: str  # one of evaluate.VIEWS
    crops: int  # views per image of one model
    cost: int  # forward passes per image, over the models (Table 3's "cost")
    aggregate: str
    seconds: float
    skipped_files: list[str] = field(default_factory=list)  # unreadable, left out
    dense_scales: list[list[int]] | None = None  # each model's test scales Q (dense views)
    members: list[MemberResult] = field(default_factory=list)  # with evaluate(per_model=True)
    # images x classes, with evaluate(keep_scores=True); left out of == (a tensor's is elementwise)
    scores: Tensor | None = field(default=None, compare=False)
    labels: list[int] | None = None  # beside the scores

    @property
    def models(self) -> int:
        return len(self.model_names)

    @property
    def skipped(self) -> int:
        return len(self.skipped_files)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.nan

    def member_results(self) -> list[EvalResult]:
        """The single models inside an ensemble result, each as its own result (one model,
        its crops as cost), so that they fit in the same grid."""
        return [
            EvalResult.of(
                m,
                model_names=[m.name],
                num_classes=self.num_classes,
                views=self.views,
                crops=self.crops,
                cost=self.crops,
                aggregate=self.aggregate,
                seconds=self.seconds,
                skipped_files=self.skipped_files,
            )
            for m in self.members
        ]


@dataclass(frozen=True)
class ViewResult:
    """One row of the test protocol that `fit` runs on the finished weights (views.json)."""

    model: str
    views: str
    images: int
    top1_accuracy: float
    top5_accuracy: float
    cost: int
    seconds: float


# --- training ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchReport:
    """The running figures of an epoch, as `train_one_epoch` hands them to `on_batch`."""

    loss: float  # the last batch's
    acc: float  # the epoch's so far
    images_per_s: float
    batches: int  # batches of the epoch so far
    n: int  # images since the last report


@dataclass(frozen=True)
class TrainStats:
    """One pass of `train_one_epoch` over the training batches."""

    loss: float  # mean over the images, aux heads included
    main_loss: float  # the main classifier's alone
    acc: float  # top-1 on the training batches, as they were augmented
    images: int
    images_per_s: float
    seconds: float
    skipped: list[str]  # why each unreadable image was left out
    dropped: int = 0  # images of batches short of the compiled batch size


@dataclass(frozen=True)
class TestStats:
    """`evaluate_accuracy`: one view per image, the model in eval mode."""

    loss: float
    acc: float  # top-1
    top5: float
    images: int
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CacheStats:
    """The frozen-prefix cache (`cache_frozen_gb`) at the end of an epoch."""

    cache_entries: int
    cache_gb: float
    cache_hit_rate: float  # the share of the epoch's inputs that were looked up


@dataclass(frozen=True, kw_only=True)
class EpochStats:
    """One epoch of a run: one row of log.csv. The test figures are measured by the main
    process (None elsewhere); the Polyak average's are NaN before the average begins."""

    epoch: int  # counted from 1
    lr: float  # at the epoch's end
    train_loss: float
    train_main_loss: float
    train_acc: float
    images_per_s: float
    seconds: float
    skipped: int  # unreadable training images
    cache_entries: int | None = None  # with cache_frozen_gb
    cache_gb: float | None = None
    cache_hit_rate: float | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    test_top5: float | None = None
    polyak_test_loss: float | None = None  # with polyak
    polyak_test_acc: float | None = None
    polyak_test_top5: float | None = None

    @classmethod
    def from_record(cls, row: dict[str, Any]) -> EpochStats:
        """An epoch from its `record` (a checkpoint's history); a `CheckpointError` for a row
        with other columns."""
        known = {f.name for f in fields(cls)}
        needed = {f.name for f in fields(cls) if f.default is MISSING}
        unknown, missing = sorted(set(row) - known), sorted(needed - set(row))
        if unknown or missing:
            raise CheckpointError(
                f"epoch {row.get('epoch', '?')} of the run's history "
                + (f"has columns {', '.join(unknown)} that " if unknown else "")
                + (f"lacks {', '.join(missing)}, which " if missing else "")
                + "this version does not read: start the run afresh (--overwrite)"
            )
        return cls(**row)


@dataclass(frozen=True)
class RunFiles:
    """The files a finished run leaves in its folder (paths as strings)."""

    weights: str  # model.safetensors
    log: str
    checkpoint: str
    polyak_weights: str | None = None  # model_polyak.safetensors, with polyak
    curves: str | None = None  # curves.png, with plots
    views: str | None = None  # views.json, with eval_views


@dataclass(frozen=True)
class FitResult:
    """What `fit` returns. `final`, `paths` and `views` are the main process's, once an epoch
    has trained; elsewhere they stay None and empty."""

    history: list[EpochStats]
    out: str
    model: nn.Module
    averaged: nn.Module | None = None  # the Polyak average's module
    final: EpochStats | None = None  # the last epoch
    paths: RunFiles | None = None
    views: list[ViewResult] = field(default_factory=list)


# --- serialised forms ----------------------------------------------------------------------------


def record(result: Any) -> dict[str, Any]:
    """A result as a flat dict of plain values, with the keys of its files and JSON.

    An `EvalResult` or `MemberResult` keeps the keys `evaluate` has always had (its scores
    tensor left out: `scores` stays on the result), an `EpochStats` the columns of log.csv
    (optional groups that are None left out), the others their fields."""
    if isinstance(result, Accuracy):
        return _accuracy_record(result)
    if isinstance(result, EpochStats):
        return {k: v for k, v in asdict(result).items() if v is not None}
    return asdict(result)


def _accuracy_record(r: Accuracy) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(r, MemberResult):
        out["name"] = r.name
    if isinstance(r, EvalResult):
        out.update(models=r.models, model_names=list(r.model_names), num_classes=r.num_classes)
        out.update(skipped=r.skipped, skipped_files=list(r.skipped_files))
    out.update(images=r.images, correct_top1=r.correct_top1, correct_top5=r.correct_top5)
    out.update(top1_accuracy=r.top1_accuracy, top5_accuracy=r.top5_accuracy)
    out.update(top1_error=r.top1_error, top5_error=r.top5_error)
    out["per_class_top1"] = list(r.per_class_top1)
    if r.confusion is not None:
        out["confusion"] = r.confusion
    if isinstance(r, EvalResult) and r.members:
        out["members"] = [_accuracy_record(m) for m in r.members]
    if r.real is not None:
        out.update(real_images=r.real.images, real_top1_accuracy=r.real.accuracy)
        out["real_top1_error"] = r.real.error
    if isinstance(r, EvalResult):
        out.update(views=r.views, crops=r.crops, cost=r.cost)
        if r.dense_scales is not None:
            out["dense_scales"] = r.dense_scales
        out.update(aggregate=r.aggregate, seconds=r.seconds)
        out["images_per_second"] = r.images_per_second
        if r.labels is not None:
            out["labels"] = list(r.labels)
    return out


def write_log(history: list[EpochStats], path: Path) -> None:
    """log.csv: one row per epoch, the columns of every row (a column that some rows lack,
    such as the cache's, is empty there)."""
    rows = [record(h) for h in history]
    if not rows:
        return
    keys = list(rows[0])
    for row in rows[1:]:
        keys += [k for k in row if k not in keys]

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


# steps.csv, the training curve: every few steps, that batch's loss and the epoch's running
# accuracy and speed
STEP_FIELDS = ("step", "epoch", "loss", "running_acc", "lr", "images_per_s")


def step_row(step: int, epoch: float, report: BatchReport, lr: float) -> tuple[int | str, ...]:
    """One row of steps.csv (`STEP_FIELDS`): the step, the fractional epoch and the report."""
    return (
        step,
        f"{epoch:.4f}",
        f"{report.loss:.5f}",
        f"{report.acc:.5f}",
        f"{lr:.6g}",
        f"{report.images_per_s:.2f}",
    )


def write_views(views: list[ViewResult], path: Path) -> None:
    """views.json: the test protocol's rows."""
    text = json.dumps([record(v) for v in views], indent=2) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


# --- the Table 3 grid ----------------------------------------------------------------------------

FORMATS = ("table", "markdown", "csv", "json")

# Table 3 of the GoogLeNet paper (ILSVRC 2012 validation): models, crops, cost, top-5 error %
PAPER_TABLE3 = (
    (1, 1, 1, 10.07),
    (1, 10, 10, 9.15),
    (1, 144, 144, 7.89),
    (7, 1, 7, 8.09),
    (7, 10, 70, 7.62),
    (7, 144, 1008, 6.67),
)

COLUMNS = (
    ("model", "model"),
    ("models", "number of models"),
    ("crops", "number of crops"),
    ("cost", "cost"),
    ("top1_error", "top-1 error"),
    ("top5_error", "top-5 error"),
    ("real_top1_error", "ReaL top-1 error"),
    ("compared_to_base", "compared to base"),
    ("images", "images"),
)


@dataclass(frozen=True)
class GridRow:
    """One row of a grid laid out like GoogLeNet's Table 3: models x crops, cost, error.

    Table 3's columns are: number of models, number of crops, cost (forward passes per image =
    models x crops), top-5 error, and the change against the base row (1 model, 1 crop). Here
    top-1 error sits beside top-5, errors are in percent, and each row also names its models
    and the number of images it was measured on."""

    model: str
    models: int
    crops: int | str  # a number of crops, or the protocol's name (dense, 10-rect ...)
    cost: int
    top1_error: float | None  # percent; None where not reported
    top5_error: float
    real_top1_error: float | None
    compared_to_base: float  # top-5 error against the base row's, in points
    is_base: bool  # so that a row whose top-5 equals the base's reads +0.00%, not "base"
    images: int
    skipped: int


def grid_rows(results: list[EvalResult]) -> list[GridRow]:
    """One row per `evaluate` result, errors in percent; the base row is the first with one
    model and one crop (else the first row), as in Table 3."""
    base = next((r for r in results if r.models == 1 and r.views == "1"), None)
    base = base or (results[0] if results else None)
    return [
        GridRow(
            model="+".join(r.model_names),
            models=r.models,
            crops=r.crops if r.views.isdigit() else r.views,
            cost=r.cost,
            top1_error=100.0 * r.top1_error,
            top5_error=100.0 * r.top5_error,
            real_top1_error=100.0 * r.real.error if r.real is not None else None,
            compared_to_base=100.0 * (r.top5_error - base.top5_error),
            is_base=r is base,
            images=r.images,
            skipped=r.skipped,
        )
        for r in results
    ]


def paper_rows() -> list[GridRow]:
    """Table 3 itself, in the grid's row shape (top-1 error was not reported: None)."""
    base = PAPER_TABLE3[0][3]
    return [
        GridRow(
            model="GoogLeNet (paper, Table 3)",
            models=models,
            crops=crops,
            cost=cost,
            top1_error=None,
            top5_error=top5,
            real_top1_error=None,
            compared_to_base=top5 - base,
            is_base=i == 0,
            images=50_000,
            skipped=0,
        )
        for i, (models, crops, cost, top5) in enumerate(PAPER_TABLE3)
    ]


def _cell(row: GridRow, key: str) -> str:
    value = getattr(row, key)
    if value is None:
        return "-"
    if key == "compared_to_base":
        return "base" if row.is_base else f"{value:+.2f}%"
    if key in ("top1_error", "top5_error", "real_top1_error"):
        return f"{value:.2f}%"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_grid(rows: list[GridRow], fmt: str = "table") -> str:
    """The grid as an aligned text table, GitHub markdown, CSV or JSON."""
    if fmt not in FORMATS:
        raise ArgumentError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "json":
        return json.dumps([record(r) for r in rows], indent=2)
    real = any(r.real_top1_error is not None for r in rows)
    columns = [(k, t) for k, t in COLUMNS if k != "real_top1_error" or real]
    keys = [k for k, _ in columns]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([*keys, "skipped"])
        for r in rows:
            values = [getattr(r, k) for k in [*keys, "skipped"]]
            writer.writerow(["" if v is None else v for v in values])
        return buf.getvalue().rstrip("\n")
    header = [title for _, title in columns]
    body = [[_cell(r, k) for k in keys] for r in rows]
    if fmt == "markdown":
        return render_markdown(header, body)
    return render_table(header, body, right_from=1)
