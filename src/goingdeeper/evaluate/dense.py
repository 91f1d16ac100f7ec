"""VGG's dense evaluation (Simonyan & Zisserman 2014, section 3.2): the whole image, rescaled
to shorter side Q, through the fully convolutional form of the network, and the class score
map it gives averaged spatially.

The fully convolutional form is the model's to give (`model.fully_convolutional()`; VGG's has
fc6 as a 7x7 convolution and fc7, fc8 as 1x1 convolutions). A model that has none is refused:
the plain network on the whole image is not dense evaluation (VGG's adaptive pool squeezes
every input back to 7x7 before fc6, so no score map is made).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torch import Tensor, nn

from ..errors import EvalError
from ..models.vgg import average_score_map
from ..preprocess import Preprocessing

# Section 4.2: with scale jittering S in [256, 512], test scales Q = {256, 384, 512}
DENSE_SCALES = (256, 384, 512)


def dense_form(model: nn.Module, name: str = "") -> nn.Module:
    """The fully convolutional network that dense evaluation runs, as the model declares it;
    an `EvalError` for a model that declares none."""
    make = getattr(model, "fully_convolutional", None)
    if make is None:
        raise EvalError(
            f"{name or type(model).__name__} has no fully convolutional form, so no dense "
            "evaluation (VGG section 3.2: fc layers as convolutions); use the crop views"
        )
    return make()


def dense_scores(
    net: nn.Module,
    image: Image.Image,
    pre: Preprocessing,
    scales: Sequence[int] = DENSE_SCALES,
    *,
    flip: bool = True,
) -> Tensor:
    """One class-score vector per (scale, mirror), len(scales) * 2 x classes, from `net`, a
    fully convolutional network (`dense_form(model)`).

    Section 3.2: "the class score map is spatially averaged (sum-pooled)"; section 4.2
    averages the posteriors over scales Q and over the horizontally flipped images. Averaging
    over these rows is left to the caller (`evaluate` does softmax then mean), so the rows are
    raw scores. Order: for each scale, the image then (with `flip`) its mirror.
    """
    device = next(net.parameters()).device
    rows = []
    for q in scales:
        x = pre.to_tensor(pre.resize_shorter(image, q)).unsqueeze(0)
        if flip:
            x = torch.cat([x, x.flip(-1)])
        with torch.inference_mode():
            scores = net(x.to(device))
        if scores.ndim != 4:
            raise EvalError(
                f"dense evaluation needs a class score map N x C x h x w, got shape "
                f"{tuple(scores.shape)}: give the fully convolutional form, dense_form(model)"
            )
        rows.append(average_score_map(scores))
    return torch.cat(rows)
