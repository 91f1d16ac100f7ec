"""
LeNet-5 (1998): C3's table and training on MNIST
================================================

LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to document
recognition", Proceedings of the IEEE, 1998. Seven layers, 60,000 trainable parameters, and
one table that made the network cheaper than a fully connected C3: which of S2's six maps
each of C3's sixteen maps reads (Table I of the paper).

This chapter draws that table from the code, counts the network layer by layer against
section II.B's numbers, and trains it on MNIST for a few epochs on a part of the training set.
"""

# %%
# Table I, as the code holds it
# -----------------------------
# ``goingdeeper.models.lenet.C3_TABLE`` is typed as the paper prints it: one row per S2 map,
# one column per C3 map, ``X`` where they are connected.

import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import goingdeeper as gd
from goingdeeper.analysis import summarize
from goingdeeper.models.lenet import C3_TABLE
from goingdeeper.train import fit, resolve

DATA = Path(os.environ.get("GOINGDEEPER_DATA", "../shared/data"))

table = np.array([[c == "X" for c in row] for row in C3_TABLE])
print("\n".join(C3_TABLE))
print("inputs per C3 map:", table.sum(axis=0).tolist())

fig, ax = plt.subplots(figsize=(7, 3))
ax.imshow(table, cmap="Greys", vmin=0, vmax=1.4)
ax.set_xticks(range(16))
ax.set_yticks(range(6))
ax.set_xlabel("C3 feature map")
ax.set_ylabel("S2 feature map")
ax.set_title("LeNet-5 Table I: each column is one C3 map's inputs")
fig.tight_layout()

# %%
# Layer by layer, against section II.B
# -------------------------------------
# The paper counts trainable parameters and *connections*: a connection is a multiply-add,
# plus one for the bias of each unit. ``summarize`` gives each layer's parameters, output and
# multiply-adds; the connections follow.

PAPER = {  # section II.B: (trainable parameters, connections)
    "C1": (156, 122_304),  # "-": the paper gives no number
    "S2": (12, 5_880),
    "C3": (1_516, 151_600),
    "S4": (32, 2_000),
    "C5": (48_120, 48_120),
    "F6": (10_164, 10_164),
}

model = gd.create_model("lenet5")
summary = summarize(model, 32)
print(f"{'layer':6} {'output':>10} {'params':>8} {'paper':>8} {'connections':>12} {'paper':>8}")
for row in summary.rows:
    units = int(np.prod(row.output))
    connections = row.macs + units  # one bias connection per unit
    paper = PAPER.get(row.name)
    paper_params, paper_conn = (f"{paper[0]:,}", f"{paper[1]:,}") if paper else ("-", "-")
    shape = "x".join(map(str, row.output))
    print(
        f"{row.name:6} {shape:>10} {row.params:>8,} {paper_params:>8} "
        f"{connections:>12,} {paper_conn:>8}"
    )
print(f"total parameters: {summary.total_params:,} (the paper: 60,000)")

# %%
# C3 reads 60 input maps in all (6 x 3 + 9 x 4 + 1 x 6) instead of a full layer's 96: its
# 1,516 parameters are 60 5x5 kernels and 16 biases, where a full C3 would have 2,416.
# C5 and F6 are counted by the paper without biases among the "connections" of a fully
# connected layer: there every connection is a trainable parameter.

full = gd.create_model("lenet5", c3="full")
c3_full = sum(p.numel() for p in full.C3.parameters())
c3_table = sum(p.numel() for p in model.C3.parameters())
print(f"C3 with Table I: {c3_table:,} parameters; fully connected C3: {c3_full:,}")

# %%
# Training on MNIST, cut down
# ---------------------------
# The ``mnist-lenet5`` preset is the recipe that reached 99.08% (30 epochs on all 60,000
# digits, section III.C's distortions; ``python benchmarks/train_real.py mnist-lenet5``).
# To fit the site's build, this chapter trains on **5,000 training digits for 3 epochs**,
# without distortions, and tests on **2,000 of the 10,000 test digits** (both spread evenly
# over the classes). The data is read by the package itself from the tar of PNGs in
# ``mnist-png.tar.gz``; the run folder goes to a temporary directory.

run_dir = Path(tempfile.mkdtemp()) / "lenet5"
config = resolve(
    "mnist-lenet5",
    data=str(DATA / "mnist-png.tar.gz"),
    epochs=3,
    distortion=0.0,
    limit_train=5000,
    limit_test=2000,
    polyak_decay=0.99,
    workers=0,
    progress=False,
    tensorboard=False,
    plots=False,
    log_every=0,
    out=str(run_dir),
)
result = fit(config)
history = result.history  # one EpochStats per epoch: the rows of log.csv
for row in history:
    print(
        f"epoch {row.epoch}: train loss {row.train_loss:.3f}, "
        f"test accuracy {row.test_acc:.2%} (Polyak {row.polyak_test_acc:.2%}), "
        f"{row.images_per_s:.0f} images/s"
    )

# %%
# The paper's 0.95% test error took 20 passes over 60,000 digits; three passes over a
# twelfth of them land well short of it (the preset's cosine schedule, squeezed into three
# epochs, has taken the learning rate to zero by the end of the third). The Polyak average
# (an exponential average of the weights here) trails the raw weights this early: it still
# remembers the first, poor steps.

epochs = [row.epoch for row in history]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(epochs, [100 * (1 - row.test_acc) for row in history], "o-", label="this run")
ax.axhline(0.95, color="k", linestyle="--", label="paper: 0.95% (60,000 digits, 20 epochs)")
ax.set_xlabel("epoch")
ax.set_ylabel("test error (%)")
ax.set_xticks(epochs)
ax.set_yscale("log")
ax.legend()
ax.set_title("LeNet-5 on 5,000 MNIST digits")
fig.tight_layout()
