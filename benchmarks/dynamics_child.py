"""Peak RSS and time of harness.dynamics.dynamics_summary on one file, in its own process:
python dynamics_child.py TRAJECTORY -> prints "<peak KiB> <seconds>"."""

from __future__ import annotations

import sys
import time

from conftest import peak_rss_kib
from harness.dynamics import dynamics_summary


def main() -> None:
    start = time.perf_counter()
    dynamics_summary(sys.argv[1])
    print(peak_rss_kib(), round(time.perf_counter() - start, 2))


if __name__ == "__main__":
    main()
