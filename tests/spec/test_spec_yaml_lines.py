from __future__ import annotations

import textwrap

import pytest

from postsale.spec.yaml_lines import (
    MAX_ALIASES, MAX_BYTES, LineDict, LineList, Reader, did_you_mean, load_yaml,
)


def load(text: str):
    return load_yaml(textwrap.dedent(text), "f.yaml")


def test_mappings_and_sequences_carry_lines():
    data, problems = load("""\
        # comment
        a: 1
        b:
          - x
          - {y: 2, z: 3}
          -
            w: 4
        """)
    assert problems == []
    assert isinstance(data, LineDict) and data.line == 2
    assert data.key_lines == {"a": 2, "b": 3}
    assert isinstance(data["b"], LineList)
    assert data["b"].line == 4 and data["b"].item_lines == [4, 5, 7]
    assert data["b"][1].line == 5 and data["b"][1].key_lines == {"y": 5, "z": 5}
    assert data["b"][2].line_of("w") == 7
    assert data.line_of("missing") == 2


def test_line_containers_behave_like_dict_and_list():
    data, _ = load("a: [1, 2]\n")
    assert data == {"a": [1, 2]}
    assert LineDict(x=1).line_of("x") == 0          # built by hand: no lines, no crash


def test_clock_times_stay_strings_and_ints_still_load():
    data, _ = load("""\
        at: 10:00
        n: 42
        neg: -3
        hex: 0x10
        f: 1.5
        flag: yes
        """)
    assert data == {"at": "10:00", "n": 42, "neg": -3, "hex": 16, "f": 1.5, "flag": True}


def test_merge_keys_still_work():
    data, problems = load("""\
        base: &b {max: 3, per: 7d}
        cap:
          <<: *b
          max: 5
        """)
    assert problems == []
    assert data["cap"] == {"max": 5, "per": "7d"}


def test_syntax_error_becomes_problem_with_line():
    data, problems = load("""\
        a: 1
        b: [1, 2
        c: 3
        """)
    assert data is None
    [p] = problems
    assert p.file == "f.yaml" and p.is_error and "YAML syntax error" in p.message
    assert p.line in (2, 3)


def test_tab_indentation_error_line():
    data, problems = load_yaml("a:\n  b: 1\n\tc: 2\n", "t.yaml")
    assert data is None and problems[0].line == 3


def test_python_tags_are_refused():
    data, problems = load("a: !!python/object/apply:os.system ['echo hi']\n")
    assert data is None and problems[0].line == 1
    assert "constructor" in problems[0].message


def test_alias_bomb_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    data, problems = load_yaml("\n".join(lines) + "\n", "bomb.yaml")
    assert data is None
    [p] = problems
    assert p.file == "bomb.yaml" and p.is_error
    assert "aliases" in p.message and "bomb" in p.message
    assert p.line == 12      # lines 2-11 hold 100 aliases; the 101st is on line 12


def test_exactly_the_alias_limit_is_fine():
    refs = "\n".join(f"r{i}: *a" for i in range(MAX_ALIASES))
    data, problems = load_yaml("a: &a [1]\n" + refs + "\n", "ok.yaml")
    assert problems == [] and data["r0"] == [1]


def test_recursive_alias_refused():
    data, problems = load("a: &x\n  - *x\n")
    assert data is None and "own anchor" in problems[0].message and problems[0].line == 2


def test_deep_nesting_refused():
    data, problems = load_yaml("[" * 500 + "]" * 500, "deep.yaml")
    assert data is None and "nested" in problems[0].message


def test_big_file_refused():
    text = "a: " + "x" * (MAX_BYTES + 1) + "\n"
    data, problems = load_yaml(text, "big.yaml")
    assert data is None and "larger" in problems[0].message


def test_duplicate_keys_reported_at_second():
    data, problems = load("""\
        a: 1
        b: 2
        a: 3
        """)
    [p] = problems
    assert p.line == 3 and "duplicate key `a`" in p.message


def test_multiple_documents_refused():
    data, problems = load("a: 1\n---\nb: 2\n")
    assert data is None and problems[0].line == 2


def test_empty_document_is_none_without_problem():
    assert load_yaml("", "e.yaml") == (None, [])
    assert load_yaml("# just a comment\n", "e.yaml") == (None, [])


def test_did_you_mean():
    assert did_you_mean("stpes", ["journey", "steps"]).startswith("did you mean `steps`?")
    assert did_you_mean("zzz", ["a", "b"]) == "accepted: a, b"


@pytest.mark.parametrize("value,ok", [("00:00", True), ("23:59", True), ("9:30", True),
                                      ("24:00", False), ("12:60", False), ("10am", False),
                                      (600, False)])
def test_reader_clock(value, ok):
    m = LineDict(at=value)
    m.key_lines["at"] = 7
    r = Reader("f.yaml")
    result = r.clock(m, "at", "at")
    assert (result is not None) is ok
    assert r.failed is (not ok)
    if not ok:
        assert r.problems[0].line == 7
