"""Checks: named invariants that read a recorded trajectory file.

Importing this package registers the built-in checks (harness.checks.library); the registry's
API is re-exported here, so `from harness.checks import check, run_check` is all a new check
or a caller needs.
"""

from harness.checks import library  # noqa: F401  (registers the built-in checks)
from harness.checks.registry import REGISTRY, CheckContext, Verdict, check, get_check, run_check

__all__ = ["REGISTRY", "CheckContext", "Verdict", "check", "get_check", "run_check"]
