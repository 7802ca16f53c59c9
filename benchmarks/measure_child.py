"""Peak RSS and time of one function call, in a process of its own (conftest.child_rss_and_seconds):

    python measure_child.py MODULE:FUNCTION ARG... -> prints "<peak KiB> <seconds>"

e.g. `harness.report.write:write_report TRAJECTORY OUT_DIR`. The function gets the arguments as
strings; it is imported before the clock starts.
"""

from __future__ import annotations

import importlib
import sys
import time

from conftest import peak_rss_kib


def main() -> None:
    module, _, function = sys.argv[1].partition(":")
    call = getattr(importlib.import_module(module), function)
    start = time.perf_counter()
    call(*sys.argv[2:])
    print(peak_rss_kib(), round(time.perf_counter() - start, 2))


if __name__ == "__main__":
    main()
