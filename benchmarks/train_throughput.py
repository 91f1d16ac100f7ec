"""Training throughput at 224x224, batch 32, aux heads on: our `googlenet` and
`googlenet_torchvision` against torchvision's `googlenet`, measured in one run.

Each model runs in every configuration (contiguous / channels-last x fp32 / bf16 autocast)
and is reported in its fastest; the figure is the median of several timed steps after warm-up.

    python benchmarks/train_throughput.py [--repeats 5] [--bf16-repeats 2] [--batch 32]
        [--profile 2]

Writes benchmarks/results/train_throughput.{md,json}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from functools import cache
from pathlib import Path

import torch
import torchvision

import goingdeeper as gd
from goingdeeper.analysis import training_step_macs
from goingdeeper.inference import fuse_inception_1x1, sgemm_gmacs
from goingdeeper.models import Classifier, GoogLeNetOutputs
from goingdeeper.models.base import Fusable
from goingdeeper.models.googlenet import AUX_WEIGHT
from goingdeeper.train import TrainStep

RESULTS = Path(__file__).parent / "results"
CONVOLUTION_OPS = {"aten::mkldnn_convolution", "aten::convolution_backward"}


def build(name: str, **kwargs) -> torch.nn.Module:
    """A model by name; "+fused" stores each Inception module's 1x1 convolutions as one
    (`fuse_inception_1x1`, exact); "+unfused" turns off the fusion an Inception module does
    in its training forward (`Inception.fused`), so that each 1x1 runs on its own; keyword
    arguments go to our models' constructors."""
    if name == "torchvision googlenet":
        return torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    base, _, option = name.partition("+")
    model = gd.create_model(base, **kwargs)
    if option == "unfused":
        for module in model.modules():
            if isinstance(module, Fusable):
                module.fused = False
    return fuse_inception_1x1(model) if option == "fused" else model


class TorchvisionRecord(Classifier):
    """torchvision's googlenet returning our training record (its aux outputs reordered), so
    that `TrainStep` computes the same loss, main + 0.3 x aux, for both models."""

    aux_weight = AUX_WEIGHT

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        if not self.training:
            return out
        return GoogLeNetOutputs(out.logits, out.aux_logits1, out.aux_logits2)


def time_steps(
    name: str, channels_last: bool, bf16: bool, batch: int, repeats: int, profile: bool = False
) -> list[float] | list[dict]:
    """Seconds per training step after one warm-up step; with `profile`, instead, where the
    time of `repeats` steps goes: self CPU time per operator, largest first."""
    torch.manual_seed(0)
    model = build(name)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step = TrainStep(TorchvisionRecord(model) if name.startswith("torchvision") else model)
    step.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 224, 224)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,))
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def one_step() -> None:
        with ctx():
            out = step(x, y)
        loss = out[0] if isinstance(out, tuple) else out
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    one_step()  # warm-up
    if profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                one_step()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)
        return [
            {
                "op": e.key,
                "calls_per_step": e.count / repeats,
                "ms_per_step": e.self_cpu_time_total / 1000 / repeats,
                "share": e.self_cpu_time_total / total,
            }
            for e in ranked
        ]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        one_step()
        times.append(time.perf_counter() - start)
    return times


@cache
def step_macs(name: str) -> dict[str, int]:
    """Multiply-adds per image of one training step of the model `name` (aux heads on)."""
    return training_step_macs(build(name), 224)


