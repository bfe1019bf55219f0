"""Start real server binaries as subprocesses and stop them by their process group id."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class MissingBinaryError(RuntimeError):
    """A Debian binary a fixture needs is not installed; the message names the apt package."""


def require_binary(binary: str, apt_package: str) -> str:
    """Absolute path of ``binary`` or a ``MissingBinaryError`` telling how to install it."""
    found = shutil.which(binary)
    if found is None:
        raise MissingBinaryError(
            f"{binary!r} is not installed: run "
            f"`apt-get install -y --no-install-recommends {apt_package}`"
        )
    return found


class ServerStartError(RuntimeError):
    """A server process died or never became ready; carries the tail of its log."""


class ManagedProcess:
    """A subprocess in its own session (so its whole process group can be signalled),
    with stdout and stderr going to a log file that error messages quote."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.argv = list(argv)
        self.stop_signal = stop_signal
        self.log_path = log_path
        self._log_file = log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # A new session makes the child a process-group leader: gunicorn's workers and any
            # other grandchildren are stopped together with it, by pid, and nothing else is.
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, max_chars: int = 4000) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-max_chars:]

    def wait_until_ready(self, is_ready: Callable[[], bool], timeout: float, name: str) -> None:
        """Poll ``is_ready`` until it is True; fail fast, with the log, if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise ServerStartError(
                    f"{name} exited with code {self.process.returncode} before it was ready; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if is_ready():
                return
            time.sleep(0.1)
        raise ServerStartError(
            f"{name} was not ready after {timeout:.0f}s; log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Send ``stop_signal`` to the process group, then SIGKILL it if it has not exited
        after the grace period."""
        if self.running():
            self._signal_group(self.stop_signal)
            try:
                self.process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=grace_seconds)
        self._log_file.close()

    def _signal_group(self, signum: signal.Signals) -> None:
        try:
            # The group id equals our child's pid because it was started as a session leader.
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            return
