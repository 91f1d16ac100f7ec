"""Shared fixtures. Tests that need ../shared/data take the `shared_data` fixture: they skip
on a developer machine without it, and fail in CI (CI set, or GOINGDEEPER_REQUIRE_DATA=1),
where a skipped test would prove nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GOINGDEEPER_DATA", REPO.parent / "shared" / "data"))


def _data_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("GOINGDEEPER_REQUIRE_DATA") == "1"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (DATA / "README.md").is_file():
        message = f"shared data not found at {DATA} (set GOINGDEEPER_DATA)"
        if _data_required():
            pytest.fail(message)
        pytest.skip(message)
    return DATA


def need(reason: str):
    """Fail where the data and tools are required (CI), else skip with `reason`."""
    if _data_required():
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    """Headless chromium (the system's: Playwright's own download needs the internet)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need("playwright is not installed (pip install -e '.[dev]')")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        need("no chromium on PATH (apt-get install chromium; `make test` does)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield chromium
        chromium.close()


if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker: -n 2 fills both cores
    torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked slow first (real photos, up to minutes each), the rest in their
    order: under `pytest -n 2` the other worker takes the short ones meanwhile, instead of one
    worker finishing a long test alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of small convolutions: on a busy 2-core machine (or
    under `pytest -n 2`) a second OpenMP thread waits at every barrier for a core it does not
    get, and runs several times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
