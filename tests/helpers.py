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


def randomise_batchnorm(model: nn.Module) -> nn.Module:
    """Every BatchNorm's statistics and affine made random (a fresh one is an identity), so that
    no mapping error in an import can hide behind it; the model in eval mode."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()
