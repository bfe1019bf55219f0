"""Multi-worker metrics (``uvicorn --workers N``, gunicorn) that keep their exemplars.

Trade-off, and why this design
------------------------------
Each worker is its own process with its own counters, and a scrape of ``/metrics`` reaches
one worker picked by the kernel. prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``) fixes the totals: every worker writes its values to mmap files
in that directory and the answering worker sums all of them (``MultiProcessCollector``). But
that mode drops exemplars: its value class ignores ``set_exemplar`` (an upstream limitation).

The alternatives each give something up:

* a per-worker endpoint (``/metrics/worker``) cannot be targeted: behind one listening socket
  Prometheus reaches a random worker, so most workers' exemplars are never scraped;
* a per-worker port needs one scrape target per worker and breaks when workers are recycled;
* no multiprocess mode at all makes every scrape report one worker's counts: ``rate()`` sees
  counters jump between workers and every total is wrong.

So totals come from multiprocess mode, and exemplars are shared next to them: each worker
keeps the newest exemplar per sample (one per counter series, one per histogram bucket) in
memory and a daemon thread writes that map to ``telemetry_exemplars_<pid>.json`` in the same
directory at most once per ``flush_interval_s`` (1 s) when it changed. The answering worker
merges all those files, newest exemplar per sample wins, and attaches them to the summed
samples. One endpoint, one scrape target, correct totals, and exemplars from every worker,
at most ``flush_interval_s`` old. The cost is one small file write per worker per second
under traffic (the map is bounded by the series count, which the label guard bounds).

Dead workers: the in-progress gauge is ``livesum``, so a worker's share of it lives in its own
``gauge_livesum_<pid>.db`` file, which :func:`mark_process_dead` removes. A worker that exits
cleanly, or whose death gunicorn's ``child_exit`` hook reports, is forgotten that way; but a
SIGKILLed or OOM-killed worker under ``uvicorn --workers`` reports nothing, and the requests it
was serving would stay in progress forever. So every scrape first sweeps the directory: a pid
owning live-gauge or exemplar files that is no longer running (or is a zombie its parent has
not reaped yet) is marked dead (:func:`sweep_dead_workers`). Its counters and histograms stay
summed, as they must. The sweep assumes every writer of the directory runs in this process's
pid namespace (one directory per pod or container, the usual layout); pass ``sweep=False`` to
``MultiProcessExemplarCollector`` where it does not hold.

Operational notes: empty ``PROMETHEUS_MULTIPROC_DIR`` before the workers start (stale files
of an earlier run would be summed in), and from gunicorn's ``child_exit`` hook call
:func:`mark_process_dead` so a recycled worker's live gauges and exemplar file go away at once.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from telemetry.metrics.prometheus_internals import multiprocess_values

_FILE_PREFIX = "telemetry_exemplars_"
#: Files that belong to one live process: prometheus-client's live gauges and our exemplars.
_PER_PROCESS_FILE = re.compile(r"^(?:gauge_live[a-z]+|telemetry_exemplars)_(\d+)\.(?:db|json)$")
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def multiprocess_dir() -> str | None:
    """The multiprocess directory when prometheus-client really runs in multiprocess mode.

    prometheus-client picks its value class when it is first imported: a
    ``PROMETHEUS_MULTIPROC_DIR`` set later has no effect, and serving ``MultiProcessCollector``
    then would report nothing. Both conditions must hold.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or not multiprocess_values():
        return None
    return directory


def sample_key(sample_name: str, labels: Mapping[str, str]) -> SampleKey:
    return sample_name, tuple(sorted(labels.items()))


def bucket_bound(upper_bounds: Sequence[float], value: float) -> str:
    """``le`` label of the bucket prometheus-client puts an observation's exemplar on."""
    for bound in upper_bounds:
        if value <= bound:
            return floatToGoString(bound)
    return "+Inf"


