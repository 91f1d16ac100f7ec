"""`discover`, the one way every command opens data: the edges where the commands used to
disagree, each on a few real ImageNet photos from ../shared/data."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import pytest

from goingdeeper.cli import main
from goingdeeper.data import discover
from goingdeeper.data.imagenet import imagenet_class_ids, imagenet_class_names
from goingdeeper.data.sources.shards import MANIFEST, read_manifest, shard_dataset
from goingdeeper.errors import DataError
from goingdeeper.registry import build_model, model_card
from goingdeeper.weights import WeightsCard, save_weights

sys.path.insert(0, str(Path(__file__).parent))
from test_train import tiny  # noqa: E402

TENCH, GOLDFISH, SPRINGER = "n01440764", "n01443537", "n02102040"


def _photo(shared_data: Path, wnid: str) -> Path:
    (found,) = (shared_data / "imagenet-sample").glob(f"{wnid}_*")
    return found


def _link(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source.resolve())
    return target


@pytest.fixture(scope="module")
def imagenet_lenet(tmp_path_factory) -> Path:
    """A small untrained network with ImageNet-1k's classes: enough to run eval and predict."""
    card = WeightsCard(
        model="lenet5",
        model_kwargs={"num_classes": 1000},
        num_classes=1000,
        class_names=imagenet_class_names(),
        class_ids=imagenet_class_ids(),
        preprocessing=model_card("lenet5").preprocessing,
    )
    model = build_model("lenet5", num_classes=1000)
    return save_weights(model, card, tmp_path_factory.mktemp("w") / "lenet")


