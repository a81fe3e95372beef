"""The journeys folder as one checked ``Catalog``: policy, journeys and their cross-file links.

``load_catalog`` reads ``policy.yaml`` first (the survey question limit depends on it), then
every other ``*.yaml``/``*.yml`` file of the folder in name order, one journey per file. Each
file is parsed on its own, so one broken file never hides the others. Then the checks that
need more than one file: duplicate journey ids, ``start:`` targets, templates on disk, and a
postal address in the policy as soon as any marketing journey exists.

A journey with an error (in its file or in a cross-file check that points at it) is reported
and left out of ``Catalog.journeys``; the others load. Policy problems do not drop journeys:
the policy still holds usable values, and ``validate`` exits 1 on any error anyway.

Paths in problems are the paths as given (a relative folder stays relative); line 0 means
the whole file or folder.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from postsale.spec.journeys import parse_journey
from postsale.spec.model import Category, Journey, Policy, Send, Start
from postsale.spec.policy import parse_policy
from postsale.spec.problems import Problem
from postsale.spec.yaml_lines import MAX_BYTES, LineDict, load_yaml

POLICY_FILES = ("policy.yaml", "policy.yml")
TEMPLATE_SUFFIX = ".html.j2"


@dataclass(frozen=True)
class Catalog:
    journeys: dict[str, Journey]
    policy: Policy
    problems: tuple[Problem, ...]
    files: dict[str, str]           # journey id -> file path

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.is_error)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if not p.is_error)


def load_catalog(journeys_dir: Path, templates_dir: Path) -> Catalog:
    """Load and check every journey of a folder; never raises for a bad file."""
    journeys_dir, templates_dir = Path(journeys_dir), Path(templates_dir)
    problems: list[Problem] = []
    if not journeys_dir.is_dir():
        problems.append(Problem(str(journeys_dir), 0, "journeys folder not found",
                                hint="set POSTSALE_JOURNEYS or pass the folder"))
        return Catalog({}, Policy(), tuple(problems), {})

    policy, policy_file, policy_text = _load_policy(journeys_dir, problems)
    parsed: list[Journey] = []
    for path in _journey_files(journeys_dir):
        text = _read(path, problems)
        if text is not None:
            journey, found = parse_journey(text, str(path), policy=policy)
            problems.extend(found)
            if journey is not None:
                parsed.append(journey)

    unique: dict[str, Journey] = {}
    for journey in parsed:
        first = unique.get(journey.id)
        if first is None:
            unique[journey.id] = journey
        else:
            problems.append(Problem(journey.where.file, journey.where.line,
                                    f"journey id {journey.id!r} is already used by {first.where.file}",
                                    hint="journey ids are unique: rename one of them"))

    templates = _template_names(templates_dir)
    loaded: dict[str, Journey] = {}
    for journey in unique.values():
        found = _links(journey, set(unique), templates, templates_dir)
        problems.extend(found)
        if not found:
            loaded[journey.id] = journey

    if not policy.postal_address and any(j.category is Category.marketing for j in parsed):
        problems.append(Problem(policy_file, _postal_line(policy_text, policy),
                                "policy has no postal_address, but marketing journeys exist",
                                hint="marketing email must carry a postal address "
                                     "(CAN-SPAM): set policy.postal_address"))

    problems.sort(key=lambda p: (p.file, p.line))
    return Catalog(journeys=loaded, policy=policy, problems=tuple(problems),
                   files={j.id: j.where.file for j in loaded.values()})


def _load_policy(folder: Path, problems: list[Problem]) -> tuple[Policy, str, str | None]:
    for name in POLICY_FILES:
        path = folder / name
        if path.is_file():
            text = _read(path, problems)
            if text is None:
                return Policy(), str(path), None
            policy, found = parse_policy(text, str(path))
            problems.extend(found)
            return policy, str(path), text
    path = str(folder / POLICY_FILES[0])
    problems.append(Problem(path, 0, "no policy.yaml: using the default policy", "warning",
                            hint="write one to set the sender, postal address and caps"))
    return Policy(), path, None


def _journey_files(folder: Path) -> list[Path]:
    # Dot files are editor and OS leftovers (.#x.yaml, ._x.yaml), not journeys.
    return sorted(p for p in folder.iterdir()
                  if p.suffix in (".yaml", ".yml") and p.is_file()
                  and not p.name.startswith(".") and p.name not in POLICY_FILES)


def _read(path: Path, problems: list[Problem]) -> str | None:
    try:
        if path.stat().st_size > MAX_BYTES:     # before reading: a huge file is refused cheaply
            problems.append(Problem(str(path), 0, f"file is larger than {MAX_BYTES // 1024} KiB"))
            return None
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem(str(path), 0, f"not UTF-8 text: {exc.reason}"))
    except OSError as exc:
        problems.append(Problem(str(path), 0, f"cannot read: {exc.strerror or exc}"))
    return None


def _template_names(folder: Path) -> set[str]:
    """Names NAME with a NAME.html.j2 file (locale variants NAME.it come along)."""
    if not folder.is_dir():
        return set()
    return {p.name[: -len(TEMPLATE_SUFFIX)] for p in folder.iterdir()
            if p.name.endswith(TEMPLATE_SUFFIX) and p.is_file()}


def _links(journey: Journey, journey_ids: set[str], templates: set[str],
           templates_dir: Path) -> list[Problem]:
    """Problems with what a journey points at: other journeys and templates."""
    file = journey.where.file
    out: list[Problem] = []
    wanted = [(s.template, s.where.line) for s in journey.walk() if isinstance(s, Send)]
    wanted += [(d.template, d.where.line) for d in journey.surveys.values()]
    for name, line in wanted:
        if name not in templates:
            out.append(Problem(file, line, f"unknown template {name!r}",
                               hint=_template_hint(name, templates, templates_dir)))
    for step in journey.walk():
        if isinstance(step, Start) and step.journey not in journey_ids:
            close = difflib.get_close_matches(step.journey, sorted(journey_ids), n=1)
            known = ", ".join(sorted(journey_ids)) or "none"
            lead = f"did you mean `{close[0]}`? " if close else ""
            out.append(Problem(file, step.where.line, f"unknown journey {step.journey!r} in `start:`",
                               hint=f"{lead}known journeys: {known}"))
    return out


def _template_hint(name: str, templates: set[str], templates_dir: Path) -> str:
    # Offer real mail templates only: not the layout/partials (_x) nor locale variants (x.it).
    candidates = sorted(t for t in templates if not t.startswith("_") and "." not in t)
    close = difflib.get_close_matches(name, candidates, n=3)
    expected = f"expected {templates_dir / (name + TEMPLATE_SUFFIX)}"
    if close:
        return f"did you mean {', '.join(f'`{c}`' for c in close)}? {expected}"
    return expected


def _postal_line(text: str | None, policy: Policy) -> int:
    """The line of `postal_address:` when written (empty), else of `policy:`."""
    if text is None:
        return 0
    data, _ = load_yaml(text, "")
    body = data.get("policy") if isinstance(data, LineDict) else None
    if isinstance(body, LineDict) and "postal_address" in body:
        return body.line_of("postal_address")
    return policy.where.line