class ExemplarStore:
    """This worker's newest exemplar per sample, shared with its sibling workers by file."""

    def __init__(self, directory: str, flush_interval_s: float = 1.0) -> None:
        self.directory = directory
        self.flush_interval_s = flush_interval_s
        self._exemplars: dict[SampleKey, Exemplar] = {}
        self._lock = threading.Lock()
        self._dirty = False
        self._stop = threading.Event()
        self._thread_pid: int | None = None

    def record(self, key: SampleKey, exemplar: Exemplar) -> None:
        with self._lock:
            self._exemplars[key] = exemplar
            self._dirty = True
        # The flusher is started by the first exemplar of each process: a store made before
        # a fork (gunicorn --preload) has no thread in the child.
        if self._thread_pid != os.getpid():
            self._start_flusher()

    def _start_flusher(self) -> None:
        with self._lock:
            if self._thread_pid == os.getpid():
                return
            self._thread_pid = os.getpid()
        thread = threading.Thread(target=self._flush_loop, name="telemetry-exemplars", daemon=True)
        thread.start()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            self.flush()

    def _path(self, pid: int) -> str:
        return os.path.join(self.directory, f"{_FILE_PREFIX}{pid}.json")

    def flush(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            snapshot = list(self._exemplars.items())
            self._dirty = False
        rows = [
            [name, list(labels), ex.labels, ex.value, float(ex.timestamp or 0.0)]
            for (name, labels), ex in snapshot
        ]
        path = self._path(os.getpid())
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, separators=(",", ":"))
        # Atomic replace: a reader sees the previous map or the new one, never half a file.
        os.replace(tmp, path)

    def merged(self) -> dict[SampleKey, Exemplar]:
        """Newest exemplar per sample over all workers' files and this worker's memory."""
        merged: dict[SampleKey, Exemplar] = {}
        own = self._path(os.getpid())
        for path in glob.glob(os.path.join(self.directory, f"{_FILE_PREFIX}*.json")):
            if path == own:
                continue
            for key, exemplar in _read(path):
                _keep_newest(merged, key, exemplar)
        with self._lock:
            mine = list(self._exemplars.items())
        for key, exemplar in mine:
            _keep_newest(merged, key, exemplar)
        return merged

    def close(self) -> None:
        """Stop the flusher after a last flush, so the newest exemplars are not lost."""
        self._stop.set()
        if self._thread_pid == os.getpid():
            with contextlib.suppress(OSError):
                self.flush()


def _keep_newest(merged: dict[SampleKey, Exemplar], key: SampleKey, exemplar: Exemplar) -> None:
    current = merged.get(key)
    if current is None or float(exemplar.timestamp or 0.0) >= float(current.timestamp or 0.0):
        merged[key] = exemplar


def _read(path: str) -> Iterable[tuple[SampleKey, Exemplar]]:
    try:
        with open(path, encoding="utf-8") as handle:
            rows: list[Any] = json.load(handle)
    except (OSError, ValueError):
        # The worker recycled (file removed) between glob and open; nothing to merge.
        return []
    return [
        ((name, tuple((str(k), str(v)) for k, v in labels)), Exemplar(ex_labels, value, ts))
        for name, labels, ex_labels, value, ts in rows
    ]


class MultiProcessExemplarCollector:
    """``MultiProcessCollector`` totals with the workers' shared exemplars attached."""

    def __init__(self, directory: str, store: ExemplarStore, *, sweep: bool = True) -> None:
        self._collector = multiprocess.MultiProcessCollector(None, path=directory)
        self._directory = directory
        self._store = store
        self._sweep = sweep

    def collect(self) -> Iterable[Metric]:
        if self._sweep:
            sweep_dead_workers(self._directory)
        exemplars = self._store.merged()
        metrics = list(self._collector.collect())
        if not exemplars:
            return metrics
        for metric in metrics:
            metric.samples = [
                sample._replace(exemplar=exemplars.get(sample_key(sample.name, sample.labels)))
                if sample.exemplar is None
                else sample
                for sample in metric.samples
            ]
        return metrics


def mark_process_dead(pid: int, directory: str | None = None) -> None:
    """Forget a dead worker: its live gauges (in-progress requests) and its exemplar file.

    Call it from gunicorn's ``child_exit(server, worker)`` hook with ``worker.pid``.
    """
    directory = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    for _ in range(3):
        try:
            multiprocess.mark_process_dead(pid, directory)
            break
        except FileNotFoundError:
            continue  # another worker's sweep removed a file first: look again
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(directory, f"{_FILE_PREFIX}{pid}.json"))


def process_running(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie is not: it died, unreaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: running
    except OSError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return True  # no procfs (or it just exited): os.kill said running
    # "pid (comm) state ...": comm may hold spaces and parentheses, the state follows the last ")".
    fields = stat.rpartition(b")")[2].split()
    return not fields or fields[0] not in (b"Z", b"X")


def sweep_dead_workers(directory: str) -> list[int]:
    """Mark dead (:func:`mark_process_dead`) every pid that owns live-gauge or exemplar files
    in ``directory`` and no longer runs; returns those pids."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    own = os.getpid()
    pids = set()
    for name in names:
        match = _PER_PROCESS_FILE.match(name)
        if match is not None:
            pids.add(int(match.group(1)))
    dead = sorted(pid for pid in pids if pid != own and not process_running(pid))
    for pid in dead:
        mark_process_dead(pid, directory)
    return dead
