"""WebDataset shards: written from any source with a manifest, read back byte for byte by us
and by the webdataset library, streamed across processes and workers exactly once, and
training from them equal to training from the source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from goingdeeper.cli import main
from goingdeeper.data import digits, discover
from goingdeeper.data.sources.shards import parse_size, read_manifest, shard_dataset, verify_shards
from goingdeeper.data.sources.stream import ShardStream
from goingdeeper.errors import DataError
from goingdeeper.train import fit
from goingdeeper.weights import load_weights

sys.path.insert(0, str(Path(__file__).parent))
from test_train import tiny  # noqa: E402


@pytest.fixture(scope="module")
def digit_shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "digits"
    assert main(["data", "shard", "digits", "--out", str(out), "--shard-size", "40kB"]) == 0
    return out


def test_sizes_read_as_people_write_them():
    assert parse_size("1GB") == 10**9
    assert parse_size("500 MB") == 500 * 10**6
    assert parse_size("64MiB") == 64 * 2**20
    assert parse_size("2000000") == 2_000_000
    for bad in ("fast", "1XB", "5kB", "-1GB"):
        with pytest.raises(DataError, match="shard size"):
            parse_size(bad)


def test_manifest_counts_every_class_and_each_shard_verifies(digit_shards):
    manifest = read_manifest(digit_shards)
    for split in ("train", "test"):
        source = digits(split)
        assert manifest.images(split) == len(source)
        assert manifest.per_class(split) == Counter(source.targets)
        assert len(manifest.shards(split)) > 3  # 40 kB shards: several per split
        assert all(s.bytes <= 40_000 + 10_000 for s in manifest.shards(split))
    assert manifest.classes == tuple(digits("train").classes)
    assert verify_shards(manifest) == []


def test_shards_hold_the_source_images_in_order(digit_shards):
    source = digits("test")
    shards = shard_dataset(digit_shards, "test")
    assert shards.targets == source.targets
    for i in (0, 1, 100, len(source) - 1):
        assert shards.decode(i).tobytes() == source.decode(i).tobytes()


def test_the_webdataset_library_reads_our_shards(digit_shards):
    import webdataset as wds

    manifest = read_manifest(digit_shards)
    urls = [str(manifest.path(s)) for s in manifest.shards("test")]
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil"))
    assert len(samples) == manifest.images("test")
    assert [int(s["cls"]) for s in samples] == list(shard_dataset(digit_shards, "test").targets)
    assert samples[0]["png"].size == (8, 8)
    assert samples[0]["json"]["class"] == manifest.classes[int(samples[0]["cls"])]


def test_a_changed_shard_is_found(digit_shards, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in digit_shards.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    first = sorted(copy.glob("test-*.tar"))[0]
    data = bytearray(first.read_bytes())
    data[2000] ^= 0xFF
    first.write_bytes(bytes(data))
    assert verify_shards(read_manifest(copy)) == [f"{first.name}: SHA-256 differs"]
    sorted(copy.glob("test-*.tar"))[1].unlink()
    with pytest.raises(DataError, match="shard missing"):
        shard_dataset(copy, "test")


def _read(stream: ShardStream, workers: int) -> tuple[list[str], int]:
    """The names of the samples a loader gives, and its number of batches."""
    stream.decode = False
    loader = DataLoader(stream, batch_size=7, num_workers=workers, collate_fn=lambda b: b)
    batches = list(loader)
    return [name for batch in batches for name, _ in batch], len(batches)


def _names(stream: ShardStream, workers: int) -> list[str]:
    return _read(stream, workers)[0]


@pytest.mark.parametrize(("world", "workers"), [(1, 0), (2, 2), (3, 1)])
def test_streams_split_across_processes_and_workers_read_each_image_once(
    digit_shards, world, workers
):
    everything = _all_names(digit_shards)
    evaluation, training = [], []
    for rank in range(world):
        whole = ShardStream(digit_shards, "train", equal_ranks=False, seed=3)
        whole.configure(world=world, rank=rank, workers=workers, epoch=1)
        evaluation += _names(whole, workers)
        equal = ShardStream(digit_shards, "train", seed=3)
        equal.configure(world=world, rank=rank, workers=workers, epoch=1)
        names, batches = _read(equal, workers)
        assert len(names) == len(equal) and batches == equal.batches(7)
        training.append(names)
    assert len(set(everything)) == len(everything) == 1438
    assert sorted(evaluation) == sorted(everything)  # every image, once
    flat = [n for names in training for n in names]
    assert len(set(flat)) == len(flat)  # no image twice
    assert len({len(names) for names in training}) == 1  # the same steps on every rank
    left_out = equal.plan().left_out
    assert len(flat) + left_out == len(everything) and left_out < len(everything) // 10


def _all_names(folder: Path) -> list[str]:
    stream = ShardStream(folder, "train", shuffle=False, equal_ranks=False)
    return _names(stream, 0)


def test_an_epoch_deals_the_shards_anew(digit_shards):
    stream = ShardStream(digit_shards, "train", buffer=50)
    first = _names(stream.configure(world=1, rank=0, workers=0, epoch=0), 0)
    second = _names(stream.configure(world=1, rank=0, workers=0, epoch=1), 0)
    again = _names(stream.configure(world=1, rank=0, workers=0, epoch=1), 0)
    assert first != second and second == again and sorted(first) == sorted(second)


def test_too_few_shards_for_the_processes_is_one_clear_error(digit_shards):
    stream = ShardStream(digit_shards, "test")
    shards = len(read_manifest(digit_shards).shards("test"))
    with pytest.raises(DataError, match=f"{shards} shards cannot feed {shards + 1} processes"):
        stream.configure(world=shards + 1, rank=0, workers=2, epoch=0)


def test_training_from_shards_equals_training_from_the_source(digit_shards, tmp_path):
    same = dict(epochs=2, lr=0.002, limit_train=0, limit_test=0, shuffle=False, polyak=False)
    a = fit(tiny(tmp_path / "a", data="digits", **same))
    b = fit(tiny(tmp_path / "b", data=str(digit_shards), **same))
    assert isinstance(discover(str(digit_shards)).split("train", stream=True), ShardStream)
    assert a.final.test_acc == b.final.test_acc > 0.5
    wa, _ = load_weights(a.paths.weights)
    wb, _ = load_weights(b.paths.weights)
    for (key, x), y in zip(wa.state_dict().items(), wb.state_dict().values(), strict=True):
        assert torch.equal(x, y), key


DDP_READ = textwrap.dedent("""
    import json, os, sys
    import torch.distributed as dist
    from torch.utils.data import DataLoader
    from goingdeeper.data.sources.stream import ShardStream
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    folder, out, equal = sys.argv[1], sys.argv[2], sys.argv[3] == "equal"
    stream = ShardStream(folder, "train", equal_ranks=equal, seed=5)
    stream.configure(world=world, rank=rank, workers=2, epoch=2)
    stream.decode = False
    loader = DataLoader(stream, batch_size=16, num_workers=2, collate_fn=lambda b: b)
    batches = list(loader)
    names = [name for batch in batches for name, _ in batch]
    with open(os.path.join(out, f"{sys.argv[3]}{rank}.json"), "w") as f:
        json.dump({"names": names, "batches": len(batches), "planned": stream.batches(16)}, f)
    dist.destroy_process_group()
