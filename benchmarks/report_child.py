"""Peak RSS and time of `python -m harness report` on one file, in its own process:
python report_child.py TRAJECTORY OUT_DIR -> prints "<peak KiB> <seconds>"."""

from __future__ import annotations

import resource
import sys
import time

from harness.report import write_report


def main() -> None:
    start = time.perf_counter()
    write_report(sys.argv[1], sys.argv[2])
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, round(time.perf_counter() - start, 2))


if __name__ == "__main__":
    main()
