"""The plain-text part, derived from an email's HTML.

A small converter of our own rather than html2text: html2text writes Markdown (``**``,
``[text](url)``), which reads as noise in a mail client and makes SpamAssassin see text and
HTML parts that differ. Here a link reads ``text (url)``, hidden elements (the preheader) are
dropped, and the layout's footer (``class="footer"``) starts after an RFC 3676 signature
separator, ``-- ``, so that lint can count the words of the message without the footer.

The input is our own templates' output, so a regular-expression tokenizer is enough, and it
is about twice as fast as ``html.parser`` here (this runs on every render).

The converter also runs over a template's *skeleton* (its output with each value replaced by a
numbered placeholder, ``postsale.render.skeleton``): ``convert_skeleton`` keeps links that hold
values undecided and refuses placeholders where a value would change what the tokenizer decides;
``postsale.render.text_program`` fills the values in per email.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape

FOOTER_SEPARATOR = "-- "
_SKIP = {"head", "style", "script", "title", "template"}
_VOID = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source",
         "track", "wbr"}
_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "table", "pre"}
_LINE = {"div", "tr", "section", "header", "footer", "article", "center", "dd", "dt", "dl"}
SPACES = re.compile(r"[ \t\f\v\r\n]+")          # what the converter collapses to one space
# Attribute values cannot hold a raw ">": autoescape writes "&gt;" for customer data.
_TOKEN = re.compile(r"<!--.*?-->|<![^>]*>|<\?[^>]*>|<(/?)([A-Za-z][A-Za-z0-9:-]*)([^>]*)>", re.S)
_ATTR = re.compile(r"""([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?""")
_RAW = ("style", "script", "title", "textarea")   # their content is text up to the end tag


def _attrs(text: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for m in _ATTR.finditer(text):
        value = next((v for v in m.group(2, 3, 4) if v is not None), None)
        out[m[1].lower()] = None if value is None else unescape(value)
    return out


def _hidden(raw: str) -> bool:
    # Cheap test on the raw attribute text first: most tags have nothing of the sort.
    if "none" not in raw and "hidden" not in raw:
        return False
    attrs = _attrs(raw)
    style = (attrs.get("style") or "").replace(" ", "").lower()
    return ("display:none" in style or "hidden" in attrs
            or (attrs.get("aria-hidden") or "").lower() == "true")


# What a start or end tag adds to the text (after the footer separator, if any).
_START_TEXT = {**dict.fromkeys(_PARAGRAPH, "\n\n"), "hr": "\n\n", **dict.fromkeys(_LINE, "\n"), "br": "\n",
               "li": "\n- ", "td": " ", "th": " "}
_END_TEXT = {**dict.fromkeys(_PARAGRAPH, "\n\n"), **dict.fromkeys(_LINE, "\n")}
_RAW_END = {tag: re.compile(rf"</{tag}\s*>", re.I) for tag in _RAW}
_SCHEME = re.compile(r"^https?://")
_BLANK_LINES = re.compile(r"\n{3,}")
_SEPARATOR_LINE = re.compile(rf"\n*^{re.escape(FOOTER_SEPARATOR)}$\n*", re.M)
_SEPARATOR_STRIPPED = FOOTER_SEPARATOR.strip()

# Placeholders of a skeleton: ``\ue000N \ue001`` for value N. In text they stand for the value
# with its spaces collapsed; in an attribute (a link's href, an alt) the converter rewrites them
# to ``\ue002N \ue001``: the value as it is. The space inside is deliberate: like a value with a
# space, a placeholder in an unquoted attribute value is cut in two there, and so is refused.
TEXT_MARK, ATTR_MARK, END_MARK = "\ue000", "\ue002", " \ue001"


def placeholder(index: int) -> str:
    return f"{TEXT_MARK}{index}{END_MARK}"
# What a value may not change: how elements are hidden, or which one is the footer.
_DECIDING_ATTRS = {"style", "class", "hidden", "aria-hidden"}


class UnsafeSkeleton(Exception):
    """A placeholder sits where its value would change the tokenizer's decisions."""


@dataclass
class Link:
    """A link whose href or text holds a value: whether its URL follows is decided per email."""
    href: str
    label: list  # the pieces of its text: str and Link


def _attr(raw: str, name: str, lazy: bool) -> str:
    value = _attrs(raw).get(name) or ""
    return value.replace(TEXT_MARK, ATTR_MARK) if lazy else value


def _check_tag(raw: str) -> None:
    """In a skeleton, a tag may hold placeholders only in quoted values of inert attributes."""
    for m in _ATTR.finditer(raw):
        if TEXT_MARK in m[1] or (m[4] and TEXT_MARK in m[4]):
            raise UnsafeSkeleton(raw)
        if TEXT_MARK in m[0] and m[1].lower() in _DECIDING_ATTRS:
            raise UnsafeSkeleton(raw)


def _convert(html: str, lazy: bool = False) -> list:
    """The text pieces of ``html``: one pass over its tokens, state in locals.

    ``lazy`` (a skeleton): links that hold placeholders become ``Link`` pieces, decided per
    email, and a placeholder where a value could change a decision raises ``_Unsafe``.

    State: ``out`` (the pieces), ``stack`` (open non-void tags, to find where a skipped element
    ends), ``skip`` (inside a skipped element — head, style, anything hidden — how many open
    elements deep), ``links`` (open ``<a>``: href and where its text starts in ``out``).
    This runs on every render: the per-token work is written out inline on purpose.
    """
    out: list[str] = []
    append = out.append
    stack: list[str] = []
    push, pop = stack.append, stack.pop
    links: list[tuple[str, int]] = []
    skip = 0
    pos = 0
    spaces = SPACES.sub
    for m in _TOKEN.finditer(html):
        start = m.start()
        if start < pos:                        # inside raw text already consumed
            continue
        if start > pos and not skip:
            text = html[pos:start]
            append(" " if text.isspace() else spaces(" ", unescape(text)))
        pos = m.end()
        name = m[2]
        if name is None:                       # comment, doctype, processing instruction
            continue
        tag = name.lower()
        if m[1]:                               # an end tag
            if tag in _VOID:
                continue
            # Pop up to the matching open tag (tolerates unclosed <p>, <li> ...).
            if tag in stack:
                closed = False
                while stack:
                    top = pop()
                    if skip:
                        skip -= 1
                        if top == tag:
                            closed = True
                            break
                        continue
                    if top == tag:
                        break
                if closed:
                    continue
            if skip:
                continue
            if tag == "a" and links:
                _close_link(out, *links.pop(), lazy)
            else:
                piece = _END_TEXT.get(tag)
                if piece:
                    append(piece)
            continue
        raw = m[3]
        if lazy and TEXT_MARK in m[0]:
            _check_tag(raw)
        void = tag in _VOID
        if not void:
            push(tag)
        if skip:
            if not void:
                skip += 1
        elif tag in _SKIP or (raw and _hidden(raw)):
            if not void:
                skip = 1
        else:
            if "footer" in raw and "footer" in (_attrs(raw).get("class") or "").split():
                append(f"\n\n{FOOTER_SEPARATOR}\n")
            piece = _START_TEXT.get(tag)
            if piece:
                append(piece)
            elif tag == "a":
                links.append((_attr(raw, "href", lazy), len(out)))
            elif tag == "img" and "alt" in raw:
                append(_attr(raw, "alt", lazy))
        if tag in _RAW:                        # its content is text up to its end tag
            close = _RAW_END[tag].search(html, pos)
            if not skip:
                text = html[pos:close.start() if close else len(html)]
                append(" " if text.isspace() else spaces(" ", unescape(text)))
            pos = close.end() if close else len(html)
            skip = _end_raw(tag, stack, skip, out, links, lazy)
        elif not void and raw.endswith("/"):
            skip = _end_raw(tag, stack, skip, out, links, lazy)    # <div/>: XHTML style, closed at once
    if pos < len(html) and not skip:
        text = html[pos:]
        append(" " if text.isspace() else spaces(" ", unescape(text)))
    return out


def _end_raw(tag: str, stack: list[str], skip: int, out: list, links: list[tuple[str, int]], lazy: bool) -> int:
    """End ``tag`` right after its start (raw-text elements, ``<x/>``); returns the new skip depth."""
    if tag in _VOID:
        return skip
    if tag in stack:
        while stack:
            top = stack.pop()
            if skip:
                skip -= 1
                if top == tag:
                    return skip
                continue
            if top == tag:
                break
    if skip:
        return skip
    if tag == "a" and links:
        _close_link(out, *links.pop(), lazy)
    else:
        piece = _END_TEXT.get(tag)
        if piece:
            out.append(piece)
    return skip


def _close_link(out: list, href: str, start: int, lazy: bool = False) -> None:
    if lazy and (ATTR_MARK in href or any(type(p) is Link or TEXT_MARK in p or ATTR_MARK in p
                                          for p in out[start:])):
        out[start:] = [Link(href, out[start:])]    # its text, then what follows it
        return
    out.append(link_suffix("".join(out[start:]), href))


def link_suffix(text: str, href: str) -> str:
    """What follows a link's text: its URL in brackets, or the URL alone for a link without text."""
    return label_suffix(link_label(text), href)


def link_label(text: str) -> str:
    """A link's text as ``link_suffix`` compares it with the URL."""
    return SPACES.sub(" ", text).strip()


def label_suffix(label: str, href: str) -> str:
    """``link_suffix`` for a label already through ``link_label`` (a fixed one: worked out once)."""
    target = href.strip()
    if target.lower().startswith("mailto:"):
        target = target[7:].split("?", 1)[0]
    if not target or target.startswith("#"):
        return ""
    if not label:
        return target
    if label.rstrip("/") not in (target.rstrip("/"), _SCHEME.sub("", target).rstrip("/")):
        return f" ({target})"
    return ""


def convert_skeleton(skeleton: str) -> list:
    """The text pieces of a skeleton: str, and ``Link`` for links whose text or URL holds values.

    Raises ``UnsafeSkeleton`` where a placeholder could change the conversion.
    """
    return _convert(skeleton, lazy=True)


def html_to_text(html: str) -> str:
    """Readable plain text for the text/plain part; the footer follows a ``-- `` line."""
    return finish("".join(_convert(html)))


def finish(joined: str) -> str:
    """Lines stripped, blank runs cut to one, the footer separator on a line of its own."""
    lines = []
    for line in joined.split("\n"):
        line = line.strip()
        lines.append(line if line != _SEPARATOR_STRIPPED else FOOTER_SEPARATOR)
    text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")
    # The separator must be a line of its own with exactly one trailing space.
    text = _SEPARATOR_LINE.sub(f"\n\n{FOOTER_SEPARATOR}\n", text)
    return text + "\n"


def split_footer(text: str) -> tuple[str, str]:
    """(message, footer): the footer starts at the last ``-- `` signature line, if any."""
    marker = f"\n{FOOTER_SEPARATOR}\n"
    padded = "\n" + text
    index = padded.rfind(marker)
    if index < 0:
        return text, ""
    return padded[1:index + 1], padded[index + len(marker):]
