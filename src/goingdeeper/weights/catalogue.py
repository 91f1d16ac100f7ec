"""The catalogue of published weights: one entry per checkpoint of the registered models.

Names follow timm's `model.tag` form, with our registry's model name before the dot:
`googlenet.bvlc_in1k`, `googlenet_torchvision.tv_in1k`, `resnet50.tv2_in1k`, `resnet50.a1_in1k`.
Four publishers, each read from what it publishes rather than retyped:

- torchvision: its weight enums (`torchvision.models.get_model_weights`) give each file's URL,
  whose name ends in the first 8 hex digits of its SHA-256 (`googlenet-1378be20.pth`, the
  check `torch.hub` makes), the transform, the reported ImageNet accuracy and the file size.
- timm: its pretrained configs, where timm is installed, give the Hugging Face Hub repository
  (or the release URL of older files), the licence and the transform. timm states no hash for
  them: such an entry says so, and a fetch records the SHA-256 it got.
- The Caffe model zoo: BVLC GoogLeNet, with the SHA-1 its model page states.
- Cadene's `pretrainedmodels`: its BN-Inception (a Caffe port), at the URL its settings give,
  the file's name ending in the first digits of its SHA-256 as torch.hub checks them.

`register_weights(entry)` adds an entry (weights a site publishes for itself, or a test's).
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import torchvision

from ..errors import WeightsError
from ..registry import list_models
from .bvlc import BVLC_URL

# torchvision's architectures, each under the registered model its weights load into
# (`import_torchvision` recognises them; a test checks this table against it)
TORCHVISION_MODELS = {
    "googlenet": "googlenet_torchvision",
    "alexnet": "alexnet_torchvision",
    **{name: name for name in ("vgg11", "vgg13", "vgg16", "vgg19")},
    **{f"{name}_bn": f"{name}_bn" for name in ("vgg11", "vgg13", "vgg16", "vgg19")},
    **{f"resnet{depth}": f"resnet{depth}" for depth in (18, 34, 50, 101, 152)},
    **{f"densenet{depth}": f"densenet{depth}" for depth in (121, 169, 201)},
    "inception_v3": "inception_v3_torchvision",
}
# torchvision's weight names in timm's tag form, as timm names its copies of them
TORCHVISION_TAGS = {
    "IMAGENET1K_V1": "tv_in1k",
    "IMAGENET1K_V2": "tv2_in1k",
    "IMAGENET1K_FEATURES": "tv_features_in1k",
}
# torchvision's licence; its README leaves to the user the terms of the data the weights learnt from
TORCHVISION_LICENCE = "BSD-3-Clause (torchvision)"

# timm's architectures that are networks of ours (`import_timm` recognises them)
TIMM_MODELS = {
    **{f"resnet{depth}": f"resnet{depth}" for depth in (18, 34, 50, 101, 152)},
    "seresnet50": "se_resnet50",
    **{f"densenet{depth}": f"densenet{depth}" for depth in (121, 169, 201)},
    **{name: name for name in ("vgg11", "vgg13", "vgg16", "vgg19")},
    **{f"{name}_bn": f"{name}_bn" for name in ("vgg11", "vgg13", "vgg16", "vgg19")},
    "legacy_xception": "xception",
    "inception_v3": "inception_v3_torchvision",
    "inception_v4": "inception_v4",
    "inception_resnet_v2": "inception_resnet_v2_timm",
}
HF_FILE = "model.safetensors"  # what timm's hub repositories hold
# the ends of weight files' names, which no name of the catalogue has
FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".caffemodel", ".json", ".onnx")

# the importers a catalogue entry's file can go through
SOURCES = ("bvlc", "torchvision", "timm", "pretrainedmodels")

_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.[a-z]+$")  # torch.hub's convention


@dataclass(frozen=True)
class WeightsEntry:
    """One published checkpoint: where it is, how to check it, what it is for."""

    model: str  # the registered model it loads into
    tag: str  # timm's form: publisher or recipe, then the data set ("bvlc_in1k")
    source: str  # the importer that reads the file: one of SOURCES
    url: str  # the publisher's own address of the file
    hash_algorithm: str  # "sha256", "sha1"; "" when the publisher states no hash
    hash_value: str  # hex, as published: a whole digest or its first digits
    licence: str
    transform: str  # the input transform, in words (the card carries it in full)
    top1: float | None  # the publisher's ImageNet-1k accuracy, %, None where it states none
    top5: float | None
    protocol: str  # how and by whom that accuracy was measured
    size: int | None = None  # bytes, where the publisher states it
    upstream: str = ""  # the publisher's name: torchvision's enum member, timm's tag
    hf_repo: str = ""  # the Hugging Face Hub repository that holds the same file
    note: str = ""

    def __post_init__(self) -> None:
        # both name files in the cache: nothing that could climb out of its folder
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.tag):
            raise WeightsError(f"tag {self.tag!r}: letters, digits and underscores only")
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", self.filename):
            raise WeightsError(f"{self.url}: the URL must end in a file name")
        if self.source not in SOURCES:
            raise WeightsError(f"{self.name}: source must be one of {', '.join(SOURCES)}")
        if self.hash_algorithm not in ("", "sha256", "sha1"):
            raise WeightsError(f"{self.name}: hash_algorithm must be sha256, sha1 or empty")
        if self.hash_algorithm and not re.fullmatch(r"[0-9a-f]{8,}", self.hash_value):
            raise WeightsError(f"{self.name}: hash_value must be 8 or more lower-case hex digits")
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise WeightsError(f"{self.name}: the URL must be http or https, got {self.url!r}")

    @property
    def name(self) -> str:
        return f"{self.model}.{self.tag}"

    @property
    def filename(self) -> str:
        """The file's name as its publisher gives it (the last part of the URL)."""
        return urlsplit(self.url).path.rsplit("/", 1)[-1]

    @property
    def reported(self) -> str:
        """The publisher's accuracy in words, for a card."""
        if self.top1 is None:
            return f"not stated ({self.protocol})"
        return f"{self.top1:g}% top-1 / {self.top5:g}% top-5, {self.protocol}"

    @property
    def published_hash(self) -> str:
        """The hash in pooch's "algorithm:value" form; "" when none is published."""
        return f"{self.hash_algorithm}:{self.hash_value}" if self.hash_algorithm else ""


