"""
AlexNet (2012): two towers, LRN and ten views
=============================================

Krizhevsky, Sutskever and Hinton, "ImageNet classification with deep convolutional neural
networks", NIPS 2012. Trained on two GTX 580s, the network was split in two towers that
meet only at conv3 and the fully connected layers; it normalised responses across
neighbouring channels (local response normalisation, section 3.3) and scored each test
image over ten crops (section 4.1).

This chapter counts the towers, checks LRN against the formula of section 3.3, and runs the
ten-view protocol on real photos. No AlexNet weights are available offline, so the views are
scored by the BVLC GoogLeNet, the one ImageNet network whose weights sit beside the checkout.
"""

# %%
# The two towers are grouped convolutions
# ---------------------------------------
# conv2, conv4 and conv5 read only the maps of their own tower: a convolution with
# ``groups=2``. ``ALEXNET_CONVS`` is the table of the five convolutions; the same table with
# one group everywhere is the single-tower network most courses draw.

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import goingdeeper as gd
from goingdeeper.analysis import summarize
from goingdeeper.evaluate import ten_crops
from goingdeeper.images import load_image
from goingdeeper.models.alexnet import ALEXNET_CONVS, AlexNet
from goingdeeper.models.lrn import LocalResponseNorm
from goingdeeper.preprocess import Preprocessing
from goingdeeper.results import PAPER_TABLE3
from goingdeeper.weights import import_bvlc

DATA = Path(os.environ.get("GOINGDEEPER_DATA", "../shared/data"))

two = summarize(gd.create_model("alexnet"), 227)
one_tower = [(name, k, size, s, p, 1) for name, k, size, s, p, _ in ALEXNET_CONVS]
one = summarize(AlexNet(convs=one_tower), 227)

# Section 3.5: "the number of neurons in the network's remaining layers is given by
# 253,440-186,624-64,896-64,896-43,264-4096-4096-1000".
PAPER_NEURONS = [253_440, 186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000]
layers = [r for r in two.rows if r.name.startswith(("conv", "fc"))]
print(f"{'layer':6} {'output':>11} {'neurons':>9} {'paper':>9} {'params':>11} {'one tower':>11}")
singles = {r.name: r.params for r in one.rows}
for row, paper in zip(layers, PAPER_NEURONS, strict=True):
    shape = "x".join(map(str, row.output))
    neurons = int(np.prod(row.output))
    print(
        f"{row.name:6} {shape:>11} {neurons:>9,} {paper:>9,} {row.params:>11,} "
        f"{singles[row.name]:>11,}"
    )
print(f"parameters: {two.total_params:,} with two towers, {one.total_params:,} with one")
print("the paper: 60 million parameters")

# %%
# Every count but conv1's matches section 3.5. 96 maps of 55x55 are 290,400 neurons; the
# paper's 253,440 is not 96 times a square, so no input size gives it: the figure is
# taken to be a slip of the paper. The towers halve conv2, conv4 and conv5; the fully
# connected layers, where most of the parameters are, are the same either way.

saved = one.total_params - two.total_params
print(f"the towers save {saved:,} parameters ({saved / one.total_params:.1%})")

names = [r.name for r in layers]
fig, ax = plt.subplots(figsize=(7, 3.5))
x = np.arange(len(names))
ax.bar(x - 0.2, [singles[n] / 1e6 for n in names], 0.4, label="one tower")
ax.bar(x + 0.2, [r.params / 1e6 for r in layers], 0.4, label="two towers (the paper)")
ax.set_xticks(x, names)
ax.set_ylabel("parameters (millions)")
ax.set_yscale("log")
ax.legend()
ax.set_title("AlexNet's parameters per layer")
fig.tight_layout()

# %%
# Local response normalisation
# ----------------------------
# Section 3.3: ``b[i] = a[i] / (k + alpha * sum_j a[j]**2) ** beta``, the sum over the
# ``n = 5`` channels around ``i``, with ``k = 2``, ``alpha = 1e-4``, ``beta = 0.75``.
# PyTorch (like Caffe) divides ``alpha`` by ``n``, so the module holds ``5e-4``. The
# package's LRN (a faster computation of the same thing) against the formula, written out:

lrn = gd.create_model("alexnet").lrn1
a = torch.randn(1, 16, 4, 4) * 10
b = lrn(a)
padded = torch.nn.functional.pad(a**2, (0, 0, 0, 0, 2, 2))
window = sum(padded[:, j : j + 16] for j in range(5))
formula = a / (2 + 1e-4 * window) ** 0.75
print(f"module: {type(lrn).__name__}(size={lrn.size}, alpha={lrn.alpha}, k={lrn.k})")
print(f"largest difference from the formula: {float((b - formula).abs().max()):.2e}")

