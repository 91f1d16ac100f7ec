"""The results of `inference_bench.py` as markdown (the tables) and JSON (every timed run)."""

from __future__ import annotations

import json
from pathlib import Path


def _rate(result: dict, name: str, batch: int) -> float | None:
    for row in result["rows"]:
        if row["name"] == name and row["batch"] == batch and "images_per_s" in row:
            return row["images_per_s"]
    return None


def _arithmetic(row: dict, peak: float | None) -> str:
    """G multiply-adds per second, and their share of the CPU's ceiling for a CPU row (a GPU
    row is not measured against the CPU's matrix products)."""
    rate = row.get("gmacs_per_s")
    if rate is None:
        return ""
    on_cpu = row.get("device", "cpu") == "cpu"
    return f"{rate:.1f} ({rate / peak:.0%})" if peak and on_cpu else f"{rate:.1f}"


def _header(result: dict) -> list[str]:
    m, o = result["machine"], result["options"]
    busy = (
        " (other work was running when it started: absolute numbers are low and noisy, "
        "ratios within one run are what to read)"
        if m["load_average"][0] > 1.0
        else ""
    )
    lines = [
        "# Inference benchmark",
        "",
        "Made by `python benchmarks/inference_bench.py`. Input 224x224, random input batches "
        "for the timings; every row timed in a fresh process.",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores"
        + (f", CUDA {m['cuda']}" if m["cuda"] else ", no GPU")
        + f"; load average at start {m['load_average'][0]:.2f}, at end "
        f"{m['load_average_end'][0]:.2f}{busy}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
        f"- threads: {o['threads']} for every runtime; median of {o['repeats']} timed runs "
        f"(batch 1: at least 20) after {o['warmup']} warm-up runs",
        "- peak memory: the process's high-water resident set (VmHWM) minus its resident set "
        "after imports, i.e. weights + runtime buffers + the batch",
        f"- int8 calibration: {result['calibration']}",
        f"- OpenVINO int8 model: {result['openvino_int8']}",
        f"- total time: {result['seconds'] / 60:.1f} min",
    ]
    peak = result.get("sgemm_gmacs")
    if peak:
        lines.append(
            f"- fp32 arithmetic ceiling: a 4096x4096 fp32 matrix product runs at {peak:.1f} G "
            "multiply-adds/s on these threads; GMAC/s below = images/s x the network's "
            "multiply-adds per image, and its share of that ceiling (int8 and bf16 can pass it)"
        )
    return [*lines, ""]


def _inference_table(result: dict) -> list[str]:
    peak = result.get("sgemm_gmacs")
    ref = {b: _rate(result, "torchvision eager", b) for b in result["options"]["batch_sizes"]}
    lines = [
        "| configuration | ours | batch | images/s | latency ms | vs torchvision eager | "
        "GMAC/s (of ceiling) | peak RSS delta MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if "error" in row:
            lines.append(f"| {row['name']} | | {row['batch']} | failed: {row['error']} | | | | |")
            continue
        r = ref.get(row["batch"])
        ratio = f"{row['images_per_s'] / r:.2f}x" if r else ""
        lines.append(
            f"| {row['name']} | {'yes' if row['ours'] else ''} | {row['batch']} | "
            f"{row['images_per_s']:.1f} | {row['latency_ms']:.1f} | {ratio} | "
            f"{_arithmetic(row, peak)} | {row['peak_rss_delta_mb']:.0f} |"
        )
    for name, why in result["skipped"].items():
        lines.append(f"| {name} | | | skipped: {why} | | | | |")
    return lines


def _train_section(result: dict) -> list[str]:
    o, peak = result["options"], result.get("sgemm_gmacs")
    lines = [
        "",
        f"## Training step (batch {o['train_batch']}, 224x224, channels-last, SGD, main + 0.3 "
        "aux losses)",
        "",
        "| model | precision | batch | images/s | s/step | vs torchvision (same precision) | "
        "GMAC/s (of ceiling) | peak RSS delta MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    tv = {t["bf16"]: t.get("images_per_s") for t in result["train"] if t["model"] == "torchvision"}
    for t in result["train"]:
        prec = "bf16 autocast" if t["bf16"] else "fp32"
        if "error" in t:
            lines.append(f"| {t['model']} | {prec} | | failed: {t['error']} | | | | |")
            continue
        ratio = f"{t['images_per_s'] / tv[t['bf16']]:.2f}x" if tv.get(t["bf16"]) else ""
        lines.append(
            f"| {t['model']} | {prec} | {t['batch']} | {t['images_per_s']:.2f} | "
            f"{t['median_s']:.2f} | {ratio} | {_arithmetic(t, peak)} | "
            f"{t['peak_rss_delta_mb']:.0f} |"
        )
    lines += [
        "",
        "torchvision: `googlenet(aux_logits=True)`; ours: `googlenet_torchvision` (the same "
        f"network) with `fuse_inception_1x1`. Median of {o['train_repeats']} steps; bf16 "
        f"autocast: batch {o['train_bf16_batch']}, median of {o['train_bf16_repeats']}.",
    ]
    return lines


def _accuracy_section(result: dict) -> list[str]:
    lines = [
        "",
        "## Top-1 on imagenet-sample (BVLC GoogLeNet, one center crop)",
        "",
        "| path | images | top-1 | top-1 on held-out (not calibration) images | "
        "fp32 top-1 on the same images |",
        "|---|---|---|---|---|",
    ]
    for name, row in result["accuracy"].items():
        held, same = row.get("top1_held_out"), row.get("top1_fp32_same_images")
        lines.append(
            f"| {name} | {row['images']} | {100 * row['top1']:.1f}% | "
            f"{'' if held is None else f'{100 * held:.1f}%'} | "
            f"{'' if same is None else f'{100 * same:.1f}%'} |"
        )
    return lines


def _targets_section(result: dict) -> list[str]:
    lines = ["", "## Targets", ""]
    for t in result["targets"]:
        if t["status"] == "not measured":
            lines.append(f"- {t['target']}: not measured")
            continue
        drops = [
            f"{n}: {d:+.1f}" for n, d in t.get("top1_drop_points", {}).items() if d is not None
        ]
        acc = f"; top-1 drop vs fp32 in points: {', '.join(drops)}" if drops else ""
        lines.append(
            f"- {t['target']} (goal {t['goal']:.1f}x): {t['ours']} {t['ours_images_per_s']:.1f} "
            f"img/s vs {t['peer']} {t['peer_images_per_s']:.1f} img/s = {t['ratio']:.2f}x, "
            f"**{t['status']}**{acc}"
        )
    return lines


def _profile_section(result: dict) -> list[str]:
    lines = ["", "## Where the time goes (batch 32, 3 runs)", ""]
    for name, rows in result["profile"].items():
        lines += [f"{name}:", ""]
        lines += [f"- {op}: {ms:.1f} ms ({100 * share:.0f}%)" for op, ms, share in rows]
        lines.append("")
    return lines


def render_markdown(result: dict) -> str:
    lines = _header(result) + _inference_table(result)
    if result.get("train"):
        lines += _train_section(result)
    if result.get("accuracy"):
        lines += _accuracy_section(result)
    lines += _targets_section(result)
    if result.get("profile"):
        lines += _profile_section(result)
    return "\n".join(lines) + "\n"


def write_results(result: dict, out: str | Path) -> tuple[Path, Path]:
    """`out`.md (tables) and `out`.json (everything, every timed run)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md, js = out.with_suffix(".md"), out.with_suffix(".json")
    md.write_text(render_markdown(result) + result.get("notes", ""))
    js.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return md, js
