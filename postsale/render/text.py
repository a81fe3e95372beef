"""The plain-text part, derived from an email's HTML.

A small converter of our own rather than html2text: html2text writes Markdown (``**``,
``[text](url)``), which reads as noise in a mail client and makes SpamAssassin see text and
HTML parts that differ. Here a link reads ``text (url)``, hidden elements (the preheader) are
dropped, and the layout's footer (``class="footer"``) starts after an RFC 3676 signature
separator, ``-- ``, so that lint can count the words of the message without the footer.

The input is our own templates' output, so a regular-expression tokenizer is enough, and it
is about twice as fast as ``html.parser`` here (this runs on every render).
"""

from __future__ import annotations

import re
from html import unescape

FOOTER_SEPARATOR = "-- "
_SKIP = {"head", "style", "script", "title", "template"}
_VOID = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source",
         "track", "wbr"}
_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "table", "pre"}
_LINE = {"div", "tr", "section", "header", "footer", "article", "center", "dd", "dt", "dl"}
_SPACES = re.compile(r"[ \t\f\v\r\n]+")
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


class _Converter:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.skip_depth = 0                # inside a skipped element: ignore everything
        self.stack: list[str] = []         # open non-void tags, to find where a skip ends
        self.links: list[tuple[str, int]] = []   # (href, index in out where its text starts)

    def feed(self, html: str) -> None:
        pos = 0
        for m in _TOKEN.finditer(html):
            start = m.start()
            if start < pos:                    # inside raw text already consumed
                continue
            if start > pos:
                self.data(html[pos:start])
            pos = m.end()
            name = m[2]
            if name is None:                   # comment, doctype, processing instruction
                continue
            tag = name.lower()
            if m[1]:
                self.end(tag)
                continue
            raw = m[3]
            self.start(tag, raw)
            if tag in _RAW:
                close = re.compile(rf"</{tag}\s*>", re.I).search(html, pos)
                self.data(html[pos:close.start() if close else len(html)])
                self.end(tag)
                pos = close.end() if close else len(html)
            elif raw.endswith("/") and tag not in _VOID:
                self.end(tag)                  # <div/>: XHTML style, closed at once
        if pos < len(html):
            self.data(html[pos:])

    def start(self, tag: str, raw: str) -> None:
        void = tag in _VOID
        if not void:
            self.stack.append(tag)
        if self.skip_depth:
            if not void:
                self.skip_depth += 1
            return
        if tag in _SKIP or (raw and _hidden(raw)):
            if not void:
                self.skip_depth = 1
            return
        out = self.out
        if "footer" in raw and "footer" in (_attrs(raw).get("class") or "").split():
            out.append(f"\n\n{FOOTER_SEPARATOR}\n")
        if tag in _PARAGRAPH or tag == "hr":
            out.append("\n\n")
        elif tag in _LINE or tag == "br":
            out.append("\n")
        elif tag == "li":
            out.append("\n- ")
        elif tag in ("td", "th"):
            out.append(" ")
        elif tag == "a":
            self.links.append((_attrs(raw).get("href") or "", len(out)))
        elif tag == "img" and "alt" in raw:
            out.append(_attrs(raw).get("alt") or "")

    def end(self, tag: str) -> None:
        if tag in _VOID:
            return
        # Pop up to the matching open tag (tolerates unclosed <p>, <li> ...).
        if tag in self.stack:
            while self.stack:
                top = self.stack.pop()
                if self.skip_depth:
                    self.skip_depth -= 1
                    if top == tag:
                        return
                    continue
                if top == tag:
                    break
        if self.skip_depth:
            return
        if tag == "a" and self.links:
            href, start = self.links.pop()
            self._close_link(href, start)
        elif tag in _PARAGRAPH:
            self.out.append("\n\n")
        elif tag in _LINE:
            self.out.append("\n")

    def _close_link(self, href: str, start: int) -> None:
        label = _SPACES.sub(" ", "".join(self.out[start:])).strip()
        target = href.strip()
        if target.lower().startswith("mailto:"):
            target = target[7:].split("?", 1)[0]
        if not target or target.startswith("#"):
            return
        if not label:
            self.out.append(target)
        elif label.rstrip("/") not in (target.rstrip("/"), re.sub(r"^https?://", "", target).rstrip("/")):
            self.out.append(f" ({target})")

    def data(self, text: str) -> None:
        if self.skip_depth:
            return
        if text.isspace():
            self.out.append(" ")
        else:
            self.out.append(_SPACES.sub(" ", unescape(text)))


def html_to_text(html: str) -> str:
    """Readable plain text for the text/plain part; the footer follows a ``-- `` line."""
    parser = _Converter()
    parser.feed(html)
    lines = [line.strip() if line.strip() != FOOTER_SEPARATOR.strip() else FOOTER_SEPARATOR
             for line in "".join(parser.out).split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
    # The separator must be a line of its own with exactly one trailing space.
    text = re.sub(rf"\n*^{re.escape(FOOTER_SEPARATOR)}$\n*", f"\n\n{FOOTER_SEPARATOR}\n", text,
                  flags=re.M)
    return text + "\n"


def split_footer(text: str) -> tuple[str, str]:
    """(message, footer): the footer starts at the last ``-- `` signature line, if any."""
    marker = f"\n{FOOTER_SEPARATOR}\n"
    padded = "\n" + text
    index = padded.rfind(marker)
    if index < 0:
        return text, ""
    return padded[1:index + 1], padded[index + len(marker):]
