"""A small reader of protobuf's text format, enough for Caffe's `.prototxt` network files.

    name: "AlexNet"                      # a scalar field: a string, a number or an enum name
    layer { name: "conv1" type: "Convolution" convolution_param { num_output: 96 } }

A message is a `dict` from field name to the list of its values in file order (every field may
repeat); a value is a `str` (quoted strings unescaped, enum names as written), an `int`, a
`float`, a `bool` or a nested message. It knows no schema: the caller decides what a field
means. The reader is bounded: at most `MAX_BYTES` of text and `MAX_DEPTH` nested messages,
one pass over the text, so a hostile file costs no more than a long one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import WeightsError

MAX_BYTES = 16 * 2**20  # the published deploy files are 4-40 KB; a train_val of a ResNet ~0.3 MB
MAX_DEPTH = 32  # Caffe nests four deep (layer > convolution_param > weight_filler)

Message = dict[str, list]

_TOKEN = re.compile(
    r"""(?P<space>\s+|\#[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[fF]?)
      | (?P<word>[-+]?[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[:{}<>;,\[\]])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\"}
_WORDS = {"true": True, "True": True, "false": False, "False": False}
_FLOAT_WORDS = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}
_CLOSE = {"{": "}", "<": ">"}


def _unescape(quoted: str, line: int) -> str:
    out, body, i = [], quoted[1:-1], 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1]  # the pattern admits no lone trailing backslash
            if nxt not in _ESCAPES:
                raise WeightsError(f"line {line}: unknown escape \\{nxt} in a string")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _number(text: str) -> int | float:
    text = text.rstrip("fF")
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    return float(text)


def _tokens(text: str) -> Iterator[tuple[str, str, int]]:
    """(kind, text, line) of every token but spaces and comments, read as they are needed."""
    pos, line = 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise WeightsError(f"line {line}: unexpected character {text[pos]!r}")
        if m.lastgroup != "space":
            yield m.lastgroup, m.group(), line
        line += m.group().count("\n")
        pos = m.end()


class _Parser:
    def __init__(self, tokens: Iterator[tuple[str, str, int]]) -> None:
        self.tokens = tokens
        self.next = next(tokens, None)
        self.line = 1  # of the last token taken

    def peek(self) -> tuple[str, str, int] | None:
        return self.next

    def take(self) -> tuple[str, str, int]:
        token = self.next
        if token is None:
            raise WeightsError(
                f"line {self.line}: the text ends inside a message (a '}}' missing?)"
            )
        self.line = token[2]
        self.next = next(self.tokens, None)
        return token

    def message(self, close: str | None, depth: int) -> Message:
        if depth > MAX_DEPTH:
            raise WeightsError(f"line {self.line}: messages nested over {MAX_DEPTH} deep")
        fields: Message = {}
        while True:
            token = self.peek()
            if token is None:
                if close is None:
                    return fields
                self.take()  # raises: the text ended before `close`
            kind, text, line = token
            self.take()
            if close is not None and text == close and kind == "punct":
                return fields
            if kind == "punct" and text in ";,":
                continue
            if kind != "word":
                raise WeightsError(f"line {line}: expected a field name, got {text!r}")
            fields.setdefault(text, []).append(self.value(text, depth))

    def value(self, field: str, depth: int):
        kind, text, line = self.take()
        if kind == "punct" and text == ":":
            kind, text, line = self.take()
            if kind == "punct" and text in _CLOSE:
                return self.message(_CLOSE[text], depth + 1)
            if kind == "string":
                parts = [_unescape(text, line)]
                while (nxt := self.peek()) is not None and nxt[0] == "string":
                    parts.append(_unescape(self.take()[1], nxt[2]))  # "a" "b" is "ab"
                return "".join(parts)
            if kind == "number":
                return _number(text)
            if kind == "word":
                return _WORDS.get(text, _FLOAT_WORDS.get(text, text))
            raise WeightsError(f"line {line}: expected a value for {field!r}, got {text!r}")
        if kind == "punct" and text in _CLOSE:
            return self.message(_CLOSE[text], depth + 1)
        raise WeightsError(f"line {line}: expected ':' or '{{' after {field!r}, got {text!r}")


def parse_prototxt(text: str) -> Message:
    """The top-level message of protobuf text `text`; a `WeightsError` naming the line of the
    first thing that is not text format."""
    if len(text) > MAX_BYTES:
        raise WeightsError(f"{len(text):,} characters: over {MAX_BYTES:,}, not a network file")
    return _Parser(_tokens(text)).message(None, 0)


def read_prototxt(path: str | Path) -> Message:
    """`parse_prototxt` of a file, its errors prefixed with the file's name."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such .prototxt file")
    if path.stat().st_size > MAX_BYTES:
        raise WeightsError(f"{path}: {path.stat().st_size:,} bytes, not a network file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise WeightsError(f"{path}: not a text file; give the deploy .prototxt") from None
    try:
        return parse_prototxt(text)
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}") from None
