"""Published weights by name: the catalogue against torchvision's and timm's own records, and
fetching through a loopback HTTP server this module starts on 127.0.0.1 (no outside network).

The checkpoints are made here (random weights in the publishers' formats), so they cannot
match the published hashes: each test registers catalogue entries for its own files, with the
files' real hashes, and points `GOINGDEEPER_WEIGHTS_MIRROR` at the server.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

import goingdeeper as gd
from goingdeeper.cli import bench, main
from goingdeeper.errors import WeightsError
from goingdeeper.models.googlenet import from_torchvision_key
from goingdeeper.train.build import model_for_run
from goingdeeper.train.config import TrainConfig
from goingdeeper.weights import (
    WeightsEntry,
    cache_state,
    catalogue,
    get_entry,
    import_bvlc,
    import_timm,
    import_torchvision,
    load_pretrained,
    pretrained,
    pretrained_path,
    recognise,
    recognise_timm,
    register_weights,
)
from goingdeeper.weights.catalogue import TIMM_MODELS, TORCHVISION_MODELS
from test_weights import _caffe_layers_of, write_caffemodel

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
LIFETIME = 120.0  # seconds: the server stops itself after this, whatever the test does
TV_URL = "https://download.pytorch.org/models/googlenet-test-{}.pth"
BVLC_URL = "http://dl.caffe.berkeleyvision.org/test_bvlc_googlenet.caffemodel"


# --- the loopback server --------------------------------------------------------------------


class Loopback:
    """A threaded HTTP server on 127.0.0.1 serving `files` (URL path -> bytes). `plan[path]` is
    a list of modes the next requests take in turn: "cut" (the body stops halfway and the
    connection closes), "stall" (nothing is sent), "slow" (the body in pieces); then "ok"."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.plan: dict[str, list[str]] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self.stopping = threading.Event()
        loop = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                loop.hits[self.path] += 1
                body = loop.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                modes = loop.plan.get(self.path)
                mode = modes.pop(0) if modes else "ok"
                if mode == "stall":
                    loop.stopping.wait(LIFETIME)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "cut":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                pieces = 8 if mode == "slow" else 1
                step = -(-len(body) // pieces)
                for start in range(0, len(body), step):
                    self.wfile.write(body[start : start + step])
                    if mode == "slow":
                        time.sleep(0.1)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.timer = threading.Timer(LIFETIME, self.stop)
        self.timer.daemon = True
        self.running = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> Loopback:
        self.thread.start()
        self.timer.start()
        self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.stopping.set()
            self.httpd.shutdown()
            self.httpd.server_close()
            self.timer.cancel()

    def serve(self, url: str, body: bytes, plan: list[str] | None = None) -> None:
        path = url.split("/", 3)[3]
        self.files["/" + path] = body
        if plan:
            self.plan["/" + path] = list(plan)


@pytest.fixture
def server(monkeypatch, tmp_path):
    """The running server, the mirror pointing at it, and an empty cache of the test's own
    (torch's and the Hugging Face caches too); catalogue entries registered here stay here."""
    loop = Loopback().start()
    monkeypatch.setenv("GOINGDEEPER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GOINGDEEPER_WEIGHTS_MIRROR", loop.url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("GOINGDEEPER_OFFLINE", raising=False)
    monkeypatch.setattr(catalogue, "_registered", {})
    yield loop
    loop.stop()


def cache_files(tmp_path: Path) -> list[Path]:
    """Every file and folder in the cache but the locks (and the top folders)."""
    home = tmp_path / "home"
    return sorted(
        p
        for p in home.rglob("*")
        if p.relative_to(home).parts[0] != "locks" and p != home / "weights"
    )


def entry_for(
    body: bytes, url: str, *, model: str, tag: str, source: str, algorithm: str = "sha256"
) -> WeightsEntry:
    digest = hashlib.new(algorithm, body).hexdigest()
    return WeightsEntry(
        model=model,
        tag=tag,
        source=source,
        url=url.format(digest[:8]),
        hash_algorithm=algorithm,
        hash_value=digest[:8] if source == "torchvision" else digest,  # as each publishes
        licence="test",
        transform="test",
        top1=None,
        top5=None,
        protocol="made by the test",
        upstream="IMAGENET1K_V1" if source == "torchvision" else "",
    )


# --- checkpoints made here --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tv_googlenet() -> bytes:
    """A torchvision googlenet state dict with random weights, saved as torchvision's are."""
    torch.manual_seed(1)
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bvlc_caffemodel(tmp_path_factory) -> bytes:
    """BVLC's GoogLeNet form: a .caffemodel (aux heads included) of random weights."""
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("bvlc") / "net.caffemodel"
    write_caffemodel(path, _caffe_layers_of(gd.create_model("googlenet", aux_logits=True)))
    return path.read_bytes()


def outputs(model: torch.nn.Module) -> torch.Tensor:
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model.eval()(x)


# --- the catalogue against the publishers' own records ------------------------------------------


def test_torchvision_entries_are_torchvisions_enums():
    by_url = {e.url: e for e in catalogue.torchvision_entries()}
    expected = 0
    for architecture, model in TORCHVISION_MODELS.items():
        for weights in torchvision.models.get_model_weights(architecture):
            expected += 1
            entry = by_url[weights.url]
            assert (entry.model, entry.upstream) == (model, weights.name)
            found = torch.hub.HASH_REGEX.search(entry.filename)  # torch.hub's own check
            assert (entry.hash_algorithm, entry.hash_value) == ("sha256", found.group(1))
            assert entry.top1 == weights.meta["_metrics"]["ImageNet-1K"]["acc@1"] or (
                entry.top1 is None and np.isnan(weights.meta["_metrics"]["ImageNet-1K"]["acc@1"])
            )
            assert get_entry(entry.name) is entry
    assert len(by_url) == expected
    assert get_entry("googlenet_torchvision.tv_in1k").filename == "googlenet-1378be20.pth"
    assert get_entry("resnet50.tv2_in1k").upstream == "IMAGENET1K_V2"


@pytest.mark.parametrize("architecture", sorted(TORCHVISION_MODELS))
def test_each_torchvision_architecture_loads_into_its_catalogue_model(architecture):
    with torch.device("meta"):  # keys and shapes only
        state = torchvision.models.get_model(architecture).state_dict()
    assert recognise(state).model == TORCHVISION_MODELS[architecture]


def test_timm_entries_are_timms_configs():
    for architecture, model in TIMM_MODELS.items():
        with torch.device("meta"):
            state = timm.create_model(architecture, pretrained=False).state_dict()
        assert recognise_timm(state).model == model
    entries = catalogue.timm_entries()
    assert entries
    for entry in entries:
        cfg = timm.models.get_pretrained_cfg(entry.upstream)
        assert entry.model == TIMM_MODELS[cfg.architecture] and entry.tag == cfg.tag
        assert entry.hf_repo == (cfg.hf_hub_id or "")
        assert entry.url.startswith(f"https://huggingface.co/{cfg.hf_hub_id}/") or (
            entry.url == cfg.url
        )
    names = {e.name for e in catalogue.all_entries()}
    assert "resnet50.a1_in1k" in names and "se_resnet50.ra2_in1k" in names


def test_bvlc_entry_and_defaults():
    bvlc = get_entry("googlenet.bvlc_in1k")
    assert bvlc.url == "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel"
    assert bvlc.published_hash == "sha1:405fc5acd08a3bb12de8ee5e23a96bec22f08204"
    assert get_entry("googlenet") is bvlc
    assert get_entry("resnet50").name == "resnet50.tv2_in1k"  # torchvision's DEFAULT
    with pytest.raises(WeightsError, match="did you mean googlenet.bvlc_in1k"):
        get_entry("googlenet.bvlc")
    with pytest.raises(WeightsError, match="no published weights for lenet5"):
        get_entry("lenet5")
    good = dataclasses.asdict(bvlc)
    for field, value, message in (
        ("tag", "../up", "letters, digits and underscores"),
        ("url", "https://example.org/models/..", "must end in a file name"),
        ("url", "ftp://example.org/a.pth", "must be http or https"),
        ("hash_value", "405FC5", "8 or more lower-case hex digits"),
    ):
        with pytest.raises(WeightsError, match=message):
            WeightsEntry(**{**good, field: value})
    with pytest.raises(WeightsError, match="'nonet' is not a registered model"):
        register_weights(WeightsEntry(**{**good, "model": "nonet"}))


# --- fetching by name -------------------------------------------------------------------------


def test_fetched_by_name_equals_the_direct_import_and_then_needs_no_network(
    server, tmp_path, tv_googlenet, bvlc_caffemodel
):
    tv = register_weights(
        entry_for(
            tv_googlenet, TV_URL, model="googlenet_torchvision", tag="t_in1k", source="torchvision"
        )
    )
    bvlc = register_weights(
        entry_for(
            bvlc_caffemodel,
            BVLC_URL,
            model="googlenet",
            tag="t_in1k",
            source="bvlc",
            algorithm="sha1",
        )
    )
    server.serve(tv.url, tv_googlenet)
    server.serve(bvlc.url, bvlc_caffemodel)
    (tmp_path / tv.filename).write_bytes(tv_googlenet)
    (tmp_path / bvlc.filename).write_bytes(bvlc_caffemodel)

    fetched = gd.create_model("googlenet_torchvision", pretrained="t_in1k")
    direct, direct_card = import_torchvision(tmp_path / tv.filename, tag="IMAGENET1K_V1")
    assert torch.equal(outputs(fetched), outputs(direct))
    assert fetched.pretrained_cfg["mean"] == direct_card.pretrained_cfg["mean"]
    fetched, card = load_pretrained("googlenet.t_in1k")
    direct, _ = import_bvlc(tmp_path / bvlc.filename)
    assert torch.equal(outputs(fetched), outputs(direct))
    assert card.provenance["weights"] == "googlenet.t_in1k" and card.provenance["url"] == bvlc.url
    assert server.hits == {f"/models/{tv.filename}": 1, f"/{bvlc.filename}": 1}

    server.stop()  # the next calls read the cache
    again = gd.create_model("googlenet_torchvision", pretrained="t_in1k")
    assert torch.equal(outputs(again), outputs(import_torchvision(tmp_path / tv.filename)[0]))
    folder = tmp_path / "home" / "weights" / tv.name
    names = {p.name for p in folder.iterdir()}
    assert names == {tv.filename, f"{tv.name}.safetensors", f"{tv.name}.json"}
    ours = folder / f"{tv.name}.safetensors"
    assert (folder / tv.filename).stat().st_mode == ours.stat().st_mode  # not left private


def test_a_hash_that_differs_leaves_nothing(server, tmp_path, capsys):
    entry = register_weights(
        entry_for(
            b"the published file",
            TV_URL,
            model="googlenet_torchvision",
            tag="t",
            source="torchvision",
        )
    )
    server.serve(entry.url, b"another file")
    assert main(["weights", "get", entry.name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not " in err and entry.hash_value in err
    assert cache_files(tmp_path) == []
    # a file placed by hand is checked the same way, and not copied
    wrong = tmp_path / entry.filename
    wrong.write_bytes(b"another file")
    assert main(["weights", "import", entry.name, str(wrong)]) == 2
    assert "as published" in capsys.readouterr().err and cache_files(tmp_path) == []


def test_a_cut_connection_is_tried_again_or_fails_in_one_line(server, tmp_path):
    body = os.urandom(200_000)
    entry = entry_for(body, TV_URL, model="googlenet_torchvision", tag="t", source="torchvision")
    server.serve(entry.url, body, plan=["cut"])
    folder = tmp_path / "one"
    got = pretrained.download(entry, folder, progress=False, timeout=5, retries=1)
    assert got.read_bytes() == body and server.hits[f"/models/{entry.filename}"] == 2

    server.serve(entry.url, body, plan=["cut", "cut"])
    with pytest.raises(WeightsError) as failed:
        pretrained.download(entry, tmp_path / "two", progress=False, timeout=5, retries=1)
    message = str(failed.value)
    assert "\n" not in message and "failed 2 times" in message and server.url in message
    assert "goingdeeper weights import" in message
    assert not any((tmp_path / "two").glob("*"))  # the partial file is gone


@pytest.mark.parametrize("kind", ["404", "stall"])
def test_not_found_and_stalled_are_one_line_in_time(server, tmp_path, kind):
    entry = register_weights(
        entry_for(b"x", TV_URL, model="googlenet_torchvision", tag="t", source="torchvision")
    )
    if kind == "stall":
        server.serve(entry.url, b"x", plan=["stall"])
    start = time.perf_counter()
    with pytest.raises(WeightsError) as failed:
        pretrained_path(entry.name, progress=False, timeout=0.5, retries=2)
    elapsed = time.perf_counter() - start
    message = str(failed.value)
    assert elapsed < 10  # a 0.5 s timeout, no retry of an answer or of a silence
    assert "\n" not in message and server.url + "/models/" + entry.filename in message
    assert ("HTTP 404" if kind == "404" else "sent nothing for 0.5 s") in message
    assert f"goingdeeper weights import {entry.name} FILE" in message
    assert entry.url in message  # where the file is published, to fetch it elsewhere
    assert cache_files(tmp_path) == []


FETCH_SCRIPT = """
import json, sys
from goingdeeper.weights import WeightsEntry, pretrained_path, register_weights
entry = register_weights(WeightsEntry(**json.loads(sys.argv[1])))
print(pretrained_path(entry.name, progress=False))
"""


@pytest.mark.slow  # two interpreters start
def test_two_processes_fetching_one_file_end_with_one_good_copy(server, tmp_path, tv_googlenet):
    entry = entry_for(
        tv_googlenet, TV_URL, model="googlenet_torchvision", tag="t_in1k", source="torchvision"
    )
    server.serve(entry.url, tv_googlenet, plan=["slow", "slow"])  # long enough to overlap
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", FETCH_SCRIPT, json.dumps(dataclasses.asdict(entry))]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in "ab"]
    printed = [run.communicate(timeout=240)[0].strip() for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    folder = tmp_path / "home" / "weights" / entry.name
    assert printed == [str(folder / f"{entry.name}.safetensors")] * 2
    assert server.hits[f"/models/{entry.filename}"] == 1  # the second waited, then read it
    assert {p.name for p in folder.iterdir()} == {
        entry.filename,
        f"{entry.name}.safetensors",
        f"{entry.name}.json",
    }
    assert (folder / entry.filename).read_bytes() == tv_googlenet


def test_offline_and_unreachable_are_one_line(server, tmp_path, monkeypatch, capsys):
    entry = register_weights(
        entry_for(b"x", TV_URL, model="googlenet_torchvision", tag="t", source="torchvision")
    )
    monkeypatch.setenv("GOINGDEEPER_OFFLINE", "1")
    assert main(["weights", "get", entry.name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "GOINGDEEPER_OFFLINE" in err and entry.url in err
    assert f"goingdeeper weights import {entry.name} FILE" in err
    assert server.hits == {}
    monkeypatch.delenv("GOINGDEEPER_OFFLINE")
    server.stop()  # nothing listens there now
    with pytest.raises(WeightsError, match="failed 1 times; check the network") as failed:
        pretrained_path(entry.name, progress=False, timeout=2, retries=0)
    assert "\n" not in str(failed.value)
    monkeypatch.setenv("GOINGDEEPER_WEIGHTS_MIRROR", "ftp:/nowhere")
    with pytest.raises(WeightsError, match="GOINGDEEPER_WEIGHTS_MIRROR='ftp:/nowhere'"):
        pretrained_path(entry.name, progress=False)


def test_files_in_torch_hub_are_used_where_they_are(server, tmp_path, tv_googlenet, monkeypatch):
    entry = register_weights(
        entry_for(
            tv_googlenet, TV_URL, model="googlenet_torchvision", tag="t", source="torchvision"
        )
    )
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / entry.filename).write_bytes(tv_googlenet[:-1] + b"!")  # not the published file
    with pytest.raises(WeightsError, match="as published"):
        pretrained_path(entry.name, progress=False)
    assert (hub / entry.filename).is_file()  # not ours to delete
    (hub / entry.filename).write_bytes(tv_googlenet)
    assert cache_state(entry) == "torch hub"
    model, _ = load_pretrained(entry.name)
    assert cache_state(entry) == "yes"
    assert torch.equal(outputs(model), outputs(import_torchvision(hub / entry.filename)[0]))
    assert server.hits == {}  # nothing was downloaded
    assert not (tmp_path / "home" / "weights" / entry.name / entry.filename).exists()


def test_a_timm_file_in_the_hugging_face_cache_is_read_there(server, tmp_path):
    torch.manual_seed(4)
    entry = get_entry("resnet18.a1_in1k")  # timm states no hash: any file of the name will do
    snapshot = tmp_path / "hf" / "hub" / "models--timm--resnet18.a1_in1k" / "snapshots" / "0a1b"
    snapshot.mkdir(parents=True)
    save_file(timm.create_model("resnet18").state_dict(), snapshot / "model.safetensors")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0a1b")  # the revision to read
    (snapshot.parent / "00ff").mkdir()
    (snapshot.parent / "00ff" / "model.safetensors").write_bytes(b"an older revision")
    model, card = load_pretrained(entry.name)
    direct, direct_card = import_timm(snapshot / "model.safetensors", tag="a1_in1k")
    assert torch.equal(outputs(model), outputs(direct))
    assert card.preprocessing == direct_card.preprocessing
    assert card.provenance["weights"] == "resnet18.a1_in1k" and server.hits == {}
    assert (
        card.provenance["sha256"]
        == hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest()
    )


def test_the_commands_take_a_name(server, tmp_path, tv_googlenet, capsys):
    entry = register_weights(
        entry_for(
            tv_googlenet, TV_URL, model="googlenet_torchvision", tag="t_in1k", source="torchvision"
        )
    )
    placed = tmp_path / entry.filename
    placed.write_bytes(tv_googlenet)
    assert main(["weights", "list", "--model", "googlenet_torchvision"]) == 0
    listed = capsys.readouterr().out
    assert "googlenet_torchvision.tv_in1k" in listed and "69.8 / 89.5" in listed
    assert main(["weights", "import", entry.name, str(placed)]) == 0  # placed by hand
    assert f"{entry.name}.safetensors" in capsys.readouterr().out
    assert server.hits == {}
    assert main(["weights", "list", "--model", "googlenet_torchvision"]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith(entry.name))
    assert row.split()[-1] == "yes"
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((64, 80, 3), 120, np.uint8)).save(photo)
    assert main(["predict", str(photo), "--weights", entry.name, "--top", "2"]) == 0
    assert str(photo) in capsys.readouterr().out
    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    from_hub = hubconf.googlenet_torchvision(pretrained="t_in1k")
    assert torch.equal(outputs(from_hub), outputs(import_torchvision(placed)[0]))
    with pytest.raises(WeightsError, match="give weights= or pretrained=, not both"):
        gd.create_model("googlenet", pretrained=True, weights="x.safetensors")


def test_bench_and_train_take_a_name(server, tv_googlenet):
    entry = register_weights(
        entry_for(
            tv_googlenet, TV_URL, model="googlenet_torchvision", tag="t_in1k", source="torchvision"
        )
    )
    server.serve(entry.url, tv_googlenet)
    expected = load_pretrained(entry.name)[0].state_dict()
    reference = bench.paths(torch.device("cpu"), entry.name)[bench.REFERENCE]()
    for key, value in reference.state_dict().items():  # torchvision's model, the same weights
        assert torch.equal(value, expected[from_torchvision_key(key)]), key
    config = TrainConfig(model="googlenet_torchvision", init_weights=entry.name)
    model, kwargs, _ = model_for_run(config, 1000)
    assert kwargs["num_classes"] == 1000
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert server.hits == {f"/models/{entry.filename}": 1}
