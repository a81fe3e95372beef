"""lint_email: warnings about length, shouting, spam phrases and offers without conditions."""

from __future__ import annotations

from postsale.render.lint import count_words, lint_email
from postsale.render.types import RenderedEmail
from postsale.spec.model import Category, Limits

FOOTER = "\n\n-- \nAcme Srl, Via Roma 1. Unsubscribe (https://x.example/u/ABCDEFGHIJ)\n"


def lint(subject="Your order is on its way", text="Hi Ada, your kettle ships today.",
         category=Category.marketing, limits=Limits()):
    email = RenderedEmail(subject=subject, html="", text=text + FOOTER)
    return [p.message for p in lint_email(email, limits, category=category, file="t.html.j2", line=3)]


def test_a_calm_email_has_no_warnings():
    assert lint() == []


def test_problems_are_warnings_at_the_given_place():
    email = RenderedEmail(subject="x" * 61, html="", text="ok")
    (problem,) = lint_email(email, Limits(), category=Category.marketing, file="t.html.j2", line=3)
    assert (problem.file, problem.line, problem.severity) == ("t.html.j2", 3, "warning")
    assert problem.hint


def test_long_subject():
    assert lint(subject="x" * 60) == []
    assert any("subject is 61 characters" in m for m in lint(subject="x" * 61))
    assert any("over the limit of 20" in m for m in lint(subject="a" * 21, limits=Limits(subject_max_chars=20)))


def test_long_body_counts_the_message_not_the_footer_nor_urls():
    assert count_words("one two https://x.example/a-b-c three's (https://y.example)") == 3
    assert lint(text="word " * 150) == []
    assert any("151 words" in m for m in lint(text="word " * 151))


def test_shouting_subject():
    messages = lint(subject="HUGE SALE TODAY!!!")
    assert any("exclamation mark in the subject" in m for m in messages)
    assert any("'!!'" in m for m in messages)
    assert any("shouting" in m and "HUGE" in m for m in messages)
    assert any("shouting" in m for m in lint(subject="Your ORDER SHIPS"))
    assert lint(subject="Your ACME order") == []             # one brand in capitals is fine


def test_shouting_body():
    assert any("shouting" in m for m in lint(text="This is REALLY VERY MUCH important"))
    assert lint(text="Made in the EU, tested by TÜV and ACME.") == []


def test_spam_phrases():
    messages = lint(text="Act now: click here to get yours. Limited time!")
    assert any("spammy wording" in m and "'act now'" in m and "'click here'" in m
               and "'limited time'" in m for m in messages)
    assert any("spammy" in m for m in lint(subject="You are a winner"))
    assert lint(text="The winners circle is a street name.") == []   # whole words only


def test_offer_without_conditions():
    assert any("offer" in m for m in lint(text="Take 20% off your next kettle."))
    assert any("offer" in m for m in lint(text="Here is a coupon for you."))
    assert any("offer" in m for m in lint(text="Free shipping on your next order."))
    assert lint(text="Take 20% off your next kettle. Valid until 30 November, minimum spend 50 EUR.") == []
    assert lint(text="Feel free to reply. It is sugar-free and 100% cotton.") == []


def test_offer_in_transactional_email():
    messages = lint(text="Take 20% off, valid until Sunday.", category=Category.transactional)
    assert any("transactional email with an offer" in m for m in messages)


def test_urls_are_not_linted():
    text = "Open https://x.example/WINNER/CLICKHERE/FREE/ABCD/EFGH/IJKL to answer."
    assert lint(text=text) == []
