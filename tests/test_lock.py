"""core/lock.py: one writer per trajectory, a clear refusal naming the holder, no stale lock after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.lock import WriterBusy, WriterLock, holder, lock_path

pytestmark = [pytest.mark.faults, pytest.mark.skipif(sys.platform == "win32", reason="fcntl.flock")]
REPO = Path(__file__).resolve().parent.parent


def test_a_second_writer_is_refused_naming_the_file_and_the_holder(tmp_path):
    run = tmp_path / "run.h5"
    with WriterLock(run):
        assert holder(run) == os.getpid()
        with pytest.raises(WriterBusy, match=rf"{run} is being written by another run \(pid {os.getpid()}"):
            WriterLock(run).acquire()
    assert holder(run) is None and not lock_path(run).exists()  # released and removed
    with WriterLock(run):  # free again
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    run = tmp_path / "run.h5"
    code = f"from core.lock import WriterLock; WriterLock({str(run)!r}).acquire(); print('held', flush=True); " \
           "import time; time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        assert holder(run) == child.pid
        with pytest.raises(WriterBusy, match=f"pid {child.pid}"):
            WriterLock(run).acquire()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert lock_path(run).exists() and holder(run) is None  # the file stays, the lock went with its holder
    start = time.monotonic()
    with WriterLock(run):
        assert holder(run) == os.getpid()
    assert time.monotonic() - start < 1
