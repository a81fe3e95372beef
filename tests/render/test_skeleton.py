"""Inlining and the text part worked out once per skeleton give, email by email, exactly what the
inliner and the converter give on that email's own HTML (``postsale.render.skeleton``)."""

from __future__ import annotations

from pathlib import Path

import css_inline
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jinja2.exceptions import SecurityError
from markupsafe import Markup, escape

from postsale.errors import RenderError
from postsale.links import Links
from postsale.render import skeleton
from postsale.render.checks import locale_variants, sendings
from postsale.render.skeleton import SkeletonCache, collect
from postsale.render.templates import TemplateRenderer
from postsale.render.text import html_to_text, placeholder
from postsale.render.text_program import compile_text
from postsale.render.types import RenderRequest
from postsale.samples import sample_customer, sample_event, sample_scope
from postsale.sandbox import MAX_OUTPUT
from postsale.spec.catalog import load_catalog
from postsale.spec.model import Category

from .conftest import LAYOUT, POLICY, SECRET, SHIPPED_JOURNEYS, SHIPPED_TEMPLATES, page, scope

INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
FIELDS = ("subject", "html", "text", "preheader", "headers", "template_file")

# Values that need care somewhere: entities, quotes, spaces at the ends, line breaks, no-break
# spaces, markup, a lone "--" (the text part's footer separator), an unfinished reference.
AWKWARD = ["Ada", "Zoë & <Co> \"quoted\" 'single'", "  padded  ", "a\u00a0b", "--", "Ada\nLovelace",
           "x&amp;y", "<b>bold</b>", "&copy", "O'Brien", "line\u2028sep", "tab\there", "#", "mailto:a@b.c",
           "https://x.example/a", "\u00a0", "-", "a\r\nb", "\ue000", "\x00"]