# %%
# What it does: a unit's response is divided down when its neighbours in the channel
# dimension are active, more so the stronger they are. The same unit (activation 10) beside
# neighbours of growing activity:

neighbour = np.linspace(0, 60, 61)
responses = []
for v in neighbour:
    x = torch.full((1, 5, 1, 1), float(v))
    x[0, 2] = 10.0
    responses.append(float(LocalResponseNorm(5, 5e-4, 0.75, 2.0)(x)[0, 2]))
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(neighbour, responses)
ax.set_xlabel("activation of each of the 4 neighbouring channels")
ax.set_ylabel("normalised response of a unit at 10")
ax.set_title("LRN (k=2, n=5, alpha=1e-4, beta=0.75)")
fig.tight_layout()

# %%
# Ten views
# ---------
# Section 4.1: "the network makes a prediction by extracting five 224x224 patches (the four
# corner patches and the center patch) as well as their horizontal reflections (hence ten
# patches in all), and averaging the predictions made by the network's softmax layer on the
# ten patches". ``ten_crops`` cuts them from the central 256x256 square (section 2). Shown
# here with a transform that leaves the pixels as they are:

photo = DATA / "imagenet-sample" / "n02088094_Afghan_hound.JPEG"
plain = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
views = ten_crops(load_image(photo), plain)
fig, axes = plt.subplots(2, 5, figsize=(10, 4.4))
titles = ["center", "top left", "top right", "bottom left", "bottom right"] * 2
for ax, view, title in zip(axes.flat, views, titles, strict=True):
    ax.imshow(view.permute(1, 2, 0).numpy())
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.suptitle("AlexNet's ten views: five crops and their mirrors")
fig.tight_layout()

# %%
# One view against ten, scored by the BVLC GoogLeNet on **6 of the 1,000 sample photos**
# (cut down for the build; ``goingdeeper eval --views 1,10`` runs the protocol on any number,
# through ``goingdeeper.evaluate.evaluate``). AlexNet's paper
# gives no one-view figure to set beside its ten; GoogLeNet's Table 3 does, for one network
# on the 50,000 validation images (``PAPER_TABLE3``): top-5 error 10.07% with one crop, 9.15%
# with ten. Six photos are far too few for an error rate, so what is shown is the averaging
# itself: the probability each view gives the true class, and their mean.

for models, crops, _cost, top5 in PAPER_TABLE3[:2]:
    print(f"paper, {models} model, {crops:>2} crop(s): top-5 error {top5:.2f}%")

model, card = import_bvlc(DATA / "bvlc-googlenet")
model.eval()
photos = sorted((DATA / "imagenet-sample").glob("*.JPEG"))[::167]
samples = [(p, card.class_ids.index(p.name.split("_")[0])) for p in photos]
pre = card.preprocessing
per_view, labels, center, mean = [], [], [], []
with torch.no_grad():
    for path, label in samples:
        probs = torch.softmax(model(ten_crops(load_image(path), pre)), dim=1)
        per_view.append(probs[:, label].numpy())
        labels.append(label)
        center.append(probs[0])  # view 0 is the one-crop input, bit for bit
        mean.append(probs.mean(0))
for name, scores in (("1 view", center), ("10 views", mean)):
    top5 = torch.stack(scores).topk(5, dim=1).indices
    hit1 = sum(int(t[0] == y) for t, y in zip(top5, labels, strict=True))
    hit5 = sum(int(y in t) for t, y in zip(top5.tolist(), labels, strict=True))
    print(f"here, {name:>8} on {len(labels)} photos: top-1 {hit1}, top-5 {hit5} right")

fig, ax = plt.subplots(figsize=(8, 3.8))
for i, probs in enumerate(per_view):
    ax.scatter([i] * len(probs), probs, s=14, color="0.6", label="each view" if i == 0 else None)
    ax.scatter(i, probs[0], marker="s", color="C0", label="center view" if i == 0 else None)
    mean_label = "mean of 10" if i == 0 else None
    ax.scatter(i, probs.mean(), marker="*", s=120, color="C3", label=mean_label)
ax.set_xticks(range(len(samples)), [p.name.split("_", 1)[1][:-5] for p, _ in samples], rotation=30)
ax.set_ylabel("p(true class)")
ax.legend(fontsize=8)
ax.set_title("Ten views of 6 photos, BVLC GoogLeNet")
fig.tight_layout()
