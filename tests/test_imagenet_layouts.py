"""ImageNet as people store it: class maps by identity, the validation layouts and their label
files, ReaL labels; checked against the BVLC weights on real photos, scored by hand."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from goingdeeper.cli import main
from goingdeeper.data import ClassMap, discover, imagenet_class_ids, imagenet_class_names
from goingdeeper.data.imagenet import imagenet_classes
from goingdeeper.data.imagenet.labels import devkit_class_order, read_labels
from goingdeeper.errors import DataError
from goingdeeper.images import load_image
from goingdeeper.weights import import_bvlc, save_weights

IMAGENET = ClassMap(imagenet_class_names(), imagenet_class_ids())


# --- class maps ------------------------------------------------------------------------------


def test_imagenet_wordnet_ids_match_an_independent_list(shared_data):
    index = json.loads((shared_data / "imagenet_class_index.json").read_text())
    assert imagenet_class_ids() == [index[str(i)][0] for i in range(1000)]


@pytest.mark.parametrize(
    ("token", "index"),
    [
        ("n01440764", 0),
        ("tench", 0),
        ("TENCH", 0),
        ("great_white_shark", 2),
        ("great-white shark", 2),
        ("Cardigan", 264),  # the corgi
        ("cardigan", 474),  # the sweater
        ("crane bird", 134),
        ("crane", 517),
        ("999", 999),
    ],
)
def test_names_ids_and_indices_resolve_by_identity(token, index):
    assert IMAGENET.resolve(token) == index


def test_unknown_and_ambiguous_names_say_what_fits():
    with pytest.raises(DataError, match=r"'CARDIGAN' fits several classes \(264 'Cardigan'"):
        IMAGENET.resolve("CARDIGAN")
    with pytest.raises(
        DataError, match="'tenchh' is not one of the 1000 classes.*closest: 0 'tench'"
    ):
        IMAGENET.resolve("tenchh")
    with pytest.raises(DataError, match="'n09999999' is not one of"):
        IMAGENET.resolve("n09999999")
    with pytest.raises(DataError, match="'1000' is not one of"):
        IMAGENET.resolve("1000")
    with pytest.raises(DataError, match="'tench' and 'n01440764' both mean class 0"):
        IMAGENET.resolve_all(["tench", "n01440764"], "val")


def test_a_card_without_ids_takes_imagenet_ids_from_its_names():
    assert ClassMap.of(imagenet_class_names()).resolve("n02113186") == 264
    assert ClassMap.of([], num_classes=3).resolve("2") == 2


# --- real photos in each layout --------------------------------------------------------------


def _sample_files(shared_data: Path, every: int, count: int) -> list[Path]:
    files = sorted((shared_data / "imagenet-sample").iterdir())
    return files[::every][:count]


def _wnid(path: Path) -> str:
    return path.name.split("_", 1)[0]


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source.resolve())


@pytest.fixture(scope="module")
def bvlc_file(shared_data, tmp_path_factory):
    model, card = import_bvlc(shared_data / "bvlc-googlenet")
    path = save_weights(model, card, tmp_path_factory.mktemp("w") / "bvlc.safetensors")
    return path, model, card


def _by_hand(model, card, files: list[Path]) -> list[int]:
    """Top-1 class of each photo: the weights' own transform, the model, argmax."""
    with torch.inference_mode():
        x = torch.stack([card.preprocessing(load_image(f)) for f in files])
        return model(x).argmax(1).tolist()


