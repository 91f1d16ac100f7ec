"""The package as a dependency: `pip install` beside a user's own PyTorch keeps it.

pyproject.toml states ranges (torch>=2.11, torchvision>=0.26); constraints.txt pins what make
and CI install. A fresh virtual environment gets another supported pair first (torch 2.13.0,
the CPU build this machine keeps on disk, with torchvision 0.28 from the package index), then
this project: pip must leave that pair in place. (Importing torchvision 0.28's index build
beside that CPU torch fails on this machine, 'operator torchvision::nms does not exist': a
mismatch of the two builds, not of this package; the test checks what pip installs.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _pip(venv: Path, *args: str) -> None:
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _versions(venv: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m; "
        "print(*(m.version(p) for p in ('torch', 'torchvision', 'goingdeeper')))"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    torch, torchvision, ours = out.stdout.split()
    return {"torch": torch, "torchvision": torchvision, "goingdeeper": ours}


@pytest.mark.slow
def test_pip_install_keeps_the_users_supported_torch(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    _pip(venv, "torch==2.13.0", "torchvision==0.28.*")
    _pip(venv, str(REPO))
    versions = _versions(venv)
    assert versions["torch"].startswith("2.13.0"), versions
    assert versions["torchvision"].startswith("0.28."), versions
    assert versions["goingdeeper"] == "0.1.0"
