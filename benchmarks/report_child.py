"""Peak RSS and time of `python -m harness report` on one file, in its own process:
python report_child.py TRAJECTORY OUT_DIR -> prints "<peak KiB> <seconds>"."""

from __future__ import annotations

import sys
import time

from conftest import peak_rss_kib
from harness.report.write import write_report


def main() -> None:
    start = time.perf_counter()
    write_report(sys.argv[1], sys.argv[2])
    print(peak_rss_kib(), round(time.perf_counter() - start, 2))


if __name__ == "__main__":
    main()
