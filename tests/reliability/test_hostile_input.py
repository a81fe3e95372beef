"""Hostile input (issue 9): events, YAML, journeys, templates and links that try hard to break
postsale.

Pure and fast: property tests (hypothesis) and fixed attacks, no database, no network.
Every failure must be a clean rejection (InvalidEvent, a Problem, a RenderError or
ExpressionError, None from Links.read) within a bounded time: never a crash, a hang or a
value that reaches a mail header.

The event parser and the YAML/journey loader are also fuzzed: 300 examples a property in CI,
``POSTSALE_LONG=1`` runs 10,000 (``POSTSALE_FUZZ_EXAMPLES`` to choose). Sandbox attacks are in
``test_hostile_sandbox.py``, HTTP ones (bodies, webhooks, links) in ``test_hostile_http.py``.
"""

from __future__ import annotations

import json
import os
import time
from email import message_from_bytes

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postsale.errors import ExpressionError, InvalidEvent, RenderError
from postsale.events import decode_batch, parse_batch, parse_event
from postsale.links import Links
from postsale.render.mime import build_mime
from postsale.sandbox import evaluate
from postsale.spec.catalog import load_catalog
from postsale.spec.journeys import parse_journey
from postsale.spec.model import Policy
from postsale.spec.problems import Problem
from postsale.spec.yaml_lines import load_yaml
from tests.render.conftest import SECRET, page, request

LONG = os.environ.get("POSTSALE_LONG") == "1"
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FUZZ = settings(FAST, max_examples=int(os.environ.get("POSTSALE_FUZZ_EXAMPLES", "10000" if LONG else "300")))

GOOD = {"id": "ok-1", "type": "order.placed", "occurred_at": "2026-11-20T10:15:00+01:00",
        "customer": {"id": "c-1", "email": "ada@example.com", "name": "Ada", "timezone": "Europe/Rome"},
        "data": {"total": 10}}

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
# Event-shaped objects: the right keys with hostile values, so the parser goes deep.
field_values = st.sampled_from(["", "x", "c-1", "order.placed", "incident.declared", "survey.answered",
                                "2026-11-20T10:15:00Z", "2026-13-45T99:99:99+99:99", "a@b.co",
                                "a@b.co\r\nBcc: x@y.z", "Europe/Rome", "../../etc/passwd", "Mars/Base",
                                "it", "x" * 300]) | json_values
customers = st.dictionaries(st.sampled_from(["id", "email", "name", "timezone", "locale", "attributes"]),
                            field_values, max_size=6)
events = st.fixed_dictionaries({}, optional={
    "id": field_values, "type": field_values, "occurred_at": field_values,
    "customer": customers | field_values,
    "data": st.dictionaries(st.sampled_from(["skus", "survey", "answers", "purchased_after", "total"]),
                            field_values, max_size=4) | field_values})


@FUZZ
@given(st.one_of(json_values, events))
def test_parse_event_only_ever_rejects_cleanly(raw):
    try:
        event = parse_event(raw)
    except InvalidEvent as exc:
        assert exc.field and exc.message
        return
    # Whatever passed is header-safe and well-formed.
    assert event.occurred_at.tzinfo is not None
    if event.customer is not None:
        for text in (event.customer.id, event.customer.email, event.customer.name or ""):
            assert not any(ch in text for ch in "\r\n\x00")


@FAST
@given(st.lists(st.one_of(json_values, events), max_size=8), st.integers(0, 8))
def test_a_batch_keeps_every_good_event_whatever_surrounds_it(junk, at):
    good = [dict(GOOD, id=f"good-{i}") for i in range(3)]
    items = junk[:at] + good + junk[at:]
    accepted, rejected = parse_batch(items)
    ids = [e.id for _, e in accepted]
    assert all(g["id"] in ids for g in good)
    assert len(accepted) + len(rejected) == len(items)
    assert sorted([i for i, _ in accepted] + [r.index for r in rejected]) == list(range(len(items)))


