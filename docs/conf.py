"""Sphinx configuration of the goingdeeper site: guides in MyST markdown, one executed
sphinx-gallery chapter per paper, and an API reference from the docstrings. Every asset is
local (the furo theme ships its fonts' fallbacks and scripts), so the site works offline."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO / "src"))  # document (and run the chapters on) this checkout

# The chapters read the real data beside the checkout unless told otherwise.
os.environ.setdefault("GOINGDEEPER_DATA", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("MPLBACKEND", "Agg")

project = "goingdeeper"
author = "the goingdeeper authors"
copyright = "the goingdeeper authors, MIT licence"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_templates", "chapters/README.txt"]
root_doc = "index"
templates_path = ["_templates"]

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_mock_imports = ["nvidia", "openvino", "nncf"]  # optional runtimes, imported lazily
# An annotation such as `type[nn.Module]` is looked up among the package's attributes too, and
# dataclass fields named `type` make that lookup ambiguous; the builtin is meant.
suppress_warnings = ["ref.python"]

sphinx_gallery_conf = {
    "examples_dirs": ["chapters"],
    "gallery_dirs": ["generated/chapters"],
    "filename_pattern": r"/\d\d_",  # every chapter runs at build time
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": False,  # report every failing chapter, then fail the build
    "only_warn_on_example_error": False,
    "show_memory": False,
    "write_computation_times": False,  # its pages load jQuery and DataTables from CDNs
    "plot_gallery": "True",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
}

html_theme = "furo"
html_title = "goingdeeper"
html_static_path: list[str] = []
html_show_sourcelink = False
# Search results without the text around the match: fetching each result page for it is
# refused to pages opened from disk (file://), and the site must work opened that way.
html_show_search_summary = False
html_theme_options = {"navigation_with_keys": True}


# The package's docstrings are plain text, written to be read in a terminal: `code` in single
# backticks, lists that start right after a sentence, aligned tables indented under a line.
# Before napoleon reads the Args: sections, each docstring is turned into the reStructuredText
# that shows the same thing: code as literals, lists set apart, indented or aligned blocks
# kept as they are typed (a literal block), and the characters reST would take as markup
# escaped.
_SECTION = re.compile(r"^(Args|Arguments|Returns|Yields|Raises|Attributes|Examples?|Notes?):\s*$")
_LIST_ITEM = re.compile(r"^(- |\* |\d+\. )")


def _inline(text: str) -> str:
    """Single-backtick spans become literals; elsewhere reST's markup characters are escaped."""
    parts = re.split(r"(``.+?``|`[^`]+`)", text, flags=re.S)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # a code span
            out.append(part if part.startswith("``") else f"``{part[1:-1]}``")
            continue
        if i and re.match(r"\w", part):  # `ImageDataset`s: reST needs a break after a literal
            part = "\\ " + part
        part = part.replace("\\", "\\\\").replace("*", "\\*").replace("|", "\\|")
        part = re.sub(r"(?<=\w)_(?=\W|$)", r"\\_", part)
        out.append(part.replace("`", "\\`"))
    return "".join(out)


def _is_table(block: list[str]) -> bool:
    """A block typed as a table or a code sample: indented lines that do not continue a list
    item, or columns aligned with runs of spaces."""
    in_list = False
    for line in block:
        if _LIST_ITEM.match(line):
            in_list = True
        elif line.startswith(" ") and not (in_list and line.startswith("  ")):
            return True  # indented, not as an item's continuation
        if re.search(r"\S {2,}\S", line):
            return True  # columns
    return False


def _blocks(lines: list[str]) -> list[list[str]]:
    blocks: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    return [b for b in blocks if b]


def _spaced_lists(block: list[str]) -> list[str]:
    """A blank line before a list that starts right after a sentence, as reST needs."""
    out: list[str] = []
    for line in block:
        item_starts = _LIST_ITEM.match(line) and out and not _LIST_ITEM.match(out[-1])
        if item_starts and not out[-1].startswith("  "):  # not an item's continuation
            out.append("")
        out.append(line)
    return out


def _plain_to_rest(lines: list[str]) -> list[str]:
    out: list[str] = []
    in_section = False
    for block in _blocks(lines):
        in_section = bool(_SECTION.match(block[0])) or in_section and block[0].startswith(" ")
        if in_section:  # a Google-style section: napoleon reads it
            out += [_inline(line) for line in block]
        elif _is_table(block):
            out += ["::", ""] + ["    " + line for line in block]
        else:
            out += _spaced_lists(_inline("\n".join(block)).split("\n"))  # spans cross lines
        out.append("")
    return out


def _docstring(app, what, name, obj, options, lines: list[str]) -> None:
    lines[:] = _plain_to_rest(list(lines))


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _docstring, priority=400)
