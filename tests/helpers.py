"""Helpers the test modules share (imported as `helpers`: pytest puts this folder on the path)."""

from __future__ import annotations

import torch
from torch import nn

import goingdeeper as gd


def on_meta(name: str, **kwargs) -> nn.Module:
    """A registered model without storage, in eval mode: its structure, shapes and counts are
    there, built in a blink (VGG's 100 M-weight fc6 included), and no random numbers are drawn."""
    with torch.random.fork_rng(), torch.device("meta"):
        return gd.create_model(name, **kwargs).eval()