def whole_renderer(folder: Path, links: Links, policy=POLICY) -> TemplateRenderer:
    """A renderer that learns no skeleton: every email is inlined and converted whole."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(skeleton, "MAX_SKELETONS", 0)
        return TemplateRenderer(folder, policy, links)


def outcome(renderer: TemplateRenderer, req: RenderRequest) -> dict | str:
    try:
        email = renderer(req)
    except RenderError as exc:
        return f"error: {exc}"
    return {f: getattr(email, f) for f in FIELDS}


# ------------------------------------------------------------------ the shipped templates

@pytest.fixture(scope="module")
def shipped():
    catalog = load_catalog(SHIPPED_JOURNEYS, SHIPPED_TEMPLATES)
    links = Links(SECRET, catalog.policy.public_url)
    fast = TemplateRenderer(SHIPPED_TEMPLATES, catalog.policy, links)
    whole = whole_renderer(SHIPPED_TEMPLATES, links, catalog.policy)
    requests = []
    for journey in catalog.journeys.values():
        event = sample_event(journey.trigger.event)
        for step, template, category, survey in sendings(journey):
            for locale in [None, *locale_variants(SHIPPED_TEMPLATES, template)]:
                requests.append(RenderRequest(
                    template=template, category=category, message_id=f"m-{journey.id}-{step.id}",
                    customer_id="c-42", locale=locale, survey=survey,
                    scope=sample_scope(journey, event, sample_customer(locale) if locale else None)))
    return fast, whole, requests


def with_name(req: RenderRequest, name: str, n: int) -> RenderRequest:
    customer = dict(req.scope["customer"], name=name)
    return RenderRequest(template=req.template, category=req.category, scope={**req.scope, "customer": customer},
                         message_id=f"{req.message_id}-{n}", customer_id=f"c-{n}", locale=req.locale,
                         survey=req.survey)


def test_shipped_emails_take_the_skeleton_path(shipped):
    fast, whole, requests = shipped
    for n, req in enumerate(requests):
        for name in ("Ada", "Bruno Rossi", "Zoë O'Brien & Co"):
            assert outcome(fast, with_name(req, name, n)) == outcome(whole, with_name(req, name, n))
    # Every shipped template has a usable skeleton, learned once per shape, not once per email.
    assert fast.skeletons.whole == 0 and fast.skeletons.whole_text == 0
    assert fast.skeletons.learned < 3 * len(requests)
    assert whole.skeletons.whole > 0


def test_shipped_emails_with_awkward_names_are_the_same_as_whole(shipped):
    fast, whole, requests = shipped
    for n, req in enumerate(requests):
        for k, name in enumerate(AWKWARD):
            request = with_name(req, name, 100 * n + k)
            assert outcome(fast, request) == outcome(whole, request), (req.template, name)


# ------------------------------------------------------------------ values in every context

# Placeholders here sit only where a value cannot change the inliner's or converter's work.
SAFE_BODY = """<h1 title="{{ data.a }}">Hi {{ customer.name }}, {{ data.a }}!</h1>
<p>{{ data.a }}</p>
<p>{{ data.b }}{{ data.a }} and {{ data.b }}</p>
<pre>{{ data.a }}</pre>
<table><tr><td>{{ data.b }}</td></tr>{{ data.a }}</table>
<p><a href="{{ data.url }}">{{ data.a }}</a> <a href="https://x.example/{{ data.b }}">read</a>
<a href="{{ data.url }}"></a> <a href="{{ data.url }}">Fixed text</a>
<a href="{{ data.url }}"><b>{{ data.a }}</b> and <img alt="{{ data.b }}" src="i.png"></a></p>
<img alt="{{ data.a }}" src="i.png">
<ul>{% for item in data['items'] %}<li>{{ item }}</li>{% endfor %}</ul>
<textarea>{{ data.a }}</textarea>"""

# Values in text and in the URLs of links with fixed text only: the text part's lines are worked
# out on the skeleton too.
PLAIN_BODY = """<p>{{ data.a }}</p>
<p>Hi {{ customer.name }}, {{ data.b }}</p>
<p><a href="{{ data.url }}">Fixed text</a> and <a href="https://x.example/{{ data.b }}">more</a></p>"""
TRAILING_BODY = """<p><a href="{{ data.url }}">Ends in a space </a></p>"""

# A value that the inliner ignores but that decides what the text part shows.
ARIA_BODY = """<p aria-hidden="{{ data.b }}">{{ data.a }}</p><p>shown</p>"""

# Placeholders in places that must make the skeleton unusable (or stay in it as they are).
UNSAFE_BODY = """<p class="{{ data.b }}">{{ data.a }}</p>
<p style="color: {{ data.b }}">x</p>
<p>&{{ data.a }} &no{{ data.b }}</p>
<p><{{ data.b }}>t</p>
<p>{{ data.a | safe }}</p>
<!-- {{ data.a }} -->"""

TOKENS = ["a", "b", " ", "-", "--", "&", "&amp;", "<", ">", '"', "'", "\n", "\t", "\u00a0", "é", ";",
          "#", "x", "https://", "mailto:", "\r", "<b>", "none", "hidden", "true", "footer", "/", "?a=1"]
TEMPLATES = {"safe": SAFE_BODY, "plain": PLAIN_BODY, "trailing": TRAILING_BODY, "aria": ARIA_BODY,
             "unsafe": UNSAFE_BODY}
values = st.lists(st.sampled_from(TOKENS), max_size=6).map("".join)


@pytest.fixture(scope="module")
def contexts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("templates")
    (folder / "_layout.html.j2").write_text(LAYOUT, encoding="utf-8")
    for name, body in TEMPLATES.items():
        (folder / f"{name}.html.j2").write_text(page("Hi {{ customer.name }}", body, "Pre {{ data.a }}"),
                                                encoding="utf-8")
    links = Links(SECRET, POLICY.public_url)
    fast = TemplateRenderer(folder, POLICY, links)
    # Shapes learned from plain values first: later examples then fill them in.
    for template in TEMPLATES:
        fast(RenderRequest(template=template, category=Category.marketing, message_id="m-0", customer_id="c-0",
                           scope=scope(data={"a": "plain", "b": "text", "url": "https://x.example/p",
                                             "items": ["one", "two"]})))
    return fast, whole_renderer(folder, links)


def context_request(template: str, a: str, b: str, url: str, items: list[str], name: str) -> RenderRequest:
    return RenderRequest(template=template, category=Category.marketing, message_id="m-1", customer_id="c-1",
                         scope=scope(customer={"name": name, "locale": None},
                                     data={"a": a, "b": b, "url": url, "items": items}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=values, b=values, url=values, items=st.lists(values, max_size=3), name=values)
@example(a="--", b="x", url="https://x.example/p", items=[], name="Ada")
@example(a="https://x.example/p", b="x", url="https://x.example/p", items=[], name="Ada")
@example(a="x", b="y", url="#top", items=[], name="Ada")
@example(a="x", b="y", url="mailto:care@x.example?subject=hi", items=[], name="Ada")
@example(a="a\nb", b="c\nd", url="https://x.example/\np", items=["--"], name="Ada")
@example(a="secret", b="true", url="https://x.example/p", items=[], name="Ada")
@example(a="x", b="y", url="https://x.example/ \n p", items=[], name="Ada")
def test_values_anywhere_give_what_the_whole_email_gives(contexts, a, b, url, items, name):
    fast, whole = contexts
    for template in TEMPLATES:
        req = context_request(template, a, b, url, items, name)
        assert outcome(fast, req) == outcome(whole, req), template


@pytest.mark.parametrize("template", ["safe", "plain"])
def test_plain_values_fill_the_skeleton_in(contexts, template):
    fast, _ = contexts
    before = (fast.skeletons.whole, fast.skeletons.whole_text, fast.skeletons.learned)
    for n in range(5):
        fast(context_request(template, f"value {n}", f"b{n}", f"https://x.example/{n}", ["one", "two"], f"Ada {n}"))
    assert (fast.skeletons.whole, fast.skeletons.whole_text, fast.skeletons.learned) == before


def test_a_value_that_decides_what_the_text_shows_keeps_the_text_whole(contexts):
    fast, whole = contexts
    before = fast.skeletons.whole_text
    for b in ("true", "false"):
        req = context_request("aria", "secret", b, "https://x.example/p", [], "Ada")
        assert outcome(fast, req) == outcome(whole, req)
        assert ("secret" in fast(req).text) is (b == "false")
    assert fast.skeletons.whole_text == before + 4


# ------------------------------------------------------------------ the cache on its own

def counting(fn):
    def wrapped(html: str) -> str:
        wrapped.calls += 1
        return fn(html)
    wrapped.calls = 0
    return wrapped


HEAD = "<html><head><style>p { color: red; } a { color: blue; }</style></head><body>"


def email(*chunks: str) -> list[str]:
    """Template text as str, values as Markup (what autoescape yields)."""
    return [HEAD, *chunks, "</body></html>"]


def value(text: str) -> Markup:
    return escape(text)


@pytest.mark.parametrize("build", [
    lambda v: email("<p>Hi ", value(v), "</p>"),
    lambda v: email('<p><a href="https://x.example/', value(v), '">link</a></p>'),
    lambda v: email('<p title="', value(v), '">x</p>'),
])
def test_one_shape_is_inlined_once_then_filled_in(build):
    inline = counting(INLINER.inline)
    cache = SkeletonCache(inline, html_to_text)
    for v in ("Ada", "Bruno & Co", 'Zoë "Z" <z>', "x\u00a0y", "Ada"):
        rendered = collect(build(v))
        assert cache.inline(rendered) == INLINER.inline(rendered.html)
        assert cache.text(rendered) == html_to_text(rendered.html)
    assert inline.calls == 1 and cache.whole == cache.whole_text == 0 and len(cache) == 1


@pytest.mark.parametrize("build", [
    lambda v: email('<p class="', value(v), '">x</p>'),
    lambda v: email('<p style="color: ', value(v), '">x</p>'),
    lambda v: email('<p id="', value(v), '">x</p>'),
    lambda v: email("<style>p { color: ", value(v), "; }</style><p>x</p>"),
    lambda v: email("<p>&", value(v), "</p>"),
    lambda v: email("<p><", value(v), ">x</p>"),
    lambda v: email("<p ", value(v), ">x</p>"),
    lambda v: email("<p title=", value(v), ">x</p>"),
    lambda v: email("<p>", value(v), "<!-- a comment --></p><script>var a = '", value(v), "';</script>"),
    lambda v: [HEAD.replace("a { color: blue; }", "a[href^='mailto'] { color: red; }"),
               '<p><a href="', value(v), '">x</a></p></body></html>'],
])
def test_a_value_where_it_could_change_the_inlining_keeps_the_email_whole(build):
    inline = counting(INLINER.inline)
    cache = SkeletonCache(inline, html_to_text)
    for v in ("red", "blue", "mailto:a@b.c"):
        rendered = collect(build(v))
        assert cache.inline(rendered) == INLINER.inline(rendered.html)
        assert cache.text(rendered) == html_to_text(rendered.html)
    assert cache.whole == 3


def test_values_that_are_not_plain_text_stay_in_the_skeleton():
    rendered = collect(["<p>", value("Ada"), " ", value(" padded"), Markup("<b>x</b>"), value("a&b"),
                        Markup("&copy;"), value(""), "</p>"])
    assert rendered.values == ["Ada", "a&amp;b"]
    assert rendered.key == "<p>\x00  padded<b>x</b>\x00&copy;</p>"
    assert rendered.html == "<p>Ada  padded<b>x</b>a&amp;b&copy;</p>"
    assert collect(["<p>plain</p>"]).key == "<p>plain</p>"


def test_collect_refuses_output_over_the_limit():
    with pytest.raises(SecurityError):
        collect(iter(["x" * (MAX_OUTPUT // 2), value("y" * (MAX_OUTPUT // 2)), "z"]))


def test_past_the_limit_new_shapes_are_inlined_whole():
    inline = counting(INLINER.inline)
    cache = SkeletonCache(inline, html_to_text, limit=2)
    for n in range(4):                      # four shapes: one, two, three, four list items
        rendered = collect(email("<ul>", *[f"<li>{i}</li>" for i in range(n + 1)], "</ul><p>", value(f"v{n}"), "</p>"))
        assert cache.inline(rendered) == INLINER.inline(rendered.html)
    assert len(cache) == 2 and cache.whole == 2


def test_a_template_holding_a_marker_character_keeps_its_emails_whole():
    cache = SkeletonCache(counting(INLINER.inline), html_to_text)
    for v in ("a", "b"):
        rendered = collect(email("<p>\ue000 ", value(v), " \x00</p>"))
        assert cache.inline(rendered) == INLINER.inline(rendered.html)
        assert cache.text(rendered) == html_to_text(rendered.html)
    assert cache.whole == 2


# ------------------------------------------------------------------ the text program on its own

@pytest.mark.parametrize("html", [
    '<p title={0}>x</p>',                   # unquoted: a value with a space would split it
    '<p {0}>x</p>',                         # an attribute name
    '<p style="color: {0}">x</p>', '<p class="{0}">x</p>', '<p aria-hidden="{0}">x</p>',
    '<p hidden="{0}">x</p>',
])
def test_the_text_part_refuses_placeholders_that_could_change_it(html):
    assert compile_text(html.format(placeholder(0))) is None


def test_the_text_part_fills_values_in_as_the_converter_would():
    skeleton = f'<p>Hi {placeholder(0)}!</p><p><a href="{placeholder(1)}">Fixed</a> <img alt="{placeholder(0)}"></p>'
    program = compile_text(skeleton)
    for name, url in (("Ada  Lovelace", "https://x.example/a"), ("x &amp; y", "#top"), ("--", "Fixed")):
        html = skeleton.replace(placeholder(0), name).replace(placeholder(1), url)
        assert program.render([name, url]) == html_to_text(html)
