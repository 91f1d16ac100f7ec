"""The shape of the package itself: every module imports on its own, imports of the package are
at module level, the registry is a leaf, files and functions stay short, the command catches
the package's errors and nothing else, and the code speaks of itself only."""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import goingdeeper
from goingdeeper.cli import main
from goingdeeper.errors import GoingDeeperError
from goingdeeper.preprocess import Preprocessing

SRC = Path(goingdeeper.__file__).resolve().parent
FILES = sorted(SRC.rglob("*.py"))
MODULES = [  # `goingdeeper.__main__` is the command itself: running it is test_cli's
    ".".join(("goingdeeper", *p.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
    for p in FILES
    if p.name != "__main__.py"
]
# third-party modules a function may import when it runs: optional extras (ONNX, OpenVINO, timm,
# NNCF, DALI), the optional TensorBoard log, scikit-learn's slow loader as a fallback, and the
# libraries of one command each (webdataset writes shards, captum attributes), so that
# `import goingdeeper` needs only torch, torchvision, numpy and Pillow of the heavy ones
OPTIONAL = (
    "webdataset",
    "captum",
    "onnx",
    "onnxruntime",
    "openvino",
    "nncf",
    "timm",
    "nvidia.dali",
    "torch.utils.tensorboard",
    "sklearn",
)


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _imports_in_functions(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import statement inside a function of `path`."""
    found = []
    for fn in _functions(ast.parse(path.read_text())):
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom):
                found.append((node.lineno, "." * node.level + (node.module or "")))
            elif isinstance(node, ast.Import):
                found += [(node.lineno, alias.name) for alias in node.names]
    return found


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module imported as the first of the package, in one fresh interpreter that forgets
    the package between imports: an import cycle shows up whichever module starts it."""
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {MODULES!r}:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'goingdeeper']:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        failed.append(f'{name}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(failed))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", done.stdout
    assert len(MODULES) > 60 and "goingdeeper.cli.bench" in MODULES


# what a machine may lack (a bare GPU machine lacks all three): none is needed to import the package
DEFERRED = ("webdataset", "captum", "nvidia.dali")


def test_the_package_imports_and_lists_its_models_without_the_deferred_libraries():
    """In a fresh interpreter where webdataset, captum and DALI cannot be imported, every module
    imports and `goingdeeper models` runs."""
    script = (
        "import importlib, sys\n"
        f"for name in {DEFERRED!r}:\n"
        "    sys.modules[name] = None  # `import name` now raises ImportError\n"
        f"for name in {MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "from goingdeeper.cli import main\n"
        "sys.exit(main(['models']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "googlenet" in done.stdout


def test_imports_of_the_package_are_at_module_level():
    deferred = {}
    for path in FILES:
        for line, module in _imports_in_functions(path):
            ours = module.startswith(".") or module.split(".")[0] == "goingdeeper"
            optional = any(module == o or module.startswith(o + ".") for o in OPTIONAL)
            if ours or not optional:
                deferred[f"{path.relative_to(SRC)}:{line}"] = module
    assert deferred == {}


def test_the_registry_is_a_leaf():
    """registry.py imports nothing of the package but errors.py and limits.py, leaves both."""
    leaves = (("registry.py", {".errors", ".limits"}), ("errors.py", set()), ("limits.py", set()))
    for name, allowed in leaves:
        tree = ast.parse((SRC / name).read_text())
        ours = {
            "." * node.level + (node.module or "")
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level
        }
        assert ours == allowed, name


def test_data_has_its_recipes_and_pipelines():
    """Augmentation recipes declared as data (data/recipes) and the backends that run them
    (data/pipelines) are subpackages of data/; neither imports train/ when it runs (the run's
    types only for annotations), so the loaders build on data alone."""
    data = SRC / "data"
    packages = {p.name for p in data.iterdir() if (p / "__init__.py").is_file()}
    assert {"recipes", "pipelines"} <= packages
    upward = {}
    for path in sorted([*(data / "recipes").glob("*.py"), *(data / "pipelines").glob("*.py")]):
        package = ("goingdeeper", *path.relative_to(SRC).parent.parts)
        tree = ast.parse(path.read_text())
        annotating = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level and id(node) not in annotating:
                base = package[: len(package) - node.level + 1]
                module = ".".join((*base, *(node.module or "").split(".")))
                if module.startswith("goingdeeper.train"):
                    upward[f"{path.relative_to(SRC)}:{node.lineno}"] = module
    assert upward == {}


def test_no_file_over_800_lines_and_no_function_over_100():
    # A tripwire, not a law: past these sizes a file or function usually holds a second concept.
    long_files = {
        str(p.relative_to(SRC)): n for p in FILES if (n := len(p.read_text().splitlines())) > 800
    }
    long_functions = {
        f"{p.relative_to(SRC)}:{fn.name}": fn.end_lineno - fn.lineno + 1
        for p in FILES
        for fn in _functions(ast.parse(p.read_text()))
        if fn.end_lineno - fn.lineno + 1 > 100
    }
    assert long_files == {} and long_functions == {}


def test_every_user_facing_error_has_the_one_base():
    import goingdeeper.errors as errors

    classes = [
        v for v in vars(errors).values() if isinstance(v, type) and v.__module__ == errors.__name__
    ]
    assert len(classes) > 15 and all(issubclass(c, GoingDeeperError) for c in classes)
    # no error class of the package lives anywhere else
    elsewhere = [
        f"{p.relative_to(SRC)}:{node.name}"
        for p in FILES
        if p.name != "errors.py"
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.ClassDef)
        and any(getattr(b, "id", getattr(b, "attr", "")).endswith("Error") for b in node.bases)
    ]
    assert set(elsewhere) <= {"train/cache.py:CacheError", "train/engine.py:NonFiniteLossError"}


def test_main_reports_the_package_errors_in_one_line_and_lets_bugs_through(monkeypatch, capsys):
    from goingdeeper.cli import models

    def mistake(args):
        raise GoingDeeperError("what was wrong; what to do")

    monkeypatch.setattr(models, "run", mistake)
    assert main(["models"]) == 2
    assert capsys.readouterr().err == "goingdeeper: error: what was wrong; what to do\n"

    def bug(args):
        raise ValueError("a bug, not a user's mistake")

    monkeypatch.setattr(models, "run", bug)
    with pytest.raises(ValueError, match="a bug"):
        main(["models"])


def test_the_code_speaks_of_itself_only():
    pattern = re.compile(r"\bSPEC\b|\bissue #?\d+|\bissues? \d+|STYLE\.md|DEVELOPERS\.md")
    found = [
        f"{p.relative_to(SRC)}:{i}: {line.strip()}"
        for p in FILES
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []


def test_the_layout_guide_matches_the_tree():
    """Every file and folder the code-layout guide (docs/guides/layout.md) names exists, and
    every module and package of src/goingdeeper is named there."""
    guide = (SRC.parents[1] / "docs" / "guides" / "layout.md").read_text()
    section = guide.split("```")[1]
    named = set(re.findall(r"[\w./-]+\.py|\b[A-Za-z_][\w-]*/", section))
    package = {p.name for p in SRC.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    package -= {"__init__.py", "__main__.py"}
    missing = {p if p.endswith(".py") else p + "/" for p in package} - named
    assert missing == set(), f"not in docs/guides/layout.md: {sorted(missing)}"
    root = SRC.parents[1]
    unknown = []
    for name in named:
        stem = name.rstrip("/")
        places = [root, SRC, *(d for d in SRC.rglob("*") if d.is_dir()), root / "benchmarks"]
        places += [root / "tests", SRC.parent, root / "docs"]
        if not any((place / stem).exists() for place in places):
            unknown.append(name)
    assert unknown == []


def test_data_is_four_layers_and_nothing_beside_them():
    """data/ is sources/ (where images come from), imagenet/ (its classes and label files),
    recipes/ (augmentations declared) and pipelines/ (what runs them): no module of its own
    but the package's front."""
    data = SRC / "data"
    packages = {p.name for p in data.iterdir() if (p / "__init__.py").is_file()}
    modules = {p.name for p in data.glob("*.py")}
    assert packages == {"sources", "imagenet", "recipes", "pipelines"}
    assert modules == {"__init__.py"}


def test_one_discover_opens_every_data_set():
    defined = [
        f"{path.relative_to(SRC)}:{node.lineno}"
        for path in FILES
        for node in _functions(ast.parse(path.read_text()))
        if node.name == "discover"
    ]
    assert defined == ["data/sources/discover.py:" + defined[0].split(":")[1]], defined
    retired = ("open_dataset", "labelled_images", "open_source", "LoadedImages", "Labelled")
    for path in FILES:
        names = {
            node.id if isinstance(node, ast.Name) else node.attr
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Name | ast.Attribute)
        }
        assert not names & set(retired), (path.relative_to(SRC), names & set(retired))


def test_no_isinstance_on_a_dataset_class_outside_data_sources():
    """The data set's type is data/sources/'s business: others use its protocol (`load`,
    `decode`, `Skipped`) and its declared attributes (`streamed`, `stores_encoded`)."""
    classes = {"ImageDataset", "ShardStream"}
    found = []
    for path in FILES:
        if path.relative_to(SRC).parts[:2] == ("data", "sources"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance"):
                continue
            checked = node.args[1] if len(node.args) > 1 else None
            named = {
                n.id if isinstance(n, ast.Name) else getattr(n, "attr", "")
                for n in ast.walk(checked)
            }
            if named & classes:
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert found == []


def test_the_engines_return_typed_results():
    """`evaluate`, the epoch loops and `fit` return the dataclasses of `goingdeeper.results`
    (declared, and so on a call), never a dict read by string key elsewhere."""
    from PIL import Image
    from torch import nn

    from goingdeeper import results
    from goingdeeper.evaluate import evaluate
    from goingdeeper.train import evaluate_accuracy, fit, run_epoch, train_one_epoch

    engines = (evaluate, train_one_epoch, evaluate_accuracy, run_epoch, fit)
    returns = {f.__name__: typing.get_type_hints(f)["return"] for f in engines}
    assert all(dataclasses.is_dataclass(t) for t in returns.values()), returns
    assert {t.__module__ for t in returns.values()} == {results.__name__}
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    pre = Preprocessing(resize=8, crop=8)
    r = evaluate([(model, pre)], [(Image.new("RGB", (8, 8), (200, 30, 30)), 1)])
    assert type(r) is returns["evaluate"] and (r.images, r.crops, r.skipped) == (1, 1, 0)


def _absolute_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of `path`, relative ones resolved; `from X import y`
    gives X.y too, so that importing a submodule by name is seen."""
    package = ["goingdeeper", *path.relative_to(SRC).parent.parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def test_the_trainer_imports_no_model_family():
    """train/ knows no model family: a model declares its loss and step hooks
    (`Classifier.training_loss`, `after_step`); the models package's generic API is allowed."""
    families = {p.stem for p in (SRC / "models").glob("*.py")} - {"__init__", "base"}
    found = [
        f"{path.relative_to(SRC)}:{line}: {module}"
        for path in sorted((SRC / "train").rglob("*.py"))
        for line, module in _absolute_imports(path)
        if module.startswith("goingdeeper.models.") and module.split(".")[2] in families
    ]
    assert families and found == []


def test_one_model_builder_and_one_forward_tracer():
    """`build_model` is defined once (the registry's); the forward hooks that watch every leaf
    module of a model are registered in one module (`analysis/trace.py`), which the cost
    tables and the visualisations both read."""
    builders = [
        path.relative_to(SRC).as_posix()
        for path in FILES
        for fn in _functions(ast.parse(path.read_text()))
        if fn.name == "build_model"
    ]
    assert builders == ["registry.py"]
    tracers = set()
    for path in FILES:
        for fn in _functions(ast.parse(path.read_text())):
            calls = {
                node.func.attr
                for node in ast.walk(fn)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            }
            if "register_forward_hook" in calls and calls & {"children", "named_children"}:
                tracers.add(path.relative_to(SRC).as_posix())
    assert tracers == {"analysis/trace.py"}
