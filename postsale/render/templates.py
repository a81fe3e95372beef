"""The Jinja2 renderer: ``templates/NAME.html.j2`` → a ready ``RenderedEmail``.

Each template extends ``_layout.html.j2`` and fills the blocks ``subject``, ``preheader``
(optional) and ``body``. ``NAME.it.html.j2`` wins for a customer whose locale is ``it`` or
``it-ch``; ``NAME.txt.j2`` (or ``NAME.it.txt.j2``) replaces the text part derived from the HTML.

Everything runs in the shared sandbox with strict undefined names. Any failure becomes a
``TemplateRenderError`` (a ``RenderError``) that says ``file:line: what went wrong``, so that
``postsale validate`` can point at the line and the engine can skip the message with a reason.

Besides the names of SPEC §3 and §4, templates see ``category`` (``marketing`` or
``transactional``: the layout shows the unsubscribe footer on marketing) and ``lang`` (the
locale of the file that won, ``en`` for the base file), and have one extra filter,
``and_list`` (``["kettle", "mug"] | and_list`` → ``kettle and mug``).

Compiled templates are cached per name and winning variant for the life of the renderer, and
Jinja's own reload check is off: a changed template is picked up by a new renderer (a new
catalogue load), not by a ``stat`` on every one of thousands of renders a second. Likewise CSS
inlining and the derived text part are worked out once per shape of a template's output and
filled in per email (``postsale.render.skeleton``): the same bytes, at a fraction of the CPU.
"""

from __future__ import annotations

import html as htmllib
import re
import traceback
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import FileSystemLoader, Template, TemplateNotFound, TemplateSyntaxError
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from markupsafe import escape

from postsale.errors import RenderError
from postsale.links import Links
from postsale.render.skeleton import Rendered, SkeletonCache, collect
from postsale.render.text import html_to_text
from postsale.render.types import RenderedEmail, RenderRequest
from postsale.sandbox import bounded_concat, make_environment
from postsale.spec.model import Category, Policy, QuestionType, SurveyDef

LAYOUT = "_layout.html.j2"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*(/[A-Za-z0-9_][A-Za-z0-9_-]*)*$")
_TAGS = re.compile(r"<[^>]*>")
# Remote stylesheets would make rendering fetch from the network: never.
_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
_MAX_ASKED = 4096                          # (template, locale) pairs remembered per renderer
# ``Category(x).value`` for a member or its value, without the enum call
_CATEGORY_VALUES = {**{c: c.value for c in Category}, **{c.value: c.value for c in Category}}


class TemplateRenderError(RenderError):
    """A RenderError that knows the template file and line it is about (line 0: unknown)."""

    def __init__(self, reason: str, *, file: str = "", line: int = 0) -> None:
        self.reason, self.file, self.line = reason, file, line
        where = f"{file}:{line}: " if file and line else f"{file}: " if file else ""
        super().__init__(f"{where}{reason}")


@dataclass(frozen=True)
class _Compiled:
    html: Template
    text: Template | None
    file: str                              # the HTML file that won, for messages
    lang: str                              # the variant's locale, "en" for the base file
    # The templates' globals (a ChainMap over the environment's) as one dict: Jinja flattens
    # the ChainMap in Python for every context it makes; ``_context`` copies this instead.
    html_globals: dict[str, Any] = field(default_factory=dict)
    text_globals: dict[str, Any] = field(default_factory=dict)


def _context(template: Template, flat_globals: dict[str, Any], scope: dict[str, Any]) -> Any:
    """``template.new_context(scope)``, with the globals flattened once per template."""
    return template.new_context({**flat_globals, **scope}, shared=True)


def _keep_loaded(env: Any) -> None:
    """Every render of a template that ``{% extends %}`` the layout asks the environment for the
    layout again: with ``auto_reload`` off, Jinja answers from its LRU cache (a lock, a weak
    reference, a queue update). Asked by name, with no extra globals, the answer is kept here."""
    loaded: dict[tuple[str, str | None], Template] = {}
    get = env.get_template

    def get_template(name: Any, parent: str | None = None, globals: Any = None) -> Template:  # noqa: A002
        if globals is not None or type(name) is not str:
            return get(name, parent, globals)
        template = loaded.get((name, parent))
        if template is None:
            template = loaded[(name, parent)] = get(name, parent)
        return template

    env.get_template = get_template


