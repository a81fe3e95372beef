from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from postsale.spec.catalog import Catalog, load_catalog
from postsale.spec.model import Category, Policy
from postsale.spec.yaml_lines import MAX_BYTES

POLICY = """\
policy:
  sender: {from: "Acme <hello@acme.example>"}
  postal_address: "Acme Srl, Via Roma 1, Firenze"
  limits: {survey_max_questions: 2}
"""

ISSUE = """\
journey: issue-resolution
name: Make it right
touchpoint: issue_resolution
category: transactional
trigger:
  event: ticket.opened
steps:
  - send: ticket_ack
"""

TEMPLATES = ["thank_you", "kettle_tips", "sorry_we_will_fix", "review_invitation", "survey_csat",
             "ticket_ack", "_layout", "thank_you.it"]


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    for name in TEMPLATES:
        (folder / f"{name}.html.j2").write_text("{% block body %}{% endblock %}")
    (folder / "notes.txt").write_text("not a template")
    return folder


def problems_of(catalog: Catalog):
    return [(Path(p.file).name, p.line, p.severity) for p in catalog.problems]


def test_good_folder(tmp_path, templates, write, spec_journey):
    folder = write(tmp_path / "journeys", {"policy.yaml": POLICY, "issue.yaml": ISSUE})
    (folder / "post-purchase.yaml").write_text(spec_journey)
    catalog = load_catalog(folder, templates)
    assert catalog.problems == ()
    assert catalog.errors == () and catalog.warnings == ()
    assert set(catalog.journeys) == {"post-purchase", "issue-resolution"}
    assert catalog.files == {"post-purchase": str(folder / "post-purchase.yaml"),
                             "issue-resolution": str(folder / "issue.yaml")}
    assert catalog.policy.limits.survey_max_questions == 2
    assert catalog.journeys["issue-resolution"].category is Category.transactional


def test_one_broken_file_does_not_hide_the_good_one(tmp_path, templates, write):
    folder = write(tmp_path / "j", {
        "policy.yaml": POLICY,
        "a-broken.yaml": "journey: broken\nname: Broken\ntouchpoint: nowhere\n"
                         "trigger: {event: order.placed}\nsteps:\n  - send: ticket_ack\n",
        "b-bad-yaml.yaml": "journey: [\n",
        "issue.yml": ISSUE,
    })
    catalog = load_catalog(folder, templates)
    assert list(catalog.journeys) == ["issue-resolution"]
    assert problems_of(catalog) == [("a-broken.yaml", 3, "error"), ("b-bad-yaml.yaml", 2, "error")]
    assert catalog.errors[0].file == str(folder / "a-broken.yaml")


def test_relative_paths_stay_relative(tmp_path, templates, write, monkeypatch):
    write(tmp_path / "journeys", {"policy.yaml": POLICY, "bad.yaml": "journey: Bad\n"})
    monkeypatch.chdir(tmp_path)
    catalog = load_catalog(Path("journeys"), Path("templates"))
    assert {p.file for p in catalog.problems} == {str(Path("journeys") / "bad.yaml")}


def test_missing_policy_is_a_warning(tmp_path, templates, write):
    folder = write(tmp_path / "j", {"issue.yaml": ISSUE})
    catalog = load_catalog(folder, templates)
    [p] = catalog.problems
    assert p.severity == "warning" and p.file == str(folder / "policy.yaml") and p.line == 0
    assert catalog.policy == Policy()
    assert list(catalog.journeys) == ["issue-resolution"]   # transactional: no address needed


def test_policy_errors_are_reported_and_used(tmp_path, templates, write):
    folder = write(tmp_path / "j", {"policy.yaml": POLICY + "  public_url: nope\n",
                                    "issue.yaml": ISSUE})
    catalog = load_catalog(folder, templates)
    assert problems_of(catalog) == [("policy.yaml", 5, "error")]
    assert list(catalog.journeys) == ["issue-resolution"]


def test_policy_limits_apply_to_journeys(tmp_path, templates, write, spec_journey):
    folder = write(tmp_path / "j", {"policy.yaml": POLICY.replace("2}", "1}"), "issue.yaml": ISSUE})
    (folder / "pp.yaml").write_text(spec_journey)
    catalog = load_catalog(folder, templates)
    [p] = catalog.errors
    assert (Path(p.file).name, p.line, p.hint) == ("pp.yaml", 37, "keep surveys concise")


def test_duplicate_journey_ids(tmp_path, templates, write):
    folder = write(tmp_path / "j", {"policy.yaml": POLICY, "a.yaml": ISSUE,
                                    "b.yaml": "# copy\n" + ISSUE})
    catalog = load_catalog(folder, templates)
    [p] = catalog.errors
    assert (p.file, p.line) == (str(folder / "b.yaml"), 2)
    assert "already used by" in p.message and str(folder / "a.yaml") in p.message
    assert catalog.files == {"issue-resolution": str(folder / "a.yaml")}


def test_unknown_start_target(tmp_path, templates, write, spec_journey):
    folder = write(tmp_path / "j", {"policy.yaml": POLICY,
                                    "issue.yaml": ISSUE.replace("issue-resolution", "issue-resolve")})
    (folder / "pp.yaml").write_text(spec_journey)
    catalog = load_catalog(folder, templates)
    [p] = catalog.errors
    assert (Path(p.file).name, p.line) == ("pp.yaml", 29)
    assert p.message == "unknown journey 'issue-resolution' in `start:`"
    assert p.hint == "did you mean `issue-resolve`? known journeys: issue-resolve, post-purchase"
    assert set(catalog.journeys) == {"issue-resolve"}       # the journey with the error is left out


