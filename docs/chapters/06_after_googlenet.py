"""
After GoogLeNet: ResNet, DenseNet, Xception and SE-Net
======================================================

Four papers that took the line past 2014, each built here with its own table:

* He, Zhang, Ren and Sun, "Deep residual learning for image recognition", CVPR 2016,
  arXiv:1512.03385: each block learns a residual added to its input.
* Huang, Liu, van der Maaten and Weinberger, "Densely connected convolutional networks",
  CVPR 2017, arXiv:1608.06993: each layer reads every earlier map of its block.
* Chollet, "Xception: deep learning with depthwise separable convolutions", CVPR 2017,
  arXiv:1610.02357: Inception taken to its limit, a 3x3 per channel then a 1x1 across them.
* Hu, Shen and Sun, "Squeeze-and-excitation networks", CVPR 2018, arXiv:1709.01507: a gate
  per channel computed from the whole map.

No weights for these are available offline; everything below is counting and small checks
that do not depend on trained weights.
"""

# %%
# ResNet: Table 1's multiply-adds
# -------------------------------
# Table 1 of the ResNet paper gives each network's cost in FLOPs, counted as multiply-adds:
# 1.8, 3.6, 3.8, 7.6 and 11.3 billion. ``resnet50`` ... ``resnet152`` are torchvision's v1.5
# (stride 2 in the 3x3 of a bottleneck); ``resnet50_paper`` ... put it in the first 1x1, as
# section 3.4 does, and cost what the paper says.

import re

import matplotlib.pyplot as plt
import torch
from torch import nn

import goingdeeper as gd
from goingdeeper.models.senet import SqueezeExcitation

PAPER_GMACS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}
for depth, paper in PAPER_GMACS.items():
    names = [f"resnet{depth}"] + ([f"resnet{depth}_paper"] if depth >= 50 else [])
    counted = ", ".join(f"{n} {gd.model_costs(n).macs / 1e9:.2f}" for n in names)
    print(f"ResNet-{depth:<3}  Table 1: {paper:4.1f} G   counted: {counted}")

# %%
# The identity shortcut: a block whose residual branch gives zero passes its input through
# (and the ReLU after the addition leaves a non-negative input as it is). Zeroing the last
# BatchNorm's scale of each block, as some training recipes do at the start, makes every
# block of ``resnet18`` an identity:

torch.manual_seed(0)
resnet = gd.create_model("resnet18").eval()
block = resnet.layer1[0]
x = torch.relu(torch.randn(1, 64, 56, 56))
with torch.no_grad():
    nn.init.zeros_(block.bn2.weight)
    nn.init.zeros_(block.bn2.bias)
    print(f"block(x) - x, largest: {float((block(x) - x).abs().max()):.1e}")

# %%
# DenseNet: the growth rate
# -------------------------
# Inside a dense block every layer adds k = 32 maps to what the next one reads; a transition
# layer halves the width (compression 0.5, DenseNet-BC). The input width of each dense
# layer's 1x1 bottleneck convolution in ``densenet121``, read from the model:

densenet = gd.create_model("densenet121")
widths, blocks = [], []
for name, module in densenet.features.named_modules():
    if re.fullmatch(r"denseblock\d\.denselayer\d+\.conv1", name):
        widths.append(module.in_channels)
        blocks.append(int(name[len("denseblock")]))
for b in sorted(set(blocks)):
    w = [width for width, bb in zip(widths, blocks, strict=True) if bb == b]
    print(f"dense block {b}: {len(w):2} layers, reading {w[0]} ... {w[-1]} maps (+{w[1] - w[0]})")

fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(widths, ".-")
ax.set_xlabel("dense layer (in order)")
ax.set_ylabel("input maps")
ax.set_title("DenseNet-121: widths grow by k = 32 and halve at each transition")
fig.tight_layout()

# %%
# Xception: what separable convolutions save
# ------------------------------------------
# Xception's parameter count, against Table 3 of its paper (22,855,952), and for each
# depthwise separable convolution the multiply-adds of a full 3x3 convolution of the same
# width against the depthwise 3x3 plus the pointwise 1x1:

xception = gd.create_model("xception")
params = sum(p.numel() for p in xception.parameters())
print(f"Xception: {params:,} parameters (Table 3: 22,855,952)")
convs = dict(xception.named_modules())
ratios = []
for name, module in convs.items():
    if name.endswith(".depthwise"):
        pointwise = convs[name[: -len("depthwise")] + "pointwise"]
        cin, cout = module.in_channels, pointwise.out_channels
        full = 9 * cin * cout
        separable = 9 * cin + cin * cout
        ratios.append(full / separable)
print(
    f"{len(ratios)} separable convolutions; a full 3x3 would cost "
    f"{min(ratios):.1f}x to {max(ratios):.1f}x as much per output position"
)

# %%
# SE: a gate per channel
# ----------------------
# The SE block squeezes each map to its mean, passes the vector through two fully connected
# layers (C -> C/16 -> C) and a sigmoid, and scales each map by its gate (Eqs. 2-4). The
# gates of one random 256-channel map, all strictly between 0 and 1:

se = SqueezeExcitation(256)
maps = torch.randn(1, 256, 14, 14)
with torch.no_grad():
    gates = (se(maps) / maps).flatten(2)[0, :, 0]
print(f"gates: {float(gates.min()):.3f} to {float(gates.max()):.3f}")
extra = gd.model_costs("se_resnet50").params - gd.model_costs("resnet50_paper").params
macs = gd.model_costs("se_resnet50").macs / gd.model_costs("resnet50_paper").macs - 1
print(f"SE-ResNet-50: {extra:,} more parameters than ResNet-50, {macs:.2%} more multiply-adds")
print("the paper (Table 2): ~27.5 M against ~25 M parameters, 3.87 against 3.86 GFLOPs")

# %%
# The line
# --------
# Every ImageNet network of the registry by its cost and the first top-5 error its paper
# reports (the cards' ``top5_error``). The protocols differ (one crop, ten, 144, several
# networks), so the plot shows the trend, not a ranking.

points = []
for name in gd.list_models():
    card = gd.model_card(name)
    found = re.match(r"\s*([\d.]+)%", card.top5_error)
    if card.num_classes != 1000 or found is None or name.endswith(("_bn", "_naive")):
        continue
    if re.fullmatch(r"vgg\d+|alexnet_torchvision|googlenet_torchvision|.*_paper", name):
        continue  # the same paper's network in another layout
    points.append((name, card.family, gd.model_costs(name).macs / 1e9, float(found[1])))

fig, ax = plt.subplots(figsize=(8, 5))
for family in dict.fromkeys(p[1] for p in points):
    chosen = [p for p in points if p[1] == family]
    ax.scatter([p[2] for p in chosen], [p[3] for p in chosen], label=family)
for name, _, cost, error in points:
    ax.annotate(name, (cost, error), fontsize=7, xytext=(3, 3), textcoords="offset points")
ax.set_xscale("log")
ax.set_xlabel("G multiply-adds per 224x224 image (log)")
ax.set_ylabel("top-5 error in the paper (%)")
ax.legend(fontsize=8)
ax.set_title("The classic CNN line: cost against the papers' top-5 error")
fig.tight_layout()
