"""Signed link tokens (``postsale.links``): what they bind, what they refuse, and that tokens
signed by the earlier itsdangerous format (in mail already delivered) still work."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer

from postsale.links import PURPOSES, LinkClaims, Links

SECRET = "test-secret-0123456789abcdef"
URL = "https://mail.acme.example"
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture
def links() -> Links:
    return Links(SECRET, URL)


@pytest.mark.parametrize("purpose", PURPOSES)
@pytest.mark.parametrize("ids", [("c-42", "0f3a9c", ""), ("b-0000376", "2f096f26775959c3a4afeb632c840c93", "csat"),
                                 ('say "hi"', "back\\slash", "new\nline"), ("Zoë", "日本", "\u2028"),
                                 (".", "", "2.x")])
def test_a_token_reads_back_as_what_it_was_signed_for(links, purpose, ids):
    customer, message, extra = ids
    token = links.token(purpose, customer, message, extra)
    assert links.read(token, purpose) == LinkClaims(purpose, customer, message, extra)
    assert token.isascii() and "/" not in token and "?" not in token and "=" not in token
    for other in PURPOSES:
        if other != purpose:
            assert links.read(token, other) is None


def test_the_mac_is_hmac_sha256_over_the_body_with_a_key_of_its_own(links):
    token = links.token("unsubscribe", "c-42", "m-1")
    body, mac = token.rsplit(".", 1)
    key = hmac.new(SECRET.encode(), b"postsale-links/v2", hashlib.sha256).digest()
    expected = hmac.new(key, body.encode(), hashlib.sha256).digest()[:16]
    assert base64.urlsafe_b64decode(mac + "==") == expected
    # Not a MAC under the bare secret: the key is derived for links alone.
    assert base64.urlsafe_b64decode(mac + "==") != hmac.new(SECRET.encode(), body.encode(), "sha256").digest()[:16]


def test_tokens_of_another_secret_purpose_or_customer_are_refused(links):
    token = links.token("survey", "c-1", "m-1", "csat")
    assert Links("another-secret-0123456789abcdef", URL).read(token, "survey") is None
    assert links.read(links.token("unsubscribe", "c-1", "m-1"), "survey") is None
    forged = token.replace(token.split(".")[0], links.token("survey", "c-2", "m-1", "csat").split(".")[0])
    assert links.read(forged, "survey") is None


def test_every_single_character_change_is_refused(links):
    token = links.token("unsubscribe", "c-42", "2f096f26775959c3a4afeb632c840c93")
    for i, char in enumerate(token):
        for other in ("A", "B", "-", "_", ".", "9"):
            if other != char:
                assert links.read(token[:i] + other + token[i + 1:], "unsubscribe") is None, (i, other)
    for cut in range(1, len(token)):
        assert links.read(token[:cut], "unsubscribe") is None
        assert links.read(token[cut:], "unsubscribe") is None


@pytest.mark.parametrize("junk", ["", ".", "2", "2.", "2..", "2" + "A" * 200 + "." + "A" * 22,
                                  "2é." + "A" * 22, "2abc.ééééééééééééééééééééééé", "not-a-token",
                                  "W" * 500, "\x00", "2" * 5000])
def test_junk_is_refused_without_raising(links, junk):
    for purpose in PURPOSES:
        assert links.read(junk, purpose) is None


@settings(max_examples=300, deadline=None)
@given(junk=st.text(max_size=60), alphabet_junk=st.text(alphabet=B64 + ".", max_size=60))
def test_no_junk_around_a_token_yields_other_claims(junk, alphabet_junk):
    links = Links(SECRET, URL)
    token = links.token("survey", "c-1", "m-1", "csat")
    genuine = links.read(token, "survey")
    for candidate in (junk, alphabet_junk, token + junk, junk + token, token + alphabet_junk,
                      alphabet_junk + token):
        assert links.read(candidate, "survey") in (None, genuine)
    assert links.read(token + alphabet_junk, "survey") in ((genuine,) if alphabet_junk == "" else (None,))


# ------------------------------------------------------------------ tokens already delivered

def legacy(secret: str, *claims: str) -> str:
    """A token as postsale signed them before (itsdangerous, salt ``postsale-links``)."""
    return URLSafeSerializer(secret, salt="postsale-links").dumps(list(claims))


def test_tokens_in_mail_already_delivered_keep_working(links):
    token = legacy(SECRET, "unsubscribe", "c-42", "m-1", "")
    assert links.read(token, "unsubscribe") == LinkClaims("unsubscribe", "c-42", "m-1", "")
    assert links.read(token, "preferences") is None
    survey = legacy(SECRET, "survey", "c-42", "m-1", "csat")
    assert links.read(survey, "survey") == LinkClaims("survey", "c-42", "m-1", "csat")
    long = legacy(SECRET, "preferences", "c-" + "x" * 300, "m-1", "")        # zlib-compressed: starts with "."
    assert long.startswith(".") and links.read(long, "preferences").customer_id == "c-" + "x" * 300


def test_old_format_tokens_are_still_checked(links):
    assert links.read(legacy("another-secret-0123456789abcdef", "unsubscribe", "c-42", "m-1", ""), "unsubscribe") is None
    token = legacy(SECRET, "unsubscribe", "c-42", "m-1", "")
    assert links.read(token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "unsubscribe") is None
    assert links.read(URLSafeSerializer(SECRET, salt="postsale-links").dumps(["unsubscribe", "c-42"]),
                      "unsubscribe") is None                                    # not four strings


def test_new_tokens_never_look_like_old_ones(links):
    for purpose in PURPOSES:
        token = links.token(purpose, "c-42", "m-1", "s")
        assert token.startswith("2") and not token.startswith(("W", "."))


def test_unknown_purposes_are_refused(links):
    with pytest.raises(ValueError):
        links.token("delete-account", "c-1", "m-1")


def test_urls_carry_the_tokens(links):
    assert links.read(links.unsubscribe_url("c-1", "m-1").removeprefix(f"{URL}/u/"), "unsubscribe")
    prefs = links.preferences_url("c-1", "m-1")
    assert prefs.endswith("?prefs=1")
    assert links.read(prefs.removeprefix(f"{URL}/u/").removesuffix("?prefs=1"), "preferences")
    survey = links.survey_url("c-1", "m-1", "csat", 4)
    assert survey.endswith("?a=4")
    claims = links.read(survey.removeprefix(f"{URL}/s/").removesuffix("?a=4"), "survey")
    assert claims == LinkClaims("survey", "c-1", "m-1", "csat")


@settings(max_examples=300, deadline=None)
@given(fields=st.tuples(st.text(), st.text(), st.text(), st.text()), data=st.binary(max_size=64))
def test_the_hand_written_payload_and_base64_are_the_library_ones(fields, data):
    import json

    from postsale.links import _b64, _payload
    assert _payload(fields) == json.dumps(list(fields), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert _b64(data) == base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
