"""Feature visualisation by optimisation: the picture that drives a unit hardest.

Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017. Gradient ascent on the
pixels alone gives high-frequency noise that a network also responds to; two things make the
pictures readable, as in OpenAI Microscope:
- a *decorrelated* image parameterisation: the optimiser moves the coefficients of a 2-D
  Fourier basis, each frequency scaled by 1 / frequency (natural images have a 1/f amplitude
  spectrum, so a step changes every frequency alike, not mostly the high ones), and the colour
  is mixed from decorrelated components by the square root of the RGB covariance of natural
  photos (`COLOUR_SQRT`), then squashed into 0..1 by a sigmoid;
- *transformation robustness*: each step sees the picture padded, jittered, scaled and rotated
  a little at random (section "The Enemy of Feature Visualization"), so only features that
  survive small moves can drive the unit.

The objective is the unit *before* its ReLU where the layer ends in one (a dead ReLU passes no
gradient; `pre_relu_source`). Random draws come from one `torch.Generator`: a seed gives the
same picture on the same device.

Cost: every step is a forward and backward pass up to the unit's layer for the whole batch. On
a 2-core CPU, 8 channels of inception4d at 96 px and 96 steps (one batch) take about a minute;
the defaults (128 px, 256 steps) are meant for a GPU, where the model and the picture go
together (`model.to("cuda")`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ..analysis.trace import Concat, Step, evaluating, record
from ..errors import VisualizeError
from ..preprocess import Preprocessing
from ..visualize.deconv import check_channels

# Square root of the RGB covariance of photos (pixels 0..1), columns = decorrelated components,
# from `colour_sqrt` over the 1,000 ImageNet photos of the shared sample (every 8th pixel of each
# center crop); a test recomputes it from the photos.
COLOUR_SQRT = torch.tensor(
    [
        [0.2491, 0.0984, 0.0255],
        [0.2563, -0.0034, -0.0540],
        [0.2561, -0.0922, 0.0292],
    ]
)


def colour_sqrt(pixels: np.ndarray) -> np.ndarray:
    """3 x 3 square root of the covariance of RGB pixels (... x 3, 0..1), columns scaled by
    the root of their eigenvalue, signs fixed so the first row is non-negative."""
    cov = np.cov(pixels.reshape(-1, 3).T)
    values, vectors = np.linalg.eigh(cov)
    order = values.argsort()[::-1]
    vectors = vectors[:, order] * np.sign(vectors[0, order])
    return vectors * np.sqrt(np.maximum(values[order], 0))


# Scale of the Fourier coefficients against the optimiser's step: at 4 the picture reaches full
# contrast within the hundred or so steps a CPU affords (at 1 it stays washed out and grey, the
# unit's value about two thirds as high after 96 steps on inception4a).
SPECTRUM_GAIN = 4.0


@dataclass(frozen=True)
class Robustness:
    """The random moves of each step (Feature Visualization, "Transformation robustness")."""

    pad: int = 12  # px of grey border, so jitter and rotation do not show the edge
    jitter: int = 8  # px, before scaling and rotating
    scales: tuple[float, float] = (0.9, 1.1)
    degrees: float = 10.0  # rotation drawn from -degrees..degrees
    fine_jitter: int = 4  # px, after


@dataclass(frozen=True)
class Unit:
    """What to maximise: a channel's mean, one neuron (the channel at the centre of the map),
    or a class logit (layer "logits")."""

    layer: str
    index: int
    kind: str = "channel"  # "channel", "neuron" or "logit"


class FourierImage(nn.Module):
    """N pictures of size x size as scaled Fourier coefficients and decorrelated colour."""

    def __init__(self, n: int, size: int, generator: torch.Generator, decay: float = 1.0):
        super().__init__()
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        freq = torch.sqrt(fx * fx + fy * fy).clamp(min=1.0 / size)
        self.register_buffer("scale", SPECTRUM_GAIN * (1.0 / freq**decay) / size)
        shape = (n, 3, size, size // 2 + 1, 2)
        self.spectrum = nn.Parameter(0.01 * torch.randn(shape, generator=generator))
        self.size = size

    def forward(self) -> Tensor:
        """N x 3 x size x size RGB in 0..1."""
        coeffs = torch.view_as_complex(self.spectrum) * self.scale
        planes = torch.fft.irfft2(coeffs, s=(self.size, self.size), norm="ortho")
        mix = COLOUR_SQRT / COLOUR_SQRT.norm(dim=0).max()  # the strongest component at unit scale
        colour = torch.einsum("ij,njhw->nihw", mix.to(planes.device), planes)
        return torch.sigmoid(colour * 4.0)


def network_input(rgb: Tensor, prep: Preprocessing) -> Tensor:
    """N x 3 x H x W RGB in 0..1 to the network's input, differentiably (as `Preprocessing.
    normalize` does for 0..255 pixels)."""
    if prep.channels != 3:
        raise VisualizeError("feature visualisation needs a network with three input planes")
    x = rgb * (255.0 * prep.scale)
    if prep.channel_order == "BGR":
        x = x.flip(1)
    mean = torch.tensor(prep.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def transform(rgb: Tensor, moves: Robustness, generator: torch.Generator) -> Tensor:
    """One random draw of pad, jitter, scale, rotation and jitter, the same for the batch."""

    def draw(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    x = F.pad(rgb, [moves.pad] * 4, value=0.5)
    size = x.shape[-1]
    dx, dy = (draw(-moves.jitter, moves.jitter) * 2 / size for _ in range(2))
    scale = draw(*moves.scales)
    angle = math.radians(draw(-moves.degrees, moves.degrees))
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    fx, fy = (draw(-moves.fine_jitter, moves.fine_jitter) * 2 / size for _ in range(2))
    theta = torch.tensor([[cos, -sin, dx + fx], [sin, cos, dy + fy]], device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def pre_relu_sources(
    model: nn.Module, layer: str, channels: list[int], size: int
) -> list[tuple[str, int]]:
    """For each of `layer`'s `channels`, the module whose output holds it before the ReLU that
    ends the layer, and its index there: the last convolution (or BatchNorm) of the layer's
    chain, or of the branch of an Inception module the channel comes from. The layer itself
    when its last step is not a ReLU after such a module."""
    device = next(model.parameters()).device
    trace = record(model, torch.zeros(1, 3, size, size, device=device), keep=[layer])
    check_channels(trace, layer, channels)
    last = next(
        (it for it in reversed(trace.items) if it.name == layer or it.name.startswith(layer + ".")),
        None,
    )
    chain = [it for it in trace.items if isinstance(it, Step) and it.name.startswith(layer)]
    out = []
    for channel in channels:
        steps, index = chain, channel
        if isinstance(last, Concat):
            ends = np.cumsum(last.widths)
            branch = int((ends <= channel).sum())
            steps, index = last.branches[branch], channel - int(ends[branch] - last.widths[branch])
        ends_in_relu = len(steps) >= 2 and isinstance(steps[-1].module, nn.ReLU)
        if ends_in_relu and isinstance(steps[-2].module, nn.Conv2d | nn.BatchNorm2d):
            out.append((steps[-2].name, index))
        else:
            out.append((layer, channel))
    return out


class _Enough(Exception):
    """Raised by the hook once the objective's layer has run: the rest of the net is not needed."""


def _objective(model: nn.Module, units: list[Unit], size: int) -> Callable[[Tensor], Tensor]:
    """x (N x 3 x H x W, one row per unit) -> the N unit values to maximise."""
    if all(u.kind == "logit" for u in units):
        rows = torch.arange(len(units))
        index = torch.tensor([u.index for u in units])
        return lambda x: model(x)[rows, index]
    layers = {u.layer for u in units}
    if len(layers) != 1 or any(u.kind == "logit" for u in units):
        raise VisualizeError("units optimised together must share one layer and kind")
    sources = pre_relu_sources(model, units[0].layer, [u.index for u in units], size)
    modules = dict(model.named_modules())
    names = {name for name, _ in sources}
    seen: dict[str, Tensor] = {}

    def hook(name: str):
        def keep(_m, _inp, out):
            seen[name] = out.clone()  # the ReLU that follows works in place
            if names <= seen.keys():
                raise _Enough

        return keep

    def values(x: Tensor) -> Tensor:
        seen.clear()
        handles = [modules[name].register_forward_hook(hook(name)) for name in names]
        try:
            model(x)
        except _Enough:
            pass
        finally:
            for h in handles:
                h.remove()
        out = []
        for row, ((name, channel), unit) in enumerate(zip(sources, units, strict=True)):
            fmap = seen[name][row, channel]
            if unit.kind == "neuron":
                out.append(fmap[fmap.shape[0] // 2, fmap.shape[1] // 2])
            else:
                out.append(fmap.mean())
        return torch.stack(out)

    return values


def visualize_units(
    model: nn.Module,
    prep: Preprocessing,
    units: list[Unit],
    *,
    size: int = 128,
    steps: int = 256,
    lr: float = 0.05,
    seed: int = 0,
    moves: Robustness = Robustness(),
) -> list[Image.Image]:
    """One picture per unit (all optimised together as one batch), `size` x `size` pixels."""
    if not units:
        return []
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    image = FourierImage(len(units), size, generator).to(device)
    optimiser = torch.optim.Adam(image.parameters(), lr=lr)
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.requires_grad_(False)  # gradients for the pixels only
    try:
        with evaluating(model):
            objective = _objective(model, units, size + 2 * moves.pad)
            for _ in range(steps):
                optimiser.zero_grad()
                x = network_input(transform(image(), moves, generator), prep)
                loss = -objective(x).sum()
                loss.backward()
                optimiser.step()
    finally:
        for p in trainable:
            p.requires_grad_(True)
    with torch.no_grad():
        pixels = (image().permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy()
    return [Image.fromarray(p, "RGB") for p in pixels]


def unit_value(model: nn.Module, prep: Preprocessing, unit: Unit, picture: Image.Image) -> float:
    """The objective's value of `unit` on a picture (no transformation)."""
    device = next(model.parameters()).device
    rgb = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)
    x = network_input(rgb.unsqueeze(0).to(device), prep)
    with evaluating(model), torch.no_grad():
        return float(_objective(model, [unit], picture.size[0])(x)[0])
