"""The test protocol: views per image, softmax averaged over views and over models, top-k error.

GoogLeNet section 7: "The softmax probabilities are averaged over multiple crops and over all
the individual classifiers to obtain the final prediction." Averaged logits and the maximum
probability are offered as alternatives (the paper tried max pooling over crops and found it
worse than averaging). Each image is decoded once; all its views, and the views of the images
grouped with it, go through each model in batches.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import torch
from PIL import Image
from torch import Tensor, nn

from ..data.sources import ImageDataset, Skipped
from ..errors import EvalError
from ..preprocess import Preprocessing
from ..results import Accuracy, EvalResult, MemberResult, RealTop1
from ..weights.format import WeightsCard
from .dense import dense_form, dense_scales, dense_scores
from .views import VIEW_FUNCTIONS, num_views

log = logging.getLogger(__name__)

# "10" is AlexNet's ten views, "10-rect" and "10-warp" two other readings of them (views.py);
# "dense+150" is VGG's Table 5 combination: the posteriors of both protocols averaged
VIEWS = ("1", "10", "10-rect", "10-warp", "144", "150", "dense", "dense+150")
AGGREGATES = ("softmax", "logits", "max")


@dataclass(frozen=True)
class _Member:
    model: nn.Module
    pre: Preprocessing
    name: str
    class_names: tuple[str, ...]
    dense: nn.Module | None = None  # the fully convolutional form, for dense evaluation
    scales: tuple[int, ...] = ()  # dense evaluation's test scales Q


def _members(
    models: Sequence,
    names: Sequence[str] | None,
    views: str,
    scales: Sequence[int] | None,
    multi: bool = True,
) -> list[_Member]:
    """The models with what each needs; dense evaluation's scales are `scales`, or else those
    that the scale each model was trained at calls for (its card's `training_scale`;
    `dense.dense_scales`, section 4.2 with `multi`, else 4.1)."""
    if not models:
        raise EvalError("no models to evaluate; give at least one (model, preprocessing) pair")
    out = []
    for i, pair in enumerate(models):
        model, spec = pair
        trained_at: Sequence[int] = ()
        if isinstance(spec, WeightsCard):
            pre, classes, name = spec.preprocessing, tuple(spec.class_names), spec.model
            trained_at = spec.training_scale
        elif isinstance(spec, Preprocessing):
            pre, classes, name = spec, (), type(model).__name__.lower()
        else:
            raise EvalError(
                f"model {i}: expected a Preprocessing or a WeightsCard beside the model, "
                f"got {type(spec).__name__}"
            )
        q = tuple(scales) if scales is not None else dense_scales(trained_at, pre.crop, multi=multi)
        out.append(_Member(model, pre, names[i] if names else name, classes, scales=q))
    named = [m for m in out if m.class_names]
    if any(m.class_names != named[0].class_names for m in named):
        raise EvalError("the models' class lists differ; an ensemble needs the same classes")
    if views.startswith("dense"):  # each model's fully convolutional form, or a refusal
        out = [replace(m, dense=dense_form(m.model, m.name).eval()) for m in out]
    return out


def _check_options(views: str, aggregate: str, batch_size: int) -> None:
    if views not in VIEWS:
        raise EvalError(f"views must be one of {', '.join(VIEWS)}; got {views!r}")
    if aggregate not in AGGREGATES:
        raise EvalError(f"aggregate must be one of {', '.join(AGGREGATES)}; got {aggregate!r}")
    if batch_size < 1:
        raise EvalError(f"batch_size must be at least 1; got {batch_size}")


def _check_real(real: Sequence | None, dataset: Sequence) -> None:
    if real is not None and len(real) != len(dataset):
        raise EvalError(f"{len(real)} ReaL label sets for {len(dataset)} images; give one each")


def _forward(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """N x classes logits, in ceil(N / batch_size) batches of equal size (no ragged tail)."""
    # an nn.Module runs where its weights are; a runtime (ONNX Runtime) takes CPU tensors
    params = model.parameters() if isinstance(model, nn.Module) else iter(())
    device = next(params, torch.empty(0)).device
    chunks = torch.tensor_split(x, math.ceil(len(x) / batch_size))
    return torch.cat([_class_scores(model(c.to(device))).float().cpu() for c in chunks])


def _class_scores(out: Tensor) -> Tensor:
    """N x C; a fully convolutional net's score map on each crop, averaged as in dense
    evaluation."""
    return out.mean(dim=(2, 3)) if out.ndim == 4 else out


def distinct_views(x: Tensor, stride: int = 97) -> tuple[Tensor, Tensor]:
    """Indices of the distinct views in `x` (N x ...) and, for each view, which of them it equals.

    Views that coincide bit for bit go through the model once: 10 crops of an image no
    larger than the crop are one crop and its mirror five times over, and a square image gives
    section 7's three squares the same pixels. The result is the same as running every view.
    Candidates are grouped by a strided sample of their values, then compared in full.
    """
    flat = x.reshape(len(x), -1)
    keys = flat[:, ::stride].contiguous().numpy()
    first: dict[bytes, list[int]] = {}
    distinct: list[int] = []
    where: list[int] = []
    for i in range(len(x)):
        same = first.setdefault(keys[i].tobytes(), [])
        match = next((k for k in same if torch.equal(flat[distinct[k]], flat[i])), None)
        if match is None:
            match = len(distinct)
            distinct.append(i)
            same.append(match)
        where.append(match)
    return torch.tensor(distinct), torch.tensor(where)


def _per_view(logits: Tensor, aggregate: str) -> Tensor:
    return logits if aggregate == "logits" else logits.softmax(-1)


def _reduce(scores: Tensor, aggregate: str, dim: int) -> Tensor:
    return scores.amax(dim) if aggregate == "max" else scores.mean(dim)


def _member_scores(
    member: _Member,
    images: list[Image.Image],
    views: str,
    aggregate: str,
    batch_size: int,
) -> Tensor:
    """images x classes: one model's scores, aggregated over each image's views (and, for
    dense+150, over the two protocols)."""
    parts = []
    if views.startswith("dense"):  # every image has its own size: one image at a time
        scores = [dense_scores(member.dense, im, member.pre, member.scales) for im in images]
        parts.append(torch.stack(scores).float().cpu())
    if views != "dense":
        make = VIEW_FUNCTIONS["150" if views == "dense+150" else views]
        stacks = [make(im, member.pre) for im in images]
        x = stacks[0] if len(stacks) == 1 else torch.cat(stacks)  # 144 views: 87 MB, no copy
        distinct, where = distinct_views(x)
        logits = _forward(member.model, x[distinct] if len(distinct) < len(x) else x, batch_size)
        parts.append(logits[where].view(len(images), len(stacks[0]), -1))
    per_protocol = [_reduce(_per_view(logits, aggregate), aggregate, 1) for logits in parts]
    return _reduce(torch.stack(per_protocol), aggregate, 0)


def _groups(dataset: ImageDataset, size: int):
    for start in range(0, len(dataset), size):
        yield start, range(start, min(start + size, len(dataset)))


def _topk(scores: Tensor, k: int = 5) -> Tensor:
    return scores.topk(min(k, scores.shape[1]), dim=1).indices


def _cat_tops(tops: list[Tensor]) -> Tensor:
    return torch.cat(tops) if tops else torch.zeros(0, 1, dtype=torch.long)


def metrics(top: Tensor, labels: Tensor, num_classes: int, confusion: bool = False) -> Accuracy:
    """Top-1/top-5 of top-k predictions `top` (N x k), per-class top-1 accuracy (None for an
    absent class) and optionally the confusion matrix (rows: true class, columns: top-1
    prediction)."""
    hit1 = top[:, 0] == labels
    hit5 = (top == labels[:, None]).any(1)
    seen = torch.bincount(labels, minlength=num_classes)
    right = torch.bincount(labels[hit1], minlength=num_classes)
    matrix = None
    if confusion:
        index = labels * num_classes + top[:, 0]
        counts = torch.bincount(index, minlength=num_classes * num_classes)
        matrix = counts.view(num_classes, num_classes).tolist()
    return Accuracy(
        images=len(labels),
        correct_top1=int(hit1.sum()),
        correct_top5=int(hit5.sum()),
        per_class_top1=[
            (r / s if s else None) for r, s in zip(right.tolist(), seen.tolist(), strict=True)
        ],
        confusion=matrix,
    )


@dataclass
class _Tally:
    """What an evaluation has gathered so far."""

    labels: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)  # the dataset positions of those images
    skipped: list[str] = field(default_factory=list)
    scores: list[Tensor] = field(default_factory=list)  # images x classes, over the models
    member_tops: list[list[Tensor]] = field(default_factory=list)  # per model: top-5 indices


def evaluate(
    models: Sequence[tuple[nn.Module, Preprocessing | WeightsCard]],
    dataset: ImageDataset | Sequence[tuple[Image.Image, int]],
    views: str = "1",
    aggregate: str = "softmax",
    *,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    confusion: bool = False,
    per_model: bool = False,
    keep_scores: bool = False,
    dense_scales: Sequence[int] | None = None,
    dense_multi: bool = True,
    names: Sequence[str] | None = None,
    real: Sequence[Sequence[int] | None] | None = None,
) -> EvalResult:
    """Evaluate one model or an ensemble on a data set with a view protocol.

    `models`: (model, Preprocessing or WeightsCard) pairs; each model gets its own views.
    `dataset`: a split of a `Source` (`data.discover`), labelled in the models' classes, or
    (PIL image, class index) pairs held in memory. `views`: one of `VIEWS`.
    `aggregate`: how views and models are combined: "softmax" (mean probability, the paper),
    "logits" (mean logit) or "max" (largest probability). `batch_size`: views per forward pass.
    `dense_scales`: dense evaluation's test scales Q; None: for each model those of the scale
    it was trained at (`dense.dense_scales` of its card's `training_scale`: section 4.2's
    three with `dense_multi`, else section 4.1's one), or 256, 384, 512 when not known.
    Unreadable images are skipped and named in `skipped_files`. `real`: for each image, the
    classes ReaL's re-assessment found in it (empty or None: none), which adds ReaL top-1.
    `per_model`: each model's own figures too (`members`); `keep_scores`: the combined scores
    (images x classes) and labels on the result.
    """
    _check_options(views, aggregate, batch_size)
    if not hasattr(dataset, "load"):  # pairs held in memory
        dataset = ImageDataset.in_memory(dataset)
    _check_real(real, dataset)
    members = _members(models, names, views, dense_scales, dense_multi)
    per_image = num_views(views, members[0].scales)
    group = 1 if views.startswith("dense") else max(1, batch_size // per_image)
    training = [m.model.training for m in members]
    start = time.perf_counter()
    tally = _Tally(member_tops=[[] for _ in members])
    score = partial(
        _member_scores,
        views=views,
        aggregate=aggregate,
        batch_size=batch_size,
    )
    try:
        for m in members:
            m.model.eval()
        with torch.inference_mode():
            for first, chunk in _groups(dataset, group):
                _score_group(dataset, chunk, members, score, aggregate, tally)
                if progress is not None:
                    progress(first + len(chunk), len(dataset))
    finally:
        for m, was in zip(members, training, strict=True):
            m.model.train(was)
    seconds = time.perf_counter() - start
    scores = torch.cat(tally.scores) if tally.scores else torch.zeros(0, 1)
    num_classes = scores.shape[1] if tally.scores else 0
    labels = torch.tensor(tally.labels, dtype=torch.long)
    sets = [set(real[k] or ()) for k in tally.kept] if real is not None else None
    total = metrics(_topk(scores), labels, num_classes, confusion)
    if sets is not None:
        total = replace(
            total, real=_real_top1(scores.argmax(1).tolist() if len(scores) else [], sets)
        )
    return EvalResult.of(
        total,
        model_names=[m.name for m in members],
        num_classes=num_classes,
        views=views,
        crops=per_image,
        cost=sum(num_views(views, m.scales) for m in members),  # Table 3's
        aggregate=aggregate,
        seconds=seconds,
        skipped_files=tally.skipped,
        dense_scales=[list(m.scales) for m in members] if views.startswith("dense") else None,
        members=_member_results(members, tally, labels, num_classes, sets) if per_model else [],
        scores=scores if keep_scores else None,
        labels=tally.labels if keep_scores else None,
    )


def _score_group(
    dataset: ImageDataset, chunk: range, members: list[_Member], score, aggregate: str, tally
):
    """Decode one group of images and add every model's scores for them to `tally`."""
    images, chunk_labels, kept = _decode_group(dataset, chunk, tally.skipped)
    if not images:
        return
    per_member = [score(m, images) for m in members]
    _check_classes(per_member, members, chunk_labels)
    _check_finite(per_member, members)
    for tops, s in zip(tally.member_tops, per_member, strict=True):
        tops.append(_topk(s))
    tally.scores.append(_reduce(torch.stack(per_member), aggregate, 0))
    tally.labels += chunk_labels
    tally.kept += kept


def _decode_group(
    dataset: ImageDataset, chunk: range, skipped: list[str]
) -> tuple[list, list[int], list[int]]:
    """The group's images, their labels and indices; the unreadable ones named in `skipped`."""
    images, labels, kept = [], [], []
    for i in chunk:
        item = dataset.load(i)
        if isinstance(item, Skipped):
            log.warning("skipped: %s", item)
            if item.name not in skipped:
                skipped.append(item.name)
            continue
        images.append(item[0])
        labels.append(int(item[1]))
        kept.append(i)
    return images, labels, kept


def _check_classes(per_member: list[Tensor], members: list[_Member], labels: list[int]) -> None:
    # checked on the first batch already, not after an hour of 144-crop evaluation
    widths = [s.shape[1] for s in per_member]
    if len(set(widths)) > 1:
        named = ", ".join(f"{m.name}: {w}" for m, w in zip(members, widths, strict=True))
        raise EvalError(f"the models disagree on the number of classes ({named})")
    bad = [label for label in labels if not 0 <= label < widths[0]]
    if bad:
        raise EvalError(f"label {bad[0]} is out of range for a model with {widths[0]} classes")


def _check_finite(per_member: list[Tensor], members: list[_Member]) -> None:
    for member, scores in zip(members, per_member, strict=True):
        if not torch.isfinite(scores).all():
            raise EvalError(
                f"{member.name} gives scores that are not finite (NaN or infinity): its weights "
                "or its preprocessing (a zero std?) are broken, so no error rate would mean "
                "anything"
            )


def _member_results(
    members: list[_Member],
    tally: _Tally,
    labels: Tensor,
    num_classes: int,
    sets: list[set[int]] | None,
) -> list[MemberResult]:
    """Each model of an ensemble scored on its own (and on ReaL's labels, `sets`)."""
    out = []
    for m, tops in zip(members, tally.member_tops, strict=True):
        top = _cat_tops(tops)
        accuracy = metrics(top, labels, num_classes)
        if sets is not None:
            accuracy = replace(accuracy, real=_real_top1(top[:, 0].tolist(), sets))
        out.append(MemberResult.of(accuracy, name=m.name))
    return out


def _real_top1(top1: list[int], sets: list[set[int]]) -> RealTop1:
    """The top class is right when it is any of the classes the re-assessment found; images
    in which it found no clear class are left out, as in the paper."""
    hits = [t in s for t, s in zip(top1, sets, strict=True) if s]
    return RealTop1(images=len(hits), accuracy=sum(hits) / len(hits) if hits else float("nan"))
