"""TemplateRenderer: blocks, text part, CSS, locale variants, headers, surveys, failures."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postsale.errors import RenderError
from postsale.render.templates import TemplateRenderError, and_list, locale_candidates
from postsale.spec.model import Category, Question, QuestionType, SurveyDef

from .conftest import page, request


def test_subject_preheader_body_and_derived_text(make_renderer, links):
    renderer = make_renderer({"hello.html.j2": page(
        "Thanks,\n  {{ customer.name }}", "<p>Your order {{ data.order_id }} is <b>confirmed</b>.</p>",
        preheader="What happens next")})
    email = renderer(request())
    assert email.subject == "Thanks, Ada"
    assert email.preheader == "What happens next"
    assert "Your order 1001 is" in email.html
    assert email.template_file.endswith("hello.html.j2")
    # Derived text: readable, no markdown, preheader hidden, footer after the "-- " line.
    assert "Your order 1001 is confirmed." in email.text
    assert "**" not in email.text and "What happens next" not in email.text
    message, _, footer = email.text.partition("\n-- \n")
    assert "Unsubscribe (" + links.unsubscribe_url("c-42", "msg-1") + ")" in footer
    assert "Acme Srl" in footer and "Acme Srl" not in message


def test_text_template_replaces_the_derived_part(make_renderer):
    renderer = make_renderer({"hello.html.j2": page("Hi", "<p>html</p>"),
                              "hello.txt.j2": "Plain & simple, {{ customer.name }}\n"
                                              "-- \n{{ unsubscribe_url }}\n"})
    email = renderer(request())
    assert email.text.startswith("Plain & simple, Ada")   # no HTML escaping in text


def test_css_is_inlined(make_renderer):
    email = make_renderer({"hello.html.j2": page("Hi", "<p>styled</p>")})(request())
    assert 'style="color: #222222' in email.html or "style=\"color:#222222" in email.html


def test_remote_stylesheets_are_not_fetched(make_renderer):
    layout_with_link = ('<html><head><link rel="stylesheet" href="http://192.0.2.1/x.css">'
                        "<title>{% block subject %}{% endblock %}</title></head><body>"
                        "{% block body %}{% endblock %}</body></html>")
    renderer = make_renderer({"hello.html.j2": page("Hi", "<p>x</p>")}, layout=layout_with_link)
    email = renderer(request(category=Category.transactional))
    assert "192.0.2.1" not in email.html


@pytest.mark.parametrize("locale, expected", [
    ("it", "hello.it.html.j2"), ("it-CH", "hello.it.html.j2"), ("it-ch", "hello.it.html.j2"),
    ("en", "hello.html.j2"), (None, "hello.html.j2"), ("de-AT", "hello.html.j2"),
])
def test_locale_variant_wins(make_renderer, locale, expected):
    renderer = make_renderer({"hello.html.j2": page("Hello", "<p>Hello</p>"),
                              "hello.it.html.j2": page("Ciao", "<p>Ciao {{ lang }}</p>")})
    email = renderer(request(locale=locale))
    assert email.template_file.endswith("/" + expected)
    assert email.subject == ("Ciao" if ".it." in expected else "Hello")


def test_locale_from_the_customer_scope(make_renderer):
    renderer = make_renderer({"hello.html.j2": page("Hello", "<p>x</p>"),
                              "hello.it.html.j2": page("Ciao", "<p>x</p>")})
    customer = {"id": "c-42", "email": "a@example.com", "name": None, "locale": "it"}
    assert renderer(request(customer=customer)).subject == "Ciao"


def test_locale_text_variant_goes_with_its_html(make_renderer):
    renderer = make_renderer({"hello.html.j2": page("Hello", "<p>Hello</p>"),
                              "hello.txt.j2": "English text {{ unsubscribe_url }}",
                              "hello.it.html.j2": page("Ciao", "<p>Testo italiano</p>")})
    email = renderer(request(locale="it"))
    assert "Testo italiano" in email.text and "English" not in email.text


def test_locale_candidates():
    assert locale_candidates("it-CH") == ["it-ch", "it"]
    assert locale_candidates("pt_BR") == ["pt-br", "pt"]
    assert locale_candidates(None) == []


def test_list_unsubscribe_headers_on_every_message(make_renderer, links):
    renderer = make_renderer({"hello.html.j2": page("Hi", "<p>x</p>")})
    for category in Category:
        headers = renderer(request(category=category)).headers
        assert headers["List-Unsubscribe"] == (
            f"<mailto:unsubscribe@acme.example?subject=unsubscribe>, <{links.unsubscribe_url('c-42', 'msg-1')}>")
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def _survey(question: Question) -> SurveyDef:
    return SurveyDef("csat", "survey", (question, Question("comment", "More?", QuestionType.text, optional=True)))


SURVEY_BODY = """<p>{{ survey.question.text }}</p>
{% for o in survey.options %}<a href="{{ o.url }}">{{ o.label }}</a>{% endfor %}
<p>{{ survey.questions | length }} questions, page {{ survey.url }}</p>"""


def test_survey_one_click_links_for_the_first_question(make_renderer, links):
    renderer = make_renderer({"survey.html.j2": page("One question", SURVEY_BODY)})
    survey = _survey(Question("score", "How happy are you?", QuestionType.scale, 1, 5))
    email = renderer(request("survey", survey=survey))
    assert "How happy are you?" in email.html and "2 questions" in email.html
    for value in range(1, 6):
        assert links.survey_url("c-42", "msg-1", "csat", value) in email.html
    assert links.survey_url("c-42", "msg-1", "csat", 6) not in email.html
    assert links.survey_url("c-42", "msg-1", "csat") in email.html


def test_survey_nps_and_choice_options(make_renderer, links):
    renderer = make_renderer({"survey.html.j2": page("One question", SURVEY_BODY)})
    nps = renderer(request("survey", survey=_survey(Question("nps", "Recommend us?", QuestionType.nps))))
    assert all(links.survey_url("c-42", "msg-1", "csat", v) in nps.html for v in range(0, 11))
    choice = _survey(Question("why", "Why?", QuestionType.choice, choices=("Price", "Speed & care")))
    email = renderer(request("survey", survey=choice))
    assert ">Speed &amp; care</a>" in email.html
    assert links.survey_url("c-42", "msg-1", "csat", 1) in email.html


def test_survey_is_none_outside_survey_steps(make_renderer):
    renderer = make_renderer({"hello.html.j2": page("Hi", "<p>{{ survey is none }}</p>")})
    assert "True" in renderer(request()).html


def test_customer_html_is_escaped(make_renderer):
    renderer = make_renderer({"hello.html.j2": page("Hi {{ customer.name }}", "<p>Hi {{ customer.name }}</p>")})
    evil = {"id": "c-42", "email": "a@example.com", "name": '<script>alert(1)</script><a href="x">'}
    email = renderer(request(customer=evil))
    assert "<script>" not in email.html and "&lt;script&gt;" in email.html
    assert '<a href="x">' not in email.html
    # The subject is plain text: it says what the customer typed, unescaped and harmless.
    assert email.subject == 'Hi <script>alert(1)</script><a href="x">'


@pytest.mark.parametrize("name", ["Ada\r\nBcc: victim@example.com", "Ada\nX: y", "Ada\u2028X", "Ada&#13;&#10;X: y"])
def test_line_breaks_never_reach_the_subject(make_renderer, name):
    renderer = make_renderer({"hello.html.j2": page("Hi {{ customer.name }}\nthere", "<p>x</p>")})
    email = renderer(request(customer={"id": "c-42", "email": "a@example.com", "name": name}))
    assert "\r" not in email.subject and "\n" not in email.subject and "\u2028" not in email.subject
    assert email.subject.startswith("Hi Ada") and email.subject.endswith("there")


def test_marketing_without_unsubscribe_link_is_refused(make_renderer):
    bare = ("<html><head><title>{% block subject %}{% endblock %}</title></head><body>"
            "{% block body %}{% endblock %}<p>{{ policy.postal_address }}</p></body></html>")
    renderer = make_renderer({"hello.html.j2": page("Hi", "<p>x</p>")}, layout=bare)
    with pytest.raises(RenderError, match="unsubscribe"):
        renderer(request())
    assert renderer(request(category=Category.transactional)).subject == "Hi"


def test_marketing_without_postal_address_is_refused(make_renderer):
    no_address = ("<html><head><title>{% block subject %}{% endblock %}</title></head><body>"
                  "{% block body %}{% endblock %}<a href='{{ unsubscribe_url }}'>u</a></body></html>")
    renderer = make_renderer({"hello.html.j2": page("Hi", "<p>x</p>")}, layout=no_address)
    with pytest.raises(RenderError, match="postal address"):
        renderer(request())


def test_marketing_text_template_must_carry_the_unsubscribe_link(make_renderer):
    renderer = make_renderer({"hello.html.j2": page("Hi", "<p>x</p>"), "hello.txt.j2": "no link here"})
    with pytest.raises(RenderError, match="text part"):
        renderer(request())


def test_undefined_name_names_file_and_line(make_renderer):
    renderer = make_renderer({"hello.html.j2": page("Hi", "<p>ok</p>\n<p>{{ customer.nmae }}</p>")})
    with pytest.raises(TemplateRenderError) as info:
        renderer(request())
    assert info.value.file.endswith("hello.html.j2") and info.value.line == 5
    assert "nmae" in str(info.value) and "hello.html.j2:5:" in str(info.value)


def test_syntax_error_names_file_and_line(make_renderer):
    renderer = make_renderer({"hello.html.j2": page("Hi", "<p>{% if x %}never closed</p>")})
    with pytest.raises(RenderError, match=r"hello\.html\.j2:\d+: syntax error"):
        renderer(request())


def test_missing_template_and_missing_layout(make_renderer):
    renderer = make_renderer({"hello.html.j2": page("Hi", "<p>x</p>")}, layout=None)
    with pytest.raises(RenderError, match="not found: create .*nope.html.j2"):
        renderer(request("nope"))
    with pytest.raises(RenderError, match="_layout.html.j2"):
        renderer(request("hello"))


@pytest.mark.parametrize("name", ["../etc/passwd", "a/../../b", "", ".hidden", "x y"])
def test_bad_template_names(make_renderer, name):
    with pytest.raises(RenderError):
        make_renderer({})(request(name))


def test_empty_subject_and_missing_body_are_errors(make_renderer):
    renderer = make_renderer({
        "nosubject.html.j2": '{% extends "_layout.html.j2" %}{% block body %}x{% endblock %}',
        "nobody.html.j2": '{% extends "_layout.html.j2" %}{% block subject %}Hi{% endblock %}',
    })
    with pytest.raises(RenderError, match="subject"):
        renderer(request("nosubject"))
    with pytest.raises(RenderError, match="body"):
        renderer(request("nobody"))


def test_runtime_errors_become_render_errors(make_renderer):
    renderer = make_renderer({"hello.html.j2": page("Hi", "<p>{{ 1 / 0 }}</p>")})
    with pytest.raises(RenderError, match="ZeroDivisionError"):
        renderer(request())


def test_compiled_templates_are_cached(make_renderer):
    renderer = make_renderer({"hello.html.j2": page("Hi", "<p>x</p>")})
    assert renderer.compile("hello", "it") is renderer.compile("hello", "it")
    renderer(request())
    renderer.templates_dir.joinpath("hello.html.j2").unlink()
    assert renderer(request()).subject == "Hi"       # no file system hit per render


def test_super_in_blocks_works(make_renderer):
    layout = ("<html><head><title>{% block subject %}Acme: {% endblock %}</title></head><body>"
              "{% block body %}{% endblock %}</body></html>")
    renderer = make_renderer({"hello.html.j2": '{% extends "_layout.html.j2" %}'
                              "{% block subject %}{{ super() }}hello{% endblock %}{% block body %}b{% endblock %}"},
                             layout=layout)
    assert renderer(request(category=Category.transactional)).subject == "Acme: hello"


def test_and_list():
    assert and_list([]) == "" and and_list(["a"]) == "a"
    assert and_list(["a", "b"]) == "a and b"
    assert and_list(["a", "b", "c"], "e") == "a, b e c"


def test_event_data_with_line_breaks_cannot_inject_headers(make_renderer):
    """End to end: a subject built from event data, through build_mime, parsed back."""
    import email
    from datetime import datetime, timezone
    from email import policy

    from postsale.render.mime import build_mime

    renderer = make_renderer({"hello.html.j2": page("Re: {{ data.title }}", "<p>x</p>")})
    rendered = renderer(request(data={"title": "Lid\r\nBcc: victim@example.com\r\n\r\nbody"}))
    msg = build_mime(message_id="m1", from_="Acme <hello@acme.example>", to="ada@example.com",
                     to_name="Ada", reply_to=None, subject=rendered.subject, html=rendered.html,
                     text=rendered.text, headers=rendered.headers, date=datetime.now(timezone.utc))
    parsed = email.message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "Re: Lid Bcc: victim@example.com body"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(" \t\n\x00\x1f\x7f\x85\xa0\u2028\u2029\u200bab<>/&;#x41amp"), max_size=40))
def test_one_line_skips_only_steps_with_nothing_to_do(text):
    import html

    from postsale.render.templates import _BREAKERS, _TAGS, _one_line
    assert _one_line(text) == " ".join(html.unescape(_TAGS.sub("", text)).translate(_BREAKERS).split())
