"""Every shipped email, as the full MIME message, passes SpamAssassin's local rules.

Needs the `spamassassin` command (Debian: `apt-get install -y spamassassin`); skipped without
it. Local rules only (-L: no DNS or network tests), Bayes off, a throwaway HOME, and all
messages in one mbox so that the rules compile once (about 5 seconds in all).
"""

from __future__ import annotations

import mailbox
import os
import re
import shutil
import subprocess
from datetime import datetime, timezone
from email.message import EmailMessage

import pytest

from postsale.links import Links
from postsale.render.checks import sendings, locale_variants
from postsale.render.mime import build_mime
from postsale.render.templates import TemplateRenderer
from postsale.render.types import RenderRequest
from postsale.samples import sample_customer, sample_event, sample_scope
from postsale.spec.catalog import load_catalog
from postsale.spec.model import Category

from .conftest import SECRET, SHIPPED_JOURNEYS, SHIPPED_TEMPLATES

pytestmark = pytest.mark.skipif(shutil.which("spamassassin") is None,
                                reason="spamassassin not installed (apt-get install -y spamassassin)")
MAX_SCORE = 1.0


def shipped_messages() -> dict[str, EmailMessage]:
    catalog = load_catalog(SHIPPED_JOURNEYS, SHIPPED_TEMPLATES)
    policy = catalog.policy
    renderer = TemplateRenderer(SHIPPED_TEMPLATES, policy, Links(SECRET, policy.public_url))
    now = datetime.now(timezone.utc)
    out: dict[str, EmailMessage] = {}
    for journey in catalog.journeys.values():
        event = sample_event(journey.trigger.event)
        for step, template, category, survey in sendings(journey):
            for locale in [None, *locale_variants(SHIPPED_TEMPLATES, template)]:
                key = f"{journey.id}.{step.id}" + (f".{locale}" if locale else "")
                message_id = re.sub(r"[^A-Za-z0-9.-]", "-", key)
                email = renderer(RenderRequest(
                    template=template, category=category, message_id=message_id, customer_id="c-42",
                    scope=sample_scope(journey, event, sample_customer(locale) if locale else None),
                    locale=locale, survey=survey))
                sender = (policy.sender.transactional_from if category is Category.transactional
                          else None) or policy.sender.from_
                out[message_id] = build_mime(
                    message_id=message_id, from_=sender, to="ada@example.com", to_name="Ada",
                    reply_to=policy.sender.reply_to, subject=email.subject, html=email.html,
                    text=email.text, headers=email.headers, date=now)
    return out


def control_message() -> EmailMessage:
    """Proof that the harness can fail: no Date, no Message-ID, shouting."""
    msg = EmailMessage()
    msg["From"], msg["To"] = "deals@acme.example", "ada@example.com"
    msg["Subject"] = "WINNER!!! ACT NOW 100% FREE"
    msg["X-Postsale-Message-Id"] = "control"
    msg.set_content("CLICK HERE NOW!!! Limited time, 100% free, risk-free, guaranteed winner!!!")
    return msg


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory) -> dict[str, tuple[float, set[str]]]:
    folder = tmp_path_factory.mktemp("spamassassin")
    box = mailbox.mbox(str(folder / "mail.mbox"))
    messages = {**shipped_messages(), "control": control_message()}
    for message in messages.values():
        box.add(message)
    box.flush()
    home = folder / "home"
    home.mkdir()
    with open(folder / "mail.mbox", "rb") as mbox_in:
        done = subprocess.run(["spamassassin", "-L", "-t", "-x", "--mbox", "--cf=use_bayes 0",
                               "--cf=use_auto_whitelist 0", "--cf=report_safe 0"],
                              stdin=mbox_in, capture_output=True, timeout=600,
                              env={**os.environ, "HOME": str(home)})
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    (folder / "out.mbox").write_bytes(done.stdout)
    found: dict[str, tuple[float, set[str]]] = {}
    for message in mailbox.mbox(str(folder / "out.mbox")):
        status = " ".join(str(message["X-Spam-Status"]).split())
        score = float(re.search(r"score=(-?[\d.]+)", status)[1])
        tests = set(re.search(r"tests=(\S*)", status)[1].split(",")) - {""}
        found[str(message["X-Postsale-Message-Id"])] = (score, tests)
    assert set(found) == set(messages), "spamassassin did not report on every message"
    return found


def test_the_harness_catches_a_bad_message(verdicts):
    score, tests = verdicts["control"]
    assert score > 3 and "MISSING_DATE" in tests


SHIPPED = sorted(shipped_messages())


@pytest.mark.parametrize("message_id", SHIPPED)
def test_shipped_email_scores_low(verdicts, message_id):
    score, tests = verdicts[message_id]
    assert score < MAX_SCORE, f"{message_id}: {score} {sorted(tests)}"
    assert not [t for t in tests if t.startswith("MISSING_")], sorted(tests)
