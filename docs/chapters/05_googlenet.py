"""
GoogLeNet (2014): Table 1, the 1x1 bottleneck, aux heads, 144 crops, Polyak averaging
=====================================================================================

Szegedy et al., "Going deeper with convolutions", CVPR 2015, arXiv:1409.4842: the network
this project is named after. 22 layers with weights, 6.8 million parameters and 1.5 billion
multiply-adds in the paper's count, nine Inception modules whose 1x1 convolutions reduce the
width before the expensive 3x3 and 5x5 filters, two auxiliary classifiers during training,
and a test protocol of 144 crops per image.

This chapter puts Table 1 beside the exact counts, redoes the bottleneck arithmetic, looks at
the aux heads, scores one photo over its 144 crops with the BVLC weights, and shows what
Polyak averaging of the weights (section 6) does to noisy SGD.
"""

# %%
# Table 1, reproduced
# -------------------
# ``goingdeeper summary googlenet --paper`` prints this table: for each row of Table 1 the
# paper's parameters (K = 1024 weights) and multiply-adds (M) beside the exact figures of the
# network the table's channel columns describe. Rows marked ``off`` disagree with their own
# columns in the paper.

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import goingdeeper as gd
from goingdeeper.analysis import (
    bottleneck_comparison,
    format_table1,
    paper_summary,
    table1_comparison,
)
from goingdeeper.evaluate import crops_144
from goingdeeper.images import load_image
from goingdeeper.preprocess import Preprocessing
from goingdeeper.results import PAPER_TABLE3
from goingdeeper.weights import import_bvlc

DATA = Path(os.environ.get("GOINGDEEPER_DATA", "../shared/data"))

summary = paper_summary()
print(format_table1(summary))

rows = [r for r in table1_comparison(summary) if r.paper_ops_m is not None]
fig, ax = plt.subplots(figsize=(9, 3.8))
x = np.arange(len(rows))
ax.bar(x - 0.2, [r.paper_ops_m for r in rows], 0.4, label="Table 1")
ax.bar(x + 0.2, [r.exact_ops_m for r in rows], 0.4, label="computed")
for i, r in enumerate(rows):
    if r.flag:
        ax.annotate("off", (i, max(r.paper_ops_m, r.exact_ops_m)), ha="center", va="bottom")
ax.set_xticks(x, [r.name for r in rows], rotation=45, ha="right")
ax.set_ylabel("multiply-adds (M)")
ax.legend()
ax.set_title("GoogLeNet at 224x224: Table 1 against the exact count")
fig.tight_layout()

# %%
# The paper's conv1 row (2.7K weights, 34M multiply-adds) fits no plain 7x7 convolution of
# 3 to 64 channels (9.4K, 118M): it fits a depthwise-separable one, which the Xception paper
# says Inception v1 used. ``--arg conv1=separable`` builds that variant.
#
# Why 1x1 reductions: the bottleneck arithmetic
# ---------------------------------------------
# Fig. 2(a) is the "naive" module: the 3x3 and 5x5 filters read the module's whole input.
# Fig. 2(b) puts a 1x1 convolution before them that narrows the input first. Section 4's
# argument, branch by branch (``goingdeeper summary googlenet --bottleneck``):

costs = bottleneck_comparison()
naive = sum(c.naive_macs for c in costs)
reduced = sum(c.reduced_macs for c in costs)
for c in costs:
    if c.branch == "branch5x5":
        print(
            f"{c.module:12} 5x5 branch: {c.naive_macs / 1e6:7.1f}M naive, "
            f"{c.reduced_macs / 1e6:6.1f}M with its 1x1 reduction ({c.ratio:.1f}x)"
        )
print(f"all 3x3 and 5x5 branches: {naive / 1e6:,.0f}M naive, {reduced / 1e6:,.0f}M reduced")

modules = sorted({c.module for c in costs}, key=[c.module for c in costs].index)
fig, ax = plt.subplots(figsize=(8, 3.5))
for offset, branch in ((-0.2, "branch3x3"), (0.2, "branch5x5")):
    chosen = [c for c in costs if c.branch == branch]
    ax.bar(np.arange(len(chosen)) + offset, [c.ratio for c in chosen], 0.4, label=branch)
ax.set_xticks(range(len(modules)), modules, rotation=45, ha="right")
ax.set_ylabel("naive / reduced multiply-adds")
ax.legend()
ax.set_title("What the 1x1 reductions save, per Inception module")
fig.tight_layout()

# %%
# Auxiliary classifiers
# ---------------------
# Section 5: two small classifiers on inception 4a and 4d, whose losses are "added to the
# total loss with a discount weight 0.3" in training and which are thrown away at inference.
# In training mode the model returns all three outputs; its ``training_loss`` weighs them
# with the weight the model declares (``aux_weight``).

model = gd.create_model("googlenet").train()
x = torch.randn(2, 3, 224, 224)
target = torch.tensor([1, 2])
out = model(x)
print({name: tuple(t.shape) for name, t in out._asdict().items()})
ce = torch.nn.functional.cross_entropy
parts = [float(ce(t, target).detach()) for t in out]
print(f"losses: main {parts[0]:.3f}, aux1 {parts[1]:.3f}, aux2 {parts[2]:.3f}")
loss = model.training_loss(out, target).total.detach()
print(f"training_loss: {float(loss):.3f} = main + {model.aux_weight} x (aux1 + aux2)")
aux = sum(p.numel() for head in (model.aux1, model.aux2) for p in head.parameters())
total = sum(p.numel() for p in model.parameters())
print(f"parameters: {total:,} with the aux heads, {total - aux:,} without")
model.eval()
with torch.no_grad():
    print(f"in eval mode the output is the logits alone: {tuple(model(x).shape)}")

