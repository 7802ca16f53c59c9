"""The `run`, `validate` and `list` commands' arguments, help and examples (argparse only).

Like every `cli_parser` module, this imports only the standard library, so that
`harness --help` stays fast; each command names its handler in harness.scenario.cli,
which harness.cli imports only when that command runs.
"""

from __future__ import annotations

import argparse

FULL_SCALE = "full"  # harness.scenario.schema.FULL_SCALE (tests/test_console.py checks they agree)


def add_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run", help="train a scenario, record it, check its expectations",
        description="Train a scenario, record it to OUT/<name>.h5 (beside it <name>.toml, the resolved scenario, "
                    "and <name>.log), then check its expectations.",
        epilog="example: harness run flannel_2 --scale smoke --out runs --set train.steps=20")
    run.add_argument("scenario", help="scenario file (a run folder's <name>.toml too), or a name in scenarios/")
    run.add_argument("--scale", default=FULL_SCALE, help="full (default), or a [scale.NAME] of the file")
    run.add_argument("--out", default="runs",
                     help="output folder: writes OUT/<scenario>.h5, .toml and .log (default runs/)")
    run.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N, mps (default: the scenario's)")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override a knob, e.g. --set train.steps=200 (repeatable)")
    run.add_argument("--force", action="store_true", help="overwrite an existing trajectory file")
    run.add_argument("--resume", action="store_true",
                     help="continue an interrupted run from its checkpoint OUT/<scenario>.ckpt")
    run.add_argument("--no-check", action="store_true",
                     help="record only: the scenario's expectations are neither validated nor checked")
    run.add_argument("-q", "--quiet", action="store_true",
                     help="no progress bar and no INFO lines on the console (the log file keeps them)")
    run.set_defaults(handler="harness.scenario.cli:cmd_run")

    validate = sub.add_parser("validate", help="check scenario files (every scale) without running them",
                              epilog="example: harness validate scenarios/")
    validate.add_argument("paths", nargs="+", help="files or folders")
    validate.set_defaults(handler="harness.scenario.cli:cmd_validate")

    lst = sub.add_parser("list", help="list scenarios", epilog="example: harness list")
    lst.add_argument("paths", nargs="*", help="files or folders (default: the project's scenarios/)")
    lst.set_defaults(handler="harness.scenario.cli:cmd_list")