def profile_section(
    names: list[str], batch: int, steps: int, peak: float, top: int = 10
) -> tuple[list, str]:
    """Each model's operators in channels-last fp32 (the target's setting without bf16, which
    this CPU only emulates) and torchvision's also contiguous; then the bound: each model's
    step with its convolutions at the fp32 matrix-product ceiling `peak` (GMAC/s) and the rest
    as measured, against torchvision's measured step."""
    tv = "torchvision googlenet"
    settings = [(tv, True)] + [(name, True) for name in names] + [(tv, False)]
    profiles, lines = [], []
    for name, channels_last in settings:
        ops = time_steps(name, channels_last, False, batch, steps, profile=True)
        layout = "channels-last" if channels_last else "contiguous"
        step_ms = sum(o["ms_per_step"] for o in ops)
        conv_ms = sum(o["ms_per_step"] for o in ops if o["op"] in CONVOLUTION_OPS)
        conv_macs = batch * step_macs(name)["convolution"]
        profiles.append(
            {
                "model": name,
                "channels_last": channels_last,
                "step_ms": step_ms,
                "convolution_ms": conv_ms,
                "convolution_gmacs_per_s": conv_macs / conv_ms / 1e6,
                "step_ms_at_ceiling": step_ms - conv_ms + conv_macs / peak / 1e6,
                "ops": ops[:top],
            }
        )
        lines += [
            "",
            f"`{name}`, {layout} fp32, self CPU time per training step ({steps} steps "
            "profiled; the profiler's own overhead included):",
            "",
            "| operator | calls/step | ms/step | share |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{o['op']}` | {o['calls_per_step']:.0f} | {o['ms_per_step']:.0f} | "
            f"{o['share']:.1%} |"
            for o in ops[:top]
        ]
    reference = profiles[0]["step_ms"]  # torchvision, channels-last
    lines += [
        "",
        f"Bound, channels-last fp32: each step as profiled, then with its convolutions "
        f"(forward and backward) run at the fp32 matrix-product ceiling, {peak:.1f} GMAC/s, and "
        "every other operator as measured; the ratio is torchvision's profiled step over it.",
        "",
        "| model | step ms | convolutions ms | convolution GMAC/s (of ceiling) | step ms with "
        "convolutions at the ceiling | best ratio vs torchvision |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| `{p['model']}` | {p['step_ms']:.0f} | {p['convolution_ms']:.0f} | "
        f"{p['convolution_gmacs_per_s']:.1f} ({p['convolution_gmacs_per_s'] / peak:.0%}) | "
        f"{p['step_ms_at_ceiling']:.0f} | {reference / p['step_ms_at_ceiling']:.2f}x |"
        for p in profiles
        if p["channels_last"]
    ]
    return profiles, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--models",
        default=(
            "torchvision googlenet,googlenet,googlenet_torchvision+unfused,"
            "googlenet_torchvision,googlenet_torchvision+fused"
        ),
    )
    parser.add_argument(
        "--bf16-repeats", type=int, default=2, help="bf16 autocast has no native support here"
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="STEPS", help="also profile STEPS steps"
    )
    args = parser.parse_args()
    peak = sgemm_gmacs(torch.get_num_threads())
    macs = {name: step_macs(name)["total"] for name in args.models.split(",")}
    rows = []
    for name in args.models.split(","):
        best = None
        for channels_last in (False, True):
            for bf16 in (False, True):
                repeats = args.bf16_repeats if bf16 else args.repeats
                times = time_steps(name, channels_last, bf16, args.batch, repeats)
                ips = args.batch / statistics.median(times)
                rows.append(
                    {
                        "model": name,
                        "channels_last": channels_last,
                        "bf16": bf16,
                        "images_per_s": ips,
                        "median_step_s": statistics.median(times),
                        "gmacs_per_s": ips * macs[name] / 1e9,
                    }
                )
                if best is None or ips > best["images_per_s"]:
                    best = rows[-1]
        best["fastest"] = True
    ref = max(
        r["images_per_s"]
        for r in rows
        if r["model"] == "torchvision googlenet" and r.get("fastest")
    )
    same = {
        (r["channels_last"], r["bf16"]): r["images_per_s"]
        for r in rows
        if r["model"] == "torchvision googlenet"
    }
    for r in rows:
        r["ratio_vs_torchvision_fastest"] = r["images_per_s"] / ref
        setting = (r["channels_last"], r["bf16"])
        if setting in same:
            r["ratio_vs_torchvision_same_settings"] = r["images_per_s"] / same[setting]
    RESULTS.mkdir(exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "repeats": args.repeats,
        "bf16_repeats": args.bf16_repeats,
        "sgemm_gmacs": peak,
        "step_macs_per_image": macs,
    }
    lines = [
        f"Training step at 224x224, batch {args.batch}, aux heads on (loss main + 0.3 aux), "
        f"SGD; median of {args.repeats} steps ({args.bf16_repeats} with bf16 autocast) after a "
        f"warm-up step; torch {torch.__version__}, "
        f"{meta['threads']} threads. A 4096x4096 fp32 matrix product runs at {peak:.1f} G "
        "multiply-adds/s on these threads (the fp32 ceiling); GMAC/s = images/s x the step's "
        "multiply-adds per image (forward with aux heads, weight and input gradients: "
        + ", ".join(f"{name} {m / 1e9:.2f} G" for name, m in macs.items())
        + ").",
        "",
        "| model | channels-last | bf16 autocast | images/s | GMAC/s (of ceiling) "
        "| vs torchvision (fastest) | vs torchvision (same settings) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mark = " **(fastest)**" if r.get("fastest") else ""
        same_ratio = r.get("ratio_vs_torchvision_same_settings")
        lines.append(
            f"| {r['model']}{mark} | {r['channels_last']} | {r['bf16']} | "
            f"{r['images_per_s']:.1f} | {r['gmacs_per_s']:.1f} ({r['gmacs_per_s'] / peak:.0%}) "
            f"| {r['ratio_vs_torchvision_fastest']:.2f}x | "
            + (f"{same_ratio:.2f}x |" if same_ratio is not None else "- |")
        )
    if args.profile:
        profiles, text = profile_section(
            [m for m in args.models.split(",") if not m.startswith("torchvision")],
            args.batch,
            args.profile,
            peak,
        )
        meta["profiles"] = profiles
        lines.append(text)
    (RESULTS / "train_throughput.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2)
    )
    (RESULTS / "train_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