def test_unknown_templates(tmp_path, templates, write, spec_journey):
    (templates / "kettle_tips.html.j2").unlink()
    (templates / "survey_csat.html.j2").unlink()
    folder = write(tmp_path / "j", {"policy.yaml": POLICY, "issue.yaml": ISSUE})
    (folder / "pp.yaml").write_text(spec_journey.replace("send: thank_you", "send: thank_yuo"))
    catalog = load_catalog(folder, templates)
    got = [(p.line, p.message, p.hint) for p in catalog.errors]
    assert got == [
        (14, "unknown template 'thank_yuo'",
         f"did you mean `thank_you`? expected {templates / 'thank_yuo.html.j2'}"),
        (17, "unknown template 'kettle_tips'", f"expected {templates / 'kettle_tips.html.j2'}"),
        (35, "unknown template 'survey_csat'", f"expected {templates / 'survey_csat.html.j2'}"),
    ]
    assert list(catalog.journeys) == ["issue-resolution"]


def test_locale_variant_alone_is_not_enough(tmp_path, templates, write):
    (templates / "ticket_ack.html.j2").rename(templates / "ticket_ack.it.html.j2")
    folder = write(tmp_path / "j", {"policy.yaml": POLICY, "issue.yaml": ISSUE})
    [p] = load_catalog(folder, templates).errors
    assert p.message == "unknown template 'ticket_ack'"


def test_missing_templates_folder(tmp_path, write):
    folder = write(tmp_path / "j", {"policy.yaml": POLICY, "issue.yaml": ISSUE})
    [p] = load_catalog(folder, tmp_path / "nowhere").errors
    assert p.line == 8 and "unknown template" in p.message


MARKETING = ISSUE.replace("issue-resolution", "care").replace("category: transactional\n", "")


@pytest.mark.parametrize("policy,line", [
    ("policy:\n  ops_email: ops@acme.example\n", 1),
    ("# no address yet\npolicy:\n  ops_email: ops@acme.example\n  postal_address: ''\n", 4),
    ("policy:\n", 1),
])
def test_marketing_needs_a_postal_address(tmp_path, templates, write, policy, line):
    folder = write(tmp_path / "j", {"policy.yaml": policy, "care.yaml": MARKETING})
    catalog = load_catalog(folder, templates)
    [p] = catalog.errors
    assert (p.file, p.line) == (str(folder / "policy.yaml"), line)
    assert "postal address" in p.hint
    assert list(catalog.journeys) == ["care"]


def test_marketing_without_any_policy_file(tmp_path, templates, write):
    folder = write(tmp_path / "j", {"care.yaml": MARKETING})
    catalog = load_catalog(folder, templates)
    assert [(p.line, p.severity) for p in catalog.problems] == [(0, "warning"), (0, "error")]
    assert {p.file for p in catalog.problems} == {str(folder / "policy.yaml")}


def test_transactional_only_needs_no_postal_address(tmp_path, templates, write):
    folder = write(tmp_path / "j", {"policy.yaml": "policy:\n", "issue.yaml": ISSUE})
    assert load_catalog(folder, templates).problems == ()


def test_problems_sorted_by_file_and_line(tmp_path, templates, write):
    folder = write(tmp_path / "j", {
        "policy.yaml": "policy:\n  ops_email: nope\n",
        "b.yaml": ISSUE.replace("ticket_ack", "nope_b") + "  - wait: soon\n",
        "a.yaml": MARKETING.replace("ticket_ack", "nope_a"),
    })
    catalog = load_catalog(folder, templates)
    keys = [(p.file, p.line) for p in catalog.problems]
    assert keys == sorted(keys)
    assert [Path(f).name for f, _ in keys] == ["a.yaml", "b.yaml", "policy.yaml", "policy.yaml"]


def test_folder_details(tmp_path, templates, write):
    folder = write(tmp_path / "j", {
        "policy.yaml": POLICY, "issue.yaml": ISSUE,
        ".issue.yaml.swp.yaml": "not: a journey\n",   # editor leftovers are skipped
        "README.md": "# not yaml\n",
    })
    (folder / "sub").mkdir()
    (folder / "sub" / "x.yaml").write_text("journey: [\n")
    (folder / "latin1.yaml").write_bytes("journey: caf\xe9\n".encode("latin-1"))
    (folder / "huge.yaml").write_text("#" * (MAX_BYTES + 1))
    catalog = load_catalog(folder, templates)
    assert list(catalog.journeys) == ["issue-resolution"]
    assert sorted(problems_of(catalog)) == [("huge.yaml", 0, "error"), ("latin1.yaml", 0, "error")]


def test_missing_journeys_folder(tmp_path, templates):
    catalog = load_catalog(tmp_path / "nope", templates)
    assert catalog.journeys == {} and [p.line for p in catalog.errors] == [0]


def test_spec_modules_stay_free_of_io_libraries():
    code = ("import sys; import postsale.spec.catalog, postsale.spec.journeys, "
            "postsale.spec.policy, postsale.spec.yaml_lines; "
            "bad = [m for m in ('prefect', 'sqlmodel', 'sendgrid', 'httpx') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stdout + result.stderr
