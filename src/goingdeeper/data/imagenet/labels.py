"""ImageNet label files: which class each validation photo shows, in the forms people hold.

Each reader returns {image stem: class}, the class as a WordNet id, so that the labels mean the
same whatever order a model keeps its classes in:

LOC_val_solution.csv        `ImageId,PredictionString` (Kaggle's ImageNet localisation set);
                            the first WordNet id of each box list
ILSVRC2012_validation_ground_truth.txt
                            the devkit's 50,000 lines of ILSVRC2012_ID (1..1000), numbered in
                            the devkit's own class order (meta.mat's, not the sorted WordNet
                            ids); needs that order: `meta.mat` (or `map_clsloc.txt`) beside
                            the file, or the devkit archive itself
ILSVRC2012_devkit_t12.tar.gz the devkit archive: both files read from inside it
val.txt                     `ILSVRC2012_val_00000001.JPEG 65`: Caffe's list, indices in the
                            standard (sorted WordNet id) order
imagenet_2012_validation_synset_labels.txt
                            one WordNet id per line, line i = photo i

`real_labels` reads ReaL's `real.json` (Beyer et al. 2020, "Are we done with ImageNet?"): for
photo i, the list of standard-order classes the re-assessment found in it (empty: no clear
label).
"""

from __future__ import annotations

import csv
import io
import json
import re
import tarfile
from pathlib import Path

from scipy.io import loadmat

from ...errors import DataError
from .classes import WNID, imagenet_class_ids

VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})")
VAL_IMAGES = 50_000
MAX_LABEL_FILE_BYTES = 64 << 20  # label files and the devkit's members: kilobytes to a few MB
MAX_DEVKIT_MEMBERS = 10_000
LABEL_FILE_NAMES = (
    "LOC_val_solution.csv",
    "ILSVRC2012_validation_ground_truth.txt",
    "imagenet_2012_validation_synset_labels.txt",
    "val.txt",
)


def val_number(name: str) -> int | None:
    """The photo number (1..50,000) in an ILSVRC2012 validation file name, if it is one."""
    found = VAL_NAME.search(name)
    return int(found.group(1)) if found else None


def val_stem(number: int) -> str:
    return f"ILSVRC2012_val_{number:08d}"


def read_labels(path: str | Path) -> dict[str, str]:
    """{image stem: WordNet id} from a label file in any of the forms above."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such label file")
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return _from_devkit_archive(path)
    if path.stat().st_size > MAX_LABEL_FILE_BYTES:
        raise DataError(
            f"{path}: {path.stat().st_size:,} bytes is not a label file (50,000 labels take "
            f"under 3 MB; the limit is {MAX_LABEL_FILE_BYTES >> 20} MB)"
        )
    if name.endswith(".csv"):
        return _from_loc_csv(path.read_text(errors="replace"), path)
    lines = [line.split() for line in path.read_text(errors="replace").splitlines()]
    lines = [fields for fields in lines if fields]
    if not lines:
        raise DataError(f"{path}: empty label file")
    if all(len(f) == 1 and _digits(f[0]) for f in lines):
        return _numbered(_devkit_order_beside(path), [int(f[0]) for f in lines], path)
    if all(len(f) == 1 and WNID.fullmatch(f[0]) for f in lines):
        return {val_stem(i): f[0] for i, f in enumerate(lines, 1)}
    if all(len(f) == 2 and _digits(f[1]) for f in lines):
        return _from_indexed_list(lines, path)
    raise DataError(
        f"{path}: not a label file this reads (LOC_val_solution.csv, the devkit's "
        "ILSVRC2012_validation_ground_truth.txt, Caffe's val.txt, or one WordNet id per line); "
        f"its first line is {' '.join(lines[0])!r}"
    )


def _digits(text: str) -> bool:
    """0-9 only (`str.isdigit` also takes "²", which `int` refuses)."""
    return text.isascii() and text.isdigit()


def _from_loc_csv(text: str, path: Path) -> dict[str, str]:
    try:
        return _loc_rows(csv.reader(io.StringIO(text)), path)
    except csv.Error as e:
        raise DataError(f"{path}: not a readable CSV file ({e})") from None


def _loc_rows(rows, path: Path) -> dict[str, str]:
    header = next(rows, None)
    if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
        raise DataError(f"{path}: expected the header 'ImageId,PredictionString'")
    out = {}
    for line, row in enumerate(rows, 2):
        if not row:
            continue
        boxes = row[1].split() if len(row) > 1 else []
        if not boxes or not WNID.fullmatch(boxes[0]):
            raise DataError(f"{path}:{line}: no WordNet id in {','.join(row)!r}")
        out[Path(row[0].strip()).stem] = boxes[0]
    return out


def _from_indexed_list(lines: list[list[str]], path: Path) -> dict[str, str]:
    ids = imagenet_class_ids()
    out = {}
    for line, (name, index) in enumerate(lines, 1):
        if int(index) >= len(ids):
            raise DataError(f"{path}:{line}: class index {index} is beyond ImageNet's 0..999")
        out[Path(name).stem] = ids[int(index)]
    return out


def _numbered(order: list[str], numbers: list[int], path: Path) -> dict[str, str]:
    """Line i holds photo i's ILSVRC2012_ID, counted from 1 in the devkit's class order."""
    out = {}
    for photo, number in enumerate(numbers, 1):
        if not 1 <= number <= len(order):
            raise DataError(f"{path}:{photo}: ILSVRC2012_ID {number} is outside 1..{len(order)}")
        out[val_stem(photo)] = order[number - 1]
    return out


def _devkit_order_beside(path: Path) -> list[str]:
    for folder in (path.parent, path.parent.parent / "data"):
        if (folder / "meta.mat").is_file():
            return devkit_class_order((folder / "meta.mat").read_bytes(), folder / "meta.mat")
        if (folder / "map_clsloc.txt").is_file():
            return _clsloc_order((folder / "map_clsloc.txt").read_text())
    raise DataError(
        f"{path}: the devkit's ground truth numbers classes in the devkit's own order, which "
        f"lives in its meta.mat; keep meta.mat beside {path.name} (the devkit's data/ folder) "
        "or give the devkit archive ILSVRC2012_devkit_t12.tar.gz"
    )


def devkit_class_order(mat: bytes, where: Path | str) -> list[str]:
    """The WordNet ids of ILSVRC2012_ID 1..1000 from the devkit's meta.mat."""
    try:
        synsets = loadmat(io.BytesIO(mat), squeeze_me=True)["synsets"]
        rows = [(int(s["ILSVRC2012_ID"]), str(s["WNID"]), int(s["num_children"])) for s in synsets]
    except Exception as e:  # noqa: BLE001 - scipy's reader fails on junk in many ways
        first = (str(e).splitlines() or [""])[0][:120]
        raise DataError(
            f"{where}: not the ILSVRC2012 devkit's meta.mat ({type(e).__name__}: {first})"
        ) from None
    leaves = sorted((number, wnid) for number, wnid, children in rows if children == 0)
    if [number for number, _ in leaves] != list(range(1, len(leaves) + 1)) or not leaves:
        raise DataError(f"{where}: its leaf synsets are not numbered 1..N")
    return [wnid for _, wnid in leaves]