@FAST
@given(st.lists(st.one_of(json_values, events), max_size=6), st.text(max_size=30))
def test_ndjson_with_broken_lines_keeps_good_lines(items, garbage):
    lines = [json.dumps(GOOD)] + [json.dumps(i) for i in items] + [garbage.replace("\n", " ")]
    decoded = decode_batch("\n".join(lines))
    accepted, rejected = parse_batch(decoded)
    assert "ok-1" in [e.id for _, e in accepted]
    assert len(accepted) + len(rejected) == len(decoded)


@FUZZ
@given(st.text(max_size=400) | st.binary(max_size=400).map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_decode_batch_on_any_text_never_crashes(text):
    try:
        items = decode_batch(text)
    except RecursionError:  # pragma: no cover - json refuses deep nesting itself
        pytest.fail("decode_batch recursed")
    parse_batch(items)


def test_deeply_nested_json_is_rejected_not_a_crash():
    for text in ("[" * 100_000 + "]" * 100_000, '{"a": ' * 50_000 + "1" + "}" * 50_000,
                 json.dumps(GOOD) + "\n" + "[" * 100_000 + "]" * 100_000):
        accepted, rejected = parse_batch(decode_batch(text))
        assert rejected
    assert [e.id for _, e in accepted] == ["ok-1"]


# ------------------------------------------------------------------------------------ YAML

yaml_chars = st.text(alphabet=st.sampled_from(list("abc: -[]{}&*!|>'\"#\n\t01%@`?,.\\")), max_size=300)


@FUZZ
@given(st.one_of(st.text(max_size=300), yaml_chars))
def test_load_yaml_and_parse_journey_never_raise(text):
    data, problems = load_yaml(text, "j.yaml")
    assert all(isinstance(p, Problem) for p in problems)
    journey, problems = parse_journey(text, "j.yaml", policy=Policy())
    assert all(isinstance(p, Problem) for p in problems)
    assert journey is None or not any(p.is_error for p in problems)


hostile_scalars = st.sampled_from(
    ["", "x", "thank_you", "order.placed", "30m", "2d", "1d12h", "-1d", "0m", "99999999999w", "1y", "10:00",
     "25:99", "never", "always", "after 30d", "after -1d", "marketing", "transactional", "pre_sale",
     "immediate_post_sale", "ongoing_care", "issue_resolution", "data.total > 0", "data.__class__", "{{ x }}",
     "'unclosed", "range(10**9)|list", "../../etc/passwd", "Ada\r\nBcc: x@y.z", "\x00", "é" * 300]) | st.integers() \
    | st.none() | st.booleans() | st.floats(allow_nan=True)
step_kinds = ["send", "survey", "wait", "wait_for", "if", "alert", "start", "exit", "bogus"]


def _step(inner):
    keys = st.sampled_from(step_kinds + ["id", "at", "timeout", "expire_after", "then", "else", "if"])
    return st.dictionaries(keys, hostile_scalars | inner, min_size=1, max_size=4)


steps = st.recursive(st.lists(st.dictionaries(st.sampled_from(step_kinds), hostile_scalars, min_size=1, max_size=2),
                              max_size=4),
                     lambda inner: st.lists(_step(inner), max_size=4), max_leaves=12)
questions = st.lists(st.dictionaries(st.sampled_from(["id", "text", "type", "min", "max", "optional", "choices"]),
                                     hostile_scalars, max_size=6), max_size=5)
journeys = st.fixed_dictionaries({"journey": hostile_scalars}, optional={
    "name": hostile_scalars, "touchpoint": hostile_scalars, "category": hostile_scalars,
    "trigger": st.dictionaries(st.sampled_from(["event", "if", "junk"]), hostile_scalars, max_size=3) | hostile_scalars,
    "entry": st.dictionaries(st.sampled_from(["reentry"]), hostile_scalars) | hostile_scalars,
    "exit_when": st.lists(st.dictionaries(st.sampled_from(["event", "if"]), hostile_scalars, max_size=2), max_size=3),
    "steps": steps | hostile_scalars,
    "surveys": st.dictionaries(st.sampled_from(["csat", "nps", ""]),
                               st.fixed_dictionaries({}, optional={"template": hostile_scalars, "questions": questions}),
                               max_size=2) | hostile_scalars,
})


@FUZZ
@given(journeys)
def test_journey_shaped_hostile_yaml_is_a_journey_or_problems_with_lines(data):
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    started = time.monotonic()
    journey, problems = parse_journey(text, "hostile.yaml", policy=Policy())
    assert time.monotonic() - started < 5.0
    assert journey is not None or any(p.is_error for p in problems), problems
    assert all(p.file == "hostile.yaml" and p.line >= 1 and p.message for p in problems), problems


def test_load_catalog_on_garbage_files_reports_problems(tmp_path):
    journeys, templates = tmp_path / "journeys", tmp_path / "templates"
    journeys.mkdir()
    templates.mkdir()
    (journeys / "policy.yaml").write_text("policy: [&a x, *a, *a\n")
    (journeys / "a.yaml").write_text("journey: !!python/object/apply:os.system ['id']\n")
    (journeys / "b.yaml").write_bytes(b"\xff\xfe\x00garbage")
    (journeys / "c.yaml").write_text("- - - - [\n")
    (journeys / "d.yaml").write_text("journey: ok\nsteps: {a: *nope}\n")
    catalog = load_catalog(journeys, templates)
    assert catalog.errors and not catalog.journeys


def _billion_laughs(levels: int = 9, width: int = 12) -> str:
    lines = ['a0: &a0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, words", [
    (_billion_laughs(), "alias"),
    ("a: " + "[" * 10_000 + "]" * 10_000 + "\n", "nest|deep|depth"),
    ("a: " + "{b: " * 5_000 + "1" + "}" * 5_000 + "\n", "nest|deep|depth"),
    ("x: " + "y" * (2 * 1024 * 1024) + "\n", "larger"),
    ("a: &a [*a]\n", "alias|recurs|anchor"),
])
def test_yaml_bombs_are_refused_quickly(text, words):
    started = time.monotonic()
    data, problems = load_yaml(text, "bomb.yaml")
    assert data is None and problems
    assert time.monotonic() - started < 5.0
    import re
    assert re.search(words, " ".join(p.message for p in problems), re.I)


