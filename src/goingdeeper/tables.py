"""Tables as text: aligned columns for a terminal, or GitHub markdown. Cells are strings."""

from __future__ import annotations


def render_table(header: list[str], body: list[list[str]], right_from: int = 4) -> str:
    """Columns padded to their widest cell, the columns from `right_from` on right-aligned
    (numbers), a rule under the header."""
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        out = []
        for i, (c, w) in enumerate(zip(cells, widths, strict=True)):
            out.append(c.rjust(w) if i >= right_from else c.ljust(w))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *[line(r) for r in body]])


def render_markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)
