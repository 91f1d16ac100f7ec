"""The papers' protocols as the papers give them, end to end: VGG's dense evaluation of weights
imported from torchvision, run by `goingdeeper eval`, against the class score map of
`to_fully_convolutional` averaged by hand on real photos (and against the plain network on the
whole image, which is not dense evaluation)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torchvision
from torch import nn

from goingdeeper.cli import main
from goingdeeper.evaluate import evaluate
from goingdeeper.images import load_image
from goingdeeper.models.vgg import to_fully_convolutional
from goingdeeper.weights import load_weights

# a landscape and a portrait photo; two test scales that give score maps larger than 1x1
PHOTOS = ("n01440764_tench.JPEG", "n01494475_hammerhead.JPEG")
SCALES = (256, 288)


@pytest.fixture(scope="module")
def torchvision_vgg(tmp_path_factory):
    """torchvision's vgg11 with random weights, imported by `goingdeeper weights import`. The
    head is narrower than 4096 (the importer reads the widths from the tensors), and fc8 is
    scaled so that the posteriors are sharp enough for averaging orders to show."""
    torch.manual_seed(0)
    theirs = torchvision.models.vgg11(weights=None)
    for i, (cin, cout) in zip((0, 3, 6), ((25088, 64), (64, 64), (64, 1000)), strict=True):
        theirs.classifier[i] = nn.Linear(cin, cout)
        nn.init.kaiming_normal_(theirs.classifier[i].weight, nonlinearity="relu")
        nn.init.zeros_(theirs.classifier[i].bias)
    with torch.no_grad():
        theirs.classifier[6].weight.mul_(10)
    folder = tmp_path_factory.mktemp("vgg")
    torch.save(theirs.state_dict(), folder / "vgg11.pth")
    out = folder / "vgg11"
    assert (
        main(["weights", "import", "torchvision", str(folder / "vgg11.pth"), "--out", str(out)])
        == 0
    )
    return out.with_suffix(".safetensors")


def _by_hand(model: nn.Module, pre, image) -> tuple[torch.Tensor, torch.Tensor]:
    """Section 3.2 and 4.2 by hand: softmax of the spatially averaged score map of the fully
    convolutional net, averaged over scales and mirrors; and the same for the plain network."""
    dense = to_fully_convolutional(model).eval()
    maps, plain = [], []
    with torch.no_grad():
        for q in SCALES:
            x = pre.to_tensor(pre.resize_shorter(image, q))[None]
            for view in (x, x.flip(-1)):
                scores = dense(view)
                assert min(scores.shape[-2:]) > 1 and max(scores.shape[-2:]) > 2  # a real map
                maps.append(scores.mean(dim=(2, 3)).softmax(1))
                plain.append(model(view).softmax(1))
    return torch.cat(maps).mean(0), torch.cat(plain).mean(0)


@pytest.mark.slow
def test_dense_evaluation_of_imported_vgg_is_the_score_map_averaged(
    torchvision_vgg, shared_data, tmp_path, capsys
):
    model, card = load_weights(torchvision_vgg)
    images = [load_image(shared_data / "imagenet-sample" / name) for name in PHOTOS]
    hand, plain = zip(*(_by_hand(model, card.preprocessing, im) for im in images), strict=True)
    hand, plain = torch.stack(hand), torch.stack(plain)
    # the plain network on the whole image is another computation (its adaptive pool squeezes
    # the map back to 7x7 before fc6): its posteriors are far from dense evaluation's
    assert (hand - plain).abs().max() > 0.05 * hand.abs().max()
    # a class in dense evaluation's top 5 but not in the plain network's, for each photo
    top5, plain5 = hand.topk(5).indices.tolist(), plain.topk(5).indices.tolist()
    pairs = zip(top5, plain5, strict=True)
    labels = [next(c for c in ours if c not in theirs) for ours, theirs in pairs]

    r = evaluate(
        [(model, card)], [(im, 0) for im in images], "dense", dense_scales=SCALES, keep_scores=True
    )
    torch.testing.assert_close(r.scores, hand, rtol=1e-5, atol=1e-6)

    # through the command line: each photo filed under that class, so `eval --views dense`
    # has 0% top-5 error where the plain network on the whole image would have 100%
    for name, label in zip(PHOTOS, labels, strict=True):
        folder = tmp_path / "val" / card.class_ids[label]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / "imagenet-sample" / name, folder / name)
    scales = ",".join(map(str, SCALES))
    argv = ["eval", "--weights", str(torchvision_vgg), "--data", str(tmp_path / "val")]
    assert main([*argv, "--views", "dense", "--scales", scales, "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["crops"] == "dense" and row["images"] == 2 and row["top5_error"] == 0.0