@pytest.mark.parametrize("key", ["name", "trigger", "steps", "exit_when", "surveys", "entry"])
def test_a_shared_alias_tree_under_the_limit_does_not_stall_the_journey_reader(key):
    # 90 aliases (under MAX_ALIASES) still name 10**9 leaves: PyYAML shares the objects, and
    # the journey reader must not walk them.
    text = _billion_laughs(9, 10).replace("a0:", "x0:", 1)
    text = "\n".join("  " + line for line in text.splitlines())
    text = f"journey: bomb\ntouchpoint: pre_sale\nbomb:\n{text}\n{key}: *a9\n"
    started = time.monotonic()
    journey, problems = parse_journey(text, "bomb.yaml", policy=Policy())
    assert journey is None and problems
    assert time.monotonic() - started < 5.0


# ------------------------------------------------------------------------------- sandbox

ESCAPES = [
    "''.__class__", "self._TemplateReference__context", "cycler.__init__.__globals__",
    "joiner.__init__.__globals__", "namespace.__init__.__globals__", "lipsum.__globals__",
    "range(10**9) | list", "'x' * 10**9", "[1] * 10**9", "(2**4000)**4000", "lipsum(10**6)",
    "'x' | center(10**9)", "range(10000) | map('string') | join(',') * 100000",
    "data.__class__.__mro__[1].__subclasses__()", "data.update({'x': 1})",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_expression_escapes_fail_cleanly_and_fast(source):
    started = time.monotonic()
    with pytest.raises(ExpressionError):
        evaluate(source, {"data": {"total": 1}})
    assert time.monotonic() - started < 5.0


TEMPLATE_ATTACKS = [
    "{{ 'x' * 10**9 }}",
    "{{ [0] * 10**9 }}",
    "{{ 2 ** 100000000 }}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% for k in range(10000) %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{{ i }}{% endfor %}{% endfor %}",
    "{% for i in range(10000) %}{{ 'y' * 999999 }}{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ f('x', 64) }}",
    "{{ lipsum(10**6) }}",
    "{{ 'x' | center(10**9) }}",
    "{{ 'x' | indent(10**9, true) }}",
    "{% include '/etc/passwd' %}",
    "{{ self._TemplateReference__context }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
]


@pytest.mark.parametrize("payload", TEMPLATE_ATTACKS)
def test_template_resource_attacks_fail_safely_within_bounded_time(make_renderer, payload):
    renderer = make_renderer({"evil.html.j2": page("Hi", f"<p>{payload}</p>"),
                              "evil2.html.j2": page("Hi", "<p>x</p>"),
                              "evil2.txt.j2": f"{payload}\n{{{{ unsubscribe_url }}}}\n"})
    for name in ("evil", "evil2"):
        started = time.monotonic()
        with pytest.raises(RenderError):
            renderer(request(name))
        assert time.monotonic() - started < 5.0, name


def test_a_template_that_hits_the_loop_limit_does_not_spend_the_next_renders_budget(make_renderer):
    renderer = make_renderer({
        "evil.html.j2": page("Hi", "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"),
        "busy.html.j2": page("Hi", "{% for i in range(150) %}{% for j in range(1000) %}{% endfor %}{% endfor %}ok"),
    })
    kept = []
    for _ in range(3):
        with pytest.raises(RenderError) as info:
            renderer(request("evil"))
        kept.append(info.value)            # tracebacks kept alive must not keep the budget spent
        assert "ok" in renderer(request("busy")).html


def test_ordinary_templates_still_render_within_the_limits(make_renderer):
    body = ("{% for i in range(50) %}{{ i }}{% endfor %}{{ 'ab' * 3 }}{{ 2 ** 10 }}"
            "{{ lipsum(2, false) | length > 0 }}{{ range(5) | list | length }}")
    email = make_renderer({"ok.html.j2": page("Hi", f"<p>{body}</p>")})(request("ok"))
    assert "ababab" in email.html and "1024" in email.html


# -------------------------------------------------------------- header and HTML injection

INJECTIONS = ["Ada\r\nBcc: victim@example.com", "Ada\nX-Evil: 1", "Ada\rX", "Ada\x00", "Ada\u2028Bcc: x@y.z",
              "=?utf-8?q?evil=0D=0ABcc:_x@y.z?="]


@pytest.mark.parametrize("name", INJECTIONS)
def test_customer_names_never_break_into_a_header(make_renderer, name):
    renderer = make_renderer({"hi.html.j2": page("Hi {{ customer.name }}", "<p>Hello {{ customer.name }}</p>")})
    customer = {"id": "c-42", "email": "ada@example.com", "name": name, "timezone": "UTC",
                "locale": None, "attributes": {}}
    email = renderer(request("hi", customer=customer))
    assert not any(ch in email.subject for ch in "\r\n\x00\u2028")
    for value in email.headers.values():
        assert "\r" not in value and "\n" not in value
    try:
        message = build_mime(message_id="m-1", from_="Acme <hello@acme.example>", to="ada@example.com",
                             to_name=name, reply_to=None, subject=email.subject, html=email.html,
                             text=email.text, headers=email.headers, date=_date())
    except ValueError:
        return                             # refused outright: nothing reached a header
    reparsed = message_from_bytes(message.as_bytes())
    assert sorted(reparsed.keys()) == sorted(message.keys())
    assert "Bcc" not in reparsed and "X-Evil" not in reparsed


@pytest.mark.parametrize("field", ["subject", "to", "to_name", "from_", "reply_to", "message_id"])
@pytest.mark.parametrize("evil", ["x\r\nBcc: v@example.com", "x\nBcc: v@example.com", "x\rBcc: v@example.com"])
def test_build_mime_refuses_line_breaks_in_every_header_field(field, evil):
    values = dict(message_id="m-1", from_="Acme <hello@acme.example>", to="ada@example.com", to_name="Ada",
                  reply_to="care@acme.example", subject="Hi")
    values[field] = values[field] + evil if field != "message_id" else evil
    with pytest.raises(ValueError):
        build_mime(**values, html="<p>x</p>", text="x", headers={}, date=_date())


ENCODED = "=?utf-8?q?x=0D=0ABcc:_v@example.com?="


@pytest.mark.parametrize("field", ["subject", "to_name", "from_", "reply_to"])
def test_encoded_words_that_decode_to_a_line_break_never_add_a_header(field):
    values = dict(message_id="m-1", from_="Acme <hello@acme.example>", to="ada@example.com", to_name="Ada",
                  reply_to="care@acme.example", subject="Hi")
    values[field] = f"{ENCODED} <hello@acme.example>" if field in ("from_", "reply_to") else f"Hi {ENCODED}"
    try:
        message = build_mime(**values, html="<p>x</p>", text="x", headers={}, date=_date())
    except ValueError:
        return
    reparsed = message_from_bytes(message.as_bytes())
    assert "Bcc" not in reparsed and sorted(reparsed.keys()) == sorted(message.keys())


@pytest.mark.parametrize("header", [{"X-A": "ok\r\nBcc: v@example.com"}, {"X-A\r\nBcc": "v"},
                                    {"To": "v@example.com"}, {"Subject": "x"}])
def test_build_mime_refuses_injected_extra_headers(header):
    with pytest.raises(ValueError):
        build_mime(message_id="m-1", from_="hello@acme.example", to="ada@example.com", to_name=None,
                   reply_to=None, subject="Hi", html="<p>x</p>", text="x", headers=header, date=_date())


@pytest.mark.parametrize("email", ["ada@example.com\r\nBcc: v@example.com", "ada@example.com\n", "a b@example.com",
                                   "ada@example.com, v@example.com", "<ada@example.com>", "ada@ex\x00ample.com"])
def test_events_refuse_addresses_that_could_inject(email):
    with pytest.raises(InvalidEvent):
        parse_event(dict(GOOD, customer=dict(GOOD["customer"], email=email)))


@FAST
@given(st.text(max_size=60))
def test_customer_data_is_escaped_in_html_and_inert_in_text(make_renderer_once, text):
    evil = f"<script>alert(1)</script><img src=x onerror=alert(2)>{text}"
    customer = {"id": "c-42", "email": "ada@example.com", "name": evil, "timezone": "UTC",
                "locale": None, "attributes": {}}
    email = make_renderer_once(request("hi", customer=customer))
    assert "<script>" not in email.html and "<img src=x" not in email.html
    assert "\r" not in email.subject and "\n" not in email.subject


@pytest.fixture
def make_renderer_once(make_renderer):
    return make_renderer({"hi.html.j2": page("Hi {{ customer.name }}", "<p>Hello {{ customer.name }}</p>")})


# ------------------------------------------------------------------------------- tokens

def test_tokens_are_bound_to_purpose_customer_and_secret():
    links = Links(SECRET, "https://mail.acme.example")
    token = links.token("unsubscribe", "c-1", "m-1")
    assert links.read(token, "unsubscribe").customer_id == "c-1"
    for purpose in ("preferences", "survey"):
        assert links.read(token, purpose) is None
    assert Links("another-secret-0123456789abcdef", "https://x").read(token, "unsubscribe") is None
    survey = links.token("survey", "c-1", "m-1", "csat")
    assert links.read(survey, "unsubscribe") is None


@FAST
@given(st.text(max_size=80))
def test_tampered_or_random_tokens_are_refused(junk):
    links = Links(SECRET, "https://mail.acme.example")
    token = links.token("survey", "c-1", "m-1", "csat")
    genuine = links.read(token, "survey")
    for candidate in (junk, token + junk, junk + token, token[:-1] + ("A" if token[-1] != "A" else "B"),
                      token.replace("c-1", "c-2")):
        claims = links.read(candidate, "survey")
        # Refused, or (base64 ignores some trailing junk) exactly the genuine claims: never others.
        assert claims is None or claims == genuine


def _date():
    from datetime import datetime, timezone
    return datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
