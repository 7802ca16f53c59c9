"""The `data build|info` command's arguments, help and examples (argparse only: see harness.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path

CACHE_ENV = "DEAD_TOKEN_HARNESS_CACHE"  # harness.data.bundle.CACHE_ENV (tests/test_console.py checks they agree)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` command with its `build` and `info` actions."""
    data = subparsers.add_parser(
        "data", help="build or describe the training data",
        description="`build` builds the default bundle (or finds it in the cache) and describes it; `info` "
                    "describes it, building it first if it is missing. `info --tokenizer T --corpus C` describes "
                    "a researcher's own tokenizer and corpus instead.",
        epilog="example: harness data info --tokenizer my_tokenizer.json --corpus my_corpus.txt")
    actions = data.add_subparsers(dest="data_action", required=True, metavar="ACTION")
    cache_help = f"bundle cache folder (default: ${CACHE_ENV}, else the user cache folder)"

    build = actions.add_parser("build", help="build the default bundle (from installed packages, offline)",
                               epilog="example: harness data build")
    build.add_argument("--cache-dir", type=Path, default=None, help=cache_help)
    build.add_argument("--rebuild", action="store_true", help="rebuild even if a complete bundle is cached")
    build.set_defaults(handler="harness.data.cli:cmd_build")

    info = actions.add_parser("info", help="describe the default bundle (building it if missing) or your data",
                              epilog="example: harness data info --tokenizer my_tokenizer.json --corpus my_corpus.txt")
    info.add_argument("--cache-dir", type=Path, default=None, help=cache_help)
    info.add_argument("--tokenizer", type=Path, help="your tokenizer JSON (with --corpus) instead of the bundle")
    info.add_argument("--corpus", type=Path, help="your corpus: .txt, .jsonl or .parquet (with --tokenizer)")
    info.add_argument("--text-field", default="text", help="JSON Lines field / Parquet column (default: text)")
    info.add_argument("--vocab-size", type=int, help="the model's vocab, checked against --tokenizer (default: its own)")
    info.set_defaults(handler="harness.data.cli:cmd_info")
