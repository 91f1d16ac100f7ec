"""The hubs: `hubconf.py` gives torch.hub one entry point per registered model; `weights
export-hub` writes the folder a model hub holds (model.safetensors, config.json, a README
model card with YAML front matter) and `create_model(name, weights=folder)` reads it back, all
without a network."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

import goingdeeper as gd
from goingdeeper.cli import main
from goingdeeper.errors import WeightsError
from goingdeeper.weights import WeightsCard, save_weights

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """googlenet_torchvision weights with a card, as `weights import` writes them."""
    torch.manual_seed(7)
    model = gd.create_model("googlenet_torchvision", aux_logits=False, num_classes=4).eval()
    card = WeightsCard(
        model="googlenet_torchvision",
        model_kwargs={"aux_logits": False, "num_classes": 4},
        num_classes=4,
        class_names=["tench", "goldfish", "great white shark", "tiger shark"],
        preprocessing=gd.model_card("googlenet_torchvision").preprocessing,
        provenance={"origin": "a test", "license": "CC0-1.0", "reported": "none"},
        metrics={"test_acc": 0.5},
    )
    return save_weights(model, card, tmp_path_factory.mktemp("w") / "tv")


def test_hubconf_has_an_entry_point_per_registered_model():
    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = {n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_")}
    assert entries == set(gd.list_models())  # torch.hub lists these, and only these
    assert "Going deeper with convolutions" in hubconf.googlenet.__doc__
    assert {"torch", "torchvision"} <= set(hubconf.dependencies)


def test_torch_hub_loads_a_model_with_weights(weights):
    x = torch.randn(2, 3, 64, 64)
    model = torch.hub.load(str(REPO), "googlenet_torchvision", source="local", weights=weights)
    plain = gd.create_model("googlenet_torchvision", weights=weights)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), plain.eval()(x), rtol=0, atol=0)
    assert model.pretrained_cfg["label_names"][1] == "goldfish"
    resnet = torch.hub.load(str(REPO), "resnet18", source="local", num_classes=3)
    assert resnet.fc.out_features == 3 and resnet.pretrained_cfg["architecture"] == "resnet18"


def test_export_hub_writes_the_hub_layout_and_reads_back(weights, tmp_path):
    out = tmp_path / "hub" / "tv_googlenet"
    assert main(["weights", "export-hub", str(weights), "--out", str(out)]) == 0
    assert {"model.safetensors", "config.json", "README.md"} <= {p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "googlenet_torchvision" and config["num_classes"] == 4
    assert config["label_names"][0] == "tench"
    assert config["pretrained_cfg"]["input_size"] == [3, 224, 224]
    assert config["pretrained_cfg"]["mean"] == [0.5, 0.5, 0.5]  # the stated transform_input
    readme = (out / "README.md").read_text()
    front = yaml.safe_load(readme.split("---")[1])
    assert front["library_name"] == "goingdeeper" and "arxiv:1409.4842" in front["tags"]
    assert front["license_name"] == "CC0-1.0" and front["test_acc"] == 0.5
    assert 'create_model("googlenet_torchvision", weights="tv_googlenet")' in readme
    back = gd.create_model("googlenet_torchvision", weights=out)
    original = gd.create_model("googlenet_torchvision", weights=weights)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(back(x), original(x), rtol=0, atol=0)
    assert back.pretrained_cfg == original.pretrained_cfg


def test_export_hub_keeps_what_is_there_and_names_the_model(weights, tmp_path, capsys):
    out = tmp_path / "hub"
    assert main(["weights", "export-hub", str(weights), "--out", str(out)]) == 0
    before = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["weights", "export-hub", str(weights), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "already holds" in err and "--force" in err and len(err.splitlines()) == 1
    assert (out / "model.safetensors").read_bytes() == before
    assert main(["weights", "export-hub", str(weights), "--out", str(out), "--force"]) == 0
    with pytest.raises(WeightsError, match="weights of googlenet_torchvision, not of resnet18"):
        gd.create_model("resnet18", weights=out)
