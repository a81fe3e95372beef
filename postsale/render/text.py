"""The plain-text part, derived from an email's HTML.

A small converter of our own rather than html2text: html2text writes Markdown (``**``,
``[text](url)``), which reads as noise in a mail client and makes SpamAssassin see text and
HTML parts that differ. Here a link reads ``text (url)``, hidden elements (the preheader) are
dropped, and the layout's footer (``class="footer"``) starts after an RFC 3676 signature
separator, ``-- ``, so that lint can count the words of the message without the footer.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

FOOTER_SEPARATOR = "-- "
_SKIP = {"head", "style", "script", "title", "template"}
_VOID = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source",
         "track", "wbr"}
_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "table", "pre"}
_LINE = {"div", "tr", "section", "header", "footer", "article", "center", "dd", "dt", "dl"}
_SPACES = re.compile(r"[ \t\f\v\r\n]+")


def _hidden(attrs: dict[str, str | None]) -> bool:
    style = (attrs.get("style") or "").replace(" ", "").lower()
    return ("display:none" in style or "hidden" in attrs
            or (attrs.get("aria-hidden") or "").lower() == "true")


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip_depth = 0                # inside a skipped element: ignore everything
        self.stack: list[str] = []         # open non-void tags, to find where a skip ends
        self.links: list[tuple[str, int]] = []   # (href, index in out where its text starts)

    # -- helpers
    def newline(self, blank: bool = False) -> None:
        self.out.append("\n\n" if blank else "\n")

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = dict(attrs_list)
        if tag not in _VOID:
            self.stack.append(tag)
        if self.skip_depth:
            if tag not in _VOID:
                self.skip_depth += 1
            return
        if tag in _SKIP or _hidden(attrs):
            if tag not in _VOID:
                self.skip_depth = 1
            return
        if "footer" in (attrs.get("class") or "").split():
            self.out.append(f"\n\n{FOOTER_SEPARATOR}\n")
        if tag == "br":
            self.newline()
        elif tag == "hr":
            self.newline(blank=True)
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in _PARAGRAPH:
            self.newline(blank=True)
        elif tag in _LINE:
            self.newline()
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag == "a":
            self.links.append((attrs.get("href") or "", len(self.out)))
        elif tag == "img" and attrs.get("alt"):
            self.out.append(attrs["alt"] or "")

    def handle_endtag(self, tag: str) -> None:
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
            self.newline(blank=True)
        elif tag in _LINE:
            self.newline()

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

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            self.out.append(_SPACES.sub(" ", data))


def html_to_text(html: str) -> str:
    """Readable plain text for the text/plain part; the footer follows a ``-- `` line."""
    parser = _Converter()
    parser.feed(html)
    parser.close()
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
