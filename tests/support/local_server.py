"""What Prometheus and Alertmanager have in common in the tests: a Debian binary run as a
process on 127.0.0.1 in a temporary work dir, ready when ``/-/ready`` answers, stopped by
pid with its work dir removed."""

from __future__ import annotations

import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from tests.support.net import LOOPBACK, free_port, http_ok
from tests.support.processes import ManagedProcess


class LocalServer(ABC):
    #: Shown in start-up errors and used for the work dir and log file names.
    name = "server"

    def __init__(self, startup_timeout: float) -> None:
        self.startup_timeout = startup_timeout
        self.port = 0
        self.work_dir: Path | None = None
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _prepare(self) -> Path:
        """A fresh work dir and port for a start."""
        self.work_dir = Path(tempfile.mkdtemp(prefix=f"{self.name.lower()}-"))
        self.port = free_port()
        return self.work_dir

    def _launch(self, argv: Sequence[str]) -> None:
        assert self.work_dir is not None
        self._process = ManagedProcess(
            argv, log_path=self.work_dir / f"{self.name.lower()}.log", cwd=self.work_dir
        )
        try:
            self._process.wait_until_ready(
                lambda: http_ok(f"{self.url}/-/ready"), self.startup_timeout, self.name
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @abstractmethod
    def start(self) -> None:
        """Write the config, then ``_launch`` the command line (each server its own)."""

    def log_tail(self) -> str:
        return "" if self._process is None else self._process.log_tail()
