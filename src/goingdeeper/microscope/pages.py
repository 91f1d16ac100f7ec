"""The microscope site's HTML, CSS and JavaScript: plain files that open from disk (file://),
with no server, no network and no library. Every page sits in the site's top folder, so links
and image paths are the same from everywhere; the search index is a script (`search.js`) rather
than JSON, because a browser will not fetch a JSON file from file://."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape

STYLE = """\
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { background: #1d2a3a; color: #fff; padding: 8px 16px; display: flex; gap: 16px;
  align-items: center; flex-wrap: wrap; }
header a { color: #cde; text-decoration: none; }
main { padding: 12px 16px; }
#search { padding: 4px 8px; width: 260px; }
#results { position: absolute; background: #fff; list-style: none; margin: 0; padding: 0;
  border: 1px solid #ccc; max-height: 320px; overflow: auto; z-index: 2; }
#results li a { display: block; padding: 3px 8px; color: #123; }
table { border-collapse: collapse; background: #fff; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #fff; border: 1px solid #ddd; padding: 6px; }
.card h3 { margin: 0 0 4px; font-size: 13px; }
.card img { display: block; image-rendering: auto; }
.row { display: flex; gap: 6px; align-items: flex-start; }
.cap { font-size: 11px; color: #666; }
"""

SCRIPT = """\
(function () {
  var box = document.getElementById("search");
  var list = document.getElementById("results");
  if (!box || typeof SEARCH_INDEX === "undefined") return;
  function show() {
    var q = box.value.trim().toLowerCase();
    list.innerHTML = "";
    if (!q) return;
    var found = SEARCH_INDEX.filter(function (e) {
      return e[0].toLowerCase().indexOf(q) >= 0;
    }).slice(0, 30);
    found.forEach(function (e) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = e[1];
      a.textContent = e[0];
      li.appendChild(a);
      list.appendChild(li);
    });
  }
  box.addEventListener("input", show);
  box.addEventListener("keydown", function (ev) {
    var first = list.querySelector("a");
    if (ev.key === "Enter" && first) window.location.href = first.href;
  });
})();
"""


@dataclass
class LayerInfo:
    """One layer's line in the index, and what its page shows."""

    name: str
    alias: str  # Lucid's name, or ""
    output: str  # C x H x W
    params: str
    ops: str
    channels: list[int] = field(default_factory=list)
    units: int = 0  # all its channels


@dataclass
class ImageInfo:
    stem: str
    file: str
    classes: list[tuple[int, str, float]]  # (index, name, probability), top-5
    occlusion: list[tuple[float, float]] = field(default_factory=list)  # p's range per class


def _occlusion_caption(info: ImageInfo, k: int) -> str:
    if k < len(info.occlusion):
        lo, hi = info.occlusion[k]
        return f"occlusion: p {lo:.2f} (dark) to {hi:.2f} (bright) as a grey square covers"
    return "occlusion: dark = p falls when covered"


def page(title: str, body: str) -> str:
    """A whole page: header with the search box, then `body`."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<link rel="stylesheet" href="style.css"></head>
<body><header><a href="index.html"><b>microscope</b></a><span>{escape(title)}</span>
<span><input id="search" placeholder="search a layer, channel or class"
autocomplete="off"><ul id="results"></ul></span></header>
<main>{body}</main>
<script src="search.js"></script><script src="site.js"></script></body></html>
"""


def layer_href(name: str) -> str:
    return f"layer-{name}.html"


def image_href(stem: str) -> str:
    return f"image-{stem}.html"


def index_page(model: str, layers: list[LayerInfo], images: list[ImageInfo], note: str) -> str:
    rows = "".join(
        f'<tr><td><a href="{layer_href(x.name)}">{escape(x.name)}</a></td>'
        f"<td>{escape(x.alias)}</td><td>{x.output}</td><td>{x.params}</td><td>{x.ops}</td>"
        f"<td>{len(x.channels)} of {x.units}</td></tr>"
        for x in layers
    )
    table = (
        "<table><tr><th>layer</th><th>Lucid name</th><th>output</th><th>params</th>"
        f"<th>ops</th><th>channels shown</th></tr>{rows}</table>"
    )
    photos = "".join(
        f'<div class="card"><a href="{image_href(i.stem)}"><img src="img/{i.stem}/view.jpg" '
        f'width="112" height="112" alt="{escape(i.file)}"></a>'
        f'<div class="cap">{escape(i.classes[0][1])}</div></div>'
        for i in images
    )
    body = f"<h2>{escape(model)}</h2><p>{escape(note)}</p>{table}"
    if images:
        body += f'<h2>Photos: Grad-CAM and occlusion</h2><div class="grid">{photos}</div>'
    return page(model, body)


def _nav(layers: list[LayerInfo], i: int) -> str:
    links = []
    if i > 0:
        links.append(f'<a id="prev" href="{layer_href(layers[i - 1].name)}">&larr; prev</a>')
    if i + 1 < len(layers):
        links.append(f'<a id="next" href="{layer_href(layers[i + 1].name)}">next &rarr;</a>')
    return "<p>" + " | ".join(links) + "</p>"


def layer_page(layers: list[LayerInfo], i: int, fv_size: int) -> str:
    x = layers[i]
    cards = "".join(
        f'<div class="card" id="ch-{c}"><h3>{escape(x.name)}:{c}</h3><div class="row">'
        f'<div><img src="img/{x.name}/fv_{c}.png" width="{fv_size}" height="{fv_size}" '
        f'alt="feature visualisation"><div class="cap">optimised</div></div>'
        f'<div><img src="img/{x.name}/patches_{c}.png" alt="top-9 patches">'
        f'<div class="cap">top-9 patches</div></div>'
        f'<div><img src="img/{x.name}/deconv_{c}.png" alt="deconvnet projections">'
        f'<div class="cap">deconvnet</div></div></div></div>'
        for c in x.channels
    )
    title = f"{x.name}" + (f" ({x.alias})" if x.alias else "")
    head = f"<p>output {x.output}, {x.params} params, {x.ops} ops</p>"
    return page(title, _nav(layers, i) + head + f'<div class="grid">{cards}</div>')


def image_page(info: ImageInfo, cam_layer: str) -> str:
    rows = "".join(
        f'<div class="card"><h3>{k + 1}. {escape(name)} (class {index}, p = {p:.3f})</h3>'
        f'<div class="row"><div><img src="img/{info.stem}/cam_{k}.jpg" width="224" '
        f'height="224" alt="Grad-CAM"><div class="cap">Grad-CAM at {escape(cam_layer)}</div>'
        f'</div><div><img src="img/{info.stem}/occlusion_{k}.jpg" width="224" height="224" '
        f'alt="occlusion"><div class="cap">{_occlusion_caption(info, k)}</div>'
        f"</div></div></div>"
        for k, (index, name, p) in enumerate(info.classes)
    )
    view = (
        f'<div class="card"><img src="img/{info.stem}/view.jpg" width="224" height="224" '
        f'alt="the photo"><div class="cap">{escape(info.file)}</div></div>'
    )
    return page(info.file, f'<div class="grid">{view}{rows}</div>')


def search_index(layers: list[LayerInfo], images: list[ImageInfo]) -> str:
    """`search.js`: SEARCH_INDEX = [[label, href], ...] for layers, channels and classes."""
    entries: list[tuple[str, str]] = []
    for x in layers:
        alias = f" ({x.alias})" if x.alias else ""
        entries.append((f"{x.name}{alias}", layer_href(x.name)))
        for c in x.channels:
            label = f"{x.name}:{c}" + (f" {x.alias}:{c}" if x.alias else "")
            entries.append((label, f"{layer_href(x.name)}#ch-{c}"))
    for info in images:
        for index, name, p in info.classes:
            entries.append(
                (f"{name} (class {index}, p {p:.2f}) in {info.file}", image_href(info.stem))
            )
    return "var SEARCH_INDEX = " + json.dumps(entries, indent=0) + ";\n"
