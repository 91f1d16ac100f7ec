"""Timing a forward pass, and this machine's arithmetic ceiling to read the timings against.

`time_call` is what every speed figure of the package is made with (`goingdeeper bench`, the
benchmarks in `benchmarks/`): untimed warm-up calls, then timed calls each ended by a device
synchronisation, the median reported.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def time_call(
    run: Callable[[], object],
    *,
    repeats: int = 5,
    warmup: int = 2,
    sync: Callable[[], None] | None = None,
) -> dict:
    """Call `run()` `warmup` times untimed, then `repeats` times timed; returns the median
    seconds, every timing, and the time of the first call (compilation, kernel selection)."""
    sync = sync or (lambda: None)
    start = time.perf_counter()
    run()
    sync()
    first = time.perf_counter() - start
    for _ in range(max(0, warmup - 1)):
        run()
    sync()
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "times_s": times, "first_call_s": first}


def sgemm_gmacs(threads: int, size: int = 4096, repeats: int = 5) -> float:
    """This machine's fp32 arithmetic ceiling as PyTorch reaches it: multiply-adds per second
    (in billions) of a `size`-square fp32 matrix product on `threads` threads, the median of
    `repeats` after a warm-up product. Convolutions at this rate have no arithmetic left to
    gain; only doing less of it (lower precision, fewer multiply-adds) goes faster."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=g)
        b = torch.randn(size, size, generator=g)
        timing = time_call(lambda: torch.mm(a, b), repeats=repeats, warmup=1)
        return size**3 / timing["median_s"] / 1e9
    finally:
        torch.set_num_threads(previous)


def machine() -> dict:
    """The CPU, its cores, the GPU if any, the load average, and the versions that matter."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"torch": torch.__version__}
    for name in ("torchvision", "onnxruntime", "openvino", "nncf"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - absent or broken: no version to report
            versions[name] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average": os.getloadavg(),
        "versions": versions,
    }
