"""Model families; importing this package registers every model.

The import order is the registration order, and so the order of `goingdeeper models`: the
line as it grew, paper by paper.
"""
# isort: skip_file

from . import lenet, alexnet, nin, vgg, googlenet, bn_inception, inception_v3  # noqa: F401
from . import inception_v4, resnet, densenet, xception, senet  # noqa: F401
from .base import Classifier, TrainingLoss, unfused
from .googlenet import GoogLeNet, GoogLeNetOutputs

__all__ = ["Classifier", "GoogLeNet", "GoogLeNetOutputs", "TrainingLoss", "unfused"]
