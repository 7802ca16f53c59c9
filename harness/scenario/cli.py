"""CLI commands over scenarios: `run`, `validate`, `list`."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

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
    from core.disk import DiskFullError  # heavy (h5py): only this command needs it
    from harness.resume import Interrupted, ignore_stop_signals_at_exit  # heavy: only this command needs it
    from harness.runner import evaluate, run_scenario  # heavy: only this command needs it

    if args.resume and args.force:
        raise ValueError("--resume continues the existing trajectory and --force starts it over: pass one of them.")
    scenario = load_scenario(resolve_scenario_path(args.scenario), scale=args.scale, overrides=args.set)
    problems = data_problems(scenario)  # the rules validate applies, before anything trains
    if problems:
        raise ScenarioError("; ".join(problems))
    try:
        result = run_scenario(scenario, args.out, device=args.device, overwrite=args.force, progress=not args.quiet,
                              resume=args.resume)
    except KeyboardInterrupt as stop:  # Interrupted, or a second Ctrl-C that came on its way out
        ignore_stop_signals_at_exit()  # one more while the interpreter shuts down: ignored
        print(f"interrupted: {stop}." if isinstance(stop, Interrupted) else "interrupted.", file=sys.stderr)
        print(f"resume with: {resume_command(args)}", file=sys.stderr)
        return getattr(stop, "exit_code", 130)
    except DiskFullError as full:  # the frames on disk are safe: say so, and how to go on
        print(f"disk full: {full}", file=sys.stderr)
        if (Path(args.out) / f"{scenario.name}.h5").exists():
            print(f"free some space, then resume with: {resume_command(args)}", file=sys.stderr)
        return 1
    if result.resumed_at is None:
        print(f"trajectory: {result.path}  ({result.steps} steps in {result.seconds:.1f} s)")
    else:
        print(f"trajectory: {result.path}  ({result.steps} steps; resumed at step {result.resumed_at}, "
              f"{result.steps - result.resumed_at} steps in {result.seconds:.1f} s)")
    if args.no_check:
        return 0
    failed = 0
    for expectation, verdict in evaluate(scenario, result.path, device=args.device):
        word = verdict_word(verdict.passed, expectation.xfail, expectation.exploratory)
        failed += word in ("FAIL", "XPASS")
        print(f"{word:5s} {scenario.name}-{expectation.id}: {verdict.message}")
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="train a scenario, record it, check its expectations")
    run.add_argument("scenario", help="scenario file, or a name in scenarios/")
    run.add_argument("--scale", default=FULL_SCALE, help="full (default), or a [scale.NAME] of the file")
    run.add_argument("--out", default="runs", help="output folder: writes OUT/<scenario>.h5 (default runs/)")
    run.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N, mps (default: the scenario's)")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override a knob, e.g. --set train.steps=200 (repeatable)")
    run.add_argument("--force", action="store_true", help="overwrite an existing trajectory file")
    run.add_argument("--resume", action="store_true",
                     help="continue an interrupted run from its checkpoint OUT/<scenario>.ckpt")
    run.add_argument("--no-check", action="store_true", help="record only; skip the expectations")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check scenario files (every scale) without running them")
    validate.add_argument("paths", nargs="+", help="files or folders")
    validate.set_defaults(func=cmd_validate)

    lst = sub.add_parser("list", help="list scenarios")
    lst.add_argument("paths", nargs="*", help="files or folders (default: the project's scenarios/)")
    lst.set_defaults(func=cmd_list)
