"""A rendered email as a standards-correct MIME message (SMTP, the outbox, SpamAssassin).

multipart/alternative with the text part first (clients show the last part they can), UTF-8,
headers encoded by ``email.policy.SMTP`` so that non-ASCII display names and subjects become
RFC 2047 words. ASCII headers we add (List-Unsubscribe) are folded by hand at their commas
and written raw: the library would otherwise turn a long URL into encoded words, which mail
providers do not decode in List-Unsubscribe. Bodies are quoted-printable, so that no transport
needs 8BITMIME and the ``-- `` signature line keeps its space.

Header injection is refused outright: a CR or LF in any value raises ValueError instead of
being folded or stripped, because a value carrying one was never meant to reach a header.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, getaddresses

_HEADER_NAME = re.compile(r"^[!-9;-~]+$")          # RFC 5322 ftext: printable, no colon
_MSGID_LEFT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")   # dot-atom text
# refold_source="none": raw headers (set_raw) are written as folded here; the headers set
# through msg[...] are still folded and encoded by the policy as usual.
_POLICY = SMTP.clone(refold_source="none")
_RESERVED = {"from", "to", "reply-to", "subject", "date", "message-id", "mime-version",
             "content-type", "content-transfer-encoding", "x-postsale-message-id"}


def _clean(name: str, value: str | None) -> str | None:
    if value is not None and ("\r" in value or "\n" in value or "\x00" in value):
        raise ValueError(f"{name} contains a line break or NUL: refused (header injection)")
    return value


def _address(name: str, value: str, display: str | None = None) -> Address:
    """One mailbox, from ``Name <a@b>`` or a bare address (plus an optional display name)."""
    parsed = getaddresses([value])
    if len(parsed) != 1 or "@" not in parsed[0][1]:
        raise ValueError(f"{name} {value!r} is not one email address")
    shown, addr = parsed[0]
    user, _, host = addr.rpartition("@")
    return Address(display_name=display if display is not None else shown, username=user, domain=host)


def build_mime(*, message_id: str, from_: str, to: str, to_name: str | None, reply_to: str | None,
               subject: str, html: str, text: str, headers: dict[str, str], date: datetime,
               domain: str | None = None) -> EmailMessage:
    """The full message; ``Message-ID`` is ``<message_id@domain>`` (domain: the sender's)."""
    for name, value in (("message_id", message_id), ("from_", from_), ("to", to),
                        ("to_name", to_name), ("reply_to", reply_to), ("subject", subject),
                        ("domain", domain)):
        _clean(name, value)
        # An RFC 2047 encoded word is decoded by the email package, and Python before 3.11.10
        # (CVE-2024-6923) writes ``=?utf-8?q?x=0D=0ABcc:_v@e.x?=`` back out as a real line
        # break: a header injection. Nobody types an encoded word into a name or a subject.
        if value is not None and "=?" in value and "?=" in value:
            raise ValueError(f"{name} holds an RFC 2047 encoded word: refused (header injection)")
    for key, value in headers.items():
        if not _HEADER_NAME.match(key):
            raise ValueError(f"bad header name {key!r}")
        if key.lower() in _RESERVED:
            raise ValueError(f"header {key!r} is set by build_mime, not by the caller")
        _clean(key, value)
    if not _MSGID_LEFT.match(message_id):
        raise ValueError(f"message id {message_id!r} may only hold letters, digits and .-_ and the like")
    if date.tzinfo is None:
        raise ValueError("date must be timezone-aware")

    sender = _address("from_", from_)
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    msg["To"] = _address("to", to, to_name or "")
    if reply_to:
        msg["Reply-To"] = _address("reply_to", reply_to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = f"<{message_id}@{domain or sender.domain}>"
    msg["X-Postsale-Message-Id"] = message_id
    for key, value in headers.items():
        if value.isascii():
            msg.set_raw(key, _fold(key, value))
        else:
            msg[key] = value
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    for part in msg.iter_parts():
        del part["MIME-Version"]           # add_alternative copies it into the parts
    return msg


def _fold(name: str, value: str, width: int = 78) -> str:
    """Fold an ASCII value at its spaces (never inside a word, so URLs stay whole)."""
    lines: list[str] = []
    line = ""
    used = len(name) + 2
    for word in " ".join(value.split()).split(" "):
        if line and used + len(line) + 1 + len(word) > width:
            lines.append(line)
            line, used = word, 1
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\n ".join(lines)
