"""CSS inlining and the derived text part, worked out once per *skeleton* of a template's output.

An email's HTML is the template's fixed text with values put in: customer names, order
numbers, link URLs. Jinja yields the fixed text as ``str`` and each autoescaped value as
``Markup``; the *skeleton* is the output with every value replaced by a placeholder. All emails
of one template with the same control flow (the same number of items, say) share a skeleton, so
the inliner (~60-250 µs an email, its parse and serialisation) and the text tokenizer run once
per skeleton, and each email only fills its values in.

Filling in gives what the inliner would have written for the email itself because a value
becomes a placeholder only where it cannot change the inliner's work:

* the value is plain text: no ``<``, ``>``, quotes, CR or NUL, no character reference but the
  five autoescape writes, no leading or trailing space (which the HTML parser may move). Any
  other value (``|safe`` markup, a macro's output) stays in the skeleton as it is;
* the placeholder lands in text, or in a quoted attribute value that no selector or inliner
  option reads (not ``style``, ``class``, ``id``, ``data-css-inline``, not in ``<link>``, and none
  at all when the CSS has attribute or ``:lang()``/``:dir()`` selectors); never in ``<style>``,
  ``<script>``, comments, tag or attribute names, or after an unfinished ``&`` reference. Where a
  placeholder landed is read off the inliner's own output of the skeleton (placeholders hold a
  space, so one in an unquoted attribute value is cut there and is not found whole);
* the inliner's serialisation of a value depends only on that: text escapes ``& < >`` and
  no-break spaces, attribute values ``& "`` and no-break spaces. ``serialize_text`` and
  ``serialize_attr`` write the same.

A skeleton that breaks any rule is not used: those emails go through the inliner whole (counted
in ``SkeletonCache.whole``). The text part follows the same idea (``postsale.render.text_program``).
tests/render/test_skeleton.py compares both paths on the shipped templates and on values of
every awkward kind in every context.
"""

from __future__ import annotations

import bisect
import re
from typing import Any, Callable, Iterable

from jinja2.exceptions import SecurityError

from postsale.render.text import placeholder
from postsale.render.text_program import TextProgram, compile_text
from postsale.sandbox import MAX_OUTPUT

MARK = "\x00"                              # a value's place in a skeleton key
MAX_SKELETONS = 512                        # per renderer: beyond, new shapes inline whole

# A value that may become a placeholder holds none of these characters, no character reference
# but the five autoescape writes, and no space at either end (see the module docstring).
_NOT_PLAIN = re.compile("[<>\"'\r\x00\ue000-\ue003\ud800-\udfff]")
_MARKERS = re.compile("[\ue000-\ue003]")      # placeholders' characters, here and in text.py
_OTHER_REFERENCE = re.compile("&(?!(?:amp|lt|gt|#34|#39);)")
_PLACEHOLDER = re.compile("\ue000([0-9]+) \ue001")
_SKELETON_GUARDS = re.compile("&[#A-Za-z0-9]*\ue000|</?\ue000|<plaintext|<!\\[CDATA\\[", re.I)
_STYLE_ELEMENT = re.compile(r"<style\b[^>]*>(.*?)</style", re.I | re.S)
_VALUE_SELECTORS = re.compile(r"\[|:lang\(|:dir\(", re.I)
# The inliner's output (html5ever's serialiser): attribute values always double-quoted with
# ``"`` escaped, so a tag ends at the first ``>`` outside quotes.
_OUT_TOKEN = re.compile(
    r"""<!--.*?-->|<(style|script|xmp|iframe|noembed|noframes|noscript)\b(?:[^>"]|"[^"]*")*>.*?</\1\s*>"""
    r"""|<[!?/]?[A-Za-z][^>"]*(?:"[^"]*"[^>"]*)*>""", re.S | re.I)
_OUT_ATTR = re.compile(r'\s([^\s=>"]+)(?:="([^"]*)")?')
_INERT_ATTR_REFUSED = {"style", "class", "id"}


class Rendered:
    """A template's HTML output, its skeleton (``MARK`` where a value was) and the values."""

    __slots__ = ("html", "key", "values")

    def __init__(self, html: str, key: str, values: list[str]) -> None:
        self.html, self.key, self.values = html, key, values


def collect(chunks: Iterable[str]) -> Rendered:
    """Join a template's output (refusing more than MAX_OUTPUT characters) and note its values.

    Jinja yields the template's own text as ``str``, values as ``Markup``; a value that passes
    the checks becomes a placeholder. This runs over every chunk of every render: kept lean.
    """
    parts: list[str] = []
    append = parts.append
    slots: list[int] = []
    values: list[str] = []
    unsafe = _NOT_PLAIN.search
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise SecurityError(f"rendered output over {MAX_OUTPUT} characters")
        if type(chunk) is not str and chunk:
            value = str(chunk)             # Markup's own methods are slow, and escape arguments
            if (not value[0].isspace() and not value[-1].isspace() and not unsafe(value)
                    and ("&" not in value or not _OTHER_REFERENCE.search(value))):
                slots.append(len(parts))
                values.append(value)
        append(chunk)
    html = "".join(parts)
    if not slots:
        return Rendered(html, html, values)
    for i in slots:
        parts[i] = MARK
    return Rendered(html, "".join(parts), values)


def serialize_text(value: str) -> str:
    """An autoescaped value as the inliner writes it in text: ``& < >`` and U+00A0 escaped."""
    if "&" in value:
        value = value.replace("&#34;", '"').replace("&#39;", "'")
    return value.replace("\xa0", "&nbsp;") if "\xa0" in value else value