def locale_candidates(locale: str | None) -> list[str]:
    """``it-ch`` → ``["it-ch", "it"]``: most specific first; the base file comes after."""
    if not locale:
        return []
    parts = locale.lower().replace("_", "-").split("-")
    return ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]


def and_list(values: Any, word: str = "and") -> str:
    """``["kettle", "mug", "tray"] | and_list`` → ``kettle, mug and tray`` (``and_list('e')``)."""
    items = [str(v) for v in values]
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}"


# Unicode categories Cc (C0, DEL, C1), Zl and Zp: fixed sets by Unicode's stability policy
# (Cc never changes; U+2028 and U+2029 are the only Zl and Zp). A table, not a per-character
# ``unicodedata.category`` call: this runs twice on every render.
_BREAKERS = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029], " ")


def _one_line(text: str) -> str:
    """Header-safe text from a rendered block: no tags, no entities, no control characters.

    Each step is skipped where it has nothing to do (it runs twice on every render): no ``<``,
    no tag; no ``&``, no reference; printable text holds no Cc, Zl or Zp character.
    """
    if "<" in text:
        text = _TAGS.sub("", text)
    if "&" in text:
        text = htmllib.unescape(text)
    if not text.isprintable():
        text = text.translate(_BREAKERS)
    return " ".join(text.split())


def _mail_domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or "localhost"


