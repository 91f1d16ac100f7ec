"""VGG's dense evaluation (Simonyan & Zisserman 2014, section 3.2): the whole image, rescaled
to shorter side Q, through the fully convolutional form of the network, and the class score
map it gives averaged spatially. The scales Q follow the scale the weights were trained at
(sections 4.1-4.2, `dense_scales`).

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
# Section 4.2: a model trained at a fixed S is tested at Q = {S - 32, S, S + 32}
FIXED_SCALE_STEP = 32


def dense_scales(
    training_scale: Sequence[int], crop: int = 224, *, multi: bool = True
) -> tuple[int, ...]:
    """The test scales Q of weights trained at `training_scale` ([S], or [S_min, S_max] for
    scale jittering; `WeightsCard.training_scale`), for `crop` x `crop` training crops.

    `multi` (section 4.2, multi-scale evaluation): Q = {S - 32, S, S + 32} for a fixed S, and
    {S_min, (S_min + S_max) / 2, S_max} for a jittered one. Otherwise section 4.1 (single-scale
    evaluation): Q = S, or (S_min + S_max) / 2. The 32 is for 224-pixel crops and is scaled
    with the crop. Unknown (`[]`): section 4.2's {256, 384, 512}, scaled with the crop.
    """
    if not training_scale:
        scales = tuple(round(q * crop / 224) for q in DENSE_SCALES)
        return scales if multi else scales[1:2]
    low, high = training_scale[0], training_scale[-1]
    if low == high:
        step = round(FIXED_SCALE_STEP * crop / 224)
        return (low - step, low, low + step) if multi else (low,)
    middle = round((low + high) / 2)
    return (low, middle, high) if multi else (middle,)


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

    Section 3.2: "the class score map is spatially averaged (sum-pooled)", and the posteriors
    of the image and of its horizontal flip are averaged; section 4.2 averages them over the
    scales Q as well. Averaging over these rows is left to the caller (`evaluate` does softmax
    then mean), so the rows are raw scores. Order: for each scale, the image then (with
    `flip`) its mirror.
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