BVLC_GOOGLENET = WeightsEntry(
    model="googlenet",
    tag="bvlc_in1k",
    source="bvlc",
    url=BVLC_URL,
    hash_algorithm="sha1",  # the model zoo page's `sha1:` line
    hash_value="405fc5acd08a3bb12de8ee5e23a96bec22f08204",
    licence="unrestricted (BVLC model zoo)",
    transform="BGR 0-255 minus the mean (104, 117, 123); shorter side 256, center crop 224",
    top1=68.7,
    top5=88.9,
    protocol="one center crop, ILSVRC 2012 val (BVLC model zoo)",
    upstream="bvlc_googlenet",
    note="imported with the main head; `weights import bvlc FILE --aux` keeps the aux heads",
)

# pretrainedmodels' settings for bninception; accuracy from its README's table
CADENE_BN_INCEPTION = WeightsEntry(
    model="bn_inception_caffe",
    tag="cadene_in1k",
    source="pretrainedmodels",
    url="http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth",
    hash_algorithm="sha256",  # torch.hub's check: the digits in the file's name
    hash_value="52deb4733",
    licence="BSD-3-Clause (Cadene/pretrained-models.pytorch)",
    transform="BGR 0-255 minus the mean (104, 117, 128); shorter side 256, center crop 224",
    top1=73.524,
    top5=91.562,
    protocol="ImageNet-1k val, one center crop (pretrainedmodels README)",
    upstream="bninception",
    note="a port of a Caffe BN-Inception: plain 7x7 conv1, conv biases",
)

_registered: dict[str, WeightsEntry] = {}


def register_weights(entry: WeightsEntry) -> WeightsEntry:
    """Add `entry` to the catalogue (it replaces one of the same name); return it."""
    if entry.model not in list_models():  # an error here, not at fetch time
        raise WeightsError(f"{entry.name}: {entry.model!r} is not a registered model")
    _registered[entry.name] = entry
    return entry


def _transform_words(given) -> str:
    mean = ", ".join(f"{m:g}" for m in given.mean)
    std = ", ".join(f"{s:.3g}" for s in given.std)
    return (
        f"shorter side {given.resize_size[0]} ({given.interpolation.value}), center crop "
        f"{given.crop_size[0]}; RGB 0-1 minus ({mean}) over ({std})"
    )


@functools.cache
def torchvision_entries() -> tuple[WeightsEntry, ...]:
    """Every torchvision checkpoint of an architecture we register, read from its enums."""
    entries = []
    for architecture, model in TORCHVISION_MODELS.items():
        for weights in torchvision.models.get_model_weights(architecture):
            found = _HASH_IN_NAME.search(weights.url)
            metrics = weights.meta.get("_metrics", {}).get("ImageNet-1K", {})
            top1, top5 = metrics.get("acc@1"), metrics.get("acc@5")
            if top1 is not None and top1 != top1:  # NaN: weights for features only
                top1 = top5 = None
            megabytes = weights.meta.get("_file_size")
            entries.append(
                WeightsEntry(
                    model=model,
                    tag=TORCHVISION_TAGS.get(weights.name, "tv_" + weights.name.lower()),
                    source="torchvision",
                    url=weights.url,
                    hash_algorithm="sha256" if found else "",
                    hash_value=found.group(1) if found else "",
                    licence=TORCHVISION_LICENCE,
                    transform=_transform_words(weights.transforms()),
                    top1=top1,
                    top5=top5,
                    protocol="ImageNet-1k val, torchvision's transform (torchvision)",
                    size=round(megabytes * 2**20) if megabytes else None,  # torchvision: MiB
                    upstream=weights.name,
                    note=weights.meta.get("_docs", "").strip().split("\n")[0],
                )
            )
    return tuple(entries)