class TemplateRenderer:
    """Renders a ``RenderRequest``; a ``postsale.render.types.Renderer``."""

    def __init__(self, templates_dir: Path, policy: Policy, links: Links) -> None:
        self.templates_dir = Path(templates_dir)
        self.policy = policy
        self.links = links
        loader = FileSystemLoader(str(self.templates_dir))
        self._html_env = make_environment(loader, autoescape=True)
        self._text_env = make_environment(loader, autoescape=False)   # plain text: no entities
        for env in (self._html_env, self._text_env):
            env.auto_reload = False
            env.filters["and_list"] = and_list
            _keep_loaded(env)
        self._cache: dict[tuple[str, str | None], _Compiled] = {}
        # ... and by the locale asked for: one lookup per render instead of working out the
        # variant again (bounded: locales come from customers' data).
        self._by_locale: dict[tuple[str, str | None], _Compiled] = {}
        self._variants: dict[str, dict[str, str]] = {}    # template -> {lowercase locale: suffix}
        # Inlining and the text part, once per shape of a template's output (skeleton.py).
        self.skeletons = SkeletonCache(_INLINER.inline, html_to_text)
        self._domain = _mail_domain(policy.sender.from_)
        # Whether an answer link is the survey link plus ``?a=N`` (what Links does today): then
        # the token is signed once per message. Checked, not assumed.
        self._answer_suffix = links.survey_url("c", "m", "s", 3) == links.survey_url("c", "m", "s") + "?a=3"
        name, address = parseaddr(policy.sender.from_)
        self._policy_scope = {
            "postal_address": policy.postal_address,
            "public_url": policy.public_url,
            "sender": {"from": policy.sender.from_, "name": name or address, "email": address,
                       "reply_to": policy.sender.reply_to or address},
        }

    # ------------------------------------------------------------ public

    def __call__(self, request: RenderRequest) -> RenderedEmail:
        locale = request.locale or (request.scope.get("customer") or {}).get("locale")
        compiled = self.compile(request.template, locale)
        scope = self._scope(request, compiled.lang)
        rendered, subject, preheader = self._render_html(compiled, scope)
        subject = _one_line(subject)
        if not subject:
            raise TemplateRenderError("the subject block is empty or missing; add "
                                      "{% block subject %}...{% endblock %}", file=compiled.file)
        text = self._render_text(compiled, scope) if compiled.text else self.skeletons.text(rendered)
        if request.category == Category.marketing:
            self._check_marketing(compiled, rendered.html, text, scope["unsubscribe_url"])
        try:
            inlined = self.skeletons.inline(rendered)
        except (css_inline.InlineError, ValueError) as exc:
            raise TemplateRenderError(f"CSS could not be inlined: {exc}", file=compiled.file) from exc
        return RenderedEmail(subject=subject, html=inlined, text=text,
                             preheader=_one_line(preheader), template_file=compiled.file,
                             headers=self._headers(scope["unsubscribe_url"]))

    def compile(self, template: str, locale: str | None = None) -> _Compiled:
        """The compiled HTML (and text) template for this name and locale, cached.

        Keyed by the variant that wins, not by the locale asked for: customers' locales are
        many, a template's variants few.
        """
        asked = (template, locale)
        compiled = self._by_locale.get(asked)
        if compiled is None:
            key = (template, self._variant(template, locale))
            compiled = self._cache.get(key)
            if compiled is None:
                compiled = self._cache[key] = self._load(*key)
            if len(self._by_locale) < _MAX_ASKED:
                self._by_locale[asked] = compiled
        return compiled

    def file_of(self, name: str) -> str:
        return str(self.templates_dir / name)

    # ------------------------------------------------------------ loading

    def _variant(self, template: str, locale: str | None) -> str | None:
        """The file suffix of the best locale variant (``it`` for ``it-CH``), None for the base."""
        if not _NAME.match(template):
            raise TemplateRenderError(f"bad template name {template!r}: use letters, digits, "
                                      "'_' and '-' (the file is templates/NAME.html.j2)")
        if not locale:
            return None
        variants = self._variants.get(template)
        if variants is None:
            path = self.templates_dir / template
            variants = {}
            for file in path.parent.glob(f"{path.name}.*.html.j2"):
                suffix = file.name[len(path.name) + 1:-len(".html.j2")]
                if "." not in suffix:
                    variants[suffix.lower()] = suffix
            self._variants[template] = variants
        return next((variants[c] for c in locale_candidates(locale) if c in variants), None)

    def _load(self, template: str, variant: str | None) -> _Compiled:
        name = f"{template}.{variant}" if variant else template
        html = self._get(self._html_env, f"{name}.html.j2")
        if html is None:
            raise TemplateRenderError(f"template {template!r} not found: create "
                                      f"{self.file_of(template + '.html.j2')}")
        text = self._get(self._text_env, f"{name}.txt.j2")
        return _Compiled(html, text, self.file_of(f"{name}.html.j2"), (variant or "en").lower(),
                         dict(html.globals), dict(text.globals) if text is not None else {})

    def _get(self, env: Any, name: str) -> Template | None:
        try:
            return env.get_template(name)
        except TemplateNotFound:
            return None
        except TemplateError as exc:
            raise self._error(exc, name) from exc

    # ------------------------------------------------------------ rendering

    def _scope(self, request: RenderRequest, lang: str) -> dict[str, Any]:
        unsubscribe = self.links.unsubscribe_url(request.customer_id, request.message_id)
        return {
            **request.scope,
            "survey": self._survey(request, request.survey) if request.survey else None,
            "unsubscribe_url": unsubscribe,
            "preferences_url": self.links.preferences_url(request.customer_id, request.message_id),
            "policy": self._policy_scope,
            "category": _CATEGORY_VALUES.get(request.category) or Category(request.category).value,
            "lang": lang,
        }

    def _survey(self, request: RenderRequest, survey: SurveyDef) -> dict[str, Any]:
        # One signed token per message, not one per answer link: they differ only in ``?a=N``.
        base = self.links.survey_url(request.customer_id, request.message_id, survey.id)

        def url(answer: int | str | None = None) -> str:
            if answer is None:
                return base
            if self._answer_suffix:
                return f"{base}?a={answer}"
            return self.links.survey_url(request.customer_id, request.message_id, survey.id, answer)

        questions = [{"id": q.id, "text": q.text, "type": q.type.value, "min": q.min, "max": q.max,
                      "choices": list(q.choices), "optional": q.optional} for q in survey.questions]
        options: list[dict[str, Any]] = []
        if survey.questions:
            first = survey.questions[0]
            bounds = first.scale()
            if bounds is not None:
                options = [{"value": v, "label": str(v), "url": url(v)}
                           for v in range(bounds[0], bounds[1] + 1)]
            elif first.type is QuestionType.choice:
                # The answer page takes the choice's position: safe in a URL, stable to edits
                # of the wording only if the order is kept.
                options = [{"value": i, "label": c, "url": url(i)} for i, c in enumerate(first.choices)]
        return {"id": survey.id, "url": url(), "questions": questions,
                "question": questions[0] if questions else None, "options": options}

    def _render_html(self, compiled: _Compiled, scope: dict[str, Any]) -> tuple[Rendered, str, str]:
        template = compiled.html
        env = self._html_env
        concat = bounded_concat             # refuses output over sandbox.MAX_OUTPUT
        try:
            context = _context(template, compiled.html_globals, scope)
            rendered = collect(template.root_render_func(context))     # bounded alike
            # After the full render the context holds the layout's blocks too, so super() works.
            blocks = context.blocks
            subject = concat(blocks["subject"][0](context)) if "subject" in blocks else ""
            preheader = concat(blocks["preheader"][0](context)) if "preheader" in blocks else ""
        except Exception as exc:
            try:
                env.handle_exception()
            except Exception as rewritten:
                raise self._error(rewritten, compiled.file) from exc
            raise  # pragma: no cover - handle_exception always raises
        # Defined by this template, or by one between it and the layout: not only the layout's.
        if "body" not in template.blocks and len(blocks.get("body", ())) < 2:
            raise TemplateRenderError("no body block: add {% block body %}...{% endblock %} "
                                      f"and {{% extends \"{LAYOUT}\" %}}", file=compiled.file)
        return rendered, subject, preheader

    def _render_text(self, compiled: _Compiled, scope: dict[str, Any]) -> str:
        assert compiled.text is not None
        text = compiled.text
        try:
            try:
                return bounded_concat(text.root_render_func(_context(text, compiled.text_globals, scope)))
            except Exception:
                text.environment.handle_exception()     # template lines in the traceback
                raise  # pragma: no cover - handle_exception always raises
        except Exception as exc:
            raise self._error(exc, text.filename or compiled.file) from exc

    def _check_marketing(self, compiled: _Compiled, html: str, text: str, unsubscribe: str) -> None:
        address = self.policy.postal_address.strip()
        if not address:
            raise TemplateRenderError("marketing email needs policy.postal_address: set it in "
                                      "journeys/policy.yaml", file=compiled.file)
        for part, body in (("HTML", html), ("text", text)):
            if unsubscribe not in body and str(escape(unsubscribe)) not in body:
                raise TemplateRenderError(
                    f"marketing email without the unsubscribe link in its {part} part: keep "
                    f"{{{{ unsubscribe_url }}}} in {LAYOUT} (or in the .txt.j2 file)", file=compiled.file)
        if address not in html and str(escape(address)) not in html:
            raise TemplateRenderError(
                f"marketing email without the postal address: keep {{{{ policy.postal_address }}}} "
                f"in {LAYOUT}", file=compiled.file)

    def _headers(self, unsubscribe: str) -> dict[str, str]:
        return {
            "List-Unsubscribe": f"<mailto:unsubscribe@{self._domain}?subject=unsubscribe>, <{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }

    # ------------------------------------------------------------ errors

    def _error(self, exc: BaseException, file: str) -> TemplateRenderError:
        """A marketer-readable error at the template line Jinja blames, when it names one."""
        if isinstance(exc, TemplateRenderError):
            return exc
        line = 0
        if isinstance(exc, TemplateSyntaxError):
            file = exc.filename or (self.file_of(exc.name) if exc.name else file)
            line = exc.lineno or 0
            reason = f"syntax error: {exc.message}"
        else:
            # Jinja rewrites the traceback so that template frames carry the template file
            # and line: the innermost one is where it went wrong.
            for frame in traceback.extract_tb(exc.__traceback__):
                if frame.filename.endswith(".j2"):
                    file, line = frame.filename, frame.lineno or 0
            reason = _reason(exc)
        return TemplateRenderError(reason, file=file, line=line)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TemplateNotFound):
        return f"template {exc.name!r} (extended or included) not found"
    if isinstance(exc, SecurityError):
        return f"not allowed in a template: {exc}"
    if isinstance(exc, UndefinedError):
        return f"undefined name: {exc} (check the spelling, or guard it with `is defined`)"
    return f"{type(exc).__name__}: {exc}"
