"""The result types' serialised forms: evaluate's JSON keys and log.csv's columns stay those
that users' scripts read, and a checkpoint's history reads back as it was written."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest

from goingdeeper.errors import CheckpointError
from goingdeeper.results import (
    EpochStats,
    EvalResult,
    MemberResult,
    RealTop1,
    ViewResult,
    record,
    write_log,
    write_views,
)

# the keys of evaluate's results, in their order, where every optional part is on
EVAL_KEYS = [
    "models",
    "model_names",
    "num_classes",
    "skipped",
    "skipped_files",
    "images",
    "correct_top1",
    "correct_top5",
    "top1_accuracy",
    "top5_accuracy",
    "top1_error",
    "top5_error",
    "per_class_top1",
    "confusion",
    "members",
    "real_images",
    "real_top1_accuracy",
    "real_top1_error",
    "views",
    "crops",
    "cost",
    "dense_scales",
    "aggregate",
    "seconds",
    "images_per_second",
    "labels",
]
OPTIONAL = {"confusion", "members", "real_images", "real_top1_accuracy", "real_top1_error"}
OPTIONAL |= {"dense_scales", "labels"}


def _result() -> EvalResult:
    return EvalResult(
        images=4,
        correct_top1=3,
        correct_top5=4,
        per_class_top1=[1.0, 0.5],
        model_names=["a", "b"],
        num_classes=2,
        views="dense",
        crops=6,
        cost=12,
        aggregate="softmax",
        seconds=2.0,
        skipped_files=["broken.jpg"],
    )


def test_an_eval_record_has_the_keys_evaluate_has_always_written():
    plain = _result()
    row = record(plain)
    assert list(row) == [k for k in EVAL_KEYS if k not in OPTIONAL]
    assert (row["top1_accuracy"], row["top1_error"], row["top5_error"]) == (0.75, 0.25, 0.0)
    assert (row["models"], row["skipped"], row["images_per_second"]) == (2, 1, 2.0)
    member = MemberResult.of(plain, name="a", real=RealTop1(images=3, accuracy=1 / 3))
    full = replace(
        plain,
        confusion=[[2, 0], [1, 1]],
        real=RealTop1(images=3, accuracy=2 / 3),
        dense_scales=[[256, 384], [256, 384]],
        members=[member],
        labels=[0, 0, 1, 1],
    )
    row = record(full)
    assert list(row) == EVAL_KEYS
    assert row["real_top1_error"] == 1 - 2 / 3
    assert row["members"][0]["real_top1_error"] == pytest.approx(2 / 3, rel=1e-15)
    assert list(row["members"][0])[:2] == ["name", "images"]
    assert json.loads(json.dumps(row)) == row  # plain values only
    (single,) = full.member_results()
    assert (single.model_names, single.cost, single.real) == (["a"], 6, member.real)


def test_no_image_read_gives_nan_rates_not_a_division_by_zero():
    empty = replace(_result(), images=0, correct_top1=0, correct_top5=0)
    assert empty.top1_accuracy != empty.top1_accuracy and empty.top5_error != empty.top5_error


def _epoch(epoch: int, **more) -> EpochStats:
    return EpochStats(
        epoch=epoch,
        lr=0.01 / epoch,
        train_loss=2.0 / epoch,
        train_main_loss=1.5 / epoch,
        train_acc=0.25 * epoch,
        images_per_s=100.0,
        seconds=3.0,
        skipped=epoch - 1,
        test_loss=1.9 / epoch,
        test_acc=0.3 * epoch,
        test_top5=0.8,
        **more,
    )


def test_log_csv_has_every_epochs_columns_and_a_history_reads_back(tmp_path):
    history = [_epoch(1), _epoch(2, cache_entries=10, cache_gb=0.5, cache_hit_rate=0.5)]
    write_log(history, tmp_path / "log.csv")
    with open(tmp_path / "log.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == [
        "epoch",
        "lr",
        "train_loss",
        "train_main_loss",
        "train_acc",
        "images_per_s",
        "seconds",
        "skipped",
        "test_loss",
        "test_acc",
        "test_top5",
        "cache_entries",
        "cache_gb",
        "cache_hit_rate",
    ]
    assert rows[0]["cache_hit_rate"] == "" and float(rows[1]["cache_hit_rate"]) == 0.5
    assert [float(r["lr"]) for r in rows] == [h.lr for h in history]
    assert [EpochStats.from_record(record(h)) for h in history] == history  # checkpoints
    other = {**record(history[0]), "train_top5": 0.5}
    with pytest.raises(CheckpointError, match="epoch 1 .* has columns train_top5 that"):
        EpochStats.from_record(other)
    del other["train_top5"], other["train_main_loss"]
    with pytest.raises(CheckpointError, match="lacks train_main_loss, which this version"):
        EpochStats.from_record(other)


def test_views_json_holds_the_protocols_rows(tmp_path):
    views = [ViewResult("Polyak average", "10", 30, 0.9, 1.0, 10, 4.5)]
    write_views(views, tmp_path / "views.json")
    (row,) = json.loads((tmp_path / "views.json").read_text())
    assert row == {
        "model": "Polyak average",
        "views": "10",
        "images": 30,
        "top1_accuracy": 0.9,
        "top5_accuracy": 1.0,
        "cost": 10,
        "seconds": 4.5,
    }
