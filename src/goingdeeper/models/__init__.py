"""Model families; importing this package registers every model.

The import order is the registration order, and so the order of `goingdeeper models`: the
line as it grew, paper by paper.
"""
# isort: skip_file

from . import lenet, alexnet, nin, vgg, googlenet, bn_inception, resnet, densenet, xception, senet  # noqa: F401
from .base import Classifier
from .googlenet import GoogLeNet, GoogLeNetOutputs, googlenet_loss

__all__ = ["Classifier", "GoogLeNet", "GoogLeNetOutputs", "googlenet_loss"]