# %%
# The aux heads hold more parameters than the rest of the network (each has a 2048 x 1024
# fully connected layer): they cost nothing at test time because they are not there.
#
# 144 crops
# ---------
# Section 7: the image resized to 4 scales (shorter side 256, 288, 320 and 352); from each,
# the left, center and right squares; from each square the four corners, the center and the
# square itself resized to 224; and their mirrors. 4 x 3 x 6 x 2 = 144 views. The first 36
# (the unmirrored views of two scales), with a transform that leaves pixels as they are:

photo_path = DATA / "imagenet-sample" / "n01440764_tench.JPEG"
photo = load_image(photo_path)
plain = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
views = crops_144(photo, plain)
print(f"views: {tuple(views.shape)}")
unmirrored = [i for i in range(144) if (i // 6) % 2 == 0]
fig, axes = plt.subplots(3, 12, figsize=(12, 3.4))
for ax, i in zip(axes.flat, unmirrored, strict=False):
    ax.imshow(views[i].permute(1, 2, 0).numpy())
    ax.axis("off")
fig.suptitle("The first 36 unmirrored views of 144: scales 256 and 288, 3 squares, 6 crops")
fig.tight_layout()

# %%
# The BVLC GoogLeNet scores every view of that photo (one photo: the full protocol over the
# 1,000 sample photos takes over an hour on two cores; ``python
# benchmarks/eval_imagenet_sample.py`` runs it). The probability of the true class, view
# by view, laid out scale by scale:

bvlc, card = import_bvlc(DATA / "bvlc-googlenet")
bvlc.eval()
label = card.class_ids.index(photo_path.name.split("_")[0])
with torch.no_grad():
    inputs = crops_144(photo, card.preprocessing)
    probs = torch.cat([torch.softmax(bvlc(chunk), 1) for chunk in inputs.split(24)])
p_true = probs[:, label].numpy()
print(f"p({card.class_names[label]}): one crop {p_true[0]:.3f}")
print(f"mean over 144 views {p_true.mean():.3f}; lowest view {p_true.min():.3f}")
print(f"top-1 of the average: {card.class_names[int(probs.mean(0).argmax())]}")
for models, crops, cost, top5 in PAPER_TABLE3:
    print(f"paper, Table 3: {models} model(s), {crops:>3} crops, cost {cost:>4}: top-5 {top5}%")

fig, ax = plt.subplots(figsize=(9, 3.2))
shown = ax.imshow(p_true.reshape(4, 36), cmap="viridis", vmin=0, vmax=1, aspect="auto")
ax.set_yticks(range(4), ["256", "288", "320", "352"])
ax.set_ylabel("shorter side")
ax.set_xlabel("square x crop x mirror (36 per scale)")
fig.colorbar(shown, ax=ax, label=f"p({card.class_names[label]})")
ax.set_title("One photo's 144 views")
fig.tight_layout()

# %%
# Polyak averaging
# ----------------
# Section 6: "Polyak averaging was used to create the final model used at inference time".
# With a constant learning rate, SGD's iterates keep bouncing around the minimum by an amount
# set by the gradient noise; the mean of the iterates (Polyak and Juditsky) does not. The
# trainer keeps the average with ``torch.optim.swa_utils.AveragedModel``, uniform
# (``polyak_average = "uniform"``, the ``paper`` preset) or exponential (``"ema"``). The same
# two on a problem small enough to see: least squares with noisy gradients, 2,000 steps.

torch.manual_seed(0)
true_w = torch.randn(20, 1)
features = torch.randn(4000, 20)
targets = features @ true_w + 0.5 * torch.randn(4000, 1)
net = torch.nn.Linear(20, 1, bias=False)
uniform = AveragedModel(net, use_buffers=True)
ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.99), use_buffers=True)
optimizer = torch.optim.SGD(net.parameters(), lr=0.02)
distance = {"raw iterate": [], "uniform average (from step 400)": [], "EMA, decay 0.99": []}
for step in range(2000):
    batch = torch.randint(0, 4000, (8,))
    loss = ((net(features[batch]) - targets[batch]) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    ema.update_parameters(net)
    if step >= 400:  # the paper preset averages the last fifth; here the last four fifths
        uniform.update_parameters(net)
    for name, m in zip(distance, (net, uniform.module, ema.module), strict=True):
        distance[name].append(float((m.weight.detach().T - true_w).norm()))
for name, values in distance.items():
    print(f"{name:32} distance to the true weights after 2,000 steps: {values[-1]:.3f}")

fig, ax = plt.subplots(figsize=(7, 3.5))
for name, values in distance.items():
    start = 400 if name.startswith("uniform") else 0
    ax.plot(range(start, 2000), values[start:], label=name)
ax.set_yscale("log")
ax.set_xlabel("SGD step")
ax.set_ylabel("distance to the true weights")
ax.legend()
ax.set_title("Polyak averaging on noisy least squares")
fig.tight_layout()