def serialize_attr(value: str) -> str:
    """An autoescaped value as the inliner writes it in a double-quoted attribute value."""
    if "&" in value:
        value = (value.replace("&lt;", "<").replace("&gt;", ">").replace("&#34;", "&quot;")
                 .replace("&#39;", "'"))
    return value.replace("\xa0", "&nbsp;") if "\xa0" in value else value


class _Shape:
    """What one skeleton inlines to, as pieces around its values, and its text program."""

    def __init__(self, count: int, pieces: list[str | None], slots: list[tuple[int, bool]]) -> None:
        self.count = count                 # values it expects: guards against a look-alike key
        self.pieces = pieces               # inlined HTML, None where a value goes
        self.slots = slots                 # (value index, in an attribute) for each None, in order
        self.numbered = ""                 # the skeleton with numbered placeholders
        self.text: TextProgram | None = None
        self.text_done = False

    def html(self, values: list[str]) -> str:
        out = self.pieces.copy()
        out[1::2] = [serialize_attr(values[k]) if attr else serialize_text(values[k])
                     for k, attr in self.slots]
        return "".join(out)


class SkeletonCache:
    """Inlined HTML and derived text of rendered emails, worked out per skeleton.

    ``inline`` is the inliner's ``inline`` (``str -> str``), ``to_text`` the text converter; both
    are still called for an email whose skeleton cannot be used.
    """

    def __init__(self, inline: Callable[[str], str], to_text: Callable[[str], str],
                 limit: int | None = None) -> None:
        self._inline = inline
        self._to_text = to_text
        self._limit = MAX_SKELETONS if limit is None else limit
        self._shapes: dict[str, _Shape | None] = {}
        self.learned = 0                   # skeletons worked out (usable or not)
        self.whole = 0                     # emails inlined whole: no usable skeleton
        self.whole_text = 0                # text parts converted whole

    def __len__(self) -> int:
        return len(self._shapes)

    def inline(self, rendered: Rendered) -> str:
        shape = self._shape(rendered)
        if shape is None:
            self.whole += 1
            return self._inline(rendered.html)
        return shape.html(rendered.values)

    def text(self, rendered: Rendered) -> str:
        shape = self._shape(rendered)
        if shape is not None and not shape.text_done:
            shape.text, shape.text_done = compile_text(shape.numbered), True
        if shape is None or shape.text is None:
            self.whole_text += 1
            return self._to_text(rendered.html)
        return shape.text.render(rendered.values)

    def _shape(self, rendered: Rendered) -> _Shape | None:
        key = rendered.key
        try:
            shape = self._shapes[key]
        except KeyError:
            if len(self._shapes) >= self._limit:
                return None
            shape = self._shapes[key] = self._learn(key, len(rendered.values))
            self.learned += 1
        if shape is None or shape.count != len(rendered.values):
            return None
        return shape

    def _learn(self, key: str, count: int) -> _Shape | None:
        parts = key.split(MARK)
        if len(parts) != count + 1 or _MARKERS.search(key):
            return None                    # the template's own text holds a marker character
        numbered = parts[0] + "".join(placeholder(k) + p for k, p in enumerate(parts[1:]))
        if _SKELETON_GUARDS.search(numbered):
            return None
        try:
            inlined = self._inline(numbered)
        except Exception:                  # the email itself will raise the same, with context
            return None
        shape = _split(inlined, count, _attributes_inert(numbered))
        if shape is not None:
            shape.numbered = numbered
        return shape


def _attributes_inert(html: str) -> bool:
    """Whether the CSS leaves attribute values alone: no ``[attr]``, ``:lang()``, ``:dir()``."""
    return not any(_VALUE_SELECTORS.search(css) for css in _STYLE_ELEMENT.findall(html))


def _split(inlined: str, count: int, attrs_inert: bool) -> _Shape | None:
    """Cut the inlined skeleton at its placeholders; None if any sits where it is not safe."""
    found = list(_PLACEHOLDER.finditer(inlined))
    if sorted(int(m[1]) for m in found) != list(range(count)):
        return None                        # dropped (a style element) or repeated
    tokens = [(m.start(), m.end(), m) for m in _OUT_TOKEN.finditer(inlined)]
    starts = [t[0] for t in tokens]
    pieces: list[str | None] = []
    slots: list[tuple[int, bool]] = []
    pos = 0
    for m in found:
        i = bisect.bisect_right(starts, m.start()) - 1
        in_attr = False
        if i >= 0 and tokens[i][1] > m.start():
            if not attrs_inert or not _in_inert_value(tokens[i][2], m.start() - tokens[i][0]):
                return None
            in_attr = True
        pieces += [inlined[pos:m.start()], None]
        slots.append((int(m[1]), in_attr))
        pos = m.end()
    pieces.append(inlined[pos:])
    return _Shape(count, pieces, slots)


def _in_inert_value(token: Any, offset: int) -> bool:
    """Whether ``offset`` in this tag falls in a value of an attribute the inliner ignores."""
    text = token[0]
    if token[1] is not None or text.startswith(("<!", "<?", "</")):
        return False                       # raw-text element, comment, doctype, end tag
    name = re.match(r"<([A-Za-z][^\s/>]*)", text)
    if name is None or name[1].lower() in ("link", "style"):
        return False
    for attr in _OUT_ATTR.finditer(text):
        if attr.start(2) <= offset < attr.end(2) and attr[2] is not None:
            lowered = attr[1].lower()
            return lowered not in _INERT_ATTR_REFUSED and not lowered.startswith("data-css-inline")
    return False
