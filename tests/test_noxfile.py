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
    report = noxfile.mutants_report(results, {"core.data.x_f__mutmut_2": "-    a = 1\n+    a = 2\n"}, 90.0)
    lines = report.splitlines()
    assert lines[0] == "# Mutation testing: 4 mutants, 1.5 min"
    assert "| core.data | 1 | 1 | 0 | 0 | 0 | 0 | 0 | 0 | 50.0% |" in lines
    assert "| core.step | 0 | 0 | 0 | 0 | 0 | 1 | 0 | 1 | 0.0% |" in lines
    assert "| **all** | 1 | 1 | 0 | 0 | 0 | 1 | 0 | 1 | 33.3% |" in lines
    assert "```diff\n-    a = 1\n+    a = 2\n```" in report
