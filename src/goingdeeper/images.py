"""Image files: which names are images, listing them in a folder, decoding them to 8-bit RGB.

Every reader of the package (data sets, evaluation, calibration, the visualizer, `predict`)
lists files with `image_files` and decodes them with `load_image` or `decode_image`, so that
they agree on what an image is and on what a bad one says.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import ArgumentError, DataError, ImageError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
# Pillow's default decompression-bomb limit is ~89 M pixels; real photos stay far below it.
MAX_IMAGE_PIXELS = 178_956_970
MAX_ASPECT = 64  # long side / short side: a 10:1 panorama passes, a 1-pixel line does not


def is_image_name(name: str) -> bool:
    """Whether a file name has an image extension (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def is_hidden(name: str) -> bool:
    """Names starting with a dot: `.DS_Store`, macOS's `._photo.jpg` resource forks, `.git`."""
    return name.startswith(".")


def image_files(
    folder: str | Path, *, recursive: bool = True, ignored: list[str] | None = None
) -> list[Path]:
    """The image files in `folder` (and its subfolders when `recursive`), sorted by path.

    Hidden files and folders are skipped, and so is a linked folder that leads back into the
    tree or to a folder holding it (a loop, or images counted twice). Files without an image
    extension are left out and, when `ignored` is given, appended to it (so a caller can say
    how many it passed over).
    Files with an image extension are listed even when they cannot be decoded: readers skip
    and count those, so that a broken file is reported rather than silently left out.
    """
    found: list[Path] = []
    root = os.path.realpath(folder)
    seen = {root}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        kept = []
        for d in sorted(dirnames):
            if not recursive or is_hidden(d):
                continue
            path = os.path.join(dirpath, d)
            real = os.path.realpath(path)
            if real in seen or (os.path.islink(path) and _within_either(real, root)):
                continue  # a loop, or a link back into the tree
            seen.add(real)
            kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            if is_hidden(name):
                continue
            path = Path(dirpath, name)
            if is_image_name(name):
                found.append(path)
            elif ignored is not None:
                ignored.append(str(path))
    return sorted(found)


def _within_either(a: str, b: str) -> bool:
    """Whether folder `a` lies inside `b`, or `b` inside `a`."""
    return os.path.commonpath([a, b]) in (a, b)


def folder_images(folder: str | Path, what: str = "images") -> list[Path]:
    """`image_files` of a folder a person named: a `DataError` when it does not exist or holds
    no image file (`what` names them in the message)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder of {what}")
    files = image_files(folder)
    if not files:
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise DataError(f"{folder}: no {what} (files ending in {extensions})")
    return files


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: grayscale, palette, CMYK, 16-bit, alpha (on white)."""
    img = ImageOps.exif_transpose(img) if hasattr(img, "getexif") else img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = _to_8_bits(img)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    return img.convert("RGB")


def _to_8_bits(img: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float image as 8-bit grayscale: integers over 0..65535 (or
    0..255 when no value exceeds it), rounded; floats from their minimum to their maximum.
    Converted a band of rows at a time, so that a 13000 x 13000 16-bit image takes its 8-bit
    copy beside it (169 MB) rather than several float copies of itself (5 GB)."""
    lo, hi = img.getextrema()
    if img.mode == "F":
        offset, scale, half = lo, (255.0 / (hi - lo) if hi > lo else 0.0), 0.0
    else:
        top = 65535.0 if img.mode.startswith("I;16") or hi > 255 else 255.0
        offset, scale, half = 0.0, 255.0 / top, 0.5
    width, height = img.size
    out = np.empty((height, width), np.uint8)
    rows = max(1, (1 << 20) // max(width, 1))
    for y in range(0, height, rows):
        band = np.asarray(img.crop((0, y, width, min(height, y + rows))), dtype=np.float64)
        out[y : y + rows] = np.clip((band - offset) * scale + half, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "L")


@contextlib.contextmanager
def _pillow_errors(name: str) -> Iterator[None]:
    """Pillow's failures on a bad file as one `ImageError` naming it."""
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # read at each call: tests lower the limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(name) from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's "cannot identify", truncation
        raise ImageError(f"{name}: not a readable image ({e})") from None


# EXIF orientations that turn the stored image a quarter turn: its sides swap when shown
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


class OpenedImage:
    """An image whose header has been read and checked, not yet decoded: `size` (as shown,
    after its EXIF orientation) is known before any pixel is, so a transform can ask
    `decode` for no more pixels than it needs. A JPEG is then decoded at 1/2, 1/4 or 1/8 of
    its size in the DCT (Pillow's draft mode), the smallest of these at least `at_least`."""

    def __init__(self, img: Image.Image, name: str, file_bytes: int) -> None:
        self.name = name
        self._img = img
        with _pillow_errors(name):
            _check_shape(img.size, name)  # from the header, before decoding
            _check_jpeg_length(img, name, file_bytes)
            orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
        # its EXIF orientation (1 upright, 2-8 a mirror or a turn), which `decode` applies
        self.orientation: int = orientation if orientation in range(1, 9) else 1
        self._turned = self.orientation in _QUARTER_TURNS
        self.size: tuple[int, int] = img.size[::-1] if self._turned else img.size

    def __enter__(self) -> OpenedImage:
        return self

    def __exit__(self, *exc) -> None:
        self._img.close()  # the file, when only the header was wanted

    def decode(self, at_least: tuple[int, int] | None = None) -> Image.Image:
        """The image as 8-bit RGB; with `at_least` (width, height as shown), a JPEG decoded
        only as large as that needs. Raises `ImageError`."""
        img = self._img
        try:
            with _pillow_errors(self.name), img:
                if at_least is not None and img.format == "JPEG" and img.mode in ("RGB", "L"):
                    w, h = at_least[::-1] if self._turned else at_least
                    img.draft(img.mode, (max(1, w), max(1, h)))
                img.load()
                return to_rgb(img)
        except ImageError:
            raise
        except Exception as e:  # Pillow's decoders raise struct.error, IndexError, ... on bad data
            raise ImageError(f"{self.name}: cannot decode ({type(e).__name__}: {e})") from e


def open_file(path: str | Path) -> OpenedImage:
    """An image file opened (`OpenedImage`), or `ImageError` with a message for a person."""
    path = Path(path)
    try:
        info = path.stat()  # follows links: a loop or no permission is said as such
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as e:
        raise ImageError(f"{path}: {e.strerror or 'cannot be read'}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(f"{path}: is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
        raise ImageError(f"{path}: not a regular file (a pipe or a device?)")
    if info.st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    with _pillow_errors(str(path)):
        return OpenedImage(Image.open(path), str(path), info.st_size)


def open_encoded(data: bytes, name: str) -> OpenedImage:
    """Image bytes (a tar member, say) opened, with `open_file`'s checks and messages."""
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    with _pillow_errors(name):
        return OpenedImage(Image.open(io.BytesIO(data)), name, len(data))


@contextlib.contextmanager
def image_pixel_limit(pixels: int | None) -> Iterator[None]:
    """Within the block, `pixels` is the most an image may have to be decoded, in this process
    and the data-loading workers it forks (`--max-image-pixels`); None leaves the limit."""
    if pixels is not None and (
        isinstance(pixels, bool) or not isinstance(pixels, int) or not 1 <= pixels <= 1 << 40
    ):
        raise ArgumentError(f"--max-image-pixels must be from 1 to {1 << 40:,}, got {pixels!r}")
    global MAX_IMAGE_PIXELS
    previous = MAX_IMAGE_PIXELS
    MAX_IMAGE_PIXELS = previous if pixels is None else pixels
    try:
        yield
    finally:
        MAX_IMAGE_PIXELS = previous


def _check_shape(size: tuple[int, int], name: str) -> None:
    """Sides more unequal than `MAX_ASPECT` to 1: resized to a network's shorter side, such an
    image would take gigabytes (a 143-byte 20000 x 1 PNG becomes 5,120,000 x 256 pixels).
    More pixels than `MAX_IMAGE_PIXELS`: refused from the header, before decoding."""
    w, h = size
    if w * h > MAX_IMAGE_PIXELS:
        raise _too_large(name, f"a {w} x {h} image, ")
    if min(w, h) < 1 or max(w, h) > MAX_ASPECT * min(w, h):
        raise ImageError(
            f"{name}: a {w} x {h} image; sides more unequal than {MAX_ASPECT}:1 are not taken "
            "(resized for a network it would take gigabytes)"
        )


# start-of-frame markers of arithmetic-coded JPEGs, which may spend less than a bit on a block
_ARITHMETIC_FRAMES = tuple(bytes([0xFF, m]) for m in (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))


def _check_jpeg_length(img: Image.Image, name: str, file_bytes: int) -> None:
    """A Huffman-coded JPEG spends at least one bit on each 8 x 8 block of each component (its
    DC coefficient's code), in baseline and progressive files alike. A file shorter than that
    was cut short: libjpeg would fill what is missing with grey, without an error, and a
    13000 x 13000 header over 1.5 kB of data would be classified as if whole."""
    if img.format != "JPEG" or not getattr(img, "layer", None):
        return
    w, h = img.size
    hmax = max(1, *(layer[1] for layer in img.layer))  # 0 in a damaged header
    vmax = max(1, *(layer[2] for layer in img.layer))
    mcus = -(-w // (8 * hmax)) * -(-h // (8 * vmax))
    blocks = mcus * sum(layer[1] * layer[2] for layer in img.layer)
    if file_bytes * 8 >= blocks:
        return
    fp, start = img.fp, img.tile[0][2] if img.tile else 0
    at = fp.tell()
    fp.seek(0)
    header = fp.read(start)
    fp.seek(at)
    if not any(marker in header for marker in _ARITHMETIC_FRAMES):
        raise ImageError(
            f"{name}: a {w} x {h} JPEG needs at least {-(-blocks // 8):,} bytes of image "
            f"data but the file holds {file_bytes:,}; it was cut short or damaged"
        )


def _too_large(name: str, what: str = "") -> ImageError:
    # Pillow refuses the largest images itself when it opens them, before their size is known
    return ImageError(
        f"{name}: {what}too large to decode: over {MAX_IMAGE_PIXELS:,} pixels (--max-image-pixels "
        "N sets another limit)"
    )


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as 8-bit RGB, or raise `ImageError` with a message for a person."""
    return open_file(path).decode()


def decode_image(data: bytes, name: str) -> Image.Image:
    """Image bytes (a tar member, say) as 8-bit RGB, with `load_image`'s checks and messages."""
    return open_encoded(data, name).decode()