def _eval(capsys, weights: Path, data: Path, *extra: str) -> dict:
    capsys.readouterr()
    code = main(
        ["eval", "--weights", str(weights), "--data", str(data), "--format", "json", *extra]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    (row,) = json.loads(out)
    return row


@pytest.mark.slow
def test_wordnet_id_and_name_folders_equal_scoring_by_hand(
    shared_data, bvlc_file, tmp_path, capsys
):
    weights, model, card = bvlc_file
    files = _sample_files(shared_data, every=20, count=50)  # 50 classes spread over the 1,000
    names = imagenet_class_names()
    for f in files:
        index = imagenet_class_ids().index(_wnid(f))
        _link(f, tmp_path / "by_wnid" / _wnid(f) / f.name)
        _link(f, tmp_path / "by_name" / names[index].replace(" ", "_") / f.name)
    truth = [imagenet_class_ids().index(_wnid(f)) for f in files]
    right = sum(p == t for p, t in zip(_by_hand(model, card, files), truth, strict=True))
    by_wnid = _eval(capsys, weights, tmp_path / "by_wnid")
    by_name = _eval(capsys, weights, tmp_path / "by_name")
    shards = tmp_path / "shards"
    assert (
        main(
            [
                "data",
                "shard",
                str(tmp_path / "by_wnid"),
                "--as-split",
                "val",
                "--out",
                str(shards),
                "--shard-size",
                "2MB",
            ]
        )
        == 0
    )
    by_shards = _eval(capsys, weights, shards)
    assert by_wnid == by_name == by_shards
    assert by_wnid["images"] == 50
    capsys.readouterr()
    assert main(["predict", "--data", str(shards), "--weights", str(weights), "--top", "1"]) == 0
    summary = capsys.readouterr().out.splitlines()[-1]
    assert summary.startswith("50 labelled images: top-1") and f"({right})" in summary
    assert round(by_wnid["top1_error"] * 50 / 100) == 50 - right
    assert right >= 30  # the BVLC weights do know these photos (about 75% on the sample)


def test_flat_sample_layout_keeps_every_label_when_a_file_is_missing(shared_data, tmp_path):
    index = json.loads((shared_data / "imagenet_class_index.json").read_text())
    wnid_to_class = {wnid: int(i) for i, (wnid, _) in index.items()}
    files = sorted((shared_data / "imagenet-sample").iterdir())
    for f in files[:40]:
        _link(f, tmp_path / f.name)
    (tmp_path / files[3].name).unlink()  # one photo gone: the ones after it keep their class
    (tmp_path / "._n01440764_tench.JPEG").write_bytes(b"macOS resource fork")
    found = discover(tmp_path, known=imagenet_classes()).split("all")
    assert len(found.samples) == 39
    assert all(label == wnid_to_class[_wnid(Path(p))] for p, label in found.samples)
    assert [label for _, label in found.samples][3] == 4
    own = discover(tmp_path)  # without a model: the 39 classes present, by WordNet id
    assert own.layout == "flat, WordNet-id file names" and len(own.classes) == 39
    assert list(own.classes.ids) == sorted({_wnid(Path(p)) for p, _ in found.samples})


def _devkit_meta(path: Path, order: list[str]) -> None:
    """A meta.mat shaped like the ILSVRC2012 devkit's: leaves numbered 1..1000 in `order`,
    then inner synsets of the hierarchy."""
    from scipy.io import savemat

    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    rows = [(i, w, w, 0) for i, w in enumerate(order, 1)]
    rows += [(1001, "n00001740", "entity", 3), (1002, "n00002684", "object", 5)]
    synsets = np.array(rows, dtype=fields)
    savemat(path, {"synsets": synsets})


def _flat_val(files: list[Path], root: Path) -> list[str]:
    """The photos as ILSVRC2012_val_00000001.JPEG ...; their WordNet ids in photo order."""
    for number, f in enumerate(files, 1):
        _link(f, root / f"ILSVRC2012_val_{number:08d}.JPEG")
    return [_wnid(f) for f in files]


@pytest.mark.slow
def test_ilsvrc_flat_folder_with_each_label_file_equals_class_folders(
    shared_data, bvlc_file, tmp_path, capsys
):
    weights, _, _ = bvlc_file
    files = _sample_files(shared_data, every=37, count=24)
    for f in files:
        _link(f, tmp_path / "folders" / _wnid(f) / f.name)
    wnids = _flat_val(files, tmp_path / "val")
    standard = imagenet_class_ids()
    devkit = list(np.random.default_rng(0).permutation(standard))  # not the standard order
    kit = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    kit.mkdir(parents=True)
    _devkit_meta(kit / "meta.mat", devkit)
    truth = kit / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text("".join(f"{devkit.index(w) + 1}\n" for w in wnids))
    with tarfile.open(tmp_path / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        tar.add(kit.parent, arcname="ILSVRC2012_devkit_t12")
    loc = tmp_path / "LOC_val_solution.csv"
    rows = [
        f"ILSVRC2012_val_{n:08d},{w} 10 20 200 300 {w} 5 5 50 50" for n, w in enumerate(wnids, 1)
    ]
    loc.write_text("ImageId,PredictionString\n" + "\n".join(rows[::-1]) + "\n")
    caffe = tmp_path / "val.txt"
    caffe.write_text(
        "".join(
            f"ILSVRC2012_val_{n:08d}.JPEG {standard.index(w)}\n" for n, w in enumerate(wnids, 1)
        )
    )

    expected = {f"ILSVRC2012_val_{n:08d}": w for n, w in enumerate(wnids, 1)}
    label_files = [truth, tmp_path / "ILSVRC2012_devkit_t12.tar.gz", loc, caffe]
    for labels in label_files:
        assert read_labels(labels) == expected, labels
    reference = _eval(capsys, weights, tmp_path / "folders")
    for labels in label_files:
        assert _eval(capsys, weights, tmp_path / "val", "--labels", str(labels)) == reference
    (tmp_path / "LOC_val_solution.csv").rename(tmp_path / "val" / "LOC_val_solution.csv")
    assert _eval(capsys, weights, tmp_path / "val") == reference  # found beside the photos


def test_bad_label_files_are_one_line_each(tmp_path, capsys):
    with pytest.raises(DataError, match="no such label file"):
        read_labels(tmp_path / "LOC_val_solution.csv")
    caffe = tmp_path / "val.txt"
    caffe.write_text("ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG 1000\n")
    with pytest.raises(DataError, match="val.txt:2: class index 1000 is beyond ImageNet's 0..999"):
        read_labels(caffe)
    _devkit_meta(tmp_path / "meta.mat", imagenet_class_ids())
    truth = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text("1\n1001\n")
    with pytest.raises(
        DataError, match="ground_truth.txt:2: ILSVRC2012_ID 1001 is outside 1..1000"
    ):
        read_labels(truth)
    loc = tmp_path / "LOC_val_solution.csv"
    loc.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,dog 1 2 3 4\n")
    with pytest.raises(DataError, match="LOC_val_solution.csv:2: no WordNet id"):
        read_labels(loc)


def test_devkit_ground_truth_without_its_class_order_is_refused(tmp_path):
    truth = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text("490\n361\n")
    with pytest.raises(DataError, match="keep meta.mat beside"):
        read_labels(truth)
    _devkit_meta(tmp_path / "meta.mat", imagenet_class_ids()[::-1])
    assert devkit_class_order((tmp_path / "meta.mat").read_bytes(), "meta.mat")[0] == "n15075141"
    assert read_labels(truth) == {
        "ILSVRC2012_val_00000001": imagenet_class_ids()[1000 - 490],
        "ILSVRC2012_val_00000002": imagenet_class_ids()[1000 - 361],
    }


def test_flat_folders_that_cannot_be_labelled_are_refused(shared_data, tmp_path, capsys):
    files = _sample_files(shared_data, every=100, count=3)
    for n, f in enumerate(files):
        _link(f, tmp_path / "plain" / f"photo{n}.jpg")
    with pytest.raises(DataError, match="cannot tell the class of 'photo0.jpg'"):
        discover(tmp_path / "plain")
    _flat_val(files, tmp_path / "val")
    partial = tmp_path / "partial.csv"
    partial.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 1 1 2 2\n")
    with pytest.raises(DataError, match="2 images have no label in"):
        discover(tmp_path / "val", labels=partial)
    bad = tmp_path / "labels.txt"
    bad.write_text("hello world again\n")
    with pytest.raises(DataError, match="not a label file this reads"):
        read_labels(bad)


@pytest.mark.slow
def test_real_labels_top1_equals_counting_by_hand(shared_data, bvlc_file, tmp_path, capsys):
    weights, model, card = bvlc_file
    files = _sample_files(shared_data, every=50, count=12)
    wnids = _flat_val(files, tmp_path / "val")
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        + "".join(f"ILSVRC2012_val_{n:08d},{w} 1 1 9 9\n" for n, w in enumerate(wnids, 1))
    )
    predicted = _by_hand(model, card, files)
    truth = [imagenet_class_ids().index(w) for w in wnids]
    real: list[list[int]] = [[] for _ in range(50_000)]
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        if i % 4 == 0:
            real[i] = []  # ReaL found no clear class: left out
        elif i % 4 == 1:
            real[i] = sorted({t, p})  # the prediction is one of several right answers
        elif i % 4 == 2:
            real[i] = [(p + 1) % 1000]  # the re-assessed label differs from the prediction
        else:
            real[i] = [t]
    (tmp_path / "real.json").write_text(json.dumps(real))
    row = _eval(capsys, weights, tmp_path / "val", "--real-labels", str(tmp_path / "real.json"))
    counted = [p in real[i] for i, p in enumerate(predicted) if real[i]]
    assert row["real_top1_error"] == pytest.approx(100 * (1 - sum(counted) / len(counted)))
    original = sum(p == t for p, t in zip(predicted, truth, strict=True))
    assert row["top1_error"] == pytest.approx(100 * (1 - original / 12))
    capsys.readouterr()
    assert main(["eval", "--weights", str(weights), "--data", str(tmp_path / "val")]) == 0
    assert "ReaL" not in capsys.readouterr().out
    sample_folder = tmp_path / "sample"
    _link(files[0], sample_folder / files[0].name)
    code = main(
        [
            "eval",
            "--weights",
            str(weights),
            "--data",
            str(sample_folder),
            "--real-labels",
            str(tmp_path / "real.json"),
        ]
    )
    assert code == 2
    assert "is not an ILSVRC2012_val_NNNNNNNN photo" in capsys.readouterr().err
    shards = tmp_path / "shards"
    assert main(["data", "shard", str(tmp_path / "val"), "--out", str(shards)]) == 0
    real = str(tmp_path / "real.json")
    assert (
        main(["eval", "--weights", str(weights), "--data", str(shards), "--real-labels", real]) == 2
    )
    assert (
        "give the folder of ILSVRC2012_val_* photos rather than shards" in capsys.readouterr().err
    )
    # images held in arrays have no file names either: the same line, not a traceback
    argv = ["eval", "--weights", str(weights), "--data", "digits", "--real-labels", real]
    assert main(argv) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert "give the folder of ILSVRC2012_val_* photos" in line
