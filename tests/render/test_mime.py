"""build_mime: parts, encodings, headers and header-injection refusal."""

from __future__ import annotations

import email
from datetime import datetime, timezone
from email import policy

import pytest

from postsale.render.mime import build_mime

URL = "https://mail.acme.example/u/" + "WyJ1bnN1YnNjcmliZSIsImMtNDIiLCJtc2ctMSIsIiJd" * 2 + ".sig"
HEADERS = {"List-Unsubscribe": f"<mailto:unsubscribe@acme.example?subject=unsubscribe>, <{URL}>",
           "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
DATE = datetime(2026, 11, 20, 9, 15, tzinfo=timezone.utc)


def build(**overrides):
    args = dict(message_id="0a1b2c", from_="Acme <hello@acme.example>", to="ada@example.com",
                to_name="Ada", reply_to="care@acme.example", subject="Thanks for your order",
                html="<p>Hello</p>", text="Hello\n-- \nAcme\n", headers=HEADERS, date=DATE)
    args.update(overrides)
    return build_mime(**args)


def parse(msg):
    return email.message_from_bytes(msg.as_bytes(), policy=policy.default)


def test_multipart_alternative_text_then_html_utf8():
    parsed = parse(build(html="<p>Caffè</p>", text="Caffè\n-- \nAcme\n"))
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    contents = [p.get_content().replace("\r\n", "\n") for p in parts]   # SMTP line ends
    assert contents == ["Caffè\n-- \nAcme\n", "<p>Caffè</p>\n"]          # the "-- " space survives
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in parts)
    assert all(p["MIME-Version"] is None for p in parts)
    assert parsed["MIME-Version"] == "1.0"


def test_headers():
    parsed = parse(build())
    assert parsed["Message-ID"] == "<0a1b2c@acme.example>"
    assert parsed["X-Postsale-Message-Id"] == "0a1b2c"
    assert parsed["Date"].datetime == DATE
    assert parsed["From"].addresses[0].addr_spec == "hello@acme.example"
    assert parsed["To"].addresses[0].display_name == "Ada"
    assert parsed["Reply-To"].addresses[0].addr_spec == "care@acme.example"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert build(domain="mail.acme.example")["Message-ID"] == "<0a1b2c@mail.acme.example>"
    assert build(reply_to=None)["Reply-To"] is None


def test_long_list_unsubscribe_keeps_the_url_whole():
    raw = build().as_bytes().decode("ascii")
    assert f"<{URL}>" in raw                                   # not split, not RFC 2047-encoded
    assert "=?utf-8?" not in raw.split("List-Unsubscribe:", 1)[1].split("\r\nList-Unsubscribe-Post")[0]
    assert " ".join(str(parse(build())["List-Unsubscribe"]).split()) == HEADERS["List-Unsubscribe"]


@pytest.mark.parametrize("subject, name, sender", [
    ("Grazie per il tuo ordine, Adà — è confermato", "Adà Lovelace", "Caffè Ñandú <hello@acme.example>"),
    ("注文ありがとうございます " * 4, "山田 太郎", "Acme <hello@acme.example>"),
    ("Plain ascii subject that is rather long, long enough to need folding in the header", 'Ada "the" Countess, Jr.', "Acme <hello@acme.example>"),
])
def test_non_ascii_names_and_subjects_round_trip(subject, name, sender):
    msg = build(subject=subject, to_name=name, from_=sender)
    raw = msg.as_bytes()
    assert raw.isascii()                                       # no 8-bit header or body bytes
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    parsed = parse(msg)
    assert parsed["Subject"] == subject.strip() or str(parsed["Subject"]) == subject
    assert parsed["To"].addresses[0].display_name == name
    assert parsed["To"].addresses[0].addr_spec == "ada@example.com"
    assert str(parsed["From"].addresses[0].display_name) == sender.split(" <")[0]


@pytest.mark.parametrize("field, value", [
    ("subject", "Hi\r\nBcc: victim@example.com"), ("subject", "Hi\nX: y"), ("to_name", "Ada\r\nX: y"),
    ("to", "ada@example.com\nBcc: x@example.com"), ("from_", "Acme <a@b.example>\r\nX: y"),
    ("reply_to", "a@b.example\nX: y"), ("message_id", "abc\r\nX: y"), ("domain", "a.example\nX: y"),
])
def test_line_breaks_in_headers_are_refused(field, value):
    with pytest.raises(ValueError, match="line break"):
        build(**{field: value})


def test_bad_extra_headers_are_refused():
    with pytest.raises(ValueError):
        build(headers={"List-Unsubscribe": "<https://x>\r\nBcc: y@example.com"})
    with pytest.raises(ValueError):
        build(headers={"Bad Name": "x"})
    with pytest.raises(ValueError):
        build(headers={"Subject": "second subject"})


def test_bad_values_are_refused():
    with pytest.raises(ValueError):
        build(message_id="a b")
    with pytest.raises(ValueError):
        build(to="not an address")
    with pytest.raises(ValueError):
        build(date=datetime(2026, 1, 1))


def test_non_ascii_extra_header_is_encoded():
    parsed = parse(build(headers={**HEADERS, "X-Campaign": "Caffè"}))
    assert parsed["X-Campaign"] == "Caffè"
