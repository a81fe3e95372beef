"""``journeys/policy.yaml`` into a frozen ``Policy`` (SPEC.md §5).

The policy is the one place where the guardrails live, so a mistake in it must never pass
silently: every unknown key is an error with a "did you mean" hint, and every problem names
the line of the offending key.

Defaults apply field by field: a missing key keeps the ``Policy`` dataclass default, and so
does a missing field inside a cap or quiet hours (``marketing: {max: 5}`` keeps the default
``per`` and ``min_gap``). Turning a guardrail off is explicit: ``marketing: null``,
``min_gap: null`` or ``quiet_hours: null``. A value that fails its check also keeps the
default, so the returned ``Policy`` is always usable; the problems say what was wrong.
"""

from __future__ import annotations

import re
from dataclasses import fields, replace
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from postsale.spec.model import Cap, Limits, Policy, QuietHours, Sender, Where
from postsale.spec.problems import Problem
from postsale.spec.yaml_lines import LineDict, Reader, load_yaml

_KEYS = ("sender", "postal_address", "ops_email", "public_url", "frequency", "quiet_hours",
         "hold_marketing_while_ticket_open", "limits")
_SENDER_KEYS = {"from": "from_", "reply_to": "reply_to", "transactional_from": "transactional_from"}
_CAPS = {"marketing": "marketing_cap", "journey": "journey_cap", "surveys": "survey_cap"}
_LIMIT_KEYS = tuple(f.name for f in fields(Limits))
_ADDRESS = re.compile(r"^[^@\s<>(),;:\"]+@[^@\s<>(),;:\"]+\.[^@\s<>(),;:\".]+$")


def is_address(value: str) -> bool:
    """``hello@acme.example`` or ``Acme <hello@acme.example>``: one plausible address."""
    _, address = parseaddr(value)
    return bool(address) and _ADDRESS.match(address) is not None and "," not in value


def parse_policy(text: str, file: str) -> tuple[Policy, list[Problem]]:
    """Parse a policy file; the Policy is usable (defaults fill the gaps) even with problems."""
    data, problems = load_yaml(text, file)
    r = Reader(file, problems)
    if data is None and r.failed:       # unreadable YAML; duplicate keys alone read on
        return Policy(where=Where(file, 0)), r.problems
    if not isinstance(data, LineDict) or "policy" not in data:
        r.error(getattr(data, "line", 1) or 1, "a policy file starts with `policy:`",
                "see SPEC.md §5 for an example")
        return Policy(where=Where(file, 1)), r.problems
    r.check_keys(data, ("policy",), "the policy file")
    where = Where(file, data.line_of("policy"))
    if data["policy"] is None:   # `policy:` alone: every default
        return Policy(where=where), r.problems
    m = r.mapping(data["policy"], where.line, "policy")
    if m is None:
        return Policy(where=where), r.problems
    r.check_keys(m, _KEYS, "policy")
    values: dict[str, Any] = {"where": where}
    if "sender" in m:
        values["sender"] = _sender(r, m)
    if "postal_address" in m:
        values["postal_address"] = _postal_address(r, m)
    if "ops_email" in m:
        values["ops_email"] = _address(r, m, "ops_email", "ops_email")
    if "public_url" in m:
        values["public_url"] = _url(r, m) or Policy.public_url
    if "frequency" in m:
        values.update(_frequency(r, m))
    if "quiet_hours" in m:
        values["quiet_hours"] = _quiet_hours(r, m)
    values["hold_marketing_while_ticket_open"] = r.flag(
        m, "hold_marketing_while_ticket_open", "hold_marketing_while_ticket_open",
        Policy.hold_marketing_while_ticket_open)
    if "limits" in m:
        values["limits"] = _limits(r, m)
    return Policy(**values), sorted(r.problems, key=lambda p: p.line)


