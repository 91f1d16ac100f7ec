"""torch.hub entry points: one per registered model (`goingdeeper models` lists them), each
`create_model` under the model's name.

    model = torch.hub.load("path/to/goingdeeper", "googlenet", source="local")
    model = torch.hub.load("path/to/goingdeeper", "googlenet", source="local", pretrained=True)
    model = torch.hub.load("path/to/goingdeeper", "resnet50", source="local",
                           pretrained="tv2_in1k")
    model = torch.hub.load("path/to/goingdeeper", "googlenet", source="local",
                           weights="weights/bvlc_googlenet.safetensors")

Keyword arguments go to `goingdeeper.create_model`: `pretrained` (True for the model's default
published weights, or a tag of `goingdeeper weights list`: fetched once, checked and cached),
`weights` (ours, a hub folder from `goingdeeper weights export-hub`, BVLC's blobs),
`features_only`, the model's own switches.
"""

import sys as _sys
from pathlib import Path as _Path

dependencies = ["torch", "torchvision", "numpy", "PIL", "safetensors", "pooch", "filelock"]

# this checkout's package, whichever goingdeeper is installed beside it
_sys.path.insert(0, str(_Path(__file__).resolve().parent / "src"))

from goingdeeper import create_model as _create_model  # noqa: E402
from goingdeeper import list_models as _list_models  # noqa: E402
from goingdeeper import model_card as _model_card  # noqa: E402


def _entry(name: str):
    def entry(pretrained=False, weights=None, **kwargs):
        return _create_model(name, pretrained=pretrained, weights=weights, **kwargs)

    card = _model_card(name)
    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"{card.title} ({card.authors}, {card.year}): {card.summary}."
    return entry


for _name in _list_models():
    globals()[_name] = _entry(_name)
