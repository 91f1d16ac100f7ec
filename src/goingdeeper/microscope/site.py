"""Build the microscope site of one network: every chosen layer's channels with their feature
visualisation, top-9 dataset patches and deconvnet projections; photo pages with Grad-CAM and
occlusion for the top-5 classes; an index with each layer's Table-1 row and a search box.

The work comes in pieces, each written whole (a temporary file renamed over the name) and
skipped when it is already there, so a site that was stopped half-way continues where it was:
a channel's feature visualisation; a layer's top-9 pictures (the layer's last file written
after the others); a photo's pictures (its `info.json` written last). The HTML pages are
rewritten on every run from what is on disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from ..analysis.summary import summarize
from ..analysis.trace import evaluating, record
from ..data import ImageDataset
from ..errors import VisualizeError
from ..files import atomic_write
from ..models.base import example_input
from ..visualize import pictures
from ..visualize.occlusion import occlusion_maps
from ..visualize.top9 import Progress, network_view, no_progress, top_activations
from ..weights import WeightsCard
from .aliases import INCEPTION_V1, resolve_layer
from .attribution import grad_cam, heat_overlay
from .featurevis import Unit, visualize_units
from .pages import (
    SCRIPT,
    STYLE,
    ImageInfo,
    LayerInfo,
    image_page,
    index_page,
    layer_href,
    layer_page,
    search_index,
)

LUCID_NAME = {ours: lucid for lucid, ours in INCEPTION_V1.items()}


@dataclass
class SiteConfig:
    """What to build. `layers` empty: every layer with weights and feature maps (GoogLeNet:
    conv1, conv2_reduce, conv2 and the nine Inception modules); `channels` None: every channel
    of each layer."""

    layers: list[str]
    channels: list[int] | None = None
    fv_size: int = 128  # px, the optimised picture
    fv_steps: int = 256
    fv_lr: float = 0.05
    fv_batch: int = 8  # channels optimised together
    seed: int = 0
    cam_layer: str | None = None  # default: the last layer with maps larger than 1x1
    occlusion_square: int = 48  # px
    occlusion_stride: int = 32  # px
    batch_size: int = 16
    tile: int = 48  # px, one top-9 patch on the page


@dataclass
class SitePlan:
    """The config checked against the model: names resolved, channels in range."""

    layers: list[LayerInfo]
    cam_layer: str
    model_name: str


@dataclass
class SiteReport:
    built: dict[str, int] = field(default_factory=dict)  # piece kind -> how many made now
    skipped: dict[str, int] = field(default_factory=dict)  # ... found already made
    bytes: int = 0  # of the whole site


def table1_params(weights: int) -> str:
    """Weights without biases in K = 1024, as Table 1 prints them."""
    return f"{weights / 1024:.1f}K"


def table1_ops(macs: int) -> str:
    """Multiply-adds in M = 10^6, as Table 1 prints them."""
    return f"{macs / 1e6:.0f}M"


def plan_site(model: nn.Module, card: WeightsCard, config: SiteConfig) -> SitePlan:
    """Check every name and number before any work: a `VisualizeError` (or `UnknownLayerError`)
    naming what is wrong."""
    crop = card.preprocessing.crop
    trace = record(model, example_input(model, 1, crop))
    modules = dict(model.named_modules())
    learned = [n for n in trace.layers if any(True for _ in modules[n].parameters())]
    layers = [resolve_layer(model, name) for name in config.layers] or learned
    rows = {row.name: row for row in summarize(model, crop).rows}
    infos = []
    for name in dict.fromkeys(layers):
        shape = trace.shapes.get(name)
        if shape is None or len(shape) != 4:
            raise VisualizeError(f"layer {name!r} has no feature maps (output {shape})")
        count = shape[1]
        channels = list(range(count)) if config.channels is None else list(config.channels)
        bad = [c for c in channels if not 0 <= c < count]
        if bad:
            raise VisualizeError(f"layer {name!r} has channels 0-{count - 1}, got {bad[0]}")
        row = rows.get(name)
        output = "x".join(str(v) for v in shape[1:])
        params, ops = (table1_params(row.weights), table1_ops(row.macs)) if row else ("", "")
        infos.append(
            LayerInfo(name, LUCID_NAME.get(name, ""), output, params, ops, channels, count)
        )
    spatial = [n for n in trace.layers if trace.shapes[n][2] * trace.shapes[n][3] > 1]
    cam = resolve_layer(model, config.cam_layer) if config.cam_layer else spatial[-1]
    if len(trace.shapes.get(cam, ())) != 4:
        raise VisualizeError(f"Grad-CAM needs a layer with feature maps; {cam!r} has none")
    return SitePlan(infos, cam, card.model)


def _save(img: Image.Image, path: Path) -> None:
    kind = "JPEG" if path.suffix == ".jpg" else "PNG"
    options = {"quality": 88} if kind == "JPEG" else {"optimize": True}
    atomic_write(path, lambda tmp: img.convert("RGB").save(tmp, format=kind, **options))


def _feature_pictures(
    model, card, plan: SitePlan, config: SiteConfig, out: Path, progress: Progress, report
) -> None:
    jobs = []
    for layer in plan.layers:
        missing = [
            c for c in layer.channels if not (out / "img" / layer.name / f"fv_{c}.png").exists()
        ]
        report.skipped["feature visualisation"] += len(layer.channels) - len(missing)
        for start in range(0, len(missing), config.fv_batch):
            jobs.append((layer.name, missing[start : start + config.fv_batch]))
    for name, channels in progress(jobs, "feature visualisation"):
        pics = visualize_units(
            model,
            card.preprocessing,
            [Unit(name, c) for c in channels],
            size=config.fv_size,
            steps=config.fv_steps,
            lr=config.fv_lr,
            seed=config.seed,
        )
        for c, pic in zip(channels, pics, strict=True):
            _save(pic, out / "img" / name / f"fv_{c}.png")
        report.built["feature visualisation"] += len(channels)


def _top9_pictures(
    model, card, images: ImageDataset, plan: SitePlan, config, out: Path, progress, report
) -> None:
    groups: dict[tuple[int, ...], list[str]] = {}
    for layer in plan.layers:
        if (out / "img" / layer.name / f"deconv_{layer.channels[-1]}.png").exists():
            report.skipped["top-9 layers"] += 1
        else:
            groups.setdefault(tuple(layer.channels), []).append(layer.name)
    tile, empty = config.tile, Image.new("RGB", (config.tile, config.tile), pictures.FRAME)
    for channels, names in groups.items():
        result = top_activations(
            model,
            card.preprocessing,
            images,
            names,
            list(channels),
            batch_size=config.batch_size,
            progress=progress,
        )
        for name in names:
            for c in channels:  # the last channel's deconv file last: it marks the layer done
                found = result.entries[name][c]
                for kind, attr in (("patches", "patch"), ("deconv", "reconstruction")):
                    tiles = [pictures.fit_tile(getattr(e, attr), tile) for e in found[:9]]
                    tiles += [empty] * (9 - len(tiles))
                    _save(pictures.grid(tiles, 3, gap=1), out / "img" / name / f"{kind}_{c}.png")
            report.built["top-9 layers"] += 1


def _photo(model, card, photo: Image.Image, plan: SitePlan, config: SiteConfig, folder: Path):
    """The photo's page pictures in `folder`; its top-5 classes and occlusion ranges."""
    prep = card.preprocessing
    view = network_view(prep, photo)
    x = prep.to_tensor(view)
    device = next(model.parameters()).device
    with evaluating(model), torch.no_grad():
        probs = torch.softmax(model(x.unsqueeze(0).to(device)), dim=1)[0].cpu()
    top = probs.topk(5)
    targets = top.indices.tolist()
    names = card.class_names
    cams = grad_cam(model, x, plan.cam_layer, targets)
    occlusions = occlusion_maps(
        model,
        x,
        targets,
        size=config.occlusion_square,
        stride=config.occlusion_stride,
        batch_size=config.batch_size,
    )
    _save(view, folder / "view.jpg")
    ranges = []
    for k, occ in enumerate(occlusions):
        _save(heat_overlay(view, cams[k]), folder / f"cam_{k}.jpg")
        heat = occ.per_pixel(view.size[1], view.size[0])
        _save(heat_overlay(view, heat), folder / f"occlusion_{k}.jpg")
        ranges.append([float(heat.min()), float(heat.max())])
    classes = [
        [t, names[t] if t < len(names) else f"class {t}", float(p)]
        for t, p in zip(targets, top.values.tolist(), strict=True)
    ]
    return {"classes": classes, "occlusion": ranges}