def _address(r: Reader, m: LineDict, key: str, label: str) -> str | None:
    value = r.text(m, key, label)
    if value is None:
        return None
    if not is_address(value):
        r.error(m.line_of(key), f"`{label}` {value!r} is not an email address",
                'like "care@acme.example" or "Acme <care@acme.example>"')
        return None
    return value.strip()


def _postal_address(r: Reader, m: LineDict) -> str:
    value = m["postal_address"]
    if value is None or value == "":     # allowed: only marketing mail needs one (the catalog checks)
        return ""
    return (r.text(m, "postal_address", "postal_address") or "").strip()


def _sender(r: Reader, m: LineDict) -> Sender:
    s = r.mapping(m["sender"], m.line_of("sender"), "sender")
    if s is None:
        return Sender()
    r.check_keys(s, _SENDER_KEYS, "sender")
    values = {}
    for key, attr in _SENDER_KEYS.items():
        if key in s:
            if key == "from" and s[key] is None:
                r.error(s.line_of(key), "`sender.from` cannot be empty: every email needs a sender")
                continue
            address = _address(r, s, key, f"sender.{key}")
            if address is not None or s[key] is None:
                values[attr] = address
    return Sender(**values)


def _url(r: Reader, m: LineDict) -> str | None:
    value = r.text(m, "public_url", "public_url")
    if value is None:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        r.error(m.line_of("public_url"), f"`public_url` {value!r} must be an http(s) base URL",
                "like https://mail.acme.example: unsubscribe and survey links start with it")
        return None
    return value.strip().rstrip("/")     # links are built as f"{public_url}/u/{token}"


def _frequency(r: Reader, m: LineDict) -> dict[str, Cap | None]:
    if m["frequency"] is None:
        r.warning(m.line_of("frequency"), "`frequency:` is empty: the default caps apply",
                  "write `marketing: null` (or journey, surveys) to turn one cap off")
        return {}
    f = r.mapping(m["frequency"], m.line_of("frequency"), "frequency")
    if f is None:
        return {}
    r.check_keys(f, _CAPS, "frequency")
    out: dict[str, Cap | None] = {}
    for key, attr in _CAPS.items():
        if key not in f:
            continue
        if f[key] is None:
            out[attr] = None
            continue
        label = f"frequency.{key}"
        c = r.mapping(f[key], f.line_of(key), label)
        if c is None:
            continue
        r.check_keys(c, ("max", "per", "min_gap"), label)
        default: Cap = getattr(Policy, attr)     # the dataclass default of that field
        cap_max = r.integer(c, "max", f"{label}.max", default.max)
        per = r.duration(c, "per", f"{label}.per", required="per" in c) or default.per
        min_gap = default.min_gap
        if "min_gap" in c:
            min_gap = r.duration(c, "min_gap", f"{label}.min_gap")
        out[attr] = Cap(max=cap_max, per=per, min_gap=min_gap)
    return out


def _quiet_hours(r: Reader, m: LineDict) -> QuietHours | None:
    if m["quiet_hours"] is None:
        return None
    q = r.mapping(m["quiet_hours"], m.line_of("quiet_hours"), "quiet_hours")
    default = Policy.quiet_hours
    if q is None:
        return default
    r.check_keys(q, ("start", "end"), "quiet_hours")
    start, end = r.clock(q, "start", "quiet_hours.start"), r.clock(q, "end", "quiet_hours.end")
    start = default.start if start is None else start
    end = default.end if end is None else end
    if start == end:
        r.error(q.line, f"quiet hours start and end at the same time ({start:%H:%M})",
                "use `quiet_hours: null` to turn them off")
        return default
    return QuietHours(start=start, end=end)


def _limits(r: Reader, m: LineDict) -> Limits:
    lim = r.mapping(m["limits"], m.line_of("limits"), "limits")
    if lim is None:
        return Limits()
    r.check_keys(lim, _LIMIT_KEYS, "limits")
    return replace(Limits(), **{key: r.integer(lim, key, f"limits.{key}", getattr(Limits, key))
                                for key in _LIMIT_KEYS})
