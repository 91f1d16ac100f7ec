"""Top-9 activations: for each channel of a layer, the nine strongest activations over a set of
images, each as its deconvnet reconstruction beside the image patch that produced it
(Zeiler & Fergus 2013, arXiv:1311.2901, section 4 "Feature Visualization", Fig. 2).

Two passes over the images. The first keeps, per channel, the nine images where the channel is
strongest (one activation per image, its spatial maximum, so the nine come from nine images, as
in Fig. 2). The second runs only those images again, recording their pool switches, and
projects each of the nine activations back to pixels (`deconv.project`). The patch is the part
of the activation's receptive field (from the layer arithmetic, `deconv.receptive_field`) that
holds most of its reconstruction's energy (`energy_box`); the reconstruction is cut to the same
box, so the two pictures of a pair line up pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from ..analysis.trace import Trace, record
from ..data import ImageDataset, discover, spread
from ..errors import ImageError, VisualizeError
from ..preprocess import Preprocessing
from . import pictures
from .deconv import check_channels, project, receptive_field

# Reconstructions are shown with zero at grey and this percentile of |values| at black/white:
# a few strong pixels would otherwise leave the rest of the picture flat grey.
RECON_PERCENTILE = 98.0

# progress(iterable, description) -> the same items (the CLI passes a tqdm bar; default: none)
Progress = Callable[[Iterable[Any], str], Iterable[Any]]


def no_progress(items: Iterable[Any], desc: str) -> Iterable[Any]:
    return items


def images_to_rank(data: str | Path, limit: int | None = None) -> ImageDataset:
    """The images `data` holds, as `discover` finds them with labels left aside: every image
    under a folder (at any depth, sorted by path), or the split a model is scored on of any
    other source (shards, an archive, ...).

    With `limit`, that many spread evenly over them: a set sorted by class (as ImageNet's are)
    is then sampled across all classes, not only the first ones.
    """
    if limit is not None and limit < 1:
        raise VisualizeError(f"--limit must be at least 1, got {limit}")
    source = discover(data, unlabelled=True)
    return spread_sample(source.split(source.scored_split()), limit)


def spread_sample(images: ImageDataset, limit: int | None) -> ImageDataset:
    """`limit` of `images` spread evenly over them (all of them for None or more)."""
    if limit is None or limit >= len(images):
        return images
    return images.subset(spread(limit, len(images)))


def network_view(prep: Preprocessing, img: Image.Image) -> Image.Image:
    """The RGB picture the network sees: the preprocessing's resize and crop, no normalisation."""
    return prep.crop_image(img)


def _views(
    images: ImageDataset,
    indices: Sequence[int],
    prep: Preprocessing,
    batch_size: int,
    progress: Progress,
    desc: str,
    skipped: list[str],
) -> Iterator[list[tuple[int, Image.Image]]]:
    """Batches of (index into `images`, network view) of the images at `indices`; the names
    of those that cannot be decoded go to `skipped`."""
    batch: list[tuple[int, Image.Image]] = []
    for i in progress(indices, desc):
        try:
            view = network_view(prep, images.decode(i))
        except ImageError:
            skipped.append(images.describe(i))
            continue
        batch.append((i, view))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# --- pass 1: the k strongest images per channel ----------------------------------------------


@dataclass
class Strongest:
    """Per channel, the k strongest activations seen so far (rows sorted, strongest first)."""

    values: Tensor  # k x C
    images: Tensor  # k x C, index of the image
    positions: Tensor  # k x C, y * width + x in the layer's output
    width: int  # the layer's output width


def merge_strongest(
    best: Strongest | None, fmap: Tensor, image_ids: Tensor, k: int = 9
) -> Strongest:
    """Fold a batch of maps (N x C x H x W) into the running top-k, one activation per image."""
    n, c, _, w = fmap.shape
    values, positions = fmap.flatten(2).max(dim=2)  # N x C: each image's strongest position
    images = image_ids.view(n, 1).expand(n, c)
    if best is not None:
        values = torch.cat([best.values, values])
        positions = torch.cat([best.positions, positions])
        images = torch.cat([best.images, images])
    top = values.topk(min(k, values.shape[0]), dim=0)
    return Strongest(top.values, images.gather(0, top.indices), positions.gather(0, top.indices), w)


def strongest_activations(
    model: nn.Module,
    prep: Preprocessing,
    images: ImageDataset,
    layers: Sequence[str],
    *,
    k: int = 9,
    batch_size: int = 16,
    progress: Progress = no_progress,
    skipped: list[str] | None = None,
) -> dict[str, Strongest]:
    """Pass 1: for each layer and channel, the k images where the channel is strongest."""
    skipped = [] if skipped is None else skipped
    best: dict[str, Strongest | None] = {layer: None for layer in layers}
    device = _device(model)
    everything = range(len(images))
    for batch in _views(images, everything, prep, batch_size, progress, "activations", skipped):
        x = torch.stack([prep.to_tensor(view) for _, view in batch]).to(device)
        trace = record(model, x, keep=layers)
        ids = torch.tensor([i for i, _ in batch])
        for layer in layers:
            check_channels(trace, layer, [])
            fmap = trace.outputs[layer].float().cpu()
            best[layer] = merge_strongest(best[layer], fmap, ids, k)
    if any(b is None for b in best.values()):
        raise VisualizeError("no readable images: nothing to rank")
    return {layer: b for layer, b in best.items() if b is not None}


# --- pass 2: reconstructions and patches -------------------------------------------------------


@dataclass
class Top9Entry:
    """One of a channel's strongest activations, as two pictures."""

    layer: str
    channel: int
    rank: int  # 0 = strongest
    value: float
    image: int  # its index in the images ranked
    name: str  # the image as messages name it (its file, or its place in an archive)
    position: tuple[int, int]  # (y, x) in the layer's output
    box: tuple[int, int, int, int]  # (top, left, bottom, right) in the network's input, clipped
    reconstruction: Image.Image  # the deconvnet projection, cut to `box`
    patch: Image.Image  # the image, cut to `box`


@dataclass
class Top9Result:
    entries: dict[str, dict[int, list[Top9Entry]]]  # layer -> channel -> strongest first
    images: int  # images ranked
    skipped: list[str] = field(default_factory=list)  # the images that could not be decoded


@dataclass
class _Job:
    layer: str
    channel: int
    rank: int
    value: float
    image: int
    position: tuple[int, int]


def _jobs(strongest: dict[str, Strongest], channels: Sequence[int]) -> dict[int, list[_Job]]:
    """Image index -> the activations to project in it (positive ones only)."""
    jobs: dict[int, list[_Job]] = {}
    for layer, best in strongest.items():
        for rank in range(best.values.shape[0]):
            for channel in channels:
                value = float(best.values[rank, channel])
                if value <= 0:  # a dead channel has nothing to show
                    continue
                pos = int(best.positions[rank, channel])
                image = int(best.images[rank, channel])
                job = _Job(layer, channel, rank, value, image, divmod(pos, best.width))
                jobs.setdefault(image, []).append(job)
    return jobs


def clip_box(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A (top, left, bottom, right) box clipped to an image of (height, width)."""
    top, left, bottom, right = box
    return max(top, 0), max(left, 0), min(bottom, size[0]), min(right, size[1])


def energy_box(
    recon: Tensor, within: tuple[int, int, int, int], *, tail: float = 0.05
) -> tuple[int, int, int, int]:
    """The square around most of a reconstruction's energy, inside the box `within`.

    The receptive field from the layer arithmetic grows fast (GoogLeNet's inception4d: 299
    pixels, more than the image) while the reconstruction concentrates in a much smaller part
    of it; cutting the patch to where its energy (squared values) lies, `tail` of it left out on
    each side of each axis, shows what the activation responds to, as ZFNet's patches do.
    """
    energy = recon.pow(2).sum(0)
    top, left, bottom, right = within
    box = []
    for axis in (1, 0):  # rows (sum over columns), then columns
        marginal = energy.sum(axis)
        total = float(marginal.sum())
        if total <= 0:
            return within
        cdf = marginal.cumsum(0) / total
        lo = int((cdf < tail).sum())
        hi = int((cdf < 1 - tail).sum()) + 1
        box.append((lo, hi))
    (y0, y1), (x0, x1) = box
    side = max(y1 - y0, x1 - x0)
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    y0, x0 = cy - side // 2, cx - side // 2
    box = max(y0, top), max(x0, left), min(y0 + side, bottom), min(x0 + side, right)
    return box if box[2] > box[0] and box[3] > box[1] else within


def _entries(
    trace: Trace,
    jobs: list[_Job],
    rows: dict[int, int],
    views: dict[int, Image.Image],
    images: ImageDataset,
    prep: Preprocessing,
) -> list[Top9Entry]:
    """Project one chunk of activations of one layer and cut their pictures."""
    layer = jobs[0].layer
    shape = trace.outputs[layer].shape
    signal = torch.zeros(len(jobs), *shape[1:], device=trace.outputs[layer].device)
    for m, job in enumerate(jobs):
        signal[m, job.channel, job.position[0], job.position[1]] = job.value
    row_index = torch.tensor([rows[job.image] for job in jobs], device=signal.device)
    with torch.no_grad():
        recons = project(trace, layer, signal, row_index).cpu()
    out = []
    for job, recon in zip(jobs, recons, strict=True):
        view = views[job.image]
        rf = receptive_field(trace, layer, job.position, job.channel)
        box = energy_box(recon, clip_box(rf, (view.size[1], view.size[0])))
        top, left, bottom, right = box
        shown = pictures.to_rgb_order(recon[:, top:bottom, left:right], prep.channel_order)
        out.append(
            Top9Entry(
                layer,
                job.channel,
                job.rank,
                job.value,
                job.image,
                images.describe(job.image),
                job.position,
                box,
                pictures.image_of(pictures.signed_to_uint8(shown, percentile=RECON_PERCENTILE)),
                pictures.crop_box(view, box),
            )
        )
    return out


def top_activations(
    model: nn.Module,
    prep: Preprocessing,
    images: ImageDataset,
    layers: Sequence[str],
    channels: Sequence[int] | None = None,
    *,
    k: int = 9,
    batch_size: int = 16,
    chunk: int = 16,
    progress: Progress = no_progress,
) -> Top9Result:
    """For each layer and channel (default the first 16), the k strongest activations over
    `images` (one split of a `discover`ed source), each as its deconvnet reconstruction and its
    image patch (ZFNet Fig. 2)."""
    skipped: list[str] = []
    channels = list(range(16)) if channels is None else list(channels)
    strongest = strongest_activations(
        model, prep, images, layers, k=k, batch_size=batch_size, progress=progress, skipped=skipped
    )
    for layer, best in strongest.items():
        count = best.values.shape[1]
        if channels and max(channels) >= count:
            raise VisualizeError(f"layer {layer!r} has channels 0-{count - 1}, got {max(channels)}")
    jobs = _jobs(strongest, channels)
    entries: dict[str, dict[int, list[Top9Entry]]] = {
        layer: {c: [] for c in channels} for layer in layers
    }
    needed = sorted(jobs)
    device = _device(model)
    for batch in _views(images, needed, prep, batch_size, progress, "deconvnet", []):
        ids = [i for i, _ in batch]
        views = {image: view for image, (_, view) in zip(ids, batch, strict=True)}
        rows = {image: row for row, image in enumerate(ids)}
        todo = [job for image in ids for job in jobs[image]]
        x = torch.stack([prep.to_tensor(view) for _, view in batch]).to(device)
        trace = record(model, x, keep=sorted({job.layer for job in todo}))
        for layer in layers:
            mine = [job for job in todo if job.layer == layer]
            for start in range(0, len(mine), chunk):
                part = mine[start : start + chunk]
                for entry in _entries(trace, part, rows, views, images, prep):
                    entries[layer][entry.channel].append(entry)
    for per_channel in entries.values():
        for found in per_channel.values():
            found.sort(key=lambda e: e.rank)
    return Top9Result(entries, len(images) - len(skipped), skipped)


def top9_grid(
    entries: dict[int, list[Top9Entry]],
    *,
    tile: int = 64,
    cols: int = 4,
    k: int = 9,
    title: str = "",
) -> Image.Image:
    """ZFNet Fig. 2: per channel, a 3x3 block of reconstructions beside a 3x3 block of patches
    (strongest first, row by row), channels in rows of `cols` blocks."""
    side = max(1, round(k**0.5))
    empty = Image.new("RGB", (tile, tile), pictures.FRAME)
    blocks = []
    for channel, found in entries.items():
        recons = [pictures.fit_tile(e.reconstruction, tile) for e in found[:k]]
        patches = [pictures.fit_tile(e.patch, tile) for e in found[:k]]
        recons += [empty] * (k - len(recons))
        patches += [empty] * (k - len(patches))
        pair = pictures.side_by_side(
            [pictures.grid(recons, side, gap=1), pictures.grid(patches, side, gap=1)], gap=3
        )
        blocks.append(pictures.captioned(pair, f"channel {channel}"))
    out = pictures.grid(blocks, min(cols, len(blocks)), gap=10)
    return pictures.captioned(out, title, size=14, fit=True) if title else out