def photo_stem(name: str | Path) -> str:
    """A file name part for a photo named `name`: letters, digits, '-', '_' only."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(name).stem)


def _photo_pages(
    model, card, photos: ImageDataset | None, plan, config, out: Path, progress, report
) -> list[ImageInfo]:
    infos = []
    for i in progress(range(len(photos)) if photos is not None else [], "photos"):
        name = photos.describe(i)
        stem = photo_stem(name)
        folder = out / "img" / stem
        info_file = folder / "info.json"
        if info_file.exists():
            info = json.loads(info_file.read_text())
            report.skipped["photos"] += 1
        else:
            info = {"file": Path(name).name}
            info |= _photo(model, card, photos.decode(i), plan, config, folder)
            atomic_write(info_file, lambda tmp, i=info: Path(tmp).write_text(json.dumps(i)))
            report.built["photos"] += 1
        classes = [tuple(c) for c in info["classes"]]
        ranges = [tuple(r) for r in info.get("occlusion", [])]
        infos.append(ImageInfo(stem, info["file"], classes, ranges))
    return infos


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _pages(plan: SitePlan, images: list[ImageInfo], config: SiteConfig, out: Path, note: str):
    layers = plan.layers
    _write_text(out / "style.css", STYLE)
    _write_text(out / "site.js", SCRIPT)
    _write_text(out / "search.js", search_index(layers, images))
    _write_text(out / "index.html", index_page(plan.model_name, layers, images, note))
    for i, layer in enumerate(layers):
        _write_text(out / layer_href(layer.name), layer_page(layers, i, config.fv_size))
    for info in images:
        _write_text(out / f"image-{info.stem}.html", image_page(info, plan.cam_layer))


def build_site(
    model: nn.Module,
    card: WeightsCard,
    data: ImageDataset,
    photos: ImageDataset | None,
    out: str | Path,
    config: SiteConfig,
    *,
    progress: Progress = no_progress,
) -> SiteReport:
    """Build (or finish) the site in `out`: top-9 over the images `data`, photo pages for
    `photos`. Returns what was made, what was found made, and the site's size."""
    out = Path(out)
    plan = plan_site(model, card, config)
    report = SiteReport()
    for kind in ("feature visualisation", "top-9 layers", "photos"):
        report.built[kind] = report.skipped[kind] = 0
    model.eval()
    _feature_pictures(model, card, plan, config, out, progress, report)
    if data:
        _top9_pictures(model, card, data, plan, config, out, progress, report)
    images = _photo_pages(model, card, photos, plan, config, out, progress, report)
    note = (
        f"{len(data)} images ranked for the top-9; feature visualisations {config.fv_size}px, "
        f"{config.fv_steps} steps, seed {config.seed}; Grad-CAM at {plan.cam_layer}."
    )
    _pages(plan, images, config, out, note)
    report.bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return report
