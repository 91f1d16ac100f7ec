"""
VGG (2014): configurations A-E, dense evaluation against crops
==============================================================

Simonyan and Zisserman, "Very deep convolutional networks for large-scale image
recognition", ICLR 2015, arXiv:1409.1556. Six configurations of one design, 11 to 19 layers
of 3x3 convolutions (Table 1), and two ways to test them: many crops, as AlexNet and GoogLeNet
did, or *dense* evaluation, where the fully connected layers become convolutions and the
network runs once over the whole image (section 3.2).

This chapter prints Table 1 from the code, counts each configuration against Table 2, checks
that the fully convolutional form computes what the network computes, and sets the cost of
dense evaluation beside the cost of 150 crops.
"""

# %%
# Table 1 from ``CFGS``
# ---------------------
# Each configuration is typed as the paper's column: ``conv<size>-<channels>``, blocks
# separated by max pools.

import time

import matplotlib.pyplot as plt
import numpy as np
import torch

import goingdeeper as gd
from goingdeeper.models.vgg import CFGS, parse_layer

for name, blocks in CFGS.items():
    layers = sum(len([spec for spec in block if spec != "LRN"]) for block in blocks) + 3
    print(f"{name:6} ({layers} weight layers): " + " | ".join(" ".join(b) for b in blocks))

# %%
# Parameters against Table 2
# --------------------------
# Table 2 rounds to millions: 133 (A, A-LRN), 133 (B), 134 (C), 138 (D), 144 (E).

PAPER_MILLIONS = {"A": 133, "A-LRN": 133, "B": 133, "C": 134, "D": 138, "E": 144}
registry = {"A": "vgg_a", "A-LRN": "vgg_a_lrn", "B": "vgg_b", "C": "vgg_c", "D": "vgg_d"}
registry["E"] = "vgg_e"
costs = {cfg: gd.model_costs(name) for cfg, name in registry.items()}
for cfg, cost in costs.items():
    card = gd.model_card(registry[cfg])
    print(
        f"{cfg:6} {cost.params:>12,} parameters (Table 2: {PAPER_MILLIONS[cfg]} M), "
        f"{cost.macs / 1e9:5.2f} G multiply-adds; top-5 error in the paper: {card.top5_error}"
    )

fig, ax1 = plt.subplots(figsize=(7, 3.5))
x = np.arange(len(costs))
ax1.bar(x - 0.2, [c.params / 1e6 for c in costs.values()], 0.4, label="parameters (M)")
ax1.scatter(
    x - 0.2, list(PAPER_MILLIONS.values()), color="k", marker="_", s=300, zorder=3, label="Table 2"
)
ax2 = ax1.twinx()
ax2.bar(x + 0.2, [c.macs / 1e9 for c in costs.values()], 0.4, color="C1", label="multiply-adds (G)")
ax1.set_xticks(x, list(costs))
ax1.set_ylabel("parameters (millions)")
ax2.set_ylabel("multiply-adds at 224 (G)")
ax1.legend(loc="upper left", fontsize=8)
ax2.legend(loc="upper center", fontsize=8)
ax1.set_title("VGG: parameters barely move, the arithmetic grows 2.6x")
fig.tight_layout()

# %%
# Almost all of the parameters are the three fully connected layers (123.6 million of them);
# the depth costs arithmetic, not parameters.
#
# The fully convolutional form
# ----------------------------
# Section 3.2: "the fully-connected layers are first converted to convolutional layers (the
# first FC layer to a 7x7 conv. layer, the last two FC layers to 1x1 conv. layers)". On a
# 224x224 input the score map is 1x1 and must equal the network's own output. Configuration A,
# with random weights (no VGG weights are available offline; the identity does not depend on
# them):

torch.manual_seed(0)
model = gd.create_model("vgg_a").eval()
dense = model.fully_convolutional().eval()
x = torch.randn(1, 3, 224, 224)
with torch.no_grad():
    plain = model(x)
    scores = dense(x)
print(f"score map at 224: {tuple(scores.shape[-2:])}")
difference = float((scores.flatten() - plain.flatten()).abs().max())
print(f"largest difference from the network: {difference:.2e}")
print(f"largest logit: {float(plain.abs().max()):.2e}")

# %%
# On a larger image the map grows: the class scores of every 224x224 window at a stride of
# 32 pixels, computed once with the convolutions shared. A 256x256 image gives a 2x2 map:

with torch.no_grad():
    start = time.perf_counter()
    scores = dense(torch.randn(1, 3, 256, 256))
print(f"score map at 256: {tuple(scores.shape[-2:])} ({time.perf_counter() - start:.1f} s)")

# %%
# What each protocol costs
# ------------------------
# Multiply-adds scale with the area of every map, so dense evaluation's cost at any size can be
# written from Table 1; the function below does so and is checked against the package's own
# count at 224x224 first.


def dense_macs(cfg: str, height: int, width: int, classes: int = 1000) -> int:
    """Multiply-adds of configuration `cfg` run densely on a height x width image."""
    macs, cin, h, w = 0, 3, height, width
    for block in CFGS[cfg]:
        for spec in block:
            if spec == "LRN":
                continue
            k, cout = parse_layer(spec)
            macs += h * w * k * k * cin * cout
            cin = cout
        h, w = h // 2, w // 2
    positions = (h - 6) * (w - 6)  # fc6 is a 7x7 convolution
    return macs + positions * (7 * 7 * 512 * 4096 + 4096 * 4096 + 4096 * classes)


for cfg in ("A", "D", "E"):
    print(f"{cfg}: formula {dense_macs(cfg, 224, 224):,}, counted {costs[cfg].macs:,}")

# %%
# The paper's Table 5 protocols for configuration D on a 4:3 photo: dense evaluation at three
# scales Q = 256, 384, 512 with horizontal flips (6 passes), and the multi-crop evaluation
# of section 4.3: a 5x5 grid of 224x224 crops with flips at each of the three scales, 150
# crops. Dense evaluation shares the convolutions of overlapping windows, the crops do not:

protocols = {"1 crop": costs["D"].macs}
protocols["dense, 3 scales x 2 flips"] = sum(
    2 * dense_macs("D", q, q * 4 // 3) for q in (256, 384, 512)
)
protocols["150 crops"] = 150 * costs["D"].macs
for name, macs in protocols.items():
    print(f"{name:28} {macs / 1e9:8.1f} G multiply-adds per image")
dense_share = protocols["dense, 3 scales x 2 flips"] / protocols["150 crops"]
print(f"dense evaluation costs {dense_share:.0%} of the 150 crops")

fig, ax = plt.subplots(figsize=(6, 3))
ax.barh(list(protocols), [m / 1e9 for m in protocols.values()])
ax.set_xscale("log")
ax.set_xlabel("G multiply-adds per test image (VGG D, 4:3 photo)")
ax.set_title("Test protocols of VGG, by cost")
fig.tight_layout()

# %%
# In Table 5 the two protocols gave configuration D about the same error, and their
# combination the lowest (the card's figure above: 7.2% top-5). ``goingdeeper eval --views
# dense --scales 256,384,512`` runs the dense protocol, ``--views 150`` the crops and
# ``--views dense+150`` averages the two posteriors, Table 5's best row.