""")


def test_torchrun_processes_with_workers_read_each_image_once(digit_shards, tmp_path):
    script = tmp_path / "read.py"
    script.write_text(DDP_READ)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for mode in ("all", "equal"):
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
        command += ["--master_port=29531", str(script), str(digit_shards), str(tmp_path), mode]
        r = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
    every = _all_names(digit_shards)
    runs = {
        m: [json.loads((tmp_path / f"{m}{r}.json").read_text()) for r in (0, 1)]
        for m in ("all", "equal")
    }
    read = runs["all"][0]["names"] + runs["all"][1]["names"]
    assert sorted(read) == sorted(every)
    equal = [r["names"] for r in runs["equal"]]
    assert len(equal[0]) == len(equal[1]) > 0.9 * len(every) / 2
    assert not set(equal[0]) & set(equal[1])
    batches = [(r["batches"], r["planned"]) for r in runs["equal"]]
    assert batches[0] == batches[1] and batches[0][0] == batches[0][1]  # the same steps


def test_data_info_names_the_layout_counts_and_unreadable_files(tmp_path, capsys):
    source = digits("test")
    for i in range(12):
        folder = tmp_path / "tree" / "val" / source.classes[source.targets[i]]
        folder.mkdir(parents=True, exist_ok=True)
        source.decode(i).save(folder / f"{i}.png")
    (tmp_path / "tree" / "val" / source.classes[0] / "broken.png").write_bytes(b"not a png")
    assert (
        main(
            [
                "data",
                "info",
                str(tmp_path / "tree" / "val"),
                "--as-split",
                "val",
                "--format",
                "json",
            ]
        )
        == 0
    )
    info = json.loads(capsys.readouterr().out)
    assert info["layout"] == "class folders"
    assert info["splits"]["val"]["images"] == 13
    expected = Counter(source.classes[t] for t in source.targets[:12]) + Counter({"0": 1})
    counted = dict(zip(info["classes"], info["splits"]["val"]["per_class"], strict=True))
    assert counted == expected
    (message,) = info["splits"]["val"]["unreadable"]
    assert "broken.png" in message
    assert main(["data", "info", "digits", "--no-check"]) == 0
    out = capsys.readouterr().out
    assert "layout   scikit-learn digits" in out and "train    1,438 images (not checked)" in out


def test_data_shard_refuses_a_folder_in_use_and_bad_sizes(digit_shards, tmp_path, capsys):
    assert main(["data", "shard", "digits", "--out", str(digit_shards)]) == 2
    assert "already holds shards" in capsys.readouterr().err
    assert (
        main(["data", "shard", "digits", "--out", str(tmp_path / "x"), "--shard-size", "big"]) == 2
    )
    assert "shard size 'big'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_corrupt_image_in_a_shard_is_skipped_and_counted(tmp_path):
    source = digits("train")
    for split in ("train", "test"):
        for i in range(40):
            folder = tmp_path / "tree" / split / source.classes[source.targets[i]]
            folder.mkdir(parents=True, exist_ok=True)
            source.decode(i).save(folder / f"{i}.png")
    broken = next((tmp_path / "tree" / "train").rglob("*.png"))
    broken.write_bytes(b"\x89PNG\r\n\x1a\n damaged after the signature")
    shards = tmp_path / "shards"
    assert (
        main(
            ["data", "shard", str(tmp_path / "tree"), "--out", str(shards), "--shard-size", "20kB"]
        )
        == 0
    )
    result = fit(tiny(tmp_path / "run", data=str(shards), epochs=1, limit_train=0, limit_test=0))
    assert result.final.skipped == 1  # the epoch went on without it
    assert result.final.test_acc >= 0


def test_a_shard_cut_short_is_one_error_before_reading(digit_shards, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in digit_shards.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    first = sorted(copy.glob("train-*.tar"))[0]
    first.write_bytes(first.read_bytes()[:5000])
    with pytest.raises(DataError, match="5,000 bytes, the manifest says .* cut short"):
        ShardStream(copy, "train")
    capsys.readouterr()
    assert main(["data", "info", str(copy), "--no-check"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("goingdeeper: error: ") and "cut short" in line
