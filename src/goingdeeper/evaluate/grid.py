"""A results grid laid out like GoogLeNet's Table 3: models x crops, cost, error.

Table 3's columns are: number of models, number of crops, cost (forward passes per image =
models x crops), top-5 error, and the change against the base row (1 model, 1 crop). Here
top-1 error sits beside top-5, errors are in percent, and each row also names its models and
the number of images it was measured on.
"""

from __future__ import annotations

import csv
import io
import json

from ..errors import ArgumentError
from ..tables import render_markdown, render_table

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


def member_results(result: dict) -> list[dict]:
    """The single-model results inside an ensemble result (`evaluate(..., per_model=True)`),
    shaped like `evaluate`'s own so they fit in the same grid."""
    return [
        {
            **m,
            "models": 1,
            "model_names": [m["name"]],
            "views": result["views"],
            "crops": result["crops"],
            "cost": result["crops"],
            "skipped": result["skipped"],
            "skipped_files": result["skipped_files"],
        }
        for m in result.get("members", [])
    ]


def _crops_label(result: dict) -> int | str:
    return result["crops"] if result["views"].isdigit() else result["views"]


def grid_rows(results: list[dict]) -> list[dict]:
    """One row per `evaluate` result, errors in percent; the base row is the first with one
    model and one crop (else the first row), as in Table 3; `is_base` marks it, so that a
    row whose top-5 merely equals the base's reads +0.00%, not "base"."""
    base = next((r for r in results if r["models"] == 1 and r["views"] == "1"), None)
    base = base or (results[0] if results else None)
    rows = []
    for r in results:
        rows.append(
            {
                "model": "+".join(r["model_names"]),
                "models": r["models"],
                "crops": _crops_label(r),
                "cost": r["cost"],
                "top1_error": 100.0 * r["top1_error"],
                "top5_error": 100.0 * r["top5_error"],
                "real_top1_error": (
                    100.0 * r["real_top1_error"] if "real_top1_error" in r else None
                ),
                "compared_to_base": 100.0 * (r["top5_error"] - base["top5_error"]),
                "is_base": r is base,
                "images": r["images"],
                "skipped": r["skipped"],
            }
        )
    return rows


def paper_rows() -> list[dict]:
    """Table 3 itself, in the grid's row shape (top-1 error was not reported: None)."""
    base = PAPER_TABLE3[0][3]
    return [
        {
            "model": "GoogLeNet (paper, Table 3)",
            "models": models,
            "crops": crops,
            "cost": cost,
            "top1_error": None,
            "top5_error": top5,
            "real_top1_error": None,
            "compared_to_base": top5 - base,
            "is_base": i == 0,
            "images": 50_000,
            "skipped": 0,
        }
        for i, (models, crops, cost, top5) in enumerate(PAPER_TABLE3)
    ]


def _cell(row: dict, key: str) -> str:
    value = row[key]
    if value is None:
        return "-"
    if key == "compared_to_base":
        return "base" if row.get("is_base") else f"{value:+.2f}%"
    if key in ("top1_error", "top5_error", "real_top1_error"):
        return f"{value:.2f}%"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_grid(rows: list[dict], fmt: str = "table") -> str:
    """The grid as an aligned text table, GitHub markdown, CSV or JSON."""
    if fmt not in FORMATS:
        raise ArgumentError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "json":
        return json.dumps(rows, indent=2)
    columns = [(k, t) for k, t in COLUMNS if k != "real_top1_error" or _any_real(rows)]
    keys = [k for k, _ in columns]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([*keys, "skipped"])
        for r in rows:
            writer.writerow(["" if r[k] is None else r[k] for k in [*keys, "skipped"]])
        return buf.getvalue().rstrip("\n")
    header = [title for _, title in columns]
    body = [[_cell(r, k) for k in keys] for r in rows]
    if fmt == "markdown":
        return render_markdown(header, body)
    return render_table(header, body, right_from=1)


def _any_real(rows: list[dict]) -> bool:
    return any(r.get("real_top1_error") is not None for r in rows)
