"""
ZFNet (2013): the deconvnet and occlusion
=========================================

Zeiler and Fergus, "Visualizing and understanding convolutional networks", ECCV 2014,
arXiv:1311.2901. The paper looked inside AlexNet with a *deconvnet*: an activation is
projected back to the pixels through unpooling (with the max-pool switches recorded on the
way up), rectification and the transposed filters (section 2.1). What it saw changed the
network: a smaller, denser first layer (7x7 stride 2 instead of 11x11 stride 4), which is
ZFNet. It also covered parts of the image with a grey square to see which part the
classifier depends on (occlusion, section 4.2, Fig. 7).

The deconvnet and occlusion work on any network built from convolutions, ReLUs, pools, LRN
and concatenations; with no ZFNet weights available offline, the pictures here come from the
BVLC GoogLeNet, through its Inception modules.
"""

# %%
# ZFNet against AlexNet
# ---------------------
# The two convolution tables side by side, and ZFNet's feature sizes at 224x224 against
# Fig. 3 of the paper (110, 55, 26, 13, 13, 13, 6).

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import goingdeeper as gd
from goingdeeper.analysis import summarize
from goingdeeper.images import load_image
from goingdeeper.models.alexnet import ALEXNET_CONVS, ZFNET_CONVS
from goingdeeper.visualize import deconv, deconv_picture, occlusion_sensitivity
from goingdeeper.weights import import_bvlc

DATA = Path(os.environ.get("GOINGDEEPER_DATA", "../shared/data"))

print(f"{'layer':6} {'AlexNet':>24} {'ZFNet':>24}")
for a, z in zip(ALEXNET_CONVS, ZFNET_CONVS, strict=True):
    cell = "{1} x {2}x{2} /{3}, groups {5}"
    print(f"{a[0]:6} {cell.format(*a):>24} {cell.format(*z):>24}")

FIG3 = {"conv1": 110, "pool1": 55, "conv2": 26, "pool2": 13, "conv3": 13, "conv4": 13}
FIG3 |= {"conv5": 13, "pool5": 6}
summary = summarize(gd.create_model("zfnet"), 224)
for row in summary.rows:
    if row.name in FIG3:
        side = row.output[-1]
        print(f"{row.name:6} {side:>4} (Fig. 3: {FIG3[row.name]})")
print(f"parameters: {summary.total_params:,}; multiply-adds: {summary.total_macs / 1e9:.2f} G")

# %%
# The deconvnet, one photo
# ------------------------
# ``deconv`` records a forward pass (with the pool switches), keeps one activation of a
# channel (where the channel is strongest) and sets every other activation of the layer to
# zero, then projects that signal back to the pixels. Four channels of inception 4d:

model, card = import_bvlc(DATA / "bvlc-googlenet")
model.eval()
pre = card.preprocessing
photo = load_image(DATA / "imagenet-sample" / "n02088094_Afghan_hound.JPEG")
x = pre(photo)
with torch.no_grad():
    logits = model(x.unsqueeze(0))[0]
top = int(logits.argmax())
print(f"the network's class: {card.class_names[top]} (p = {float(logits.softmax(0)[top]):.2f})")

shorter = pre.resize_shorter(photo)
left, upper = (shorter.width - pre.crop) // 2, (shorter.height - pre.crop) // 2
view = shorter.crop((left, upper, left + pre.crop, upper + pre.crop))

recons = deconv(model, x, "inception4d", [0, 1, 2, 3])
for r in recons:
    print(f"channel {r.channel}: strongest at {r.position}, activation {r.value:.1f}")
picture = deconv_picture(view, recons, channel_order=pre.channel_order)
fig, ax = plt.subplots(figsize=(10, 4.5))
ax.imshow(np.asarray(picture))
ax.axis("off")
ax.set_title("inception 4d: the input, and four channels projected back to the pixels")
fig.tight_layout()

# %%
# Each projection shows the pixels that drove that one activation: a patch the size of the
# unit's receptive field, structured (edges, fur, an eye) rather than a blur, which is what
# the paper's Fig. 2 showed layer after layer.
#
# Occlusion
# ---------
# A grey square slides over the image; at each position the network's probability of the
# class it gave the whole image is recorded (Fig. 7). Here a **64-pixel square with stride
# 40**, 25 positions (the paper and ``goingdeeper visualize occlusion`` use finer grids; this
# one keeps the build short):

result = occlusion_sensitivity(model, x, top, size=64, stride=40)
heat = result.per_pixel(pre.crop, pre.crop)
print(f"p({card.class_names[top]}): whole image {result.unoccluded:.2f}")
lowest = int(result.probs.argmin())
row, col = divmod(lowest, len(result.lefts))
print(f"under the square: from {float(result.probs.min()):.2f} to {float(result.probs.max()):.2f}")
print(f"lowest with the square at top {result.tops[row]}, left {result.lefts[col]}")

fig, axes = plt.subplots(1, 2, figsize=(8, 4))
axes[0].imshow(np.asarray(view))
axes[0].set_title("input")
shown = axes[1].imshow(heat, cmap="viridis", vmin=0, vmax=max(result.unoccluded, heat.max()))
axes[1].set_title(f"p({card.class_names[top]}) with the square there")
fig.colorbar(shown, ax=axes[1], fraction=0.046)
for ax in axes:
    ax.axis("off")
fig.tight_layout()

# %%
# The dark squares are those whose removal costs the class most: the parts of the photo the
# classifier depends on. The paper drew the same conclusion from its Fig. 7: the network
# locates the object, rather than classifying from the context around it.
