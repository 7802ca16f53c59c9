"""The `run`, `validate` and `list` commands' handlers (their arguments: harness.scenario.cli_parser)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from core.disk import DiskFullError
from harness.resume import Interrupted, ignore_stop_signals_at_exit
from harness.run_folder import RunLog
from harness.runner import evaluate, run_scenario
from harness.scenario.load import find_scenarios, load_scenario
from harness.scenario.preflight import data_problems
from harness.scenario.schema import FULL_SCALE, ScenarioError

log = logging.getLogger(__name__)

PROJECT_SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def resolve_scenario_path(name_or_path: str) -> Path:
    """A scenario file path, or a name looked up in ./scenarios then the project's scenarios/."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for folder in (Path("scenarios"), PROJECT_SCENARIOS):
        candidate = folder / (p.name if p.suffix == ".toml" else f"{p.name}.toml")
        if candidate.is_file():
            return candidate
    known = sorted(f.stem for f in PROJECT_SCENARIOS.glob("*.toml"))
    raise ScenarioError(f"No scenario {name_or_path!r}: not a file, and not in scenarios/. Known: {', '.join(known)}")


def verdict_word(passed: bool, xfail: str, exploratory: str = "") -> str:
    """PASS / FAIL; XFAIL / XPASS for a kept failing hypothesis; YES / NO for an exploratory one."""
    if xfail:
        return "XFAIL" if not passed else "XPASS"
    if exploratory:
        return "YES" if passed else "NO"
    return "PASS" if passed else "FAIL"


def cmd_run(args: argparse.Namespace) -> int:
    if args.resume and args.force:
        raise ValueError("--resume continues the existing trajectory and --force starts it over: pass one of them.")
    scenario = load_scenario(resolve_scenario_path(args.scenario), scale=args.scale, overrides=args.set,
                             expectations=not args.no_check)
    problems = data_problems(scenario)  # the rules validate applies, before anything trains
    if problems:
        raise ScenarioError("; ".join(problems))
    run_log = RunLog((Path(args.out) / scenario.name).with_suffix(".log"))  # opened once the run has begun
    try:
        result = run_scenario(scenario, args.out, device=args.device, overwrite=args.force, progress=not args.quiet,
                              resume=args.resume)
    except KeyboardInterrupt as stop:  # Interrupted, or a second Ctrl-C that came on its way out
        ignore_stop_signals_at_exit()  # one more while the interpreter shuts down: ignored
        with run_log:
            run_log.say(f"interrupted: {stop}." if isinstance(stop, Interrupted) else "interrupted.", file=sys.stderr)
            run_log.say(f"resume with: {resume_command(args)}", file=sys.stderr)
        return getattr(stop, "exit_code", 130)
    except DiskFullError as full:  # the frames on disk are safe: say so, and how to go on
        print(f"disk full: {full}", file=sys.stderr)
        if (Path(args.out) / f"{scenario.name}.h5").exists():
            print(f"free some space, then resume with: {resume_command(args)}", file=sys.stderr)
        return 1
    with run_log:  # what the console shows after training goes into the run's log file too
        if result.resumed_at is None:
            run_log.say(f"trajectory: {result.path}  ({result.steps} steps in {result.seconds:.1f} s)")
        else:
            run_log.say(f"trajectory: {result.path}  ({result.steps} steps; resumed at step {result.resumed_at}, "
                        f"{result.steps - result.resumed_at} steps in {result.seconds:.1f} s)")
        failed = 0
        for expectation, verdict in evaluate(scenario, result.path, device=args.device):
            word = verdict_word(verdict.passed, expectation.xfail, expectation.exploratory)
            failed += word in ("FAIL", "XPASS")
            run_log.say(f"{word:5s} {scenario.name}-{expectation.id}: {verdict.message}")
    return 1 if failed else 0


def resume_command(args: argparse.Namespace) -> str:
    """The command line that resumes the run `args` started."""
    parts = ["python", "-m", "harness", "run", args.scenario]
    if args.scale != FULL_SCALE:
        parts += ["--scale", args.scale]
    parts += ["--out", str(args.out)]
    if args.device:
        parts += ["--device", args.device]
    for override in args.set:
        parts += ["--set", override]
    parts += ["--no-check"] if args.no_check else []
    parts += ["-q"] if args.quiet else []
    return shlex.join(parts + ["--resume"])


def cmd_validate(args: argparse.Namespace) -> int:
    errors = 0
    for path in find_scenarios(args.paths):
        try:
            scenario = load_scenario(path)
            for scale in scenario.scales[1:]:
                load_scenario(path, scale=scale)
            problems = data_problems(scenario)
            if problems:
                raise ScenarioError("\n      ".join(problems))
            print(f"ok    {path}: {scenario.name} (scales: {', '.join(scenario.scales)}; "
                  f"{len(scenario.expect)} expectations)")
        except ScenarioError as exc:
            errors += 1
            print(f"error {exc}")
    return 1 if errors else 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for path in find_scenarios(args.paths or [PROJECT_SCENARIOS]):
        try:
            s = load_scenario(path)
        except ScenarioError as exc:
            rows.append((path.stem, "INVALID", "", "", str(exc)))
            continue
        rows.append((s.name, f"{s.train.steps}", "tied" if s.model.tied else "untied",
                     ",".join(s.record.tensors), s.summary))
    header = ("name", "steps", "model", "records", "summary")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(4)]
    for row in [header] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row[:4], widths)) + "  " + row[4])
    return 0
