"""noxfile.py's own helpers: the mutation report and the check that mutmut's test map is current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("noxfile", Path(__file__).parents[1] / "noxfile.py")
noxfile = importlib.util.module_from_spec(spec)
spec.loader.exec_module(noxfile)


def test_a_changed_or_new_test_file_makes_mutmut_map_the_tests_again(tmp_path):
    tests, mutants = tmp_path / "tests", tmp_path / "mutants"
    tests.mkdir()
    (tests / "test_a.py").write_text("def test_a():\n    pass\n")
    assert noxfile.forget_stale_test_map(tests, mutants) is False  # no mutants/ yet: nothing to forget
    mutants.mkdir()
    test_map = mutants / "mutmut-stats.json"

    def forgets() -> bool:
        test_map.write_text("{}")
        deleted = noxfile.forget_stale_test_map(tests, mutants)
        assert test_map.exists() is not deleted
        return deleted

    assert forgets()  # a map without a stamp: made from tests we do not know
    assert not forgets()  # the same tests
    (tests / "test_a.py").write_text("def test_a():\n    assert 1\n")
    assert forgets() and not forgets()
    (tests / "sub").mkdir()
    (tests / "sub" / "test_b.py").write_text("")
    assert forgets() and not forgets()
    (tests / "sub" / "test_b.py").rename(tests / "sub" / "test_c.py")  # the same bytes under another name
    assert forgets()


def test_the_mutants_report_counts_each_status_per_module_and_shows_each_survivor():
    results = [["core.data.x_f__mutmut_1", "killed"], ["core.data.x_f__mutmut_2", "survived"],
               ["core.step.x_g__mutmut_1", "no tests"], ["core.step.x_g__mutmut_2", "not checked"]]
    diffs = {"core.data.x_f__mutmut_2": "-    a = 1\n+    a = 2\n", "core.step.x_g__mutmut_1": "-    b\n+    c\n"}
    answers = {"core.data.x_f__mutmut_2": "equivalent: a is never read", "core.data.x_f__mutmut_9": "killed by t"}
    report = noxfile.mutants_report(results, diffs, 90.0, answers)
    lines = report.splitlines()
    assert lines[0] == "# Mutation testing: 4 mutants, 1.5 min"
    assert "| core.data | 1 | 1 | 0 | 0 | 0 | 0 | 0 | 0 | 50.0% |" in lines
    assert "| core.step | 0 | 0 | 0 | 0 | 0 | 1 | 0 | 1 | 0.0% |" in lines
    assert "| **all** | 1 | 1 | 0 | 0 | 0 | 1 | 0 | 1 | 33.3% |" in lines
    assert "## Not killed: 2, 1 answered in docs/mutants.md" in lines
    answered = "### `core.data.x_f__mutmut_2`\n\nequivalent: a is never read\n\n```diff\n-    a = 1\n+    a = 2\n```"
    assert answered in report
    assert "### `core.step.x_g__mutmut_1`\n\n**new**: kill it with a test, or answer it in docs/mutants.md" in report


def test_the_answers_are_read_from_the_survivors_table_of_docs_mutants(tmp_path):
    answers = noxfile.known_answers(Path(__file__).parents[1] / "docs" / "mutants.md")
    assert len(answers) >= 90 and all(a.startswith(("equivalent", "not killed")) for a in answers.values())
    assert answers["core.recorder.xǁTrajectoryWriterǁ_write_loop__mutmut_19"].startswith("equivalent: > and >=")
    page = tmp_path / "m.md"
    page.write_text("| module | mutants |\n|---|---|\n| core.data | 3 |\n\n"
                    "| mutant | verdict | answer |\n|---|---|---|\n"
                    "| `core.data.x_f__mutmut_2` | survived | equivalent: a is never read |\n", encoding="utf-8")
    assert noxfile.known_answers(page) == {"core.data.x_f__mutmut_2": "equivalent: a is never read"}
    assert noxfile.known_answers(tmp_path / "missing.md") == {}
