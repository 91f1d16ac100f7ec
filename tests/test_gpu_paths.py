"""The paths a GPU run takes, checked on the CPU: the deferred libraries missing, ..."""

from __future__ import annotations

import sys

import pytest
import torch

from goingdeeper.data import digits
from goingdeeper.data.shards import write_shards
from goingdeeper.errors import DataError, VisualizeError
from goingdeeper.microscope import grad_cam, integrated_gradients


def test_a_missing_webdataset_or_captum_is_one_line_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "webdataset", None)
    monkeypatch.setitem(sys.modules, "captum", None)
    with pytest.raises(DataError, match=r"webdataset package; install it \(pip install"):
        write_shards({"train": digits("train")}, tmp_path / "out", 40_000)
    assert not (tmp_path / "out").exists()  # refused before the folder was made
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3))
    x = torch.zeros(3, 8, 8)
    with pytest.raises(VisualizeError, match=r"captum package; install it"):
        grad_cam(net, x, "0", [0])
    with pytest.raises(VisualizeError, match=r"captum package; install it"):
        integrated_gradients(net, x, 0)
