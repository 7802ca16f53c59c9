"""Peak RSS and time of `python -m harness animate` on one file, in its own process:
python animate_child.py TRAJECTORY MOVIE -> prints "<peak KiB> <seconds>"."""

from __future__ import annotations

import sys
import time

from conftest import peak_rss_kib
from harness.animate.movie import animate


def main() -> None:
    start = time.perf_counter()
    animate(sys.argv[1], sys.argv[2])
    print(peak_rss_kib(), round(time.perf_counter() - start, 2))


if __name__ == "__main__":
    main()
