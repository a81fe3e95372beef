"""Warnings about wording that makes email long, shouty or spammy (``postsale validate``).

Word counts cover the message only: the text part is cut at its ``-- `` signature line,
which the derived text puts before the layout's footer (and hand-written ``.txt.j2`` files
get from ``_footer.txt.j2``). Links are left out of every check: a URL is not a word, and a
signed token can spell anything.
"""

from __future__ import annotations

import re

from postsale.render.text import split_footer
from postsale.render.types import RenderedEmail
from postsale.spec.model import Category, Limits
from postsale.spec.problems import Problem

# Phrases spam filters and readers both distrust; kept short on purpose (no false alarms).
SPAM_PHRASES = (
    "act now", "100% free", "click here", "limited time", "buy now", "risk-free", "risk free",
    "winner", "guaranteed", "once in a lifetime", "no obligation", "order now", "urgent",
    "cash bonus", "you have been selected", "congratulations", "best price", "lowest price",
    "don't miss out", "dont miss out", "last chance", "special promotion", "100% satisfied",
    "miracle", "no catch", "while supplies last", "call now", "apply now", "get it now",
    "exclusive deal", "double your",
)
_SPAM = re.compile(r"(?<![\w-])(" + "|".join(re.escape(p) for p in SPAM_PHRASES) + r")(?![\w-])",
                   re.IGNORECASE)
_URL = re.compile(r"\(?\b(?:https?://|mailto:|www\.)\S+", re.IGNORECASE)
_WORD = re.compile(r"\w+(?:['’-]\w+)*")
_CAPS = re.compile(r"\b[A-Z]{4,}\b")
# "feel free" and "sugar-free" are not offers; "free shipping" is.
_OFFER = re.compile(r"\d+\s?%\s*(?:off|discount)\b|[€$£]\s?\d+\s*off\b|\bdiscounts?\b|\bcoupons?\b|"
                    r"\bpromo(?:tion(?:al)?)?\s+codes?\b|\bvouchers?\b|(?<![\w-])(?<!feel )free\b|"
                    r"\bsconto\b|\bgratis\b|\bsaldi\b", re.IGNORECASE)
_CONDITION = re.compile(r"\b(?:expires?|expiry|expiring|until|valid|terms|conditions|minimum|"
                        r"ends|excludes?|scade|valido|fino al|termini|condizioni|minimo)\b",
                        re.IGNORECASE)
CONDITION_WINDOW = 200      # characters either side of an offer that may hold its condition
CAPS_ALLOWED = 2            # a brand or an acronym or two is fine; more is shouting


def count_words(text: str) -> int:
    return len(_WORD.findall(_URL.sub(" ", text)))


def lint_email(email: RenderedEmail, limits: Limits, *, category: Category, file: str,
               line: int = 1) -> list[Problem]:
    """Warnings (never errors) about one rendered email."""
    out: list[Problem] = []

    def warn(message: str, hint: str) -> None:
        out.append(Problem(file, line, message, "warning", hint))

    subject = email.subject
    message = _URL.sub(" ", split_footer(email.text)[0])
    if len(subject) > limits.subject_max_chars:
        warn(f"subject is {len(subject)} characters, over the limit of {limits.subject_max_chars}",
             "mobile clients cut long subjects: say the one thing that matters first")
    words = count_words(message)
    if words > limits.body_max_words:
        warn(f"body is {words} words, over the limit of {limits.body_max_words} (footer not counted)",
             "keep one message per email; link to the details")

    if "!" in subject:
        warn("exclamation mark in the subject", "a calm subject reads as a person, not an advert")
    if re.search(r"[!?]{2,}", f"{subject}\n{message}"):
        warn("'!!' (or '?!') in the text", "one mark is enough")
    caps = _CAPS.findall(f"{subject}\n{message}")
    if len(caps) > CAPS_ALLOWED or len(_CAPS.findall(subject)) > 1:
        shown = ", ".join(dict.fromkeys(caps))
        warn(f"shouting: words in capitals ({shown})", "write in sentence case")

    phrases = sorted({m.lower() for m in _SPAM.findall(f"{subject}\n{message}")})
    if phrases:
        warn(f"spammy wording: {', '.join(repr(p) for p in phrases)}",
             "say plainly what the reader gets; spam filters score these phrases")

    whole = f"{subject}\n{message}"
    offers = list(_OFFER.finditer(whole))
    if offers and category == Category.transactional:
        warn(f"transactional email with an offer ({offers[0].group(0)!r})",
             "transactional email never carries offers (SPEC §5): move it to a marketing journey")
    for offer in offers:
        start, end = max(0, offer.start() - CONDITION_WINDOW), offer.end() + CONDITION_WINDOW
        if not _CONDITION.search(whole[start:end]):
            warn(f"offer ({offer.group(0)!r}) without its conditions",
                 "say when it expires, the minimum spend or where the terms are")
            break
    return out
