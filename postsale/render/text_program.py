"""The derived text part of a skeleton (``postsale.render.skeleton``), waiting for its values.

``html_to_text`` tokenizes an email's HTML: most of the text part's cost. Over a skeleton it
runs once (``convert_skeleton``); a ``TextProgram`` keeps the result and, per email, puts each
value in — in text with its spaces collapsed, as the converter does, in a link's URL or an alt
text as it is — and decides the links whose text or URL holds a value, exactly as
``html_to_text`` would have for that email's HTML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence, Union

from postsale.render.text import (ATTR_MARK, END_MARK, SPACES, TEXT_MARK, Link, UnsafeSkeleton,
                                  convert_skeleton, finish, label_suffix, link_label, link_suffix)

_SLOT = re.compile("([\ue000\ue002])([0-9]+) \ue001")


def collapsed(value: str) -> str:
    """``SPACES.sub(" ", value)``, skipped for a value with no tab, line break or double space."""
    if value.isprintable() and "  " not in value:
        return value
    return SPACES.sub(" ", value)


def decode(value: str) -> str:
    """The text of an autoescaped value (which holds no references but these five)."""
    if "&" not in value:
        return value
    return (value.replace("&lt;", "<").replace("&gt;", ">").replace("&#34;", '"')
            .replace("&#39;", "'").replace("&amp;", "&"))


_Piece = Union[str, tuple, Link]


class TextProgram:
    """``html_to_text`` of one skeleton, waiting for its values.

    Mostly the line work (``finish``) is done on the skeleton too: a value in text is collapsed
    to one line with no space at either end, so it cannot change how lines are stripped or
    joined, and a link with fixed text only adds `` (url)`` after it. What a value could still
    change — a line that reads ``--`` (the separator), a URL with a line break — is checked per
    email, which then takes the general path: fill in the pieces, then ``finish``.
    """

    def __init__(self, pieces: list) -> None:
        self._pieces = _compile_pieces(pieces)
        self._finished = _prefinish(pieces)

    def render(self, values: Sequence[str]) -> str:
        if self._finished is not None:
            text = self._finished.render(values)
            if text is not None:
                return text
        return finish("".join(_fill(self._pieces, values)))


_LINK_MARK = "\ue003"
_FINISHED_SLOT = re.compile("([\ue000\ue003])([0-9]+) \ue001")


@dataclass
class _Finished:
    pieces: list                 # the finished text, None where a value or a link's suffix goes
    slots: list[tuple[bool, int]]  # (is a link, value or link index) for each None
    links: list[tuple[str, str]]   # (text, href with ``\ue002`` placeholders)

    def __post_init__(self) -> None:
        # Per link, worked out once: its label as link_suffix compares it, and its href split
        # at the placeholders (even positions: text; odd: value indexes), or None if fixed.
        self._links = [(link_label(label), _href_parts(href)) for label, href in self.links]

    def render(self, values: Sequence[str]) -> str | None:
        fills = []
        for is_link, i in self.slots:
            if is_link:
                label, parts = self._links[i]
                if parts is None:
                    href = self.links[i][1]
                else:
                    filled = parts.copy()
                    filled[1::2] = [decode(values[k]) for k in parts[1::2]]
                    href = "".join(filled)
                suffix = label_suffix(label, href)
                if "\n" in suffix:
                    return None
                fills.append(suffix)
            else:
                fills.append(collapsed(decode(values[i])))
        out = self.pieces.copy()
        out[1::2] = fills
        text = "".join(out)
        if "\n--\n" in text or text.startswith("--\n"):
            return None          # a value made a separator line: finish would rewrite it
        return text


def _href_parts(href: str) -> list | None:
    """``href`` cut at its value placeholders: [text, index, text, ...]; None if it has none."""
    if ATTR_MARK not in href:
        return None
    parts = _SLOT.split(href)            # text, mark, index, text, mark, index, text ...
    out: list = [parts[0]]
    for i in range(1, len(parts), 3):
        out += [int(parts[i + 1]), parts[i + 2]]
    return out


def _prefinish(pieces: list) -> _Finished | None:
    """The skeleton's finished text, if values and links cannot change its lines (see above)."""
    text: list[str] = []
    links: list[tuple[str, str]] = []
    for piece in pieces:
        if type(piece) is Link:
            label = piece.label
            if not all(type(p) is str and TEXT_MARK not in p and ATTR_MARK not in p for p in label):
                return None
            joined = "".join(label)
            if not joined or joined[-1].isspace():
                return None
            text += [joined, f"{_LINK_MARK}{len(links)}{END_MARK}"]
            links.append((joined, piece.href))
        elif ATTR_MARK in piece:   # an alt text: may hold line breaks
            return None
        else:
            text.append(piece)
    parts = _FINISHED_SLOT.split(finish("".join(text)))
    out: list = [parts[0]]
    slots = []
    for i in range(1, len(parts), 3):
        slots.append((parts[i] == _LINK_MARK, int(parts[i + 1])))
        out += [None, parts[i + 2]]
    return _Finished(out, slots, links)


def _compile_pieces(pieces: list) -> list[_Piece]:
    """Strings split at their placeholders into (collapse, index) slots; links compiled alike."""
    out: list[_Piece] = []
    text: list[str] = []
    for piece in pieces:
        if type(piece) is Link:
            if text:
                out.extend(_slots("".join(text)))
                text = []
            out.append(Link(piece.href, _compile_pieces(piece.label)))
        else:
            text.append(piece)
    if text:
        out.extend(_slots("".join(text)))
    return out


def _slots(text: str) -> list[_Piece]:
    parts = _SLOT.split(text)
    out: list[_Piece] = [parts[0]] if parts[0] else []
    for i in range(1, len(parts), 3):
        out.append((parts[i] == TEXT_MARK, int(parts[i + 1])))
        if parts[i + 2]:
            out.append(parts[i + 2])
    return out


def _fill(pieces: list[_Piece], values: Sequence[str]) -> list[str]:
    out: list[str] = []
    append = out.append
    for piece in pieces:
        kind = type(piece)
        if kind is str:
            append(piece)
        elif kind is tuple:
            value = decode(values[piece[1]])
            append(SPACES.sub(" ", value) if piece[0] else value)
        else:
            href = _SLOT.sub(lambda m: decode(values[int(m[2])]), piece.href)
            label = _fill(piece.label, values)
            out.extend(label)
            append(link_suffix("".join(label), href))
    return out


def compile_text(skeleton: str) -> TextProgram | None:
    """The text part of a skeleton as a program over its values; None where that is unsafe."""
    try:
        return TextProgram(convert_skeleton(skeleton))
    except UnsafeSkeleton:
        return None
