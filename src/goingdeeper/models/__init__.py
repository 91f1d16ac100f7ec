"""Model families; importing this package registers every model."""

from . import alexnet, densenet, googlenet, lenet, resnet, senet, vgg, xception  # noqa: F401
from .googlenet import GoogLeNet, GoogLeNetOutputs, googlenet_loss

__all__ = ["GoogLeNet", "GoogLeNetOutputs", "googlenet_loss"]