def _clsloc_order(text: str) -> list[str]:
    rows = sorted((int(f[1]), f[0]) for f in (line.split() for line in text.splitlines()) if f)
    return [wnid for _, wnid in rows]


def _from_devkit_archive(path: Path) -> dict[str, str]:
    try:
        with tarfile.open(path) as tar:
            members = {}
            for count, member in enumerate(tar, 1):  # read no further than a devkit reaches
                if count > MAX_DEVKIT_MEMBERS:
                    raise DataError(
                        f"{path}: more than {MAX_DEVKIT_MEMBERS:,} members; the ILSVRC2012 "
                        "devkit holds a few dozen"
                    )
                if member.isfile():
                    members.setdefault(Path(member.name).name, member)
            need = ("meta.mat", "ILSVRC2012_validation_ground_truth.txt")
            if missing := [n for n in need if n not in members]:
                raise DataError(f"{path}: not the ILSVRC2012 devkit (no {missing[0]} inside)")
            if large := [n for n in need if members[n].size > MAX_LABEL_FILE_BYTES]:
                raise DataError(
                    f"{path}: its {large[0]} declares {members[large[0]].size:,} bytes; the "
                    f"devkit's are well under {MAX_LABEL_FILE_BYTES >> 20} MB"
                )
            mat, truth = (tar.extractfile(members[n]).read() for n in need)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read the archive ({e})") from None
    words = truth.decode("latin-1").split()
    if bad := next((w for w in words if not _digits(w)), None):
        raise DataError(f"{path}: its ground truth holds {bad[:20]!r} where a number belongs")
    numbers = [int(w) for w in words]
    return _numbered(devkit_class_order(mat, f"{path}:meta.mat"), numbers, path)


def real_labels(path: str | Path) -> list[list[str]]:
    """ReaL's labels as WordNet ids: entry i-1 for validation photo i."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such ReaL label file (real.json)")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not JSON ({e})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deep to be ReaL's real.json") from None
    ids = imagenet_class_ids()
    ok = isinstance(raw, list) and all(
        isinstance(r, list) and all(isinstance(c, int) and 0 <= c < len(ids) for c in r)
        for r in raw
    )
    if not ok or len(raw) != VAL_IMAGES:
        raise DataError(
            f"{path}: expected ReaL's real.json, a list of {VAL_IMAGES:,} lists of class "
            "indices 0..999"
        )
    return [[ids[c] for c in r] for r in raw]