def timm_installed() -> bool:
    return importlib.util.find_spec("timm") is not None


@functools.cache
def timm_entries() -> tuple[WeightsEntry, ...]:
    """timm's checkpoints of the architectures we share, from its configs; none without timm.
    timm's copies of torchvision's files (`tv_in1k`, `tv2_in1k`) are left to torchvision's
    entries of the same names."""
    try:
        import timm  # optional: `pip install timm`
    except ImportError:
        return ()
    taken = {entry.name for entry in torchvision_entries()}
    entries = []
    for architecture, model in TIMM_MODELS.items():
        for full in timm.list_pretrained(f"{architecture}.*"):
            cfg = timm.models.get_pretrained_cfg(full)
            if cfg is None or f"{model}.{cfg.tag}" in taken:
                continue
            if cfg.hf_hub_id:
                url = f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/{HF_FILE}"
            elif cfg.url:
                url = cfg.url
            else:
                continue
            crop = cfg.input_size[-1]
            entries.append(
                WeightsEntry(
                    model=model,
                    tag=cfg.tag,
                    source="timm",
                    url=url,
                    hash_algorithm="",
                    hash_value="",
                    licence=cfg.license or "unstated (timm)",
                    transform=f"center crop {crop} at crop_pct {cfg.crop_pct} "
                    f"({cfg.interpolation}); RGB 0-1 minus {tuple(cfg.mean)} over "
                    f"{tuple(cfg.std)}",
                    top1=None,
                    top5=None,
                    protocol="timm's configs hold none; its results tables list them",
                    upstream=full,
                    hf_repo=cfg.hf_hub_id or "",
                    note="timm states no hash for this file",
                )
            )
    return tuple(entries)


def bvlc_entries() -> tuple[WeightsEntry, ...]:
    return (BVLC_GOOGLENET,)


def pretrainedmodels_entries() -> tuple[WeightsEntry, ...]:
    return (CADENE_BN_INCEPTION,)


def all_entries() -> list[WeightsEntry]:
    """The whole catalogue: registered entries, BVLC's, pretrainedmodels', torchvision's,
    timm's (by name)."""
    found: dict[str, WeightsEntry] = {}
    for entry in (
        *bvlc_entries(),
        *pretrainedmodels_entries(),
        *torchvision_entries(),
        *timm_entries(),
    ):
        found.setdefault(entry.name, entry)
    found.update(_registered)
    return sorted(found.values(), key=lambda e: e.name)


def default_entry(model: str) -> WeightsEntry | None:
    """The weights `pretrained=True` gives `model`: the paper's own where they were published
    (BVLC's GoogLeNet), the one file of a layout (pretrainedmodels' BN-Inception), else
    torchvision's `DEFAULT`, else timm's default tag; None when no publisher has weights for
    it."""
    for fixed in (*bvlc_entries(), *pretrainedmodels_entries()):
        if model == fixed.model:
            return _registered.get(fixed.name, fixed)
    for architecture, ours in TORCHVISION_MODELS.items():
        if ours == model:
            default = torchvision.models.get_model_weights(architecture).DEFAULT.name
            tag = TORCHVISION_TAGS.get(default, "tv_" + default.lower())
            return find_entry(f"{model}.{tag}")
    for architecture, ours in TIMM_MODELS.items():
        if ours == model:
            try:
                import timm  # optional: `pip install timm`
            except ImportError:
                return None
            cfg = timm.models.get_pretrained_cfg(architecture)
            return find_entry(f"{model}.{cfg.tag}") if cfg is not None else None
    return next((e for e in _registered.values() if e.model == model), None)


def find_entry(name: str) -> WeightsEntry | None:
    """The entry called `name` (`model.tag`), or the default one of a model name; None when
    the catalogue has neither. timm's configs are read only when no other publisher has it."""
    if name in _registered:
        return _registered[name]
    if "/" in name or "\\" in name or name.endswith(FILE_SUFFIXES):  # a path, not a name
        return None
    if "." not in name:
        return default_entry(name) if name in list_models() else None
    for entries in (bvlc_entries, pretrainedmodels_entries, torchvision_entries, timm_entries):
        for entry in entries():
            if entry.name == name:
                return entry
    return None


def get_entry(name: str) -> WeightsEntry:
    """`find_entry`, or a `WeightsError` that names the closest names in the catalogue."""
    entry = find_entry(name)
    if entry is not None:
        return entry
    model = name.split(".", 1)[0]
    if "." not in name and model in list_models():
        raise WeightsError(
            f"no published weights for {model}; `goingdeeper weights list` shows them"
        )
    names = [e.name for e in all_entries()]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise WeightsError(
        f"{name!r} is not in the weights catalogue{hint} (`goingdeeper weights list` shows it)"
    )
