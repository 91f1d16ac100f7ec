"""Weights in the forms people keep them, and as a model hub keeps them.

`open_weights` reads any of: our `.safetensors` file (its card in the header), a hub folder
written by `export_hub`, BVLC's blob folder or `.caffemodel`, or a name in the catalogue of
published weights (`googlenet.bvlc_in1k`, fetched and cached on first use). `export_hub`
writes the folder layout the Hugging Face Hub holds for a timm-style model:
`model.safetensors` (our file), `config.json` (timm's keys: architecture, num_classes,
label_names, pretrained_cfg) and `README.md` (a model card: YAML front matter generated from
our card, then prose). `export_hub` uploads nothing; `create_model(name, weights=folder)`
reads the folder back.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from ..errors import WeightsError
from ..files import atomic_write
from ..registry import model_card
from .bvlc import import_bvlc
from .catalogue import find_entry
from .format import WeightsCard, load_weights, save_weights
from .pretrained import load_pretrained

HUB_WEIGHTS = "model.safetensors"
HUB_FILES = (HUB_WEIGHTS, "model.json", "config.json", "README.md")


def open_weights(path: str | Path, **overrides) -> tuple[nn.Module, WeightsCard]:
    """The model and card of weights in any form `open_weights` knows (module docstring);
    `overrides` are constructor arguments over the card's (BVLC: `aux_logits` only)."""
    if not Path(path).exists() and (entry := find_entry(str(path))) is not None:
        return load_pretrained(entry, **overrides)
    path = Path(path)
    if path.is_dir() and (path / HUB_WEIGHTS).is_file():
        return load_weights(path / HUB_WEIGHTS, **overrides)
    if path.is_dir() or path.suffix == ".caffemodel":
        unknown = set(overrides) - {"aux_logits"}
        if unknown:
            raise WeightsError(f"{path}: BVLC weights take aux_logits only, not {sorted(unknown)}")
        return import_bvlc(path, **overrides)
    return load_weights(path, **overrides)


def export_hub(source: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write weights (`open_weights`'s forms) to the folder `out` in the hub's layout; refuse
    to replace files already there unless `overwrite`."""
    out = Path(out)
    existing = [name for name in HUB_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise WeightsError(
            f"{out}: already holds {', '.join(existing)}; choose another folder, or replace "
            "them (--force)"
        )
    model, card = open_weights(source)
    save_weights(model, card, out / HUB_WEIGHTS)
    config = {
        "architecture": card.model,
        "model_args": card.model_kwargs,
        "num_classes": card.num_classes,
        "label_names": card.class_names,
        "pretrained_cfg": {k: v for k, v in card.pretrained_cfg.items() if k != "label_names"},
    }
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(out / "config.json", lambda tmp: Path(tmp).write_text(text))
    readme = model_readme(card, out.name)
    atomic_write(out / "README.md", lambda tmp: Path(tmp).write_text(readme))
    return out


def _yaml_list(key: str, items: list[str]) -> list[str]:
    return [f"{key}:", *(f"- {json.dumps(item)}" for item in items)] if items else []


def model_readme(card: WeightsCard, folder: str) -> str:
    """A hub model card: YAML front matter (tags, license, paper, metrics) from our card, then
    what the weights are, what they expect and how to load them."""
    paper = model_card(card.model)
    license_text = card.provenance.get("license", "")
    tags = ["image-classification", "goingdeeper", paper.family]
    if paper.arxiv:
        tags.append(f"arxiv:{paper.arxiv}")
    front = ["---", "library_name: goingdeeper", "pipeline_tag: image-classification"]
    front += _yaml_list("tags", tags)
    front += ["license: other", f"license_name: {json.dumps(license_text or 'unstated')}"]
    front += [f"{key}: {json.dumps(value)}" for key, value in sorted(card.metrics.items())]
    front.append("---")
    pre = card.preprocessing
    arxiv = f", arXiv:{paper.arxiv}" if paper.arxiv else ""
    body = [
        "",
        f"# {card.model}",
        "",
        f"{paper.title} ({paper.authors}, {paper.year}{arxiv}): {paper.summary}.",
        "",
        f"- weights: {card.provenance.get('origin', card.provenance.get('source', 'unstated'))}",
        f"- reported accuracy: {card.provenance.get('reported', 'not stated')}",
        f"- measured: {json.dumps(card.metrics) if card.metrics else 'nothing recorded'}",
        f"- license of the weights: {license_text or 'unstated'}",
        f"- classes: {card.num_classes}",
        f"- input: shorter side {pre.resize}, center crop {pre.crop}, {pre.interpolation}, "
        f"{pre.channel_order}, (pixel x {pre.scale:g} - {list(pre.mean)}) / {list(pre.std)}"
        + (f"; {pre.note}" if pre.note else ""),
        "",
        "```python",
        "import goingdeeper",
        f'model = goingdeeper.create_model("{card.model}", weights="{folder}")',
        "```",
        "",
    ]
    return "\n".join(front + body)
