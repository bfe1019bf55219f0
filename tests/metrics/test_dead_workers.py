"""The multiprocess directory sweep: a worker that died without ``mark_process_dead``
(SIGKILL, OOM) loses its live gauges and exemplar file at the next scrape; a running one
(and the scraping process) keeps them, and counters of the dead stay summed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from telemetry.metrics.multiprocess import process_running, sweep_dead_workers


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dead_workers_live_files_are_swept_and_the_rest_kept(tmp_path: Path) -> None:
    dead = dead_pid()
    alive = os.getppid()  # the process that started pytest runs
    own = os.getpid()
    names = [
        f"gauge_livesum_{dead}.db",
        f"gauge_livemostrecent_{dead}.db",
        f"telemetry_exemplars_{dead}.json",
        f"counter_{dead}.db",  # a dead worker's counts stay in the totals
        f"histogram_{dead}.db",
        f"gauge_max_{dead}.db",
        f"gauge_livesum_{alive}.db",
        f"telemetry_exemplars_{alive}.json",
        f"gauge_livesum_{own}.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert sweep_dead_workers(str(tmp_path)) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            f"counter_{dead}.db",
            f"histogram_{dead}.db",
            f"gauge_max_{dead}.db",
            f"gauge_livesum_{alive}.db",
            f"telemetry_exemplars_{alive}.json",
            f"gauge_livesum_{own}.db",
        ]
    )
    assert sweep_dead_workers(str(tmp_path)) == []


def test_a_zombie_is_not_running() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Exited but not reaped: os.kill(pid, 0) still succeeds on a zombie.
        for _ in range(200):
            stat = Path(f"/proc/{child.pid}/stat").read_bytes()
            if stat.rpartition(b")")[2].split()[0] == b"Z":
                break
            time.sleep(0.01)
        assert not process_running(child.pid)
    finally:
        child.wait()
    assert not process_running(child.pid)
    assert process_running(os.getpid())


def test_a_missing_directory_sweeps_nothing(tmp_path: Path) -> None:
    assert sweep_dead_workers(str(tmp_path / "absent")) == []