def _json(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_imagenet_train_and_val_folders_train_and_are_listed(shared_data, tmp_path, capsys):
    from goingdeeper.train.build import build_data, input_preprocessing
    from goingdeeper.train.distributed import Distributed

    for wnid in (TENCH, GOLDFISH):
        photo = _photo(shared_data, wnid)
        for n in range(3):
            _link(photo, tmp_path / "imagenet" / "train" / wnid / f"{n}.JPEG")
        _link(photo, tmp_path / "imagenet" / "val" / wnid / "0.JPEG")
    source = discover(tmp_path / "imagenet")
    assert source.splits == ("train", "val") and source.scored_split() == "val"
    assert source.classes.ids == (TENCH, GOLDFISH)
    info = _json(capsys, ["data", "info", str(tmp_path / "imagenet"), "--format", "json"])
    assert {s: v["images"] for s, v in info["splits"].items()} == {"train": 6, "val": 2}
    c = tiny(tmp_path / "run", data=str(tmp_path / "imagenet"), limit_train=0, limit_test=0)
    train_ds, test_ds, classes = build_data(c, input_preprocessing(c), Distributed())
    assert (len(train_ds), len(test_ds)) == (6, 2)  # val is the test split
    assert list(classes.names) == ["tench", "goldfish"]


def test_a_held_out_split_is_made_only_when_asked_and_said(
    shared_data, tmp_path, capsys, imagenet_lenet
):
    for wnid in (TENCH, GOLDFISH):
        for n in range(5):
            _link(_photo(shared_data, wnid), tmp_path / "val" / wnid / f"{n}.JPEG")
    out = tmp_path / "shards"
    capsys.readouterr()
    assert main(["data", "shard", str(tmp_path / "val"), "--out", str(out)]) == 0
    assert "held out" not in capsys.readouterr().err
    assert list(read_manifest(out).splits) == ["all"]  # every photo, no silent 80/20
    row = _json(
        capsys, ["eval", "--weights", str(imagenet_lenet), "--data", str(out), "--format", "json"]
    )
    assert row[0]["images"] == 10
    assert main(["eval", "--weights", str(imagenet_lenet), "--data", str(out)]) == 0
    assert "scoring the 'all' split" in capsys.readouterr().err
    held = tmp_path / "held"
    assert (
        main(["data", "shard", str(tmp_path / "val"), "--holdout", "0.2", "--out", str(held)]) == 0
    )
    (said,) = capsys.readouterr().err.splitlines()
    assert "held out a stratified 0.2 of each class of 'all' as 'test'" in said
    manifest = read_manifest(held)
    assert (manifest.images("train"), manifest.images("test")) == (8, 2)
    assert main(["eval", "--weights", str(imagenet_lenet), "--data", str(held)]) == 0
    assert "scoring the 'test' split" in capsys.readouterr().err
    c = tiny(tmp_path / "run", data=str(tmp_path / "val"), limit_train=0, limit_test=0)
    with pytest.raises(DataError, match="no 'train' split.*--holdout 0.2"):
        _build(c)
    c.holdout = 0.2
    train_ds, test_ds, _ = _build(c)
    assert (len(train_ds), len(test_ds)) == (8, 2)
    # 0.05 of five photos a class rounds to none: refused before anything is written
    nothing = tmp_path / "nothing"
    capsys.readouterr()
    argv = ["data", "shard", str(tmp_path / "val"), "--holdout", "0.05", "--out", str(nothing)]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "leaves 'test' empty" in line and not nothing.exists()


def _build(c):
    from goingdeeper.train.build import build_data, input_preprocessing
    from goingdeeper.train.distributed import Distributed

    return build_data(c, input_preprocessing(c), Distributed())


def test_one_folder_named_by_its_wordnet_id_is_its_class(
    shared_data, tmp_path, capsys, imagenet_lenet
):
    folder = tmp_path / TENCH
    for n in range(2):
        _link(_photo(shared_data, TENCH), folder / f"ILSVRC2012_val_0000000{n + 1}.JPEG")
    source = discover(folder)
    assert source.layout.startswith("one class folder") and source.classes.ids == (TENCH,)
    capsys.readouterr()
    assert main(["predict", "--data", str(folder), "--weights", str(imagenet_lenet)]) == 0
    out = capsys.readouterr().out
    assert out.count("(true class 0 tench)") == 2 and "2 labelled images" in out
    row = _json(
        capsys,
        ["eval", "--weights", str(imagenet_lenet), "--data", str(folder), "--format", "json"],
    )
    assert row[0]["images"] == 2


def test_data_info_lists_the_classes_eval_scores(shared_data, tmp_path, capsys, imagenet_lenet):
    flat = tmp_path / "flat"
    rows = ["ImageId,PredictionString"]
    for n, wnid in enumerate((TENCH, SPRINGER, TENCH), 1):
        _link(_photo(shared_data, wnid), flat / f"ILSVRC2012_val_{n:08d}.JPEG")
        rows.append(f"ILSVRC2012_val_{n:08d},{wnid} 1 1 2 2")
    labels = tmp_path / "LOC_val_solution.csv"
    labels.write_text("\n".join(rows) + "\n")
    info = _json(capsys, ["data", "info", str(flat), "--labels", str(labels), "--format", "json"])
    assert info["class_ids"] == [TENCH, SPRINGER]  # the two present, not 1,000 rows
    assert info["splits"]["all"]["per_class"] == [2, 1]
    assert main(["data", "info", str(flat), "--labels", str(labels), "--no-check"]) == 0
    table = capsys.readouterr().out
    assert "English springer" in table and table.count("n0") == 2
    named = tmp_path / "named"
    for name, wnid in (("tench", TENCH), ("goldfish", GOLDFISH)):
        _link(_photo(shared_data, wnid), named / name / "0.JPEG")
    info = _json(capsys, ["data", "info", str(named), "--format", "json"])
    assert info["classes"] == ["goldfish", "tench"] and info["class_ids"] == [GOLDFISH, TENCH]
    (named / "tench").rename(named / "tenchh")
    errors = []
    for argv in (
        ["data", "info", str(named)],
        ["eval", "--weights", str(imagenet_lenet), "--data", str(named)],
    ):
        assert main(argv) == 2
        (line,) = capsys.readouterr().err.splitlines()
        errors.append(line)
    assert all(
        "'tenchh' is not one of the 1000 classes" in e and "closest: 0 'tench'" in e for e in errors
    )


def test_shard_cls_is_the_imagenet_index_and_old_shards_still_read(shared_data, tmp_path):
    for wnid in (TENCH, SPRINGER):
        _link(_photo(shared_data, wnid), tmp_path / "photos" / f"{wnid}_0.JPEG")
    out = tmp_path / "shards"
    assert main(["data", "shard", str(tmp_path / "photos"), "--out", str(out)]) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["class_ids"] == [TENCH, SPRINGER] and manifest["cls"] == [0, 217]
    assert manifest["class_names"] == ["tench", "English springer"]
    with tarfile.open(out / "all-000000.tar") as tar:
        cls = [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".cls")]
        meta = [json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith(".json")]
    assert cls == [b"0", b"217"] and [m["wnid"] for m in meta] == [TENCH, SPRINGER]
    assert shard_dataset(out, "all").targets == [0, 1]  # indices into the manifest's classes
    # shards of the first format: `.cls` the index in their own list, read as before
    first = tmp_path / "first"
    assert main(["data", "shard", "digits", "--out", str(first), "--shard-size", "200kB"]) == 0
    manifest = json.loads((first / MANIFEST).read_text())
    assert manifest["cls"] == list(range(10))  # digits are known by their own indices
    for key in ("cls", "class_names"):
        del manifest[key]
    manifest["format"] = "goingdeeper.shards/1"
    (first / MANIFEST).write_text(json.dumps(manifest))
    assert shard_dataset(first, "test").targets == discover("digits").split("test").targets
