"""pytest plugin: every scenarios/*.toml file is a test file, every [[expect]] a test.

    pytest scenarios/                     # smoke scale (default), runs into a temp folder
    pytest scenarios/ --scale full --runs-dir runs
    pytest scenarios/ --scale full --set train.matmul=fp32    # every scenario, one key overridden

Each scenario runs once per session, when its first expectation needs it; all its
expectations then read the same trajectory file. Test ids read
`scenarios/flannel_2.toml::test_expect[flannel_2-dead-E-zero_displacement]`. A failure
names the scenario, the check with its arguments, observed vs expected, and the worst
tokens and steps. `xfail = "reason"` in an [[expect]] table keeps a hypothesis that
is expected to fail (strict: an unexpected pass fails the suite).

Loaded for this project only, by `-p harness.pytest_plugin` in pyproject.toml's pytest
addopts (nox's `tests`, `benchmarks` and `scenarios` sessions run from the project root);
it is not a global entry point, so other repositories' scenarios/ folders stay theirs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.checks import CheckContext, Verdict, run_check
from harness.scenario.load import load_scenario
from harness.scenario.schema import Expectation, Scenario, ScenarioError

RUNS_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "dead-token scenarios")
    group.addoption("--scale", default="smoke", help="scenario scale: smoke (default) or full, or any [scale.NAME]")
    group.addoption("--runs-dir", default=None, help="where trajectories go (default: a temp folder)")
    group.addoption("--device", dest="harness_device", default=None, help="override every scenario's device")
    group.addoption("--set", dest="harness_set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a key of every scenario, as `python -m harness run --set` (repeatable)")
    group.addoption("--report", dest="harness_report", action="store_true",
                    help="write `python -m harness report` figures beside each trajectory (<name>_report/)")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RUNS_KEY] = {}


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if file_path.suffix == ".toml" and file_path.parent.name == "scenarios":
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


@dataclass
class RunRecord:
    scenario: Scenario
    path: Path | None
    seconds: float
    error: BaseException | None = None
    report: Path | None = None


class ScenarioFile(pytest.File):
    def collect(self):
        try:
            scenario = load_scenario(self.path, scale=self.config.getoption("scale"),
                                     overrides=self.config.getoption("harness_set"))
        except ScenarioError as exc:
            raise self.CollectError(str(exc)) from None
        from harness.runner import applicable  # heavy: only collecting scenario files needs it

        for expectation in applicable(scenario):
            item = ExpectationItem.from_parent(
                self, name=f"test_expect[{scenario.name}-{expectation.id}]", scenario=scenario, expectation=expectation
            )
            if expectation.xfail:
                item.add_marker(pytest.mark.xfail(reason=expectation.xfail, strict=True, raises=ExpectationFailed))
            elif expectation.exploratory:  # XPASS or XFAIL, never a failure
                item.add_marker(pytest.mark.xfail(reason=f"exploratory: {expectation.exploratory}", strict=False,
                                                  raises=ExpectationFailed))
            yield item


class ExpectationFailed(AssertionError):
    def __init__(self, verdict: Verdict):
        super().__init__(verdict.message)
        self.verdict = verdict


class ExpectationItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, expectation: Expectation, **kwargs):
        super().__init__(**kwargs)
        self.scenario, self.expectation = scenario, expectation

    def trajectory(self) -> Path:
        runs: dict[str, RunRecord] = self.config.stash[RUNS_KEY]
        record = runs.get(self.scenario.name)
        if record is None:
            record = runs[self.scenario.name] = self._run()
        if record.error is not None:
            raise RuntimeError(f"scenario {self.scenario.name} did not run: {record.error}") from record.error
        return record.path

    def _run(self) -> RunRecord:
        from harness.runner import run_scenario  # heavy: only running a scenario needs it

        runs_dir = self.config.getoption("runs_dir")
        out = Path(runs_dir) if runs_dir else self.config._tmp_path_factory.mktemp("runs")  # type: ignore[attr-defined]
        start = time.perf_counter()
        try:
            result = run_scenario(self.scenario, out, device=self.config.getoption("harness_device"),
                                  overwrite=True, progress=False)
        except Exception as exc:  # every expectation of this scenario reports the same cause
            return RunRecord(self.scenario, None, time.perf_counter() - start, exc)
        record = RunRecord(self.scenario, result.path, time.perf_counter() - start)
        if self.config.getoption("harness_report"):
            from harness.report.write import write_report  # heavy: only --report needs it

            record.report = write_report(result.path)["report.md"]
        return record

    def runtest(self) -> None:
        from harness.runner import rerun  # heavy: only running a scenario needs it
        from core.trajectory import Trajectory  # heavy (h5py): only running a scenario needs it

        path = self.trajectory()
        device = self.config.getoption("harness_device")
        with Trajectory(path) as traj:
            ctx = CheckContext(traj, self.scenario, rerun=lambda n: rerun(self.scenario, n, device))
            verdict = run_check(self.expectation.check, ctx, self.expectation.args)
        self.user_properties.append(("verdict", verdict.message))
        if not verdict.passed:
            raise ExpectationFailed(verdict)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ExpectationFailed):
            e, s = self.expectation, self.scenario
            args = ", ".join(f"{k}={v!r}" for k, v in e.args.items())
            record = self.config.stash[RUNS_KEY].get(s.name)
            return "\n".join([
                f"scenario {s.name} ({s.scale} scale, {s.train.steps} steps) from {s.path}",
                f"check    {e.check}({args})",
                f"failed   {excinfo.value.verdict.message}",
                f"file     {record.path if record else '?'}",
            ])
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"{self.scenario.name}: {self.expectation.check} {self.expectation.id}"


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    runs: dict[str, RunRecord] = config.stash.get(RUNS_KEY, {})
    if not runs:
        return
    outcomes: dict[str, dict[str, int]] = {}
    for key in ("passed", "failed", "xfailed", "xpassed", "error"):
        for report in terminalreporter.stats.get(key, []):
            name = getattr(report, "nodeid", "")
            for scenario_name in runs:
                if f"[{scenario_name}-" in name:
                    outcomes.setdefault(scenario_name, {}).setdefault(key, 0)
                    outcomes[scenario_name][key] += 1
    terminalreporter.section("scenario runs")
    rows = []
    for name, record in runs.items():
        size = record.path.stat().st_size / 1e6 if record.path and record.path.exists() else 0.0
        counts = outcomes.get(name, {})
        rows.append({
            "scenario": name, "scale": record.scenario.scale, "steps": record.scenario.train.steps,
            "seconds": round(record.seconds, 1), "file": str(record.path) if record.path else None,
            "MB": round(size, 1), **counts, "error": str(record.error) if record.error else None,
            "report": str(record.report) if record.report else None,
        })
        verdicts = " ".join(f"{v} {k}" for k, v in counts.items())
        status = f"ERROR {record.error}" if record.error else verdicts
        terminalreporter.write_line(
            f"{name:<24} {record.scenario.scale:<6} {record.scenario.train.steps:>6} steps "
            f"{record.seconds:>8.1f} s {size:>9.1f} MB  {status}"
        )
    runs_dir = config.getoption("runs_dir")
    if runs_dir:
        Path(runs_dir, "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
        terminalreporter.write_line(f"summary: {Path(runs_dir, 'summary.json')}")
