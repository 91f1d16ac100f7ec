"""Which pixels a class score depends on: Grad-CAM and integrated gradients, through captum.

- Grad-CAM (Selvaraju et al. 2017, arXiv:1610.02391): a layer's feature maps weighted by the
  spatial mean of the class score's gradient on each map, summed over channels, ReLU, scaled up
  to the input. Coarse (the layer's resolution) and class-discriminative.
- Integrated gradients (Sundararajan et al. 2017, arXiv:1703.01365): the gradient averaged
  along the straight path from a baseline to the image, times (image - baseline); the
  attributions add up to score(image) - score(baseline). The baseline here is the all-zero
  network input, i.e. the preprocessing's mean pixel: a flat grey picture.

Both run on any registered model and any layer that returns feature maps; captum
(`captum.attr`) does the work, the model is only watched through hooks. The ZFNet views
(`visualize.deconv`, `visualize.occlusion`) are tested against captum's `Deconvolution` and
`Occlusion`.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ..analysis.trace import evaluating, layer_names, unknown_layer
from ..errors import VisualizeError
from ..visualize import pictures


def _captum_attr():
    """captum's `attr` module, imported when an attribution is asked for, or a one-line
    `VisualizeError` saying how to install it."""
    try:
        from captum import attr
    except ImportError:
        raise VisualizeError(
            "Grad-CAM and integrated gradients need the captum package; install it "
            "(pip install captum)"
        ) from None
    return attr


def find_layer(model: nn.Module, layer: str) -> nn.Module:
    """The module named `layer`; an `UnknownLayerError` listing the layers when there is none."""
    modules = dict(model.named_modules())
    if not layer or layer not in modules:
        raise unknown_layer(layer, layer_names(model))
    return modules[layer]


def _check_targets(logits: Tensor, targets: list[int]) -> None:
    bad = [t for t in targets if not 0 <= t < logits.shape[1]]
    if bad:
        raise VisualizeError(f"class {bad[0]} is not one of the {logits.shape[1]} classes")


def grad_cam(model: nn.Module, x: Tensor, layer: str, targets: list[int]) -> Tensor:
    """Grad-CAM of one image `x` (C x H x W) for each class in `targets`: T x H x W, >= 0,
    at `layer`'s resolution scaled up bilinearly to the image's."""
    attr = _captum_attr()
    module = find_layer(model, layer)
    device = next(model.parameters()).device
    batch = x.to(device).unsqueeze(0).expand(len(targets), *x.shape).contiguous()
    with evaluating(model):
        with torch.no_grad():
            _check_targets(model(batch[:1]), targets)
        cam = attr.LayerGradCam(model, module).attribute(
            batch, target=targets, relu_attributions=True
        )
    if cam.dim() != 4:
        raise VisualizeError(f"layer {layer!r} has no feature maps for Grad-CAM")
    up = attr.LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return up[:, 0].detach().clamp(min=0).cpu()


def integrated_gradients(model: nn.Module, x: Tensor, target: int, *, steps: int = 32) -> Tensor:
    """Integrated gradients of class `target` for one image `x` (C x H x W), from the mean-pixel
    (all-zero) baseline in `steps` steps: C x H x W."""
    ig = _captum_attr().IntegratedGradients(model)
    device = next(model.parameters()).device
    batch = x.to(device).unsqueeze(0)
    with evaluating(model):
        with torch.no_grad():
            _check_targets(model(batch), [target])
        found = ig.attribute(batch, baselines=torch.zeros_like(batch), target=target, n_steps=steps)
    return found[0].detach().cpu()


def heat_overlay(view: Image.Image, heat: Tensor | np.ndarray, alpha: float = 0.5) -> Image.Image:
    """A heat map (H x W, any range; 0 at its minimum) over the picture along viridis."""
    h = np.asarray(heat, dtype=np.float64)
    lo, hi = float(h.min()), float(h.max())
    scaled = (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)
    colour = pictures.image_of(pictures.colormap(scaled)).resize(view.size)
    return Image.blend(view.convert("RGB"), colour, alpha)


def saliency_picture(attr: Tensor, percentile: float = 99.0) -> Image.Image:
    """Integrated gradients as a picture: |attribution| summed over colour, bright = large,
    clipped at the `percentile` so a few pixels do not leave the rest black."""
    mag = attr.abs().sum(0).numpy()
    top = float(np.percentile(mag, percentile)) or 1.0
    grey = np.clip(mag / top, 0, 1)
    return pictures.image_of(np.round(grey * 255).astype(np.uint8))
